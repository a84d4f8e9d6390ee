"""Inverse Hessian-vector products: exact, conjugate gradient and LiSSA, all with damping.

Each solves ``(H + damping·I) x = b`` for right-hand sides ``b [p]`` and returns ``x`` with a
:class:`SolveReport`. The report's ``relative_residual`` is measured the same way for every
solver, ``||(H + damping·I) x - b|| / ||b||`` with a full-data HVP, so solvers can be
compared. :func:`check_report` turns a failed solve into a :class:`SolverError` naming the
setting to change (traced code cannot raise, so the drivers call it after solving).

References:
    Koh & Liang, "Understanding Black-box Predictions via Influence Functions", ICML 2017,
    https://arxiv.org/abs/1703.04730 (CG and LiSSA for influence functions).
    Agarwal, Bullins & Hazan, "Second-Order Stochastic Optimization for Machine Learning in
    Linear Time", JMLR 2017, https://arxiv.org/abs/1602.03943 (LiSSA).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxreform import _validate
from jaxreform.errors import ConfigError, SolverError
from jaxreform.influence.hvp import MatVec

SOLVERS = ("exact", "cg", "lissa")
CURVATURES = ("hessian", "gauss-newton")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SolverConfig:
    """How to apply the inverse Hessian.

    Attributes:
        method: ``"exact"`` (dense Hessian; p² memory), ``"cg"`` or ``"lissa"``.
        damping: λ_d added to the Hessian's diagonal (all methods).
        tolerance: Largest acceptable relative residual; a solve above it raises.
        cg_max_iterations: CG iteration cap.
        lissa_scale: s in ``h ← b + (1 - λ_d/s) h - H h / s``; must exceed the Hessian's
            largest eigenvalue or the recursion diverges.
        lissa_depth: Recursion steps per repeat.
        lissa_repeats: Independent recursions averaged (each on its own minibatches).
        lissa_batch_size: Examples per recursion step (None: all, a deterministic recursion).
        curvature: ``"hessian"`` (Koh & Liang's H), or ``"gauss-newton"``: the generalised
            Gauss-Newton matrix of softmax cross-entropy, positive semi-definite for any
            network, the same as H for softmax regression; use it for the MLP and CNN, whose
            Hessian away from an exact minimum has negative eigenvalues that stall CG.
    """

    method: str = "cg"
    damping: float = 0.0
    tolerance: float = 1e-4
    cg_max_iterations: int = 1000
    lissa_scale: float = 50.0
    lissa_depth: int = 5000
    lissa_repeats: int = 1
    lissa_batch_size: int | None = None
    curvature: str = "hessian"

    def __post_init__(self):
        _validate.check_choice("solver", self.method, SOLVERS)
        _validate.check_choice("curvature", self.curvature, CURVATURES)
        _validate.check_positive(tolerance=self.tolerance, cg_max_iterations=self.cg_max_iterations,
                                 lissa_scale=self.lissa_scale, lissa_depth=self.lissa_depth,
                                 lissa_repeats=self.lissa_repeats)
        _validate.check_finite_numbers(damping=self.damping)
        if self.damping < 0:
            raise ConfigError(f"damping must be >= 0, got damping={self.damping!r}.")
        if self.lissa_batch_size is not None:
            _validate.check_positive(lissa_batch_size=self.lissa_batch_size)


class SolveReport(NamedTuple):
    """Diagnostics of one solve (arrays; ``check_report`` reads them on the host).

    Attributes:
        iterations: CG iterations or LiSSA steps taken (exact: 0).
        relative_residual: ``||(H + λ_d I) x - b|| / ||b||`` per right-hand side.
        finite: Whether x is free of NaN and Inf.
    """

    iterations: jax.Array
    relative_residual: jax.Array
    finite: jax.Array


def relative_residual(matvec: MatVec, damping: float, x: jax.Array, b: jax.Array) -> jax.Array:
    """``||(H + λ_d I) x - b|| / ||b||`` for ``x, b [p]``, the check every solver reports."""
    return jnp.linalg.norm(matvec(x) + damping * x - b) / jnp.maximum(jnp.linalg.norm(b), 1e-30)


def solve_exact(hessian: jax.Array, b: jax.Array, *, damping: float = 0.0) -> jax.Array:
    """``(H + λ_d I)^{-1} b`` by a dense solve; ``hessian [p, p]``, ``b [p]`` or ``[p, r]``."""
    return jnp.linalg.solve(hessian + damping * jnp.eye(hessian.shape[0], dtype=hessian.dtype), b)


def solve_cg(matvec: MatVec, b: jax.Array, *, damping: float, tolerance: float,
             max_iterations: int) -> tuple[jax.Array, jax.Array]:
    """Conjugate gradient for ``(H + λ_d I) x = b`` with ``b [p]``; returns ``(x, iterations)``.

    Stops when ``||r|| <= tolerance · ||b||`` or after ``max_iterations``. H must be symmetric
    positive definite once damped (true for a convex objective; for a non-convex model add
    damping).
    """

    def apply(v):
        return matvec(v) + damping * v

    threshold = (tolerance * jnp.linalg.norm(b)) ** 2

    def not_done(state):
        _, r, _, rr, k = state
        return (rr > threshold) & (k < max_iterations) & jnp.isfinite(rr)

    def step(state):
        x, r, d, rr, k = state
        hd = apply(d)
        alpha = rr / jnp.vdot(d, hd)
        x = x + alpha * d
        r = r - alpha * hd
        rr_new = jnp.vdot(r, r)
        return x, r, r + (rr_new / rr) * d, rr_new, k + 1

    x0 = jnp.zeros_like(b)
    state = (x0, b, b, jnp.vdot(b, b), jnp.array(0))
    x, _, _, _, iterations = jax.lax.while_loop(not_done, step, state)
    return x, iterations


def solve_lissa(key: jax.Array, batch_matvec, b: jax.Array, *, num_examples: int,
                config: SolverConfig) -> jax.Array:
    """LiSSA: the Neumann-series recursion, ``lax.scan`` over ``depth`` steps, averaged.

    Args:
        key: Chooses the minibatch of every step (unused with ``lissa_batch_size=None``).
        batch_matvec: ``(index [m], v [p]) -> H_batch v``, the HVP on the examples ``index``.
        b: ``[p]`` right-hand side.
        num_examples: n, to draw minibatch indices from.
        config: Scale, damping, depth, repeats, batch size.

    Returns:
        ``[p]`` estimate of ``(H + λ_d I)^{-1} b`` (NaN/Inf if the recursion diverged).
    """
    scale = config.lissa_scale
    batch = config.lissa_batch_size or num_examples
    shrink = 1.0 - config.damping / scale

    def one_repeat(repeat_key):
        def step(h, step_key):
            index = (jnp.arange(num_examples) if batch >= num_examples else
                     jax.random.choice(step_key, num_examples, (batch,), replace=False))
            return b + shrink * h - batch_matvec(index, h) / scale, None

        h, _ = jax.lax.scan(step, b, jax.random.split(repeat_key, config.lissa_depth))
        return h / scale

    return jnp.mean(jax.lax.map(one_repeat, jax.random.split(key, config.lissa_repeats)), axis=0)


def check_report(report: SolveReport, config: SolverConfig, *, largest_eigenvalue=None) -> None:
    """Raises :class:`SolverError` if a solve diverged or missed its tolerance.

    Args:
        report: The solve's diagnostics.
        config: The settings used (named in the advice).
        largest_eigenvalue: Optional estimate of the Hessian's top eigenvalue, quoted in the
            LiSSA advice.
    """
    residual = float(jnp.max(report.relative_residual))
    if bool(jnp.all(report.finite)) and residual <= config.tolerance:
        return
    if config.method == "lissa":
        hint = f"; the Hessian's largest eigenvalue is about {float(largest_eigenvalue):.3g}" \
            if largest_eigenvalue is not None else ""
        if not bool(jnp.all(report.finite)) or residual > 1.0:
            raise SolverError(
                f"LiSSA diverged (relative residual {residual:.3g}, finite="
                f"{bool(jnp.all(report.finite))}): increase lissa_scale (now "
                f"{config.lissa_scale}) above the Hessian's largest eigenvalue{hint}, or add "
                f"damping (now {config.damping}).")
        raise SolverError(
            f"LiSSA stopped at relative residual {residual:.3g} > tolerance {config.tolerance}: "
            f"increase lissa_depth (now {config.lissa_depth}) or damping (now {config.damping}), "
            "or use the cg solver.")
    if config.method == "cg":
        raise SolverError(
            f"CG reached relative residual {residual:.3g} after {int(jnp.max(report.iterations))} "
            f"iterations, above tolerance {config.tolerance}: increase cg_max_iterations (now "
            f"{config.cg_max_iterations}) or damping (now {config.damping}); a non-convex model "
            "needs damping to make its Hessian positive definite"
            + (", or curvature='gauss-newton', which is positive semi-definite."
               if config.curvature == "hessian" else "."))
    raise SolverError(
        f"the exact solve has relative residual {residual:.3g} (finite="
        f"{bool(jnp.all(report.finite))}): the Hessian is singular or ill-conditioned; add "
        f"damping (now {config.damping}).")
