"""Sum of per-example clipped gradients, without materialising per-example gradients.

DP-SGD needs ``Σ_i clip(∇θ ℓ_i)`` where ``clip(g) = g · min(1, C / ||g||)``. Two methods:

``"ghost"`` (default) follows the book-keeping idea of ghost clipping (Goodfellow 2015;
Li et al. 2022; Bu et al. 2023). One forward pass records every ``nn.Dense`` and ``nn.Conv``
layer's input ``a`` (through ``flax.linen.intercept_methods``, so models need no changes) and
one backward pass gives the gradient ``δ`` of the loss with respect to each layer's output.
For a dense layer on ``[b, d_in]`` inputs the per-example kernel gradient is the outer product
``a_i δ_iᵀ``, whose norm is ``||a_i|| ||δ_i||`` without forming it, and the clipped sum is one
matmul ``aᵀ diag(w) δ``. A convolution's per-example kernel gradient is
``patches_iᵀ δ_i`` (``[kh·kw·c_in, c_out]``, small), computed as a batched matmul rather than
the grouped convolution that ``vmap`` of ``grad`` would produce. Memory grows linearly in the
batch: activations and output gradients of every layer, plus ``b × (conv kernel sizes)``; no
``b × (dense kernel sizes)`` term, which is what makes per-example gradients of a
784-1000-10 MLP expensive (600 × 795k floats = 1.9 GB).

``"vmap"`` is the generic fallback for any differentiable model: ``vmap(grad)`` over
microbatches of ``microbatch_size`` examples, so memory is ``microbatch_size × #params``.

Both return the same numbers (tested against each other and against a per-example loop).
Only models whose parameters all belong to ``nn.Dense`` / ``nn.Conv`` layers (no weight
sharing, no batch statistics) can use ``"ghost"``; others get a clear error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from jaxreform import _validate, models, train
from jaxreform.errors import ConfigError

Params = Any
# example_loss(outputs [b, ...], targets [b, ...]) -> [b]: one loss per example.
ExampleLoss = Callable[[jax.Array, jax.Array], jax.Array]
METHODS = ("ghost", "vmap")
_TAPPED = (nn.Dense, nn.Conv, models.PatchConv)
_TINY = 1e-12


class ClippedGradients(NamedTuple):
    """Output of :func:`clipped_gradient_sum`.

    Attributes:
        grad_sum: Pytree like the params: ``Σ_i m_i clip(∇θ ℓ_i)``.
        norms: ``[b]`` per-example gradient norms before clipping (0 where masked out).
        loss_sum: ``Σ_i m_i ℓ_i``, a scalar.
    """

    grad_sum: Params
    norms: jax.Array
    loss_sum: jax.Array


def clip_factors(norms: jax.Array, clip_norm: float, mask: jax.Array) -> jax.Array:
    """``[b]`` weights ``m_i · min(1, C / ||g_i||)`` that clip each gradient to norm ≤ C."""
    return mask * jnp.minimum(1.0, clip_norm / (norms + _TINY))


def _conv_patches(module: nn.Conv, inputs: jax.Array) -> jax.Array:
    """``[b, *spatial, c_in] -> [b, t, kh·kw·c_in]`` patches ordered like the flattened kernel."""
    if module.feature_group_count != 1 or any(
            d not in (None, 1) and d != (1,) * len(module.kernel_size)
            for d in (module.kernel_dilation, module.input_dilation)):
        raise ConfigError("ghost clipping supports plain convolutions only (no groups or "
                          "dilation); use method='vmap' for this model.")
    if not isinstance(module.padding, str) or module.padding not in ("SAME", "VALID"):
        raise ConfigError(f"ghost clipping supports padding 'SAME' or 'VALID', not "
                          f"{module.padding!r}; use method='vmap' for this model.")
    spatial = len(module.kernel_size)
    if spatial > 3:
        raise ConfigError("ghost clipping supports 1-, 2- and 3-D convolutions only.")
    strides = module.strides or 1
    strides = (strides,) * spatial if isinstance(strides, int) else tuple(strides)
    patches = models.kernel_ordered_patches(inputs, module.kernel_size, strides, module.padding)
    return patches.reshape(inputs.shape[0], -1, patches.shape[-1])


def _tapped_apply(apply_fn, params, inputs, perturbations):
    """Runs ``apply_fn`` recording each Dense/Conv layer's module and input, adding
    ``perturbations[path]`` (zeros) to its output so that their gradient is ``δ``."""
    taps: dict[tuple[str, ...], tuple[nn.Module, jax.Array, jax.ShapeDtypeStruct]] = {}

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name != "__call__" or not isinstance(module, _TAPPED):
            return next_fun(*args, **kwargs)
        path = tuple(module.path)
        if path in taps:
            raise ConfigError(f"layer {'/'.join(path)} is applied more than once per example; "
                              "ghost clipping needs each layer used once. Use method='vmap'.")
        output = next_fun(*args, **kwargs)
        taps[path] = (module, args[0], jax.ShapeDtypeStruct(output.shape, output.dtype))
        return output if perturbations is None else output + perturbations[path]

    with nn.intercept_methods(interceptor):
        outputs = apply_fn(params, inputs)
    return outputs, taps


def _layer_contributions(module, kernel_shape, layer_input, delta, weights=None):
    """Per-example squared gradient norms ``[b]`` of one layer's params, or (with
    ``weights``) the weighted sum of its per-example gradients as ``{"kernel", "bias"}``."""
    b = delta.shape[0]
    delta = delta.reshape(b, -1, delta.shape[-1])  # [b, t, d_out]
    if isinstance(module, (nn.Conv, models.PatchConv)):
        a = _conv_patches(module, layer_input)  # [b, t, k]
    else:
        a = layer_input.reshape(b, -1, layer_input.shape[-1])  # [b, t, d_in]
    bias_grads = delta.sum(axis=1)  # [b, d_out]
    single_position = a.shape[1] == 1
    if weights is None:
        if single_position:
            kernel_sq = jnp.sum(a[:, 0] ** 2, -1) * jnp.sum(delta[:, 0] ** 2, -1)
        else:
            kernel_sq = jnp.sum(jnp.einsum("btk,bto->bko", a, delta) ** 2, axis=(1, 2))
        bias_sq = jnp.sum(bias_grads ** 2, -1) if module.use_bias else 0.0
        return kernel_sq + bias_sq
    if single_position:  # one matmul, as in the non-private gradient
        kernel = (a[:, 0] * weights[:, None]).T @ delta[:, 0]
    else:
        kernel = jnp.einsum("btk,bto->ko", a * weights[:, None, None], delta)
    out = {"kernel": kernel.reshape(kernel_shape)}
    if module.use_bias:
        out["bias"] = weights @ bias_grads
    return out


def _ghost(apply_fn, params, inputs, targets, mask, clip_norm, example_loss):
    modules = {}

    def probe_fn(p, x):
        _, taps = _tapped_apply(apply_fn, p, x, None)
        modules.update({path: tap[0] for path, tap in taps.items()})
        return {path: tap[2] for path, tap in taps.items()}

    # Only static facts of the modules (kernel size, padding, strides, use_bias) are used later.
    output_specs = jax.eval_shape(probe_fn, params, inputs)
    flat_params = traverse_util.flatten_dict(params["params"])
    covered = {path + (leaf,) for path in modules for leaf in ("kernel", "bias")}
    uncovered = sorted("/".join(k) for k in flat_params if k not in covered)
    if uncovered or set(params) != {"params"}:
        raise ConfigError(
            "ghost clipping covers nn.Dense and nn.Conv parameters only; this model also has "
            f"{uncovered or sorted(set(params) - {'params'})}. Use method='vmap'.")
    zeros = {path: jnp.zeros(spec.shape, spec.dtype) for path, spec in output_specs.items()}

    def total_loss(perturbations):
        outputs, taps = _tapped_apply(apply_fn, params, inputs, perturbations)
        losses = mask * example_loss(outputs, targets)
        return jnp.sum(losses), ({path: tap[1] for path, tap in taps.items()}, losses)

    deltas, (layer_inputs, losses) = jax.grad(total_loss, has_aux=True)(zeros)

    def contributions(path, weights=None):
        return _layer_contributions(modules[path], flat_params[path + ("kernel",)].shape,
                                    layer_inputs[path], deltas[path], weights)

    norms = jnp.sqrt(sum(contributions(path) for path in modules)) * mask
    weights = clip_factors(norms, clip_norm, mask)
    grad_flat = {path + (leaf,): value
                 for path in modules for leaf, value in contributions(path, weights).items()}
    grad_sum = {"params": traverse_util.unflatten_dict(grad_flat)}
    return ClippedGradients(grad_sum, norms, jnp.sum(losses))


def _vmapped(apply_fn, params, inputs, targets, mask, clip_norm, example_loss, microbatch_size):
    def one_loss(p, x, y):
        return example_loss(apply_fn(p, x[None]), y[None])[0]

    def microbatch(x, y, m):
        losses, grads = jax.vmap(jax.value_and_grad(one_loss), in_axes=(None, 0, 0))(params, x, y)
        norms = jnp.sqrt(sum(jnp.sum(g.reshape(g.shape[0], -1) ** 2, -1)
                             for g in jax.tree.leaves(grads))) * m
        weights = clip_factors(norms, clip_norm, m)
        summed = jax.tree.map(lambda g: jnp.tensordot(weights, g, axes=1), grads)
        return summed, norms, jnp.sum(m * losses)

    b = inputs.shape[0]
    size = min(microbatch_size, b)
    if b % size:
        raise ConfigError(f"batch size {b} is not a multiple of microbatch_size={size}.")
    split = lambda a: a.reshape(b // size, size, *a.shape[1:])  # noqa: E731
    summed, norms, losses = jax.lax.map(lambda c: microbatch(*c),
                                        (split(inputs), split(targets), split(mask)))
    return ClippedGradients(jax.tree.map(lambda g: g.sum(0), summed), norms.reshape(b),
                            losses.sum())


def clipped_gradient_sum(
    apply_fn: train.ApplyFn,
    params: Params,
    inputs: jax.Array,
    targets: jax.Array,
    mask: jax.Array,
    clip_norm: float,
    example_loss: ExampleLoss,
    *,
    method: str = "ghost",
    microbatch_size: int = 32,
) -> ClippedGradients:
    """``Σ_i m_i clip_C(∇θ ℓ_i(θ))`` over a padded batch.

    Args:
        apply_fn: ``apply(params, x [b, ...]) -> outputs [b, ...]`` of a Flax model
            (e.g. ``model.apply``). No batch statistics: each output row depends only on its
            own input row.
        params: ``{"params": ...}`` pytree.
        inputs: ``[b, ...]`` examples (padding rows allowed).
        targets: ``[b, ...]`` what ``example_loss`` compares the outputs with.
        mask: ``[b]`` 1.0 for real examples, 0.0 for padding.
        clip_norm: C > 0.
        example_loss: ``(outputs [b, ...], targets [b, ...]) -> [b]`` per-example losses.
        method: ``"ghost"`` or ``"vmap"`` (see the module docstring).
        microbatch_size: Examples per ``vmap`` chunk (``"vmap"`` only); must divide b.

    Returns:
        :class:`ClippedGradients`. Jit-able with ``apply_fn``, ``example_loss``, ``method``
        and ``microbatch_size`` static.
    """
    _validate.check_choice("method", method, METHODS)
    if method == "ghost":
        return _ghost(apply_fn, params, inputs, targets, mask, clip_norm, example_loss)
    return _vmapped(apply_fn, params, inputs, targets, mask, clip_norm, example_loss,
                    microbatch_size)


def cross_entropy_example_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``logits [b, k], labels [b] -> [b]`` softmax cross-entropy per example."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
