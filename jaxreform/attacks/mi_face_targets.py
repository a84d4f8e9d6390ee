"""The target models that MI-FACE is run against (Fredrikson et al. 2015, section 5).

* ``"softmax"``: softmax regression on the raw pixels
  (:class:`jaxreform.models.SoftmaxRegression`), started from zero weights;
* ``"mlp"``: one hidden layer of 3000 sigmoid units, then a softmax
  (:class:`jaxreform.models.MLP` with ``activation=nn.sigmoid``);
* ``"dae"``: a stacked denoising autoencoder (sigmoid layers of 1000 then 300 units) with a
  softmax on the 300-unit code (:class:`CodeClassifier`).

All return logits. :func:`search_space` says where MI-FACE searches each target: in pixel
space for softmax and the MLP (Process clips to [0, 1]); in the 300-dimensional code space
for the DAE, as the paper does, with a Process that decodes the code to an image, denoises
it, sharpens it and re-encodes it.

Where this differs from the paper, and why:

* the DAE is pre-trained end to end on masking noise (30% of pixels zeroed per corrupted
  copy) rather than layer by layer; fine-tuning then trains encoder, head and decoder on
  cross-entropy plus the reconstruction loss, so that the decoder Process uses still
  inverts the encoder the target reads (a softmax head on the frozen codes reached 30% test
  error in a trial here; the fine-tuned network 11.7% in ``results/mi_face_att/``);
* the paper's Process-DAE denoises with non-local means and then sharpens. Non-local means
  has no cheap jit-able form, so the denoiser here is a Gaussian blur (sigma
  :data:`DENOISE_SIGMA`) and the sharpener an unsharp mask (sigma :data:`SHARPEN_SIGMA`,
  amount :data:`SHARPEN_AMOUNT`), both separable matrix products so that the per-step cost
  stays in matmuls.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxreform import _validate, models, train
from jaxreform.attacks import mi_face
from jaxreform.data.core import Dataset
from jaxreform.errors import ConfigError

TARGET_KINDS = ("softmax", "mlp", "dae")
MLP_HIDDEN_UNITS = 3000
DAE_HIDDEN_UNITS = 1000
DAE_CODE_SIZE = 300
DAE_MASKING = 0.3
DAE_NOISY_COPIES = 10
DAE_PROCESSES = ("paper", "clip")
DENOISE_SIGMA = 1.0
SHARPEN_SIGMA = 2.0
SHARPEN_AMOUNT = 1.0

# Settings that fit both targets on the 280 AT&T training faces (7 per person) to zero
# training error; measured test errors are in the experiment driver's report.
DEFAULT_TRAIN_CONFIGS = {
    "softmax": train.TrainConfig(epochs=100, batch_size=40, learning_rate=1e-3),
    "mlp": train.TrainConfig(epochs=100, batch_size=40, learning_rate=1e-3),
    "dae": train.TrainConfig(epochs=100, batch_size=40, learning_rate=1e-3),
}
# The DAE's pre-training, on DAE_NOISY_COPIES masked copies of each training face.
DAE_AUTOENCODER_CONFIG = train.TrainConfig(epochs=30, batch_size=40, learning_rate=1e-3)


class CodeClassifier(nn.Module):
    """The paper's DAE target: a softmax on the code of a stacked denoising autoencoder.

    ``__call__``: images ``[b, *input_shape]`` -> ``[b, k]`` logits of the head on the code.
    ``encode`` / ``decode`` / ``code_logits`` expose the parts MI-FACE's code-space search
    needs (call them with ``method=``).

    Attributes:
        input_shape: Shape of one image, e.g. ``(112, 92, 1)``.
        num_classes: Output classes k.
        hidden_units: Width of the first sigmoid layer (the paper's 1000).
        code_size: Width of the sigmoid code (the paper's 300).
    """

    input_shape: tuple[int, ...]
    num_classes: int
    hidden_units: int = DAE_HIDDEN_UNITS
    code_size: int = DAE_CODE_SIZE

    def setup(self):
        self.autoencoder = models.DenseAutoencoder(
            input_shape=self.input_shape, hidden_sizes=(self.hidden_units,),
            code_size=self.code_size, activation=nn.sigmoid)
        self.head = models.SoftmaxRegression(num_classes=self.num_classes)

    def encode(self, images: jax.Array) -> jax.Array:
        """``[b, *input_shape] -> [b, code_size]`` codes in (0, 1)."""
        return self.autoencoder.encode(images)

    def decode(self, codes: jax.Array) -> jax.Array:
        """``[b, code_size] -> [b, *input_shape]`` images in (0, 1)."""
        return nn.sigmoid(self.autoencoder.decode(codes))

    def reconstruction_logits(self, images: jax.Array) -> jax.Array:
        """``[b, *input_shape]`` -> pixel logits of the reconstruction (for training)."""
        return self.autoencoder(images)

    def code_logits(self, codes: jax.Array) -> jax.Array:
        """``[b, code_size] -> [b, k]`` class logits read off the codes."""
        return self.head(codes)

    def __call__(self, images: jax.Array) -> jax.Array:
        return self.code_logits(self.encode(images))

    def both_outputs(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(class logits, reconstruction logits); ``init`` with it to create every
        parameter."""
        return self(images), self.reconstruction_logits(images)


def gaussian_blur_matrix(size: int, sigma: float) -> jax.Array:
    """``[size, size]`` row-normalised Gaussian smoothing along one image axis (edges keep
    their mass: each row sums to 1)."""
    positions = jnp.arange(size, dtype=jnp.float32)
    weights = jnp.exp(-0.5 * ((positions[:, None] - positions[None, :]) / sigma) ** 2)
    return weights / weights.sum(axis=1, keepdims=True)


def blur(image: jax.Array, sigma: float) -> jax.Array:
    """Separable Gaussian blur of one ``[H, W, C]`` image, as two matrix products."""
    height, width = image.shape[:2]
    rows = gaussian_blur_matrix(height, sigma)
    cols = gaussian_blur_matrix(width, sigma)
    return jnp.einsum("hi,iwc,jw->hjc", rows, image, cols)


def denoise_and_sharpen(image: jax.Array) -> jax.Array:
    """The image step of Process-DAE on one ``[H, W, C]`` image: a Gaussian blur (the
    denoiser), then an unsharp mask (the sharpener), clipped to [0, 1]."""
    smooth = blur(image, DENOISE_SIGMA)
    sharp = smooth + SHARPEN_AMOUNT * (smooth - blur(smooth, SHARPEN_SIGMA))
    return jnp.clip(sharp, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Where MI-FACE searches a target, and how a found point becomes an image.

    Attributes:
        predict_fn: ``(params, z [b, *shape]) -> [b, k]`` logits.
        shape: Shape of one search point (the image, or the DAE's code).
        process_with_params: ``(params, z [*shape]) -> [*shape]``, MI-FACE's Process.
        to_images: ``(params, z [L, *shape]) -> [L, *image_shape]`` images in [0, 1].
    """

    predict_fn: Callable
    shape: tuple[int, ...]
    process_with_params: Callable
    to_images: Callable


def _pixel_process(params, x):
    del params
    return mi_face.clip_to_unit_interval(x)


def _pixel_images(params, x):
    del params
    return np.asarray(x)


@dataclasses.dataclass(frozen=True)
class FaceTarget:
    """A trained target model.

    Attributes:
        kind: ``"softmax"``, ``"mlp"`` or ``"dae"``.
        module: The flax module; ``module.apply(params, x [b, *input_shape]) -> [b, k]``
            logits.
        params: Its trained parameters.
        train_error: Error rate on the training images.
        test_error: Error rate on the held-out test images.
        seconds: Training wall time.
        input_shape: Shape of one image.
        extra: Kind-specific facts (the DAE's reconstruction error).
    """

    kind: str
    module: nn.Module
    params: dict
    train_error: float
    test_error: float
    seconds: float
    input_shape: tuple[int, ...] = ()
    extra: dict = dataclasses.field(default_factory=dict)

    def search_space(self, dae_process: str = "paper") -> SearchSpace:
        """Pixel space for softmax and the MLP; the code space for the DAE.

        Args:
            dae_process: The DAE's Process: ``"paper"`` (decode, denoise, sharpen,
                re-encode) or ``"clip"`` (only keep the code in [0, 1], as the sigmoid code
                layer does), a control that shows what the paper's Process costs the search.
        """
        _validate.check_choice("DAE process", dae_process, DAE_PROCESSES)
        if self.kind != "dae":
            return SearchSpace(predict_fn=self.module.apply, shape=self.input_shape,
                               process_with_params=_pixel_process, to_images=_pixel_images)
        module = self.module

        def paper_process(params, code):
            image = module.apply(params, code[None], method="decode")[0]
            return module.apply(params, denoise_and_sharpen(image)[None], method="encode")[0]

        def to_images(params, codes):
            return np.asarray(module.apply(params, jnp.asarray(codes), method="decode"))

        return SearchSpace(
            predict_fn=functools.partial(module.apply, method="code_logits"),
            shape=(module.code_size,),
            process_with_params=paper_process if dae_process == "paper" else _pixel_process,
            to_images=to_images)


def make_target_module(kind: str, num_classes: int, *, hidden_units: int = MLP_HIDDEN_UNITS,
                       input_shape: tuple[int, ...] | None = None) -> nn.Module:
    """The untrained flax module of target ``kind``.

    Args:
        kind: ``"softmax"``, ``"mlp"`` or ``"dae"``.
        num_classes: Output classes k.
        hidden_units: Width of the MLP's hidden layer.
        input_shape: Shape of one image (needed by the DAE, whose decoder rebuilds images).

    Raises:
        ConfigError: for an unknown kind or a bad size.
    """
    _validate.check_choice("target", kind, TARGET_KINDS)
    _validate.check_integers(num_classes=num_classes, hidden_units=hidden_units)
    _validate.check_positive(num_classes=num_classes, hidden_units=hidden_units)
    if kind == "softmax":
        return models.SoftmaxRegression(num_classes=num_classes)
    if kind == "dae":
        if input_shape is None:
            raise ConfigError("the DAE target needs input_shape (its decoder rebuilds images).")
        return CodeClassifier(input_shape=tuple(input_shape), num_classes=num_classes)
    return models.MLP(num_classes=num_classes, hidden_sizes=(hidden_units,),
                      activation=nn.sigmoid)


def _masked_copies(key, images, copies: int, masking: float):
    """``(noisy, clean)``, each ``[copies * n, ...]``: every image repeated ``copies`` times,
    the noisy copy with a random ``masking`` share of its pixels set to zero."""
    clean = jnp.tile(images, (copies,) + (1,) * (images.ndim - 1))
    keep = jax.random.bernoulli(key, 1.0 - masking, clean.shape)
    return clean * keep, clean


def _train_dae(key, module: CodeClassifier, images, labels, config: train.TrainConfig,
               autoencoder_config: train.TrainConfig, progress: bool):
    """Pre-trains the denoising autoencoder on masked copies, then fine-tunes encoder, head
    and decoder together on cross-entropy plus the clean reconstruction loss (which keeps the
    decoder an inverse of the fine-tuned encoder, as Process-DAE needs). Returns (params,
    mean squared reconstruction error on the clean images)."""
    init_key, noise_key, ae_key, tune_key = jax.random.split(key, 4)
    params = module.init(init_key, images[:1], method="both_outputs")

    def reconstruction_loss(p, inputs, clean):
        logits = module.apply(p, inputs, method="reconstruction_logits")
        return optax.sigmoid_binary_cross_entropy(logits, clean).mean()

    params = train.fit(ae_key, lambda p, batch: reconstruction_loss(p, *batch), params,
                       _masked_copies(noise_key, images, DAE_NOISY_COPIES, DAE_MASKING),
                       autoencoder_config, progress=progress,
                       description="MI-FACE target dae (pre-training)").params
    classification_loss = train.cross_entropy_loss(module.apply, l2_penalty=config.l2_penalty)

    def fine_tuning_loss(p, batch):
        return classification_loss(p, batch) + reconstruction_loss(p, batch[0], batch[0])

    params = train.fit(tune_key, fine_tuning_loss, params, (images, labels), config,
                       progress=progress, description="MI-FACE target dae (fine-tuning)").params
    rebuilt = module.apply(params, module.apply(params, images, method="encode"),
                           method="decode")
    return params, float(jnp.mean((rebuilt - images) ** 2))


def train_target(
    kind: str,
    dataset: Dataset,
    *,
    key: jax.Array,
    config: train.TrainConfig | None = None,
    hidden_units: int = MLP_HIDDEN_UNITS,
    zero_init: bool | None = None,
    autoencoder_config: train.TrainConfig | None = None,
    progress: bool = False,
) -> FaceTarget:
    """Trains target ``kind`` on ``dataset``'s training split and measures its error rates.

    Args:
        kind: ``"softmax"``, ``"mlp"`` or ``"dae"``.
        dataset: Images ``[n, H, W, C]`` and labels; the test split is only evaluated.
        key: Splits into the initialisation and shuffling keys.
        config: Training settings of the classifier (for the DAE: of its fine-tuning);
            None for ``DEFAULT_TRAIN_CONFIGS[kind]``.
        hidden_units: Width of the MLP's hidden layer (the paper's 3000).
        zero_init: Start from all-zero parameters; None means yes for softmax, no for the
            MLP (whose hidden units need a random start to differ). Softmax regression is
            convex, so zero is a valid start, and it matters for the attack: with a random
            start, the part of each weight vector orthogonal to the 280 training images gets
            no gradient and stays as the initial noise, which then covers every
            reconstruction. (Adam's per-coordinate scaling can still leave the span, a little.)
            Not used by the DAE.
        autoencoder_config: The DAE's autoencoder training (on ``DAE_NOISY_COPIES`` masked
            copies of each image); None for ``DAE_AUTOENCODER_CONFIG``.
        progress: Show a progress bar over epochs.

    Returns:
        The trained target with its train and test error rates (and, for the DAE, the mean
        squared error of its reconstructions of the training images in ``extra``).
    """
    module = make_target_module(kind, dataset.num_classes, hidden_units=hidden_units,
                                input_shape=dataset.input_shape)
    config = config or DEFAULT_TRAIN_CONFIGS[kind]
    init_key, fit_key = jax.random.split(key)
    x = jnp.asarray(dataset.train_inputs)
    y = jnp.asarray(dataset.train_labels)
    start = time.perf_counter()
    extra = {}
    if kind == "dae":
        params, mse = _train_dae(fit_key, module, x, y, config,
                                 autoencoder_config or DAE_AUTOENCODER_CONFIG, progress)
        extra["reconstruction_mse"] = mse
    else:
        params = module.init(init_key, x[:1])
        if kind == "softmax" if zero_init is None else zero_init:
            params = jax.tree.map(jnp.zeros_like, params)
        params = train.fit(fit_key, train.cross_entropy_loss(module.apply,
                                                             l2_penalty=config.l2_penalty),
                           params, (x, y), config, progress=progress,
                           description=f"MI-FACE target {kind}").params
    params = jax.block_until_ready(params)
    seconds = time.perf_counter() - start
    train_accuracy = train.accuracy(module.apply, params, x, y)
    test_accuracy = train.accuracy(module.apply, params, jnp.asarray(dataset.test_inputs),
                                   jnp.asarray(dataset.test_labels))
    return FaceTarget(kind=kind, module=module, params=params, train_error=1.0 - train_accuracy,
                      test_error=1.0 - test_accuracy, seconds=seconds,
                      input_shape=tuple(dataset.input_shape), extra=extra)
