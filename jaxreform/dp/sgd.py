"""DP-SGD (Abadi et al. 2016) over parameter pytrees, built from optax pieces.

One step: draw a Poisson sample of the training set (each example independently with
probability q), sum the per-example gradients clipped to norm C
(:func:`jaxreform.dp.clipping.clipped_gradient_sum`), then the optax transformation
:func:`gaussian_noise_average` adds ``N(0, σ²C²)`` to the sum and divides by the *expected*
batch size ``q·n`` (dividing by the drawn size would leak it), and any optax optimizer
follows. The privacy cost is computed by ``dp-accounting`` (:mod:`jaxreform.dp.accounting`).

Poisson batches have random sizes, while compiled code wants fixed shapes. Every batch size
of the run is drawn up front from the key; each step then gathers a uniformly random subset of
that size (a Poisson sample given its size is exactly such a subset), padded to the largest
size of the run with masked rows. Nothing is truncated, so the accounting is exact; the
padding costs about ``3·sqrt(q·n)`` rows per step.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxreform import _validate, train
from jaxreform.dp import accounting
from jaxreform.dp.clipping import METHODS, ExampleLoss, clipped_gradient_sum
from jaxreform.errors import ConfigError, TrainingDivergedError

log = logging.getLogger(__name__)
Params = Any


class NoiseState(NamedTuple):
    """State of :func:`gaussian_noise_average`: the key of the next step's noise."""

    key: jax.Array


def gaussian_noise_average(noise_multiplier: float, clip_norm: float,
                           expected_batch_size: float, key: jax.Array
                           ) -> optax.GradientTransformation:
    """Optax transformation: ``(Σ clipped grads + N(0, σ²C² I)) / (q·n)``.

    Its input must be a *sum of per-example gradients each clipped to norm* ``clip_norm``;
    chain it before the optimizer, e.g. ``optax.chain(gaussian_noise_average(...),
    optax.sgd(lr))``. The noise key advances in the state, so a run is reproducible from
    ``key``.
    """
    std = noise_multiplier * clip_norm

    def init_fn(params):
        del params
        return NoiseState(key)

    def update_fn(updates, state, params=None):
        del params
        next_key, noise_key = jax.random.split(state.key)
        leaves, treedef = jax.tree.flatten(updates)
        noise_keys = jax.random.split(noise_key, len(leaves))
        noisy = [(g + std * jax.random.normal(k, g.shape, g.dtype)) / expected_batch_size
                 for g, k in zip(leaves, noise_keys)]
        return jax.tree.unflatten(treedef, noisy), NoiseState(next_key)

    return optax.GradientTransformation(init_fn, update_fn)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DpSgdConfig:
    """One DP-SGD training run.

    Exactly one of ``noise_multiplier`` and ``target_epsilon`` is given; with a target, σ is
    calibrated by the accountant for this run's q and number of steps.

    Attributes:
        epochs: Passes over the data in expectation; steps = epochs × round(n / batch).
        expected_batch_size: The lot size q·n (Abadi et al.'s L).
        clip_norm: Per-example gradient clip norm C.
        noise_multiplier: σ; noise std on the summed gradient is σ·C.
        target_epsilon: Alternatively, the ε to reach at ``delta``.
        delta: δ of the guarantee (must be < 1/n).
        learning_rate: Optimizer step size (at the start, with ``decay_to``).
        decay_to: If set, the step size falls linearly to this value over ``decay_epochs``
            epochs and stays there (Abadi et al.'s schedule: 0.1 to 0.052 over 10 epochs).
        decay_epochs: Length of that decay.
        optimizer: ``"sgd"`` (with ``momentum``) or ``"adam"``.
        momentum: SGD momentum (0 for plain SGD).
        l2_penalty: λ of ``λ/2 ||θ||²``, applied after the noise (data-independent, free).
        accountant: ``"pld"`` (tighter) or ``"rdp"``.
        method: Per-example clipping method, ``"ghost"`` or ``"vmap"``.
        microbatch_size: Chunk of the ``"vmap"`` method.
    """

    epochs: int = 10
    expected_batch_size: int = 256
    clip_norm: float = 1.0
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    delta: float = 1e-5
    learning_rate: float = 0.1
    decay_to: float | None = None
    decay_epochs: int = 10
    optimizer: str = "sgd"
    momentum: float = 0.9
    l2_penalty: float = 0.0
    accountant: str = "pld"
    method: str = "ghost"
    microbatch_size: int = 32

    def __post_init__(self):
        _validate.check_integers(epochs=self.epochs, expected_batch_size=self.expected_batch_size,
                                 microbatch_size=self.microbatch_size)
        _validate.check_positive(epochs=self.epochs, expected_batch_size=self.expected_batch_size,
                                 clip_norm=self.clip_norm, learning_rate=self.learning_rate,
                                 microbatch_size=self.microbatch_size)
        _validate.check_finite_numbers(clip_norm=self.clip_norm, learning_rate=self.learning_rate,
                                       momentum=self.momentum, l2_penalty=self.l2_penalty)
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ConfigError("give exactly one of noise_multiplier and target_epsilon.")
        if self.noise_multiplier is not None:
            _validate.check_finite_numbers(noise_multiplier=self.noise_multiplier)
            _validate.check_positive(noise_multiplier=self.noise_multiplier)
        if self.target_epsilon is not None:
            _validate.check_finite_numbers(target_epsilon=self.target_epsilon)
            _validate.check_positive(target_epsilon=self.target_epsilon)
        accounting.check_delta(self.delta)
        _validate.check_choice("optimizer", self.optimizer, ("sgd", "adam"))
        _validate.check_integers(decay_epochs=self.decay_epochs)
        _validate.check_positive(decay_epochs=self.decay_epochs)
        if self.decay_to is not None:
            _validate.check_finite_numbers(decay_to=self.decay_to)
            _validate.check_positive(decay_to=self.decay_to)
        _validate.check_choice("accountant", self.accountant, accounting.ACCOUNTANTS)
        _validate.check_choice("method", self.method, METHODS)
        if not 0.0 <= self.momentum < 1.0 or self.l2_penalty < 0:
            raise ConfigError(f"momentum must lie in [0, 1) and l2_penalty be >= 0, got "
                              f"momentum={self.momentum!r}, l2_penalty={self.l2_penalty!r}.")

    def plan(self, num_examples: int) -> DpSgdPlan:
        """Resolves q, steps and σ for ``num_examples`` training examples, and ε."""
        _validate.check_integers(num_examples=num_examples)
        if num_examples < self.expected_batch_size:
            raise ConfigError(f"expected_batch_size={self.expected_batch_size} exceeds the "
                              f"{num_examples} training examples.")
        accounting.check_delta(self.delta, num_examples)
        q = self.expected_batch_size / num_examples
        steps_per_epoch = max(1, round(num_examples / self.expected_batch_size))
        steps = self.epochs * steps_per_epoch
        sigma = self.noise_multiplier
        if sigma is None:
            sigma = accounting.dpsgd_noise_multiplier(self.target_epsilon, q, steps, self.delta,
                                                      self.accountant)
        epsilon = accounting.dpsgd_epsilon(q, sigma, steps, self.delta, self.accountant)
        return DpSgdPlan(q, steps_per_epoch, steps, sigma, epsilon)


class DpSgdPlan(NamedTuple):
    """Resolved schedule and guarantee of a :class:`DpSgdConfig` for a dataset size."""

    sampling_rate: float
    steps_per_epoch: int
    steps: int
    noise_multiplier: float
    epsilon: float


class DpFitResult(NamedTuple):
    """Output of :func:`fit_dp`: final params, per-epoch history and the guarantee."""

    params: Params
    history: dict[str, list[float]]
    plan: DpSgdPlan
    guarantee: accounting.Guarantee


def draw_batch_sizes(key: jax.Array, num_examples: int, sampling_rate: float, steps: int,
                     multiple: int = 8) -> tuple[np.ndarray, int]:
    """Poisson batch sizes ``[steps]`` ~ Binomial(n, q), and the padded size (their maximum
    rounded up to ``multiple``)."""
    sizes = np.asarray(jax.random.binomial(key, num_examples, sampling_rate, (steps,)),
                       dtype=np.int64)
    padded = int(math.ceil(max(int(sizes.max()), 1) / multiple) * multiple)
    return sizes.astype(np.int32), min(padded, num_examples)


def make_dp_step(apply_fn: train.ApplyFn, example_loss: ExampleLoss,
                 optimizer: optax.GradientTransformation, clip_norm: float, *,
                 method: str = "ghost", microbatch_size: int = 32) -> Callable:
    """One DP-SGD step as a pure function for ``lax.scan``.

    Returns:
        ``step((params, opt_state), key, size, data, padded) -> ((params, opt_state),
        (mean loss, clipped fraction))`` where ``data = (inputs [n, ...], targets [n, ...])``,
        ``size`` is the step's Poisson batch size, ``key`` picks its members and ``padded``
        (static) is the fixed row count the batch is padded to.
    """

    def step(carry, key, size, data, padded):
        params, opt_state = carry
        inputs, targets = data
        members = jax.random.choice(key, inputs.shape[0], (padded,), replace=False)
        mask = (jnp.arange(padded) < size).astype(inputs.dtype)
        clipped = clipped_gradient_sum(apply_fn, params, inputs[members], targets[members], mask,
                                       clip_norm, example_loss, method=method,
                                       microbatch_size=microbatch_size)
        updates, opt_state = optimizer.update(clipped.grad_sum, opt_state, params)
        real = jnp.maximum(mask.sum(), 1.0)
        clipped_fraction = jnp.sum(mask * (clipped.norms > clip_norm)) / real
        # The loss is recorded for monitoring only; it is not released with the model.
        return (optax.apply_updates(params, updates), opt_state), (clipped.loss_sum / real,
                                                                   clipped_fraction)

    return step


def fit_dp(
    key: jax.Array,
    apply_fn: train.ApplyFn,
    example_loss: ExampleLoss,
    params: Params,
    data: tuple[jax.Array, jax.Array],
    config: DpSgdConfig,
    *,
    covers: str = "the released model parameters",
    evaluate: Callable[[Params], dict[str, float]] | None = None,
    progress: bool = True,
    description: str = "DP-SGD",
) -> DpFitResult:
    """Trains ``params`` with DP-SGD on ``data = (inputs [n, ...], targets [n, ...])``.

    Args:
        key: Drives batch sampling and noise; the same key gives the same run.
        apply_fn: ``apply(params, x [b, ...]) -> outputs`` of a Flax model.
        example_loss: ``(outputs, targets) -> [b]`` per-example losses.
        params: Initial parameters (data-independent, e.g. a fresh ``init``).
        data: The private training set.
        config: Schedule, clipping, noise or target ε, optimizer.
        covers: What the guarantee protects, in words, for the report.
        evaluate: Optional ``params -> {name: float}`` after each epoch.
        progress: Show a tqdm bar over epochs.
        description: Label of the bar and of errors.

    Returns:
        Final params, history (``train_loss``, ``clipped_fraction``, evaluate keys), the plan
        (q, steps, σ, ε) and the :class:`~jaxreform.dp.accounting.Guarantee`.
    """
    n = data[0].shape[0]
    plan = config.plan(n)
    sample_key, noise_key, step_key = jax.random.split(key, 3)
    multiple = config.microbatch_size if config.method == "vmap" else 8
    sizes, padded = draw_batch_sizes(sample_key, n, plan.sampling_rate, plan.steps, multiple)
    if config.method == "vmap" and padded % config.microbatch_size:
        raise ConfigError(f"microbatch_size={config.microbatch_size} must divide the padded "
                          f"batch {padded}; choose a divisor of {n} or a smaller microbatch.")
    learning_rate = config.learning_rate
    if config.decay_to is not None:
        learning_rate = optax.linear_schedule(config.learning_rate, config.decay_to,
                                              config.decay_epochs * plan.steps_per_epoch)
    base = (optax.sgd(learning_rate, momentum=config.momentum or None)
            if config.optimizer == "sgd" else optax.adam(learning_rate))
    optimizer = optax.chain(
        gaussian_noise_average(plan.noise_multiplier, config.clip_norm,
                               plan.sampling_rate * n, noise_key),
        optax.add_decayed_weights(config.l2_penalty),
        base,
    )
    step = make_dp_step(apply_fn, example_loss, optimizer, config.clip_norm,
                        method=config.method, microbatch_size=config.microbatch_size)

    @jax.jit
    def epoch(params, opt_state, keys, epoch_sizes, data):
        def body(carry, xs):
            return step(carry, xs[0], xs[1], data, padded)
        return jax.lax.scan(body, (params, opt_state), (keys, epoch_sizes))

    opt_state = optimizer.init(params)
    step_keys = jax.random.split(step_key, plan.steps).reshape(
        config.epochs, plan.steps_per_epoch)
    sizes = jnp.asarray(sizes).reshape(config.epochs, plan.steps_per_epoch)
    history: dict[str, list[float]] = {"train_loss": [], "clipped_fraction": []}
    bar = tqdm(range(config.epochs), desc=description, disable=not progress, leave=False)
    for e in bar:
        (params, opt_state), (losses, clipped) = epoch(params, opt_state, step_keys[e], sizes[e],
                                                       data)
        mean_loss = float(losses.mean())
        if not math.isfinite(mean_loss):
            raise TrainingDivergedError(
                f"{description}: training loss became {mean_loss} in epoch {e + 1}; lower "
                f"learning_rate (now {config.learning_rate}).")
        history["train_loss"].append(mean_loss)
        history["clipped_fraction"].append(float(clipped.mean()))
        postfix = {"loss": f"{mean_loss:.4f}"}
        for name, value in (evaluate(params) if evaluate else {}).items():
            history.setdefault(name, []).append(value)
            postfix[name] = f"{value:.4f}"
        bar.set_postfix(postfix)
    guarantee = accounting.Guarantee(
        epsilon=plan.epsilon, delta=config.delta, accountant=config.accountant, covers=covers,
        mechanism=(f"DP-SGD, Poisson sampling q={plan.sampling_rate:.4g}, noise multiplier "
                   f"{plan.noise_multiplier:.4g}, clip norm {config.clip_norm:g}, "
                   f"{plan.steps} steps"))
    log.info("%s: %d steps, sigma %.3f, epsilon %.3f at delta %g", description, plan.steps,
             plan.noise_multiplier, plan.epsilon, config.delta)
    return DpFitResult(params, history, plan, guarantee)
