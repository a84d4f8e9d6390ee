"""MI-FACE: model inversion by gradient descent on the target's confidence.

Algorithm 1 of Fredrikson, Jha and Ristenpart, "Model Inversion Attacks that Exploit
Confidence Information and Basic Countermeasures", CCS 2015
(https://doi.org/10.1145/2810103.2813677). For one label::

    c(x) = 1 - f~_label(x) + AuxTerm(x)
    x_0 = 0
    for i = 1 .. alpha:
        x_i = Process(x_{i-1} - lambda * grad c(x_{i-1}))
        if c(x_i) >= max(c(x_{i-1}), ..., c(x_{i-beta})): break
        if c(x_i) <= gamma: break
    return argmin_i c(x_i), min_i c(x_i)

Here every label is inverted at once: one jitted call runs a ``lax.while_loop`` whose state
holds all L labels, and the per-label cost and gradient come from ``jax.vmap``. Each label
has its own stopping state; once a label stops, its outputs (arg-min image, cost, steps) are
masked and no longer change, and the loop ends when no label is active. Every step costs
the compute of all L labels (XLA does not shrink the batch), so a stopped label still costs
compute until the last label stops.

Conventions chosen where the paper is silent (all are documented on :class:`MIFaceConfig`):

* the arg-min is taken over the iterates ``x_1 .. x_T`` the loop produced (at least one step
  is always taken), so a one-step run returns ``x_1``;
* when fewer than beta earlier costs exist (``i <= beta``), the patience rule compares with
  all of them, ``c(x_0) .. c(x_{i-1})``.

.. warning::
   gamma bounds the *cost*, read literally: with the default gamma = 0.99 and no AuxTerm, the
   search stops as soon as the label's confidence reaches 1 - gamma = 0.01. A 40-class model
   whose output is near-uniform at the blank image already gives 1/40 = 0.025 there, so the
   paper's setting usually stops after the first step (the paper reports 5.6 steps on average
   for softmax). Use ``stopping="confidence"`` (stop when confidence >= ``target_confidence``)
   or ``stopping="fixed"`` (exactly ``max_steps`` steps) for a search that actually runs.

Shapes: L labels inverted together; ``image_shape`` the target's input shape, e.g.
``(112, 92, 1)``; k the number of classes.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxreform import _validate
from jaxreform.errors import ConfigError, InvalidDataError

log = logging.getLogger(__name__)

Params = Any
PredictFn = Callable[[Params, jax.Array], jax.Array]

STOPPING_MODES = ("paper", "confidence", "fixed")
OUTPUT_KINDS = ("probs", "logits")
# Codes of MIFaceResult.stop_reasons, in the order the rules are checked.
STOP_REASONS = ("nonfinite", "patience", "threshold", "max_steps")
_NONFINITE, _PATIENCE, _THRESHOLD, _MAX_STEPS = range(4)
_RUNNING = -1
# Tolerances of the probability-vector check on the target's output at x_0.
_PROB_SUM_TOL = 1e-3
_PROB_NEG_TOL = 1e-6


@dataclasses.dataclass(frozen=True, kw_only=True)
class MIFaceConfig:
    """Settings of the search (the paper's Algorithm 1 and two extra stopping modes).

    Attributes:
        max_steps: alpha, the most gradient steps per label (paper: 5000).
        patience: beta; in modes ``"paper"`` and ``"confidence"`` a label stops when its new
            cost is >= the largest of its previous beta costs, i.e. it has not improved on the
            worst of them (paper: 100).
        cost_threshold: gamma; in mode ``"paper"`` a label stops when its cost is <= gamma
            (paper: 0.99, which is confidence >= 0.01 when AuxTerm is zero; see the module's
            warning).
        step_size: lambda, the gradient step (paper: 0.1).
        stopping: ``"paper"``: alpha, beta and gamma as in Algorithm 1. ``"confidence"``: alpha,
            beta, and stop when ``f~_label(x) >= target_confidence`` (gamma unused).
            ``"fixed"``: exactly ``max_steps`` steps (beta and gamma unused). Every mode
            returns the arg-min of the cost over the iterates.
        target_confidence: The confidence that ends a label's search in mode ``"confidence"``.
    """

    max_steps: int = 5000
    patience: int = 100
    cost_threshold: float = 0.99
    step_size: float = 0.1
    stopping: str = "paper"
    target_confidence: float = 0.99

    def __post_init__(self):
        _validate.check_integers(max_steps=self.max_steps, patience=self.patience)
        _validate.check_positive(max_steps=self.max_steps, patience=self.patience,
                                 step_size=self.step_size)
        _validate.check_finite_numbers(cost_threshold=self.cost_threshold)
        _validate.check_choice("stopping mode", self.stopping, STOPPING_MODES)
        _validate.check_fraction(target_confidence=self.target_confidence)

    @classmethod
    def default(cls) -> MIFaceConfig:
        """The paper's settings: alpha=5000, beta=100, gamma=0.99, lambda=0.1."""
        return cls()

    @classmethod
    def confidence_target(cls, confidence: float = 0.99, **overrides) -> MIFaceConfig:
        """Stop each label at ``confidence`` (or alpha steps, or beta without improvement)."""
        return cls(stopping="confidence", target_confidence=confidence, **overrides)

    @classmethod
    def fixed_steps(cls, steps: int = 5000, **overrides) -> MIFaceConfig:
        """Run exactly ``steps`` gradient steps per label."""
        return cls(stopping="fixed", max_steps=steps, **overrides)

    @property
    def uses_patience(self) -> bool:
        """Whether the beta rule is active in this stopping mode."""
        return self.stopping != "fixed"


@dataclasses.dataclass(frozen=True)
class MIFaceResult:
    """What :func:`mi_face` returns, one row per label (host NumPy arrays).

    Attributes:
        labels: ``[L]`` int32, the labels inverted.
        images: ``[L, *image_shape]`` float32, the arg-min image of each label.
        costs: ``[L]`` its cost c(x).
        confidences: ``[L]`` its confidence f~_label(x).
        steps: ``[L]`` int32, gradient steps taken before the label stopped.
        best_steps: ``[L]`` int32, the step (1..steps) that produced ``images``.
        stop_reasons: ``[L]`` str, one of :data:`STOP_REASONS`.
        seconds: Wall time of the jitted run, compilation excluded.
        compile_seconds: Time to trace and compile it.
    """

    labels: np.ndarray
    images: np.ndarray
    costs: np.ndarray
    confidences: np.ndarray
    steps: np.ndarray
    best_steps: np.ndarray
    stop_reasons: np.ndarray
    seconds: float
    compile_seconds: float


class _State(NamedTuple):
    step: jax.Array          # [] int32, steps the loop has run so far (all labels)
    active: jax.Array        # [L] bool
    x: jax.Array             # [L, *image_shape] current iterate x_i
    grad: jax.Array          # [L, *image_shape] grad c(x_i)
    history: jax.Array       # [L, beta] ring buffer of the latest costs (-inf = none yet)
    best_x: jax.Array        # [L, *image_shape]
    best_cost: jax.Array     # [L]
    best_conf: jax.Array     # [L]
    best_step: jax.Array     # [L] int32
    steps: jax.Array         # [L] int32
    reason: jax.Array        # [L] int32 code into STOP_REASONS, _RUNNING while active


def clip_to_unit_interval(x: jax.Array) -> jax.Array:
    """The default Process: clip every pixel of ``x [*image_shape]`` to [0, 1]."""
    return jnp.clip(x, 0.0, 1.0)


def _confidence_fn(predict_fn: PredictFn, outputs: str):
    """``(params, x [*image_shape], label []) -> f~_label(x) []`` for one image."""

    def confidence(params, x, label):
        out = predict_fn(params, x[None])[0]
        probs = jax.nn.softmax(out) if outputs == "logits" else out
        return probs[label]

    return confidence


def make_mi_face_fn(
    predict_fn: PredictFn,
    *,
    image_shape: tuple[int, ...],
    config: MIFaceConfig,
    outputs: str = "probs",
    aux_term: Callable[[jax.Array], jax.Array] | None = None,
    process: Callable[[jax.Array], jax.Array] | None = None,
    process_with_params: Callable[[Params, jax.Array], jax.Array] | None = None,
) -> Callable[[Params, jax.Array], _State]:
    """Builds the (unjitted) batched search; :func:`mi_face` validates, jits and runs it.

    Args:
        predict_fn: ``(params, x [b, *image_shape]) -> [b, k]`` probabilities (or logits if
            ``outputs="logits"``). Rows must be independent (no batch statistics).
        image_shape: Shape of one input image.
        config: alpha, beta, gamma, lambda and the stopping mode.
        outputs: ``"probs"`` or ``"logits"`` (a softmax is applied to logits).
        aux_term: ``x [*image_shape] -> []``, added to the cost; None for zero.
        process: ``x [*image_shape] -> [*image_shape]`` applied after each step; None for
            :func:`clip_to_unit_interval`.
        process_with_params: Instead of ``process``, ``(params, x) -> x`` for a Process that
            needs the target's parameters (e.g. decode and re-encode through its
            autoencoder); the parameters then reach it as a traced argument rather than as
            constants baked into the compiled search.

    Returns:
        ``search(params, labels [L] int32) -> final loop state`` (a NamedTuple of arrays),
        pure and jit-able; no input checks are made here.
    """
    if process is not None and process_with_params is not None:
        raise ConfigError("give process or process_with_params, not both.")
    if process_with_params is None:
        process = process or clip_to_unit_interval
        process_with_params = lambda params, x: process(x)  # noqa: E731
    confidence_fn = _confidence_fn(predict_fn, outputs)

    def cost_one(params, x, label):
        confidence = confidence_fn(params, x, label)
        aux = aux_term(x) if aux_term is not None else 0.0
        return 1.0 - confidence + aux, confidence

    value_and_grad = jax.vmap(jax.value_and_grad(cost_one, argnums=1, has_aux=True),
                              in_axes=(None, 0, 0))
    process_all = jax.vmap(process_with_params, in_axes=(None, 0))
    history_size = config.patience if config.uses_patience else 1

    def per_label(mask, new, old):
        return jnp.where(mask.reshape(mask.shape + (1,) * (new.ndim - 1)), new, old)

    def search(params, labels):
        num_labels = labels.shape[0]
        x0 = jnp.zeros((num_labels, *image_shape), jnp.float32)
        (cost0, _), grad0 = value_and_grad(params, x0, labels)
        finite0 = jnp.isfinite(cost0) & _all_finite(grad0)
        history = jnp.full((num_labels, history_size), -jnp.inf, jnp.float32)
        history = history.at[:, 0].set(cost0)
        state = _State(
            step=jnp.zeros((), jnp.int32), active=finite0, x=x0, grad=grad0, history=history,
            best_x=x0, best_cost=jnp.full((num_labels,), jnp.inf, jnp.float32),
            best_conf=jnp.zeros((num_labels,), jnp.float32),
            best_step=jnp.zeros((num_labels,), jnp.int32),
            steps=jnp.zeros((num_labels,), jnp.int32),
            reason=jnp.where(finite0, _RUNNING, _NONFINITE).astype(jnp.int32),
        )

        def body(state: _State) -> _State:
            i = state.step + 1
            x_new = process_all(params, state.x - config.step_size * state.grad)
            (cost, conf), grad = value_and_grad(params, x_new, labels)
            # A non-finite x_new shows up as a non-finite cost one step later.
            finite = jnp.isfinite(cost) & _all_finite(grad)

            # The stopping rules, checked in the paper's order.
            stop_patience = jnp.zeros_like(state.active)
            if config.uses_patience:
                stop_patience = cost >= state.history.max(axis=1)
            if config.stopping == "paper":
                stop_threshold = cost <= config.cost_threshold
            elif config.stopping == "confidence":
                stop_threshold = conf >= config.target_confidence
            else:
                stop_threshold = jnp.zeros_like(state.active)
            reason = jnp.select(
                [~finite, stop_patience, stop_threshold, i >= config.max_steps],
                [_NONFINITE, _PATIENCE, _THRESHOLD, _MAX_STEPS], _RUNNING)
            reason = jnp.where(state.active, reason, state.reason).astype(jnp.int32)

            # Keep the arg-min over x_1 .. x_i. A stopped label's outputs are frozen; its
            # scratch iterate (x, grad) keeps moving but is never read again (freezing it
            # too would cost two more passes over [L, *image_shape] per step, ~20% here).
            better = state.active & jnp.isfinite(cost) & (cost < state.best_cost)
            slot = i % history_size
            return _State(
                step=i,
                active=state.active & (reason == _RUNNING),
                x=x_new,
                grad=grad,
                history=state.history.at[:, slot].set(
                    jnp.where(state.active, cost, state.history[:, slot])),
                best_x=per_label(better, x_new, state.best_x),
                best_cost=jnp.where(better, cost, state.best_cost),
                best_conf=jnp.where(better, conf, state.best_conf),
                best_step=jnp.where(better, i, state.best_step),
                steps=jnp.where(state.active, i, state.steps),
                reason=reason,
            )

        return jax.lax.while_loop(lambda s: s.active.any(), body, state)

    return search


def _all_finite(array: jax.Array) -> jax.Array:
    """``[L, ...] -> [L]`` bool: whether every entry of each row is finite."""
    return jnp.isfinite(array).reshape(array.shape[0], -1).all(axis=1)


def _check_image_shape(image_shape) -> tuple[int, ...]:
    try:
        shape = tuple(image_shape)
    except TypeError:
        raise ConfigError(f"image_shape must be a tuple of sizes, got {image_shape!r}.") from None
    if not shape or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s <= 0
                        for s in shape):
        raise ConfigError(f"image_shape must be a non-empty tuple of positive integers, got "
                          f"{image_shape!r}.")
    return tuple(int(s) for s in shape)


def _check_labels(labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ConfigError(f"labels must be a non-empty 1-D array of class indices, got shape "
                          f"{labels.shape}.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(f"labels must be integers, got dtype {labels.dtype}.")
    return labels.astype(np.int32)


def check_target_output(
    predict_fn: PredictFn, params: Params, image_shape: tuple[int, ...], outputs: str
) -> int:
    """Runs the target once on the blank image x_0 and checks what comes back.

    Args:
        predict_fn: ``(params, x [b, *image_shape]) -> [b, k]``.
        params: The target's parameters.
        image_shape: Shape of one input image.
        outputs: ``"probs"`` (checked to be a probability vector) or ``"logits"``.

    Returns:
        k, the number of classes.

    Raises:
        InvalidDataError: if the target rejects images of this shape, returns something other
            than ``[1, k]`` with k >= 2, returns NaN/Inf, or (for ``"probs"``) returns values
            that are negative or do not sum to 1.
    """
    x0 = jnp.zeros((1, *image_shape), jnp.float32)
    try:
        out = np.asarray(predict_fn(params, x0), dtype=np.float64)
    except Exception as error:  # flax raises its own types for a shape mismatch
        raise InvalidDataError(
            f"the target does not accept images of shape {image_shape}: calling it on a blank "
            f"batch {tuple(x0.shape)} failed with {type(error).__name__}: {error} Pass the "
            "image_shape the target was trained on."
        ) from None
    if out.ndim != 2 or out.shape[0] != 1 or out.shape[1] < 2:
        raise InvalidDataError(f"the target must return [batch, k] scores with k >= 2; for a "
                               f"batch of one image it returned shape {out.shape}.")
    if not np.isfinite(out).all():
        raise InvalidDataError(f"the target's output on the blank image x_0 holds NaN or Inf: "
                               f"{out[0, :5]}...; check its parameters.")
    if outputs == "probs":
        low, total = float(out.min()), float(out.sum())
        if low < -_PROB_NEG_TOL or abs(total - 1.0) > _PROB_SUM_TOL:
            raise InvalidDataError(
                f"the target's output on the blank image x_0 is not a probability vector "
                f"(smallest entry {low:.4g}, sum {total:.6g}; expected entries >= 0 summing to "
                f"1). If it returns logits, pass outputs='logits'.")
    return int(out.shape[1])


def mi_face(
    predict_fn: PredictFn,
    params: Params,
    labels,
    *,
    image_shape: tuple[int, ...],
    config: MIFaceConfig | None = None,
    outputs: str = "probs",
    aux_term: Callable[[jax.Array], jax.Array] | None = None,
    process: Callable[[jax.Array], jax.Array] | None = None,
    process_with_params: Callable[[Params, jax.Array], jax.Array] | None = None,
) -> MIFaceResult:
    """Inverts every label in ``labels`` with MI-FACE, all in one jitted call.

    Args:
        predict_fn: ``(params, x [b, *image_shape]) -> [b, k]`` class probabilities, or logits
            with ``outputs="logits"``. Rows must not interact (no batch statistics).
        params: The target's parameter pytree.
        labels: ``[L]`` int class indices in [0, k), e.g. ``range(40)``.
        image_shape: Shape of one input image, e.g. ``(112, 92, 1)``.
        config: Search settings; None for :meth:`MIFaceConfig.default` (the paper's).
        outputs: ``"probs"`` or ``"logits"``.
        aux_term: Optional ``x [*image_shape] -> []`` added to the cost (default zero).
        process: Optional ``x -> x`` applied after each step (default: clip to [0, 1]).
        process_with_params: Optional ``(params, x) -> x`` used instead of ``process`` when
            the Process needs the target's parameters (the DAE target's decode, denoise,
            sharpen, re-encode; see :mod:`jaxreform.attacks.mi_face_targets`).

    Returns:
        Per label: the arg-min image, its cost and confidence, the steps taken, the step of
        the arg-min and why the label stopped; plus run and compile times.

    Raises:
        ConfigError: for a bad config, ``outputs``, ``image_shape`` or a label outside
            [0, k).
        InvalidDataError: if the target rejects the image shape, its output at x_0 is not a
            probability vector (``outputs="probs"``), ``process``/``aux_term`` return the wrong
            shape, or the cost's gradient becomes non-finite (names the labels and steps).

    References:
        Fredrikson, Jha, Ristenpart, CCS 2015, Algorithm 1.
    """
    config = config or MIFaceConfig.default()
    if not isinstance(config, MIFaceConfig):
        raise ConfigError(f"config must be an MIFaceConfig, got {type(config).__name__}.")
    _validate.check_choice("outputs kind", outputs, OUTPUT_KINDS)
    if process is not None and process_with_params is not None:
        raise ConfigError("give process or process_with_params, not both.")
    image_shape = _check_image_shape(image_shape)
    labels = _check_labels(labels)
    num_classes = check_target_output(predict_fn, params, image_shape, outputs)
    if labels.min() < 0 or labels.max() >= num_classes:
        bad = labels[(labels < 0) | (labels >= num_classes)]
        raise ConfigError(f"unknown label(s) {bad.tolist()}: the target has {num_classes} "
                          f"classes, so labels must lie in [0, {num_classes - 1}].")
    if process_with_params is not None:
        _check_hooks(image_shape, aux_term, functools.partial(process_with_params, params))
    else:
        _check_hooks(image_shape, aux_term, process)

    search = make_mi_face_fn(predict_fn, image_shape=image_shape, config=config,
                             outputs=outputs, aux_term=aux_term, process=process,
                             process_with_params=process_with_params)
    log.info("MI-FACE: %d labels, image %s, mode %s, up to %d steps", len(labels),
             image_shape, config.stopping, config.max_steps)
    start = time.perf_counter()
    compiled = jax.jit(search).lower(params, jnp.asarray(labels)).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    state = jax.block_until_ready(compiled(params, jnp.asarray(labels)))
    seconds = time.perf_counter() - start
    log.info("MI-FACE: done in %.2f s (+%.2f s compiling), %d steps in total", seconds,
             compile_seconds, int(state.steps.sum()))

    reason = np.asarray(state.reason)
    nonfinite = np.flatnonzero(reason == _NONFINITE)
    if nonfinite.size:
        raise InvalidDataError(
            f"the gradient of the MI-FACE cost became non-finite (NaN or Inf) for label(s) "
            f"{labels[nonfinite].tolist()} at step(s) "
            f"{np.asarray(state.steps)[nonfinite].tolist()} (step 0 is the blank image x_0). "
            "Check the target's "
            f"parameters for NaN/Inf, lower step_size (now {config.step_size}) if the image "
            "diverges, or check that process / process_with_params returns finite values.")
    return MIFaceResult(
        labels=labels,
        images=np.asarray(state.best_x),
        costs=np.asarray(state.best_cost),
        confidences=np.asarray(state.best_conf),
        steps=np.asarray(state.steps),
        best_steps=np.asarray(state.best_step),
        stop_reasons=np.array([STOP_REASONS[r] for r in reason]),
        seconds=seconds,
        compile_seconds=compile_seconds,
    )


def _check_hooks(image_shape, aux_term, process) -> None:
    """Checks that ``process`` keeps the image shape and ``aux_term`` returns a scalar."""
    spec = jax.ShapeDtypeStruct(image_shape, jnp.float32)
    if process is not None:
        out = jax.eval_shape(process, spec)
        if getattr(out, "shape", None) != image_shape:
            raise InvalidDataError(f"process must map an image of shape {image_shape} to the "
                                   f"same shape, got {getattr(out, 'shape', out)}.")
        if out.dtype != spec.dtype:
            raise InvalidDataError(f"process must return {spec.dtype} images (the search's "
                                   f"dtype), got {out.dtype}.")
    if aux_term is not None:
        out = jax.eval_shape(aux_term, spec)
        if getattr(out, "shape", None) != ():
            raise InvalidDataError(f"aux_term must map an image of shape {image_shape} to a "
                                   f"scalar, got shape {getattr(out, 'shape', out)}.")
