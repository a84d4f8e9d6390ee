"""A jitted optax training loop over parameter pytrees, and batched evaluation.

The loop is built from pure pieces: :func:`make_epoch_fn` returns
``epoch(params, opt_state, key, data) -> (params, opt_state, mean_loss)``, one whole epoch as
one ``lax.scan`` over minibatches. It can be jitted as is, or vmapped over stacked params and
keys to train many models at once. :func:`fit` drives it with a progress bar.

Shapes: n examples; b batch size; k classes.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from tqdm.auto import tqdm

from jaxreform import _validate, parallel
from jaxreform.errors import ConfigError, TrainingDivergedError

log = logging.getLogger(__name__)

Params = Any
Batch = tuple[jax.Array, ...]
LossFn = Callable[[Params, Batch], jax.Array]
ApplyFn = Callable[[Params, jax.Array], jax.Array]

OPTIMIZERS = {"adam": optax.adam, "sgd": optax.sgd}


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How to train one model.

    Attributes:
        epochs: Passes over the data.
        batch_size: Minibatch size b. Each epoch reshuffles and drops the last
            ``n mod b`` examples of the permutation (a different remainder each epoch).
        learning_rate: Step size of the optimizer.
        optimizer: ``"adam"`` or ``"sgd"``.
        l2_penalty: λ of the penalty ``λ/2 ||θ||²`` added to the loss (part of the objective,
            so influence functions later see the same Hessian).
    """

    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    l2_penalty: float = 0.0

    def __post_init__(self):
        _validate.check_integers(epochs=self.epochs, batch_size=self.batch_size)
        _validate.check_positive(
            epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate
        )
        _validate.check_finite_numbers(learning_rate=self.learning_rate,
                                       l2_penalty=self.l2_penalty)
        _validate.check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.l2_penalty < 0:
            raise ConfigError(f"l2_penalty must be >= 0, got l2_penalty={self.l2_penalty!r}.")

    def make_optimizer(self) -> optax.GradientTransformation:
        """The optax transformation this config names."""
        return OPTIMIZERS[self.optimizer](self.learning_rate)


class FitResult(NamedTuple):
    """Output of :func:`fit`: final params and the per-epoch history (lists of floats)."""

    params: Params
    history: dict[str, list[float]]


def l2_norm_squared(params: Params) -> jax.Array:
    """``sum ||leaf||²`` over every leaf of the pytree (biases included), a scalar."""
    return sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(params))


def cross_entropy_loss(apply_fn: ApplyFn, *, l2_penalty: float = 0.0) -> LossFn:
    """Returns ``loss(params, (x [b, ...], y [b])) -> []``: mean softmax cross-entropy + L2."""

    def loss(params: Params, batch: Batch) -> jax.Array:
        inputs, labels = batch
        logits = apply_fn(params, inputs)
        data_loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return data_loss + 0.5 * l2_penalty * l2_norm_squared(params)

    return loss


def make_epoch_fn(loss_fn: LossFn, optimizer: optax.GradientTransformation, batch_size: int):
    """Builds one epoch of minibatch training as a pure function.

    Returns:
        ``epoch(params, opt_state, key, data) -> (params, opt_state, mean_loss [])`` where
        ``data`` is a tuple of arrays with a common leading size n >= batch_size. It shuffles
        with ``key`` and scans over ``n // batch_size`` minibatches. Pure: jit or vmap it.
    """

    def step(carry, batch):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    def epoch(params, opt_state, key, data):
        n = data[0].shape[0]
        steps = n // batch_size
        order = jax.random.permutation(key, n)[: steps * batch_size]
        batches = tuple(a[order].reshape(steps, batch_size, *a.shape[1:]) for a in data)
        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), batches)
        return params, opt_state, losses.mean()

    return epoch


def fit(
    key: jax.Array,
    loss_fn: LossFn,
    params: Params,
    data: Batch,
    config: TrainConfig,
    *,
    evaluate: Callable[[Params], dict[str, float]] | None = None,
    progress: bool = True,
    description: str = "training",
    mesh: jax.sharding.Mesh | None = None,
) -> FitResult:
    """Trains ``params`` on ``data`` for ``config.epochs`` epochs.

    Args:
        key: Drives the shuffling; the same key gives the same run.
        loss_fn: ``loss(params, batch) -> []`` over a minibatch tuple shaped like ``data``.
        params: Initial parameter pytree.
        data: Tuple of arrays with a common leading size n, e.g. ``(x [n, ...], y [n])``.
        config: Epochs, batch size, optimizer.
        evaluate: Optional ``params -> {name: float}`` run after each epoch (host side).
        progress: Show a tqdm bar over epochs.
        description: Label of the progress bar.
        mesh: Optional 1-D device mesh (:func:`jaxreform.parallel.data_mesh`): the examples
            are split across its devices, the parameters replicated (data parallelism).

    Returns:
        Final params and history ``{"train_loss": [...], **evaluate keys}``, one entry per epoch.

    Raises:
        ConfigError: if n < batch_size.
        TrainingDivergedError: if the training loss becomes NaN or Inf.
    """
    n = data[0].shape[0]
    if n < config.batch_size:
        raise ConfigError(
            f"{description}: {n} examples is fewer than batch_size={config.batch_size}; "
            "lower the batch size."
        )
    if mesh is not None:
        data = parallel.shard_examples(data, mesh)
        params = parallel.replicate(params, mesh)
    optimizer = config.make_optimizer()
    epoch_fn = jax.jit(make_epoch_fn(loss_fn, optimizer, config.batch_size))
    opt_state = optimizer.init(params)
    history: dict[str, list[float]] = {"train_loss": []}
    bar = tqdm(range(config.epochs), desc=description, disable=not progress, leave=False)
    for epoch_key in jax.random.split(key, config.epochs):
        params, opt_state, mean_loss = epoch_fn(params, opt_state, epoch_key, data)
        mean_loss = float(mean_loss)
        if not math.isfinite(mean_loss):
            raise TrainingDivergedError(
                f"{description}: training loss became {mean_loss} in epoch "
                f"{len(history['train_loss']) + 1}; lower learning_rate "
                f"(now {config.learning_rate}) or check the inputs' scale."
            )
        history["train_loss"].append(mean_loss)
        postfix = {"loss": f"{mean_loss:.4f}"}
        for name, value in (evaluate(params) if evaluate else {}).items():
            history.setdefault(name, []).append(value)
            postfix[name] = f"{value:.4f}"
        bar.set_postfix(postfix)
        bar.update(1)
    bar.close()
    log.info("%s: %d epochs on %d examples, final loss %.4f", description, config.epochs, n,
             history["train_loss"][-1])
    return FitResult(params, history)


def fit_classifier(
    key: jax.Array,
    module: nn.Module,
    inputs: jax.Array,
    labels: jax.Array,
    config: TrainConfig,
    *,
    progress: bool = False,
    description: str = "classifier",
) -> Params:
    """Initialises ``module`` and trains it on cross-entropy; returns the trained params.

    Args:
        key: Folded into an initialisation key and a shuffling key.
        module: A flax module mapping ``inputs [b, ...]`` to ``[b, k]`` logits.
        inputs: ``[n, ...]`` training inputs.
        labels: ``[n]`` int class labels in [0, k).
        config: Epochs, batch size, optimizer.
        progress: Show a progress bar over epochs.
        description: Label of the progress bar and of error messages.
    """
    params = module.init(jax.random.fold_in(key, 0), inputs[:1])
    return fit(jax.random.fold_in(key, 1), cross_entropy_loss(module.apply), params,
               (inputs, labels), config, progress=progress, description=description).params


def map_in_chunks(fn: Callable, arrays: tuple, chunk_size: int):
    """Applies ``fn(*chunk)`` to ``arrays`` (common leading size n), ``chunk_size`` rows at a time.

    ``fn`` takes and returns batches (``[b, ...]``; its output may be a pytree). The last
    chunk is padded by repeating the first row and the padding is dropped, so memory stays
    bounded by one chunk. Returns what ``fn(*arrays)`` would. Jit-able (``lax.map``).
    """
    n = arrays[0].shape[0]
    chunks = -(-n // chunk_size)
    pad = chunks * chunk_size - n

    def reshape(a):
        padded = jnp.concatenate([a, jnp.repeat(a[:1], pad, axis=0)]) if pad else a
        return padded.reshape(chunks, chunk_size, *a.shape[1:])

    out = jax.lax.map(lambda chunk: fn(*chunk), tuple(reshape(a) for a in arrays))
    return jax.tree.map(lambda leaf: leaf.reshape(chunks * chunk_size, *leaf.shape[2:])[:n], out)


def batched_apply(fn: Callable[[jax.Array], jax.Array], inputs: jax.Array, batch_size: int = 1000):
    """Applies ``fn: [b, ...] -> [b, ...]`` to ``inputs [n, ...]`` in chunks of ``batch_size``
    (see :func:`map_in_chunks`). Returns ``[n, ...]``."""
    return map_in_chunks(fn, (inputs,), batch_size)


@functools.partial(jax.jit, static_argnames=("apply_fn", "batch_size"))
def batched_logits(apply_fn: ApplyFn, params: Params, inputs: jax.Array, batch_size: int = 1000):
    """Logits ``[n, k]`` of ``inputs [n, ...]``, computed ``batch_size`` examples at a time."""
    return batched_apply(lambda x: apply_fn(params, x), inputs, batch_size)


def per_example_losses(
    apply_fn: ApplyFn, params: Params, inputs: jax.Array, labels: jax.Array, batch_size: int = 1000
) -> jax.Array:
    """Cross-entropy of each example: ``inputs [n, ...], labels [n] -> [n]`` (no L2 term)."""
    logits = batched_logits(apply_fn, params, inputs, batch_size)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def predict(apply_fn: ApplyFn, params: Params, inputs: jax.Array, batch_size: int = 1000):
    """Predicted classes ``[n]`` int32 of ``inputs [n, ...]``."""
    return jnp.argmax(batched_logits(apply_fn, params, inputs, batch_size), axis=-1)


def accuracy(
    apply_fn: ApplyFn, params: Params, inputs: jax.Array, labels: jax.Array, batch_size: int = 1000
) -> float:
    """Fraction of ``inputs [n, ...]`` whose predicted class equals ``labels [n]``."""
    return float(jnp.mean(predict(apply_fn, params, inputs, batch_size) == labels))
