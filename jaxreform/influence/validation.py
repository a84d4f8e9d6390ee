"""Checking influence against leave-one-out retraining (Koh & Liang 2017, Fig. 2).

:func:`newton_minimize` trains a strongly convex objective to its exact optimum (Newton steps
with CG inner solves), for a stack of example-weight masks at once (``vmap``): with a mask
that zeroes example i it retrains the model without i. Starting from the full-data optimum,
two or three steps reach float precision, which is what comparing the *actual* change of a
test loss with the predicted ``-I_up,loss / n`` needs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jaxreform.influence import solvers
from jaxreform.influence.hvp import hvp
from jaxreform.train import l2_norm_squared

Params = Any


class NewtonResult(NamedTuple):
    """Optimised params (stacked over masks) and the final gradient norm of each objective."""

    params: Params
    gradient_norm: jax.Array


def weighted_objective(example_loss, l2_penalty: float):
    """``objective(params, (x, y, w)) = sum_i w_i L_i / sum_i w_i + λ/2 ||θ||²``."""

    def objective(params, batch):
        inputs, labels, weights = batch
        losses = jax.vmap(example_loss, in_axes=(None, 0, 0))(params, inputs, labels)
        return (jnp.sum(weights * losses) / jnp.sum(weights)
                + 0.5 * l2_penalty * l2_norm_squared(params))

    return objective


def newton_minimize(example_loss, params: Params, inputs, labels, weights, *,
                    l2_penalty: float, steps: int = 3, cg_tolerance: float = 1e-7,
                    cg_max_iterations: int = 500) -> NewtonResult:
    """Minimises the weighted objective from ``params`` by Newton-CG, for each weight mask.

    Args:
        example_loss: Loss of one example.
        params: Starting point (the full-data optimum for leave-one-out).
        inputs, labels: ``[n, ...]``, ``[n]``.
        weights: ``[m, n]`` example weights, one row per model to train (e.g. ones with a
            single zero for leave-one-out).
        l2_penalty: λ (must be > 0 for the strong convexity Newton relies on).
        steps: Newton steps.

    Returns:
        Params stacked over the m masks, and each model's final gradient norm ``[m]``.
    """
    objective = weighted_objective(example_loss, l2_penalty)
    flat, unravel = ravel_pytree(params)

    def train_one(mask):
        batch = (inputs, labels, mask)

        def newton_step(vector, _):
            current = unravel(vector)
            gradient = ravel_pytree(jax.grad(objective)(current, batch))[0]

            def matvec(v):
                return ravel_pytree(hvp(objective, current, batch, unravel(v)))[0]

            step, _ = solvers.solve_cg(matvec, gradient, damping=0.0, tolerance=cg_tolerance,
                                       max_iterations=cg_max_iterations)
            return vector - step, None

        vector, _ = jax.lax.scan(newton_step, flat, None, length=steps)
        final_gradient = ravel_pytree(jax.grad(objective)(unravel(vector), batch))[0]
        return unravel(vector), jnp.linalg.norm(final_gradient)

    stacked, norms = jax.vmap(train_one)(weights)
    return NewtonResult(stacked, norms)


def leave_one_out_masks(num_examples: int, removed) -> jax.Array:
    """``[k, n]`` weight masks of ones, each with a zero at one index of ``removed [k]``."""
    removed = jnp.asarray(removed)
    return 1.0 - jax.nn.one_hot(removed, num_examples)


def pearson(a, b) -> float:
    """Pearson correlation of two ``[k]`` vectors."""
    a = jnp.asarray(a, jnp.float64) if jax.config.jax_enable_x64 else jnp.asarray(a)
    b = jnp.asarray(b, a.dtype)
    a, b = a - a.mean(), b - b.mean()
    return float(jnp.vdot(a, b) / jnp.sqrt(jnp.vdot(a, a) * jnp.vdot(b, b)))
