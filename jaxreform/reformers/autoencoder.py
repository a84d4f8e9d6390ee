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


RECONSTRUCTIONS = ("auto", "bce", "mse")


def example_reconstruction_loss(kind: str):
    """Returns ``loss(outputs [b, ...], inputs [b, ...]) -> [b]``, each example's mean over
    its coordinates.

    ``"bce"``: sigmoid cross-entropy of decoder logits against data in [0, 1] (images);
    ``"mse"``: squared error of the decoder's output (standardised tabular data).
    """
    _validate.check_choice("reconstruction", kind, RECONSTRUCTIONS[1:])

    def loss(outputs, inputs):
        if kind == "bce":
            per_coordinate = optax.sigmoid_binary_cross_entropy(outputs, inputs)
        else:
            per_coordinate = jnp.square(outputs - inputs)
        return per_coordinate.reshape(per_coordinate.shape[0], -1).mean(axis=1)

    return loss


def reconstruction_loss(autoencoder: Any, kind: str = "bce"):
    """Returns ``loss(params, (x [b, ...],)) -> []``: the batch mean of
    :func:`example_reconstruction_loss`."""
    per_example = example_reconstruction_loss(kind)

    def loss(params, batch):
        (inputs,) = batch
        return per_example(autoencoder.apply(params, inputs), inputs).mean()

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
        reconstruction: ``"bce"`` for data in [0, 1] (sigmoid code), ``"mse"`` for
            standardised data (dense only, linear code), ``"auto"``: bce for images
            (``[n, H, W, C]``, which must then lie in [0, 1]), mse for feature vectors
            (``[n, d]``).
    """

    name: str = dataclasses.field(default="autoencoder", init=False)
    architecture: str = "dense"
    hidden_sizes: tuple[int, ...] = (512,)
    code_size: int | None = None
    train_config: train.TrainConfig = train.TrainConfig(epochs=5, batch_size=128)
    reconstruction: str = "auto"

    def __post_init__(self):
        _validate.check_choice("autoencoder architecture", self.architecture, models.AUTOENCODERS)
        widths = {f"hidden_sizes[{i}]": w for i, w in enumerate(self.hidden_sizes)}
        _validate.check_integers(**widths)
        _validate.check_positive(**widths)
        if self.code_size is not None and self.architecture != "dense":
            raise ConfigError("code_size applies to the dense autoencoder only.")
        _validate.check_choice("reconstruction", self.reconstruction, RECONSTRUCTIONS)
        if self.reconstruction == "mse" and self.architecture != "dense":
            raise ConfigError("reconstruction='mse' (standardised data) needs the dense "
                              "autoencoder.")

    def build(self, input_shape: tuple[int, ...], kind: str = "bce"):
        """The Flax autoencoder for inputs of shape ``input_shape`` and reconstruction
        ``kind`` (``"bce"`` or ``"mse"``)."""
        if self.architecture == "dense":
            return models.DenseAutoencoder(
                input_shape=input_shape, hidden_sizes=self.hidden_sizes, code_size=self.code_size,
                bounded_code=kind == "bce")
        return models.ConvAutoencoder(input_shape=input_shape, features=self.hidden_sizes)

    def check_inputs(self, inputs) -> tuple[jax.Array, str]:
        """``inputs`` as float32 ``[n, ...]`` and the reconstruction kind to use.

        Raises:
            InvalidDataError: if inputs are empty or hold NaN/Inf, or lie outside [0, 1]
                with ``reconstruction="bce"`` or the conv architecture.
        """
        inputs = jnp.asarray(inputs, jnp.float32)
        if inputs.ndim < 2 or inputs.shape[0] == 0:
            raise InvalidDataError(
                f"autoencoder inputs must have shape [n, ...] with n >= 1, got {inputs.shape}.")
        _validate.check_finite("autoencoder inputs", inputs)
        low, high = float(jnp.min(inputs)), float(jnp.max(inputs))
        in_unit_range = low >= 0.0 and high <= 1.0
        kind = self.reconstruction
        if kind == "auto":
            kind = "mse" if inputs.ndim == 2 and self.architecture == "dense" else "bce"
        if kind == "bce" and not in_unit_range:
            raise InvalidDataError(
                f"autoencoder inputs must lie in [0, 1] (scaled intensities) for the {kind} "
                f"reconstruction of the {self.architecture} autoencoder, got [{low}, {high}]; "
                "standardised tabular data needs the dense autoencoder with "
                "reconstruction='mse' (or 'auto').")
        return inputs, kind

    def train_autoencoder(self, key, autoencoder, params, inputs, kind: str, progress: bool):
        """Non-private training; returns ``(params, history)``."""
        result = train.fit(key, reconstruction_loss(autoencoder, kind), params, (inputs,),
                           self.train_config, progress=progress, description="autoencoder")
        return result.params, result.history

    def describe(self) -> dict:
        """The settings, JSON-ready, for ``info``."""
        return {"architecture": self.architecture, "hidden_sizes": list(self.hidden_sizes),
                "code_size": self.code_size, "reconstruction": self.reconstruction,
                "train_config": dataclasses.asdict(self.train_config)}

    def fit(self, key, inputs, labels=None, *, progress: bool = True) -> AutoencoderFitted:
        """Trains the autoencoder on ``inputs [n, ...]`` (values in [0, 1]) and encodes them.

        ``labels`` are unused: the autoencoder is unsupervised.

        Raises:
            InvalidDataError: if inputs hold NaN/Inf or lie outside [0, 1].
        """
        del labels
        inputs, kind = self.check_inputs(inputs)
        init_key, fit_key = jax.random.split(key)
        autoencoder = self.build(tuple(inputs.shape[1:]), kind)
        params = autoencoder.init(init_key, inputs[:1])
        params, history = self.train_autoencoder(fit_key, autoencoder, params, inputs, kind,
                                                 progress)
        codes = encode(autoencoder, params, inputs)
        info = {**self.describe(), "reconstruction_used": kind,
                "code_shape": list(codes.shape[1:]),
                "reconstruction_loss": history["train_loss"]}
        return AutoencoderFitted(
            reformed_train=codes, encoder_params=params, autoencoder=autoencoder, info=info
        )
