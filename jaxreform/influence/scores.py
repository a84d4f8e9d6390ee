"""Influence functions (Koh & Liang 2017) over parameter pytrees, vmapped over examples.

Notation: ``example_loss(params, x, y) -> []`` is the loss of one example (no regulariser);
the training objective is ``R(θ) = mean_i example_loss(θ, z_i) + λ/2 ||θ||²`` and H its
Hessian. For a reference loss L_ref (the mean loss of a reference set, e.g. a validation split):

- ``s_ref = (H + λ_d I)^{-1} ∇θ L_ref``, one inverse-HVP for the whole reference set;
- ``I_up,loss(z) = -∇θ L_refᵀ H^{-1} ∇θ L(z) = -s_refᵀ ∇θ L(z)``: up-weighting z by ε
  changes L_ref by about ε·I_up,loss(z), so removing z (ε = -1/n) changes it by
  -I_up,loss(z)/n;
- ``I_pert,loss(z) = -s_refᵀ ∇x ∇θ L(z)``: the input-gradient of ``-s_refᵀ ∇θ L(z)``, a
  vector of the input's shape; computed here as ``∇x`` of a forward-mode derivative of L
  along s_ref.

With r reference directions (e.g. one per class) ``s_ref`` is ``[p, r]`` and every output
gains an r axis. Shapes: n training examples, p parameters, r reference directions.

Reference: Koh & Liang, ICML 2017, https://arxiv.org/abs/1703.04730.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from jaxreform.influence import solvers
from jaxreform.errors import ConfigError
from jaxreform.influence.hvp import (
    dense_hessian,
    dense_matrix,
    flat_matvec,
    hvp,
    largest_eigenvalue,
    softmax_ggn_vp,
)
from jaxreform.influence.solvers import SolveReport, SolverConfig
from jaxreform.train import l2_norm_squared, map_in_chunks

Params = Any
ExampleLoss = Callable[[Params, jax.Array, jax.Array], jax.Array]


def make_objective(example_loss: ExampleLoss, l2_penalty: float):
    """``objective(params, (x [b, ...], y [b])) -> []``: mean example loss + λ/2 ||θ||².

    If ``example_loss`` has a ``batch_mean(params, x, y)`` method (as the losses from
    :func:`example_loss_from_apply` do), the batch goes through the model whole instead of
    one vmapped example at a time. The result is the same; the speed is not: vmapping over
    examples *and* over Hessian-vector directions batches both operands of a convolution,
    which XLA runs as a grouped convolution, tens of times slower on CPU.
    """
    batch_mean = getattr(example_loss, "batch_mean", None)

    def objective(params, batch):
        inputs, labels = batch
        if batch_mean is not None:
            data_loss = batch_mean(params, inputs, labels)
        else:
            data_loss = jnp.mean(
                jax.vmap(example_loss, in_axes=(None, 0, 0))(params, inputs, labels))
        return data_loss + 0.5 * l2_penalty * l2_norm_squared(params)

    return objective


def curvature_product(example_loss: ExampleLoss, l2_penalty: float, curvature: str):
    """``product(params, (x [b, ...], y [b]), tangent) -> tangent``: the training objective's
    curvature (``"hessian"`` or ``"gauss-newton"``, see :class:`SolverConfig`) times a tangent.

    Raises:
        ConfigError: for Gauss-Newton with a loss that is not softmax cross-entropy of a
            known ``apply_fn`` (see :func:`example_loss_from_apply`).
    """
    if curvature == "hessian":
        objective = make_objective(example_loss, l2_penalty)
        return lambda params, batch, tangent: hvp(objective, params, batch, tangent)
    if not isinstance(example_loss, CrossEntropyLoss):
        raise ConfigError("curvature='gauss-newton' needs the softmax cross-entropy of a model "
                          "(influence.example_loss_from_apply(apply_fn)); use curvature="
                          "'hessian' for another loss.")

    def product(params, batch, tangent):
        ggn = softmax_ggn_vp(example_loss.apply_fn, params, batch[0], tangent)
        return jax.tree.map(lambda g, t: g + l2_penalty * t, ggn, tangent)

    return product


def chunked_vmap(fn: Callable, arrays: tuple, chunk_size: int):
    """``vmap(fn)`` over the leading axis of ``arrays``, ``chunk_size`` examples at a time.

    Memory grows with the chunk, not with n (:func:`jaxreform.train.map_in_chunks`).
    Returns what ``vmap(fn)(*arrays)`` would.
    """
    return map_in_chunks(lambda *chunk: jax.vmap(fn)(*chunk), arrays, chunk_size)


@functools.partial(jax.jit, static_argnames=("example_loss", "num_classes"))
def reference_gradients(example_loss: ExampleLoss, params: Params, inputs: jax.Array,
                        labels: jax.Array, *, num_classes: int | None = None) -> jax.Array:
    """``∇θ`` of the mean reference loss: ``[p]``, or ``[p, k]`` with one column per class.

    With ``num_classes`` each column is the gradient of the mean loss over the reference
    examples of that class (a class with no reference example gets a zero column).
    """
    per_example = jax.vmap(lambda x, y: ravel_pytree(
        jax.grad(example_loss)(params, x, y))[0])(inputs, labels)
    if num_classes is None:
        return per_example.mean(axis=0)
    one_hot = jax.nn.one_hot(labels, num_classes)
    counts = jnp.maximum(one_hot.sum(axis=0), 1.0)
    return per_example.T @ one_hot / counts


@functools.partial(jax.jit, static_argnames=("example_loss", "config", "l2_penalty",
                                             "hvp_chunk_size"))
def inverse_hvp(key: jax.Array, example_loss: ExampleLoss, params: Params, train_data: tuple,
                rhs: jax.Array, config: SolverConfig, *, l2_penalty: float = 0.0,
                hvp_chunk_size: int | None = None) -> tuple[jax.Array, SolveReport]:
    """Solves ``(H + λ_d I) x = rhs`` for the training objective's Hessian H.

    Args:
        key: Used by LiSSA's minibatch choice only.
        example_loss: Loss of one example (see the module docstring).
        params: Where H is taken (normally the trained parameters).
        train_data: ``(x [n, ...], y [n])``.
        rhs: ``[p]`` or ``[p, r]``.
        config: Solver and its settings.
        l2_penalty: λ of the training objective.
        hvp_chunk_size: Examples per HVP chunk (bounded memory; any size, see
            :func:`~jaxreform.influence.flat_matvec`).

    Returns:
        ``(x, report)``, x shaped like ``rhs``. Call :func:`solvers.check_report` (or use
        :func:`checked_inverse_hvp`) before trusting x.

    Jitted, with ``example_loss``, ``config``, ``l2_penalty`` and ``hvp_chunk_size`` static:
    pass the same ``example_loss`` object to reuse the compiled solve.
    """
    product = curvature_product(example_loss, l2_penalty, config.curvature)
    matvec = flat_matvec(product, params, train_data, chunk_size=hvp_chunk_size)
    columns = rhs if rhs.ndim == 2 else rhs[:, None]
    damping = config.damping
    if config.method == "exact":
        if config.curvature == "hessian":
            matrix = dense_hessian(make_objective(example_loss, l2_penalty), params,
                                   train_data)
        else:
            matrix = dense_matrix(matvec, columns.shape[0])
        solution = solvers.solve_exact(matrix, columns, damping=damping)
        iterations = jnp.zeros(columns.shape[1], jnp.int32)
    elif config.method == "cg":
        solution, iterations = jax.vmap(
            lambda b: solvers.solve_cg(matvec, b, damping=damping, tolerance=config.tolerance,
                                       max_iterations=config.cg_max_iterations),
            in_axes=1, out_axes=(1, 0))(columns)
    else:
        _, unravel = ravel_pytree(params)
        inputs, labels = train_data

        def batch_matvec(index, vector):
            return ravel_pytree(product(params, (inputs[index], labels[index]),
                                        unravel(vector)))[0]

        solution = jax.vmap(lambda b: solvers.solve_lissa(
            key, batch_matvec, b, num_examples=inputs.shape[0], config=config),
            in_axes=1, out_axes=1)(columns)
        iterations = jnp.full(columns.shape[1], config.lissa_depth * config.lissa_repeats)
    residual = jax.vmap(lambda x, b: solvers.relative_residual(matvec, damping, x, b),
                        in_axes=(1, 1))(solution, columns)
    report = SolveReport(iterations, residual, jnp.all(jnp.isfinite(solution)))
    return (solution if rhs.ndim == 2 else solution[:, 0]), report


def checked_inverse_hvp(key, example_loss, params, train_data, rhs, config, *,
                        l2_penalty=0.0, hvp_chunk_size=None):
    """:func:`inverse_hvp`, then raises :class:`SolverError` with advice if it failed."""
    solution, report = inverse_hvp(key, example_loss, params, train_data, rhs, config,
                                   l2_penalty=l2_penalty, hvp_chunk_size=hvp_chunk_size)
    eigenvalue = None
    if config.method == "lissa":
        eigenvalue = top_hessian_eigenvalue(key, example_loss, params, train_data,
                                            l2_penalty=l2_penalty, hvp_chunk_size=hvp_chunk_size,
                                            curvature=config.curvature)
    solvers.check_report(report, config, largest_eigenvalue=eigenvalue)
    return solution, report


@functools.partial(jax.jit, static_argnames=("example_loss", "l2_penalty", "hvp_chunk_size",
                                             "curvature"))
def top_hessian_eigenvalue(key, example_loss: ExampleLoss, params: Params, train_data: tuple, *,
                           l2_penalty: float = 0.0, hvp_chunk_size: int | None = None,
                           curvature: str = "hessian"):
    """Power-iteration estimate of the largest eigenvalue of the training objective's
    curvature (its Hessian, or its Gauss-Newton matrix with ``curvature="gauss-newton"``).

    Params and data are jit arguments, never closed-over constants: XLA would otherwise try
    to constant-fold whole forward passes (minutes for a CNN).
    """
    matvec = flat_matvec(curvature_product(example_loss, l2_penalty, curvature), params,
                         train_data, chunk_size=hvp_chunk_size)
    return largest_eigenvalue(key, matvec, ravel_pytree(params)[0].shape[0])


@functools.partial(jax.jit, static_argnames=("example_loss", "chunk_size"))
def influence_on_loss(example_loss: ExampleLoss, params: Params, inputs: jax.Array,
                      labels: jax.Array, s_ref: jax.Array, *, chunk_size: int = 512):
    """``I_up,loss`` of every training example: ``[n]``, or ``[n, r]`` for ``s_ref [p, r]``."""

    def one(x, y):
        gradient = ravel_pytree(jax.grad(example_loss)(params, x, y))[0]
        return -(gradient @ s_ref)

    return chunked_vmap(one, (inputs, labels), chunk_size)


@functools.partial(jax.jit, static_argnames=("example_loss", "chunk_size"))
def influence_input_gradients(example_loss: ExampleLoss, params: Params, inputs: jax.Array,
                              labels: jax.Array, s_ref: jax.Array, *, chunk_size: int = 512):
    """``I_pert,loss`` of every training example.

    Returns:
        ``[n, *input_shape]`` for ``s_ref [p]``, or ``[n, r, *input_shape]`` for ``[p, r]``.
    """
    _, unravel = ravel_pytree(params)
    directions = s_ref if s_ref.ndim == 2 else s_ref[:, None]
    tangents = jax.vmap(unravel, in_axes=1)(directions)

    def one(x, y):
        def along(tangent):
            # -d/dε L(θ + ε s, x): forward mode over θ, then reverse mode over x.
            def directional(x_):
                return -jax.jvp(lambda p: example_loss(p, x_, y), (params,), (tangent,))[1]
            return jax.grad(directional)(x)
        # lax.map, not vmap, over the r directions: vmapping both the examples and the
        # directions would batch both operands of a convolution (see make_objective).
        return jax.lax.map(along, tangents)

    gradients = chunked_vmap(one, (inputs, labels), chunk_size)
    return gradients if s_ref.ndim == 2 else gradients[:, 0]


@dataclasses.dataclass(frozen=True)
class CrossEntropyLoss:
    """Cross-entropy of one example for a batch-first ``apply_fn``; hashable (a jit static).

    Call it as ``loss(params, x [...], y [])``; ``batch_mean(params, x [b, ...], y [b])``
    gives the mean over a batch in one forward pass.
    """

    apply_fn: Callable

    def __call__(self, params, x, y):
        logits = self.apply_fn(params, x[None])[0]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y)

    def batch_mean(self, params, inputs, labels):
        logits = self.apply_fn(params, inputs)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def example_loss_from_apply(apply_fn) -> CrossEntropyLoss:
    """Cross-entropy of one example ``x [...]``, ``y []`` for a batch-first ``apply_fn``."""
    return CrossEntropyLoss(apply_fn)
