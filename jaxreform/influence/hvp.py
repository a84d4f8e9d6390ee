"""Hessian-vector products over parameter pytrees, flattened for the solvers.

Shapes: p = number of parameters (flattened); n examples. The Hessian is that of an
*objective* ``objective(params, batch) -> []`` (mean loss plus any L2 term) and is never
materialised except by :func:`dense_hessian`, meant for small models and tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jaxreform.errors import ConfigError

Params = Any
Objective = Callable[[Params, tuple], jax.Array]
MatVec = Callable[[jax.Array], jax.Array]


def hvp(objective: Objective, params: Params, batch: tuple, vector: Params) -> Params:
    """``H v`` for the Hessian of ``objective`` at ``params``, by forward-over-reverse.

    ``jax.jvp`` of ``jax.grad``: one gradient's cost (about 2-3×), no Hessian in memory.
    ``vector`` has the structure of ``params``; so does the result.
    """
    return jax.jvp(lambda p: jax.grad(objective)(p, batch), (params,), (vector,))[1]


def softmax_ggn_vp(apply_fn: Callable, params: Params, inputs: jax.Array,
                   vector: Params) -> Params:
    """``G v`` for the generalised Gauss-Newton matrix of mean softmax cross-entropy.

    ``G = (1/b) Σ_i J_iᵀ (diag(p_i) - p_i p_iᵀ) J_i``, with J_i the Jacobian of example i's
    logits with respect to the parameters and p_i its softmax: the Hessian with the term that
    carries the network's own curvature dropped. G is positive semi-definite for any network
    and equals the Hessian for models linear in their parameters (softmax regression), so CG
    on ``G + λ_d I`` converges where CG on an indefinite Hessian need not (Martens 2010;
    Bae et al., "If Influence Functions are the Answer, Then What is the Question?", 2022).

    Args:
        apply_fn: ``(params, inputs [b, ...]) -> [b, k]`` logits.
        params: Where G is taken.
        inputs: ``[b, ...]`` (labels do not enter G).
        vector: Tangent with the structure of ``params``.
    """
    # One forward pass: linearize gives J v, and its transpose gives Jᵀ u.
    logits, jacobian = jax.linearize(lambda p: apply_fn(p, inputs), params)
    jv = jacobian(vector)
    probs = jax.nn.softmax(logits)
    hjv = probs * jv - probs * jnp.sum(probs * jv, axis=-1, keepdims=True)
    return jax.linear_transpose(jacobian, params)(hjv / logits.shape[0])[0]


def flat_hvp(objective: Objective, params: Params, data: tuple, *,
             chunk_size: int | None = None) -> MatVec:
    """Returns ``matvec: [p] -> [p]``, the Hessian of the objective over all of ``data``.

    .. warning:: ``matvec`` closes over ``params`` and ``data``. Call it inside a jitted
       function that takes them as arguments (as :func:`~jaxreform.influence.inverse_hvp`
       does); jitting ``matvec`` itself makes them compile-time constants, and XLA may spend
       minutes constant-folding a CNN's forward pass.

    Args:
        objective: ``objective(params, batch) -> []``, a mean over the batch (+ regulariser).
        params: Where the Hessian is taken.
        data: Tuple of ``[n, ...]`` arrays.
        chunk_size: If given, the HVP is averaged over chunks of this many examples, summed
            in a ``lax.scan`` (and one smaller chunk for the remainder, weighted by its size),
            so memory grows with the chunk, not with n.
    """
    return flat_matvec(lambda p, batch, tangent: hvp(objective, p, batch, tangent), params,
                       data, chunk_size=chunk_size)


def flat_matvec(product: Callable[[Params, tuple, Params], Params], params: Params, data: tuple,
                *, chunk_size: int | None = None) -> MatVec:
    """Flattens a curvature-vector product over all of ``data`` to ``matvec: [p] -> [p]``.

    Args:
        product: ``(params, batch, tangent) -> tangent``, a batch mean (e.g. :func:`hvp` of
            an objective, or :func:`softmax_ggn_vp` plus the L2 term).
        params, data, chunk_size: As for :func:`flat_hvp`.
    """
    _, unravel = ravel_pytree(params)
    n = data[0].shape[0]
    if chunk_size is not None and (isinstance(chunk_size, bool)
                                   or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ConfigError(f"hvp chunk_size must be a positive integer or None, got "
                          f"{chunk_size!r}.")

    def flat_product(batch, tangent):
        return ravel_pytree(product(params, batch, tangent))[0]

    if chunk_size is None or chunk_size >= n:
        return lambda vector: flat_product(data, unravel(vector))
    whole = n - n % chunk_size
    chunks = tuple(a[:whole].reshape(whole // chunk_size, chunk_size, *a.shape[1:])
                   for a in data)
    rest = tuple(a[whole:] for a in data)

    def chunked_matvec(vector):
        tangent = unravel(vector)
        # A running sum (scan), not lax.map then sum: mapping would hold every chunk's product
        # at once, n / chunk_size times the memory (ruinous under vmap, e.g. dense_matrix).
        total, _ = jax.lax.scan(lambda acc, batch: (acc + flat_product(batch, tangent), None),
                                jnp.zeros_like(vector), chunks)
        total = total * chunk_size
        if whole < n:  # the remainder is one smaller batch, weighted by its size
            total = total + (n - whole) * flat_product(rest, tangent)
        return total / n

    return chunked_matvec


def dense_matrix(matvec: MatVec, size: int) -> jax.Array:
    """The ``[size, size]`` matrix of a linear ``matvec`` (small models and tests only)."""
    return jax.vmap(matvec, out_axes=1)(jnp.eye(size))


def dense_hessian(objective: Objective, params: Params, data: tuple) -> jax.Array:
    """The full ``[p, p]`` Hessian (small models and tests only: memory is p²)."""
    flat, unravel = ravel_pytree(params)
    return jax.hessian(lambda v: objective(unravel(v), data))(flat)


def largest_eigenvalue(key: jax.Array, matvec: MatVec, size: int, iterations: int = 30):
    """Estimates the Hessian's largest-magnitude eigenvalue by power iteration (a scalar)."""
    vector = jax.random.normal(key, (size,))

    def step(vector, _):
        product = matvec(vector / jnp.linalg.norm(vector))
        return product, None

    vector, _ = jax.lax.scan(step, vector, None, length=iterations)
    unit = vector / jnp.linalg.norm(vector)
    return jnp.vdot(unit, matvec(unit))
