"""The autoencoder reformer with differential privacy, and what each guarantee covers.

Three separate statements, reported one by one (``info["guarantees"]``):

(a) ``dp_training``: the autoencoder is trained with DP-SGD. The bound covers the released
    *encoder* (its parameters, hence any function of them). The codes of the training records
    are still computed from those records and inherit nothing from it: whoever holds the
    reformed training set holds a deterministic function of each record.
(b) Training the task model on the codes with DP-SGD as well (``jaxreform run --dp-epsilon``)
    bounds what the released *task model* reveals about the training set; that is reported by
    the pipeline, not by this reformer.
(c) ``code_noise_epsilon``: each record's code is clipped to L2 norm C and released with
    Gaussian noise — a Gaussian mechanism applied to every record separately (local DP).
    Replacing one record moves its clipped code by at most 2C, so the noise std is 2C·σ with
    σ calibrated by the accountant; the bound covers each *released reformed training record*.
    Test inputs at deployment are encoded and clipped but not noised (they are not released).

Local noise in hundreds of dimensions costs a lot of signal per record; a small
``code_size`` helps. The frontier experiment measures what is left.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxreform import _validate, dp
from jaxreform.dp import accounting
from jaxreform.errors import ConfigError
from jaxreform.reformers.autoencoder import (
    AutoencoderFitted,
    AutoencoderReformer,
    encode,
    example_reconstruction_loss,
)


def clip_rows(codes: jax.Array, clip_norm: float) -> jax.Array:
    """Scales each row of ``codes [n, ...]`` to L2 norm at most ``clip_norm``."""
    flat = codes.reshape(codes.shape[0], -1)
    norms = jnp.linalg.norm(flat, axis=1, keepdims=True)
    return (flat * jnp.minimum(1.0, clip_norm / jnp.maximum(norms, 1e-12))).reshape(codes.shape)


@dataclasses.dataclass(frozen=True)
class DpAutoencoderFitted(AutoencoderFitted):
    """An :class:`AutoencoderFitted` whose deployment transform clips codes like training did.

    Attributes:
        code_clip_norm: Clip norm of option (c), or None.
    """

    code_clip_norm: float | None = None

    def transform(self, inputs: jax.Array) -> jax.Array:
        """Encodes (and, with code noise on, clips) ``inputs [b, ...]``; never adds noise."""
        codes = encode(self.autoencoder, self.encoder_params, inputs)
        return codes if self.code_clip_norm is None else clip_rows(codes, self.code_clip_norm)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DpAutoencoderReformer(AutoencoderReformer):
    """The autoencoder reformer with (a) DP-SGD training and/or (c) noised codes.

    Attributes:
        dp_training: DP-SGD settings of the autoencoder (option (a)); None trains it normally.
        code_noise_epsilon: ε of the per-record Gaussian mechanism on codes (option (c)).
        code_clip_norm: L2 clip norm C of each code before noise.
        code_delta: δ of option (c).
        (others as in :class:`AutoencoderReformer`)
    """

    name: str = dataclasses.field(default="dp-autoencoder", init=False)
    dp_training: dp.DpSgdConfig | None = None
    code_noise_epsilon: float | None = None
    code_clip_norm: float = 5.0
    code_delta: float = 1e-5

    def __post_init__(self):
        super().__post_init__()
        if self.dp_training is None and self.code_noise_epsilon is None:
            raise ConfigError("dp-autoencoder needs dp_training (--dp-autoencoder-epsilon) "
                              "and/or code_noise_epsilon (--code-noise-epsilon).")
        _validate.check_finite_numbers(code_clip_norm=self.code_clip_norm)
        _validate.check_positive(code_clip_norm=self.code_clip_norm)
        accounting.check_delta(self.code_delta)
        if self.code_noise_epsilon is not None:
            _validate.check_finite_numbers(code_noise_epsilon=self.code_noise_epsilon)
            _validate.check_positive(code_noise_epsilon=self.code_noise_epsilon)

    def fit(self, key, inputs, labels=None, *, progress: bool = True) -> DpAutoencoderFitted:
        """Trains the autoencoder (privately if ``dp_training``) and releases the codes
        (clipped and noised if ``code_noise_epsilon``). See the module docstring."""
        del labels
        inputs, kind = self.check_inputs(inputs)
        init_key, fit_key, noise_key = jax.random.split(key, 3)
        autoencoder = self.build(tuple(inputs.shape[1:]), kind)
        params = autoencoder.init(init_key, inputs[:1])
        guarantees = []
        info = {**self.describe(), "reconstruction_used": kind}
        if self.dp_training is None:
            params, history = self.train_autoencoder(fit_key, autoencoder, params, inputs, kind,
                                                     progress)
        else:
            result = dp.fit_dp(fit_key, autoencoder.apply, example_reconstruction_loss(kind),
                               params, (inputs, inputs), self.dp_training,
                               covers="the released encoder (not the codes of the training "
                                      "records, which are computed from them)",
                               progress=progress, description="DP autoencoder")
            params, history = result.params, result.history
            guarantees.append(result.guarantee.as_dict())
            info["dp_training"] = dataclasses.asdict(self.dp_training)
        codes = encode(autoencoder, params, inputs)
        clip = None
        if self.code_noise_epsilon is not None:
            clip = self.code_clip_norm
            sigma = accounting.gaussian_mechanism_noise(self.code_noise_epsilon, self.code_delta)
            std = 2.0 * clip * sigma
            codes = clip_rows(codes, clip) + std * jax.random.normal(noise_key, codes.shape)
            guarantees.append(accounting.Guarantee(
                epsilon=accounting.gaussian_mechanism_epsilon(sigma, self.code_delta),
                delta=self.code_delta, accountant="pld",
                covers="each released reformed training record (local: replace-one on the "
                       "record itself)",
                mechanism=(f"Gaussian mechanism per record: code clipped to L2 norm {clip:g}, "
                           f"noise std {std:.4g} per coordinate (sensitivity 2C, "
                           f"noise multiplier {sigma:.4g})")).as_dict())
            info["code_noise_std"] = std
        info["reconstruction_loss"] = history["train_loss"]
        info["code_shape"] = list(codes.shape[1:])
        info["guarantees"] = guarantees
        return DpAutoencoderFitted(reformed_train=codes, encoder_params=params,
                                   autoencoder=autoencoder, info=info, code_clip_norm=clip)
