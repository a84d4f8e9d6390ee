"""The target models that MI-FACE is run against (Fredrikson et al. 2015, section 5).

* ``"softmax"``: softmax regression on the raw pixels
  (:class:`jaxreform.models.SoftmaxRegression`), started from zero weights;
* ``"mlp"``: one hidden layer of 3000 sigmoid units, then a softmax
  (:class:`jaxreform.models.MLP` with ``activation=nn.sigmoid``).

Both are trained with :func:`jaxreform.train.fit` on cross-entropy and return logits, so
attack them with ``mi_face(target.module.apply, target.params, ..., outputs="logits")``.
The paper's third target, a stacked denoising autoencoder searched in code space, is not
built yet: it needs a DAE module and a code-space Process (decode, denoise, sharpen,
re-encode), which ``mi_face``'s ``process`` hook can take once they exist.
"""

from __future__ import annotations

import dataclasses
import time

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxreform import _validate, models, train
from jaxreform.data.core import Dataset

TARGET_KINDS = ("softmax", "mlp")
MLP_HIDDEN_UNITS = 3000

# Settings that fit both targets on the 280 AT&T training faces (7 per person) to zero
# training error; measured test errors are in the experiment driver's report.
DEFAULT_TRAIN_CONFIGS = {
    "softmax": train.TrainConfig(epochs=100, batch_size=40, learning_rate=1e-3),
    "mlp": train.TrainConfig(epochs=100, batch_size=40, learning_rate=1e-3),
}


@dataclasses.dataclass(frozen=True)
class FaceTarget:
    """A trained target model.

    Attributes:
        kind: ``"softmax"`` or ``"mlp"``.
        module: The flax module; ``module.apply(params, x [b, *input_shape]) -> [b, k]``
            logits.
        params: Its trained parameters.
        train_error: Error rate on the training images.
        test_error: Error rate on the held-out test images.
        seconds: Training wall time.
    """

    kind: str
    module: nn.Module
    params: dict
    train_error: float
    test_error: float
    seconds: float


def make_target_module(kind: str, num_classes: int, *, hidden_units: int = MLP_HIDDEN_UNITS
                       ) -> nn.Module:
    """The untrained flax module of target ``kind`` (``"softmax"`` or ``"mlp"``).

    Raises:
        ConfigError: for an unknown kind or a bad size.
    """
    _validate.check_choice("target", kind, TARGET_KINDS)
    _validate.check_integers(num_classes=num_classes, hidden_units=hidden_units)
    _validate.check_positive(num_classes=num_classes, hidden_units=hidden_units)
    if kind == "softmax":
        return models.SoftmaxRegression(num_classes=num_classes)
    return models.MLP(num_classes=num_classes, hidden_sizes=(hidden_units,),
                      activation=nn.sigmoid)


def train_target(
    kind: str,
    dataset: Dataset,
    *,
    key: jax.Array,
    config: train.TrainConfig | None = None,
    hidden_units: int = MLP_HIDDEN_UNITS,
    zero_init: bool | None = None,
    progress: bool = False,
) -> FaceTarget:
    """Trains target ``kind`` on ``dataset``'s training split and measures its error rates.

    Args:
        kind: ``"softmax"`` or ``"mlp"``.
        dataset: Images ``[n, H, W, C]`` and labels; the test split is only evaluated.
        key: Splits into the initialisation and shuffling keys.
        config: Training settings; None for ``DEFAULT_TRAIN_CONFIGS[kind]``.
        hidden_units: Width of the MLP's hidden layer (the paper's 3000).
        zero_init: Start from all-zero parameters; None means yes for softmax, no for the
            MLP (whose hidden units need a random start to differ). Softmax regression is
            convex, so zero is a valid start, and it matters for the attack: with a random
            start, the part of each weight vector orthogonal to the 280 training images gets
            no gradient and stays as the initial noise, which then covers every
            reconstruction. (Adam's per-coordinate scaling can still leave the span, a little.)
        progress: Show a progress bar over epochs.

    Returns:
        The trained target with its train and test error rates.
    """
    module = make_target_module(kind, dataset.num_classes, hidden_units=hidden_units)
    config = config or DEFAULT_TRAIN_CONFIGS[kind]
    init_key, fit_key = jax.random.split(key)
    x = jnp.asarray(dataset.train_inputs)
    y = jnp.asarray(dataset.train_labels)
    start = time.perf_counter()
    params = module.init(init_key, x[:1])
    if kind == "softmax" if zero_init is None else zero_init:
        params = jax.tree.map(jnp.zeros_like, params)
    result = train.fit(fit_key, train.cross_entropy_loss(module.apply,
                                                         l2_penalty=config.l2_penalty),
                       params, (x, y), config, progress=progress,
                       description=f"MI-FACE target {kind}")
    params = jax.block_until_ready(result.params)
    seconds = time.perf_counter() - start
    train_accuracy = train.accuracy(module.apply, params, x, y)
    test_accuracy = train.accuracy(module.apply, params, jnp.asarray(dataset.test_inputs),
                                   jnp.asarray(dataset.test_labels))
    return FaceTarget(kind=kind, module=module, params=params, train_error=1.0 - train_accuracy,
                      test_error=1.0 - test_accuracy, seconds=seconds)
