"""Noise across (or, as controls, along or regardless of) influence directions.

Pure functions, vmapped over examples. Shapes: n examples, d input coordinates (flattened),
r directions per example (1, or k for one direction per class).

For each example x with directions D = [g_1 .. g_r] (the input-gradients of its influence):

- ``orthogonal``: draw z ~ N(0, I_d) and remove its component in span(D), so the change of x
  moves the reference loss as little as a first-order model can tell;
- ``isotropic``: z as drawn (the control with no knowledge of influence);
- ``along``: a random combination of the g_j, i.e. noise inside the span (the adversarial
  control: this is where adversarial examples move);

then scale the noise so that ``||x' - x||_2 = budget · ||x||_2``. With a valid range
(``clip``), projecting, rescaling and clipping alternate a few times; what remains of the
component in span(D) is reported as the residual |cosine|, and the achieved relative change
as ``relative_l2`` (clipping can only lower it).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

NOISE_MODES = ("orthogonal", "isotropic", "along")


class NoiseResult(NamedTuple):
    """Reformed inputs and per-example diagnostics.

    Attributes:
        reformed: ``[n, ...]`` reformed inputs, shaped like the originals.
        residual_cosine: ``[n]`` ``||P_D δ|| / ||δ||`` for the change δ (0 = fully across).
        relative_l2: ``[n]`` achieved ``||δ|| / ||x||``.
    """

    reformed: jax.Array
    residual_cosine: jax.Array
    relative_l2: jax.Array


def orthonormal_basis(directions: jax.Array) -> jax.Array:
    """``[r, d] -> [d, r]`` orthonormal basis of the span (reduced QR); zero rows stay harmless."""
    q, _ = jnp.linalg.qr(directions.T)
    return q


def _project_out(basis, vector):
    return vector - basis @ (basis.T @ vector)


def _project_in(basis, vector):
    return basis @ (basis.T @ vector)


def _scaled(vector, norm):
    return vector * (norm / jnp.maximum(jnp.linalg.norm(vector), 1e-30))


def reform_one(key: jax.Array, x: jax.Array, directions: jax.Array, *, budget: float,
               mode: str, clip: tuple[float, float] | None, clip_rounds: int = 10):
    """Reforms one example ``x [...]`` given ``directions [r, ...]``; see the module docstring.

    Returns ``(x' [...], residual_cosine [], relative_l2 [])``.
    """
    flat_x = x.reshape(-1)
    basis = orthonormal_basis(directions.reshape(directions.shape[0], -1))
    target = budget * jnp.linalg.norm(flat_x)
    if mode == "orthogonal":
        project = lambda v: _project_out(basis, v)  # noqa: E731
        noise = project(jax.random.normal(key, flat_x.shape))
    elif mode == "along":
        project = lambda v: _project_in(basis, v)  # noqa: E731
        noise = basis @ jax.random.normal(key, (basis.shape[1],))
    else:
        project = lambda v: v  # noqa: E731
        noise = jax.random.normal(key, flat_x.shape)
    change = _scaled(noise, target)
    if clip is not None:
        low, high = clip

        def round_(_, change):
            clipped = jnp.clip(flat_x + change, low, high) - flat_x
            return _scaled(project(clipped), target)

        change = jax.lax.fori_loop(0, clip_rounds, round_, change)
        change = jnp.clip(flat_x + change, low, high) - flat_x
    norm = jnp.maximum(jnp.linalg.norm(change), 1e-30)
    residual = jnp.linalg.norm(basis.T @ change) / norm
    return ((flat_x + change).reshape(x.shape), residual,
            jnp.linalg.norm(change) / jnp.maximum(jnp.linalg.norm(flat_x), 1e-30))


def reform_with_noise(key: jax.Array, inputs: jax.Array, directions: jax.Array, *,
                      budget: float, mode: str = "orthogonal",
                      clip: tuple[float, float] | None = None) -> NoiseResult:
    """Reforms every example; vmapped, one key per example (``fold_in`` of ``key``).

    Args:
        key: Randomness of the noise.
        inputs: ``[n, ...]``.
        directions: ``[n, ...]`` (one direction each) or ``[n, r, ...]``.
        budget: Relative L2 change per example, ``||x' - x|| / ||x||``.
        mode: ``"orthogonal"``, ``"isotropic"`` or ``"along"``.
        clip: Optional valid range ``(low, high)`` of the inputs.
    """
    if directions.ndim == inputs.ndim:
        directions = directions[:, None]
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(inputs.shape[0]))
    reformed, residual, relative = jax.vmap(
        lambda k, x, d: reform_one(k, x, d, budget=budget, mode=mode, clip=clip)
    )(keys, inputs, directions)
    return NoiseResult(reformed, residual, relative)
