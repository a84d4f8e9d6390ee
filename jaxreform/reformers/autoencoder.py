"""The autoencoder reformer: train an autoencoder, keep the encoder, release the codes.

The reformed training set is ``encode(x)`` for every training input; the task model is trained
on it, and at deployment every input passes through the same encoder. By default the code has
the input's shape (values in (0, 1)), so the change of the data can be measured with norm
distances and seen in pictures. The decoder is only used to train the encoder and is dropped.

Reference: the jaxreform seed ("data reformation" by an autoencoder); autoencoders as in
Hinton & Salakhutdinov (2006), Science 313(5786).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxreform import _validate, models, train
from jaxreform.errors import ConfigError, InvalidDataError


def reconstruction_loss(autoencoder: Any):
    """Returns ``loss(params, (x [b, ...],)) -> []``: mean sigmoid cross-entropy per pixel.

    Inputs must lie in [0, 1] (pixel intensities); the decoder outputs logits.
    """

    def loss(params, batch):
        (inputs,) = batch
        logits = autoencoder.apply(params, inputs)
        return optax.sigmoid_binary_cross_entropy(logits, inputs).mean()

    return loss


def encode(autoencoder: Any, params: Any, inputs: jax.Array, batch_size: int = 1000):
    """Codes ``[n, ...]`` of ``inputs [n, ...]``, encoded ``batch_size`` at a time."""
    return train.batched_apply(
        lambda x: autoencoder.apply(params, x, method="encode"), inputs, batch_size
    )


@dataclasses.dataclass(frozen=True)
class AutoencoderFitted:
    """Result of :meth:`AutoencoderReformer.fit`.

    Attributes:
        reformed_train: ``[n, ...]`` codes of the training inputs.
        encoder_params: Parameters of the whole autoencoder (the decoder is never used again;
            kept so that reconstructions can be inspected).
        autoencoder: The Flax module.
        info: Config and training history for the report.
    """

    reformed_train: jax.Array
    encoder_params: Any
    autoencoder: Any
    info: dict

    def transform(self, inputs: jax.Array) -> jax.Array:
        """Encodes ``inputs [b, ...]`` with the trained encoder (what deployment applies)."""
        return encode(self.autoencoder, self.encoder_params, inputs)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AutoencoderReformer:
    """Reforms data into the codes of a trained autoencoder.

    Attributes:
        architecture: ``"dense"`` or ``"conv"`` (see :mod:`jaxreform.models`).
        hidden_sizes: Hidden widths of the dense encoder (conv: channels per layer).
        code_size: Dense only: a code of this length instead of the input's shape. The
            reformed data then no longer lives in input space (no norm distances, no pictures).
        train_config: How the autoencoder is trained.
    """

    name: str = dataclasses.field(default="autoencoder", init=False)
    architecture: str = "dense"
    hidden_sizes: tuple[int, ...] = (512,)
    code_size: int | None = None
    train_config: train.TrainConfig = train.TrainConfig(epochs=5, batch_size=128)

    def __post_init__(self):
        _validate.check_choice("autoencoder architecture", self.architecture, models.AUTOENCODERS)
        widths = {f"hidden_sizes[{i}]": w for i, w in enumerate(self.hidden_sizes)}
        _validate.check_integers(**widths)
        _validate.check_positive(**widths)
        if self.code_size is not None and self.architecture != "dense":
            raise ConfigError("code_size applies to the dense autoencoder only.")

    def build(self, input_shape: tuple[int, ...]):
        """The Flax autoencoder for inputs of shape ``input_shape``."""
        if self.architecture == "dense":
            return models.DenseAutoencoder(
                input_shape=input_shape, hidden_sizes=self.hidden_sizes, code_size=self.code_size
            )
        return models.ConvAutoencoder(input_shape=input_shape, features=self.hidden_sizes)

    def check_inputs(self, inputs) -> jax.Array:
        """``inputs`` as float32 ``[n, ...]`` after checking they are finite and in [0, 1].

        Raises:
            InvalidDataError: if inputs are empty, hold NaN/Inf or lie outside [0, 1].
        """
        inputs = jnp.asarray(inputs, jnp.float32)
        if inputs.ndim < 2 or inputs.shape[0] == 0:
            raise InvalidDataError(
                f"autoencoder inputs must have shape [n, ...] with n >= 1, got {inputs.shape}.")
        _validate.check_finite("autoencoder inputs", inputs)
        low, high = float(jnp.min(inputs)), float(jnp.max(inputs))
        if low < 0.0 or high > 1.0:
            raise InvalidDataError(
                f"autoencoder inputs must lie in [0, 1] (scaled intensities), got [{low}, {high}]."
            )
        return inputs

    def train_autoencoder(self, key, autoencoder, params, inputs, progress: bool):
        """Non-private training; returns ``(params, history)``."""
        result = train.fit(key, reconstruction_loss(autoencoder), params, (inputs,),
                           self.train_config, progress=progress, description="autoencoder")
        return result.params, result.history

    def describe(self) -> dict:
        """The settings, JSON-ready, for ``info``."""
        return {"architecture": self.architecture, "hidden_sizes": list(self.hidden_sizes),
                "code_size": self.code_size,
                "train_config": dataclasses.asdict(self.train_config)}

    def fit(self, key, inputs, labels=None, *, progress: bool = True) -> AutoencoderFitted:
        """Trains the autoencoder on ``inputs [n, ...]`` (values in [0, 1]) and encodes them.

        ``labels`` are unused: the autoencoder is unsupervised.

        Raises:
            InvalidDataError: if inputs hold NaN/Inf or lie outside [0, 1].
        """
        del labels
        inputs = self.check_inputs(inputs)
        init_key, fit_key = jax.random.split(key)
        autoencoder = self.build(tuple(inputs.shape[1:]))
        params = autoencoder.init(init_key, inputs[:1])
        params, history = self.train_autoencoder(fit_key, autoencoder, params, inputs, progress)
        codes = encode(autoencoder, params, inputs)
        info = {**self.describe(), "code_shape": list(codes.shape[1:]),
                "reconstruction_loss": history["train_loss"]}
        return AutoencoderFitted(
            reformed_train=codes, encoder_params=params, autoencoder=autoencoder, info=info
        )
