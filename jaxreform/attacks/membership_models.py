"""Target and attack models of the membership-inference suite (Flax linen).

Modules take a batch ``x: [b, ...]`` and return ``[b, k]`` logits; the softmax of the
papers' output layer is applied by the loss (``optax.softmax_cross_entropy_with_integer_labels``)
or by :func:`jax.nn.softmax` when prediction vectors are needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from jaxreform import models


class ShokriCifarCNN(nn.Module):
    """The CIFAR-10 target of Shokri et al. (2017): two convolution + max-pool blocks, a
    128-unit dense layer, tanh activations, and a softmax output layer (returned as logits).

    Attributes:
        num_classes: Output classes k.
        features: Filters of the two convolutions.
        kernel_size: Side of the square convolution kernels.
        dense_size: Width of the dense layer (128 in the paper).
        conv: ``"auto"`` (:class:`~jaxreform.models.PatchConv` on CPU, whose kernel gradient
            inside ``lax.scan`` epochs is several times faster there; XLA convolutions
            elsewhere), ``"xla"`` or ``"patches"``. The parameters are the same either way.

    ``[b, 32, 32, 3] -> [b, k]`` logits.

    References:
        Shokri, Stronati, Song, Shmatikov. "Membership Inference Attacks Against Machine
        Learning Models", IEEE S&P 2017. https://arxiv.org/abs/1610.05820
    """

    num_classes: int = 10
    features: Sequence[int] = (32, 64)
    kernel_size: int = 5
    dense_size: int = 128
    conv: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = x
        kernel = (self.kernel_size, self.kernel_size)
        patches = models.resolve_conv(self.conv) == "patches"
        for index, width in enumerate(self.features):
            layer = (models.PatchConv(width, kernel, name=f"Conv_{index}") if patches
                     else nn.Conv(width, kernel, name=f"Conv_{index}"))
            h = nn.tanh(layer(h))
            h = nn.max_pool(h, (2, 2), strides=(2, 2))
        h = nn.tanh(nn.Dense(self.dense_size)(h.reshape(h.shape[0], -1)))
        return nn.Dense(self.num_classes)(h)


class AttackMLP(nn.Module):
    """Shokri's per-class attack model: a small dense network on a sorted prediction vector.

    ``[b, k] -> [b]`` membership logit (member if > 0).
    """

    hidden_size: int = 64

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.relu(nn.Dense(self.hidden_size)(x))
        return nn.Dense(1)(h)[:, 0]
