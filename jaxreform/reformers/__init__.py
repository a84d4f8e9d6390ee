"""Data reformers: methods that distort the training data before the task model sees it.

``make_reformer(name, **settings)`` builds one by name; see :mod:`.base` for the interface.
"""

from __future__ import annotations

from jaxreform import _validate
from jaxreform.reformers.autoencoder import AutoencoderFitted, AutoencoderReformer, encode
from jaxreform.reformers.base import FittedReformer, Reformer
from jaxreform.reformers.dp_autoencoder import DpAutoencoderFitted, DpAutoencoderReformer
from jaxreform.reformers.identity import IdentityFitted, IdentityReformer
from jaxreform.reformers.influence import InfluenceFitted, InfluenceReformer
from jaxreform.reformers.influence_noise import NOISE_MODES, NoiseResult, reform_with_noise

REFORMERS = {"none": IdentityReformer, "autoencoder": AutoencoderReformer,
             "influence": InfluenceReformer, "dp-autoencoder": DpAutoencoderReformer}


def make_reformer(name: str, **settings) -> Reformer:
    """Builds the reformer called ``name`` with keyword ``settings``.

    Raises:
        ConfigError: for an unknown name (listing the known ones) or a bad setting.
    """
    _validate.check_choice("reformer", name, REFORMERS)
    return REFORMERS[name](**settings)


__all__ = [
    "AutoencoderFitted", "AutoencoderReformer", "DpAutoencoderFitted", "DpAutoencoderReformer",
    "FittedReformer", "IdentityFitted",
    "IdentityReformer", "InfluenceFitted", "InfluenceReformer", "NOISE_MODES", "NoiseResult",
    "REFORMERS", "reform_with_noise", "Reformer", "encode", "make_reformer",
]
