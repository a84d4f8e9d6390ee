"""Flax modules for the task models and the autoencoders.

All modules take a batch ``x: [b, ...]`` and are used functionally:
``logits = model.apply(params, x)``. Classifiers return ``[b, k]`` logits. Autoencoders
expose ``encode`` and ``decode`` (call them with ``method=``) so the decoder can be discarded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxreform.errors import ConfigError


class SoftmaxRegression(nn.Module):
    """Multinomial logistic regression on flattened inputs (the seed's one-layer network)."""

    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(self.num_classes, name="linear")(x.reshape(x.shape[0], -1))


class MLP(nn.Module):
    """Fully connected network on flattened inputs.

    Attributes:
        num_classes: Output classes k.
        hidden_sizes: Width of each hidden layer.
        activation: Hidden non-linearity, e.g. ``nn.relu`` or ``nn.sigmoid``.
    """

    num_classes: int
    hidden_sizes: Sequence[int] = (512,)
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = x.reshape(x.shape[0], -1)
        for width in self.hidden_sizes:
            h = self.activation(nn.Dense(width)(h))
        return nn.Dense(self.num_classes)(h)


CONV_IMPLEMENTATIONS = ("auto", "xla", "patches")


class PatchConv(nn.Module):
    """A stride-1 ``"SAME"`` convolution computed as patches times a matrix.

    Same parameters as ``nn.Conv`` (``kernel [kh, kw, c_in, c_out]``, ``bias [c_out]``) and
    the same outputs to float rounding, so the two are interchangeable. Why it exists: on
    XLA:CPU the kernel gradient of ``nn.Conv`` *inside a loop* (``lax.scan`` epochs, CG and
    LiSSA solves, DP-SGD) ran about 9× slower than this formulation (2.6 s vs 0.29 s per
    gradient of the small CNN on 200 MNIST digits, jax 0.10, 2 cores), although outside loops
    the XLA convolution is faster. On accelerators the XLA convolution is the better choice.
    """

    features: int
    kernel_size: Sequence[int] = (3, 3)
    use_bias: bool = True
    # Fixed, so that code treating this like nn.Conv (ghost clipping) reads the same facts.
    strides: int = 1
    padding: str = "SAME"
    feature_group_count: int = 1
    kernel_dilation: int = 1
    input_dilation: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel_size
        channels = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (kh, kw, channels, self.features))
        patches = kernel_ordered_patches(x, (kh, kw), (1, 1), "SAME")
        out = patches @ kernel.reshape(-1, self.features)
        if self.use_bias:
            out = out + self.param("bias", nn.initializers.zeros, (self.features,))
        return out


def kernel_ordered_patches(inputs: jax.Array, kernel_size, strides, padding: str) -> jax.Array:
    """``[b, *spatial, c_in] -> [b, *out_spatial, prod(kernel_size)·c_in]`` patches whose
    feature order matches a flax kernel ``[*kernel_size, c_in, c_out]`` flattened, so that
    ``patches @ kernel.reshape(-1, c_out)`` is the convolution (1-, 2- or 3-D)."""
    spatial = len(kernel_size)
    letters = "DHW"[-spatial:]
    patches = jax.lax.conv_general_dilated_patches(
        inputs, tuple(kernel_size), tuple(strides), padding,
        dimension_numbers=(f"N{letters}C", f"{letters}IO", f"N{letters}C"))
    out_shape = patches.shape[:-1]
    channels, window = inputs.shape[-1], math.prod(kernel_size)
    # The patch features come channel-major ([c_in, *kernel]); flax kernels are [*kernel, c_in].
    patches = patches.reshape(*out_shape, channels, window)
    return jnp.swapaxes(patches, -1, -2).reshape(*out_shape, window * channels)


def resolve_conv(implementation: str) -> str:
    """``"auto"`` → ``"patches"`` on the CPU backend, ``"xla"`` elsewhere (see
    :class:`PatchConv`); other values are returned as they are."""
    if implementation not in CONV_IMPLEMENTATIONS:
        raise ConfigError(f"unknown conv implementation {implementation!r}; choose one of: "
                          f"{', '.join(CONV_IMPLEMENTATIONS)}.")
    if implementation == "auto":
        return "patches" if jax.default_backend() == "cpu" else "xla"
    return implementation


def conv3x3(features: int, implementation: str, name: str | None = None) -> nn.Module:
    """A 3×3 stride-1 SAME convolution (named ``name``) by the chosen implementation."""
    if resolve_conv(implementation) == "patches":
        return PatchConv(features, (3, 3), name=name)
    return nn.Conv(features, (3, 3), name=name)


class SmallCNN(nn.Module):
    """Two conv + max-pool blocks and a dense layer, for ``[b, H, W, C]`` images.

    ``conv``: ``"auto"`` (patches on CPU, XLA convolutions elsewhere), ``"xla"`` or
    ``"patches"``; the parameters are the same either way.
    """

    num_classes: int
    features: Sequence[int] = (32, 64)
    dense_size: int = 128
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    conv: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = x
        for index, width in enumerate(self.features):
            h = self.activation(conv3x3(width, self.conv, f"Conv_{index}")(h))
            h = nn.max_pool(h, (2, 2), strides=(2, 2))
        h = self.activation(nn.Dense(self.dense_size)(h.reshape(h.shape[0], -1)))
        return nn.Dense(self.num_classes)(h)


class DenseAutoencoder(nn.Module):
    """Dense autoencoder whose code has the input's shape by default.

    ``encode``: flatten, hidden layers, then a sigmoid layer of ``code_size`` units (default:
    the input size, reshaped back to the input's shape). ``decode`` mirrors it back to the
    input. With a code in input space, the reformed data can be compared with and pictured
    beside the original.

    Attributes:
        input_shape: Shape of one input, e.g. ``(28, 28, 1)``.
        hidden_sizes: Hidden widths of the encoder (the decoder uses them reversed).
        code_size: Length of the code; None keeps the input's shape.
        bounded_code: Sigmoid on the code (values in (0, 1), for data in [0, 1] such as
            images); False leaves it linear (for standardised tabular data).
        activation: Non-linearity of the hidden layers (encoder and decoder).
    """

    input_shape: Sequence[int]
    hidden_sizes: Sequence[int] = (512,)
    code_size: int | None = None
    bounded_code: bool = True
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    def setup(self):
        input_size = math.prod(self.input_shape)
        self.encoder_layers = [nn.Dense(w) for w in self.hidden_sizes]
        self.code_layer = nn.Dense(self.code_size or input_size)
        self.decoder_layers = [nn.Dense(w) for w in reversed(self.hidden_sizes)]
        self.output_layer = nn.Dense(input_size)

    def encode(self, x: jax.Array) -> jax.Array:
        """``[b, *input_shape] -> [b, *input_shape]`` (or ``[b, code_size]``); values in (0, 1)
        when ``bounded_code``."""
        h = x.reshape(x.shape[0], -1)
        for layer in self.encoder_layers:
            h = self.activation(layer(h))
        code = self.code_layer(h)
        code = nn.sigmoid(code) if self.bounded_code else code
        if self.code_size is None:
            return code.reshape(x.shape[0], *self.input_shape)
        return code

    def decode(self, code: jax.Array) -> jax.Array:
        """Code ``[b, ...] -> [b, *input_shape]`` reconstruction: logits (apply a sigmoid) for
        data in [0, 1], the values themselves for standardised data."""
        h = code.reshape(code.shape[0], -1)
        for layer in self.decoder_layers:
            h = self.activation(layer(h))
        return self.output_layer(h).reshape(code.shape[0], *self.input_shape)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.decode(self.encode(x))


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder whose code keeps the input's height, width and channels.

    ``encode`` is a stack of 3x3 convolutions (ReLU) ending in a sigmoid convolution back to C
    channels, so the code is an image of the input's shape; ``decode`` mirrors it. No pooling,
    so no spatial detail is forced out: the distortion comes from the learned filters.
    ``conv`` chooses the convolution implementation as in :class:`SmallCNN`.
    """

    input_shape: Sequence[int]
    features: Sequence[int] = (16, 32)
    conv: str = "auto"

    def setup(self):
        channels = self.input_shape[-1]
        self.encoder_convs = [conv3x3(f, self.conv) for f in self.features]
        self.code_conv = conv3x3(channels, self.conv)
        self.decoder_convs = [conv3x3(f, self.conv) for f in reversed(self.features)]
        self.output_conv = conv3x3(channels, self.conv)

    def encode(self, x: jax.Array) -> jax.Array:
        """``[b, H, W, C] -> [b, H, W, C]`` code, values in (0, 1)."""
        h = x
        for conv in self.encoder_convs:
            h = nn.relu(conv(h))
        return nn.sigmoid(self.code_conv(h))

    def decode(self, code: jax.Array) -> jax.Array:
        """``[b, H, W, C]`` code ``-> [b, H, W, C]`` reconstruction logits."""
        h = code
        for conv in self.decoder_convs:
            h = nn.relu(conv(h))
        return self.output_conv(h)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.decode(self.encode(x))


CLASSIFIERS = {"softmax": SoftmaxRegression, "mlp": MLP, "cnn": SmallCNN}
AUTOENCODERS = {"dense": DenseAutoencoder, "conv": ConvAutoencoder}
