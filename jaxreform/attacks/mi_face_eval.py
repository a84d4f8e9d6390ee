"""Automated success measures for model inversion, replacing the paper's crowd workers.

Fredrikson et al. (CCS 2015) showed each reconstruction to people beside five faces and asked
which person it was. Here an *evaluator* plays that part. It must not be the target, and it
must not have seen the target's training images, or it would reward templates of the target's
weights instead of faces. It is nearest neighbour in an eigenface space:

* :func:`fit_face_evaluator` fits PCA (``num_components`` eigenfaces) on images the target
  never saw (e.g. the target's held-out test split) and stores each person's centroid of
  those images in that space;
* **identification rate**: the fraction of reconstructions whose nearest centroid is the
  person they were inverted for (chance 1/k);
* **five-face lineup accuracy**: for each reconstruction, ``num_lineups`` lineups of the true
  person and ``lineup_size - 1`` others drawn at random, each shown as one random real image
  from the *gallery* (the target's training images, as in the paper); the evaluator picks the
  face nearest to the reconstruction (chance ``1 / lineup_size``; ties share the credit);
* **MSE** and **SSIM** to the person's mean gallery image (SSIM: Wang et al. 2004, Gaussian
  window of 11 taps, sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1, averaged over the
  window positions that fit inside the image).

Distances are Euclidean and not normalised: a faint image is far from every face, as it
would be to a person. That is deliberate: cosine similarity to class means identifies even a
one-step gradient template of a linear model, which a person would see as a black image.

Calibration (:func:`calibration_images`) gives the same measures for reference images: each
person's mean gallery image (upper bound), a blank image, uniform noise and the mean face of
everyone (chance); the driver adds a single gradient step of the attack.

Shapes: L reconstructions; n images; D pixels per image; p components; k people.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxreform import _validate
from jaxreform.errors import ConfigError, InvalidDataError

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


@dataclasses.dataclass(frozen=True)
class FaceEvaluator:
    """An eigenface nearest-centroid classifier (see the module docstring).

    Attributes:
        mean: ``[D]`` mean of the images it was fitted on.
        components: ``[D, p]`` orthonormal eigenfaces.
        centroids: ``[k, p]`` each person's mean feature vector.
        image_shape: Shape of one image.
    """

    mean: np.ndarray
    components: np.ndarray
    centroids: np.ndarray
    image_shape: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        """k, the number of people it knows."""
        return int(self.centroids.shape[0])

    def features(self, images) -> np.ndarray:
        """``[n, *image_shape] -> [n, p]`` coordinates in the eigenface space.

        Raises:
            InvalidDataError: if the images have another shape than the evaluator's.
        """
        images = _check_images("images", images, self.image_shape)
        flat = images.reshape(images.shape[0], -1) - self.mean
        return flat @ self.components

    def identify(self, images) -> np.ndarray:
        """``[n, *image_shape] -> [n]`` int, the person whose centroid is nearest."""
        features = self.features(images)
        distances = ((features[:, None, :] - self.centroids[None]) ** 2).sum(-1)
        return np.argmin(distances, axis=1).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class InversionScores:
    """Success measures of L reconstructions (means, and per label).

    Attributes:
        identification_rate: Fraction identified as the right person.
        lineup_accuracy: Mean fraction of lineups answered correctly.
        mse: Mean squared error to the person's mean image, averaged over labels.
        ssim: SSIM to the person's mean image, averaged over labels.
        identified: ``[L]`` the person the evaluator assigned to each reconstruction.
        lineup_per_label: ``[L]`` lineup accuracy of each reconstruction.
        mse_per_label: ``[L]``.
        ssim_per_label: ``[L]``.
    """

    identification_rate: float
    lineup_accuracy: float
    mse: float
    ssim: float
    identified: np.ndarray
    lineup_per_label: np.ndarray
    mse_per_label: np.ndarray
    ssim_per_label: np.ndarray

    def summary(self) -> dict[str, float]:
        """The four means as plain floats."""
        return {"identification_rate": self.identification_rate,
                "lineup_accuracy": self.lineup_accuracy, "mse": self.mse, "ssim": self.ssim}


def _check_images(name: str, images, image_shape: tuple[int, ...] | None = None) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    if images.ndim < 2 or images.shape[0] == 0:
        raise InvalidDataError(f"{name} must have shape [n, ...] with n >= 1, got "
                               f"{images.shape}.")
    if image_shape is not None and tuple(images.shape[1:]) != tuple(image_shape):
        raise InvalidDataError(f"{name} are images of shape {tuple(images.shape[1:])}, but "
                               f"the evaluator works on {tuple(image_shape)}.")
    _validate.check_finite(name, images)
    return images


def fit_face_evaluator(images, labels, *, num_classes: int, num_components: int = 40
                       ) -> FaceEvaluator:
    """Fits the eigenface evaluator on images the target never saw.

    Args:
        images: ``[n, *image_shape]`` float images (e.g. the target's test split).
        labels: ``[n]`` int person of each image; every person in [0, num_classes) must occur.
        num_classes: k.
        num_components: p, eigenfaces kept (at most n - 1).

    Returns:
        The fitted evaluator.

    Raises:
        InvalidDataError: for bad shapes, non-finite images or a person without images.
        ConfigError: if ``num_components`` is not in [1, n - 1].
    """
    images = _check_images("evaluator images", images)
    labels = np.asarray(labels)
    _validate.check_examples("evaluator images", images, "evaluator labels", labels,
                             num_classes=num_classes)
    _validate.check_integers(num_components=num_components)
    n = images.shape[0]
    if not 1 <= num_components <= n - 1:
        raise ConfigError(f"num_components must lie in [1, {n - 1}] for {n} images, got "
                          f"num_components={num_components}.")
    counts = np.bincount(labels, minlength=num_classes)
    if (counts == 0).any():
        raise InvalidDataError(f"the evaluator needs images of every person; none for "
                               f"{np.flatnonzero(counts == 0).tolist()}.")
    flat = images.reshape(n, -1).astype(np.float64)
    mean = flat.mean(axis=0)
    _, _, vt = np.linalg.svd(flat - mean, full_matrices=False)
    components = vt[:num_components].T
    features = (flat - mean) @ components
    centroids = np.stack([features[labels == c].mean(axis=0) for c in range(num_classes)])
    return FaceEvaluator(mean=mean.astype(np.float32), components=components.astype(np.float32),
                         centroids=centroids.astype(np.float32),
                         image_shape=tuple(images.shape[1:]))


def _gaussian_window(size: int, sigma: float) -> jax.Array:
    offsets = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2
    weights = jnp.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum()


def _filter_valid(image: jax.Array, window: jax.Array) -> jax.Array:
    """Separable 2-D filtering of ``[H, W]`` with ``window [w]``, 'valid' region only."""
    rows = jax.vmap(lambda r: jnp.convolve(r, window, mode="valid"))(image)
    return jax.vmap(lambda c: jnp.convolve(c, window, mode="valid"), in_axes=1, out_axes=1)(rows)


@functools.partial(jax.jit, static_argnames=("data_range",))
def ssim(a: jax.Array, b: jax.Array, data_range: float = 1.0) -> jax.Array:
    """Structural similarity of two images (Wang, Bovik, Sheikh, Simoncelli 2004).

    Local means, variances and covariance come from an 11-tap Gaussian window (sigma 1.5),
    with population (not sample) statistics; the SSIM map is averaged over the positions
    where the window fits inside the image, and over channels.

    Args:
        a: ``[H, W]`` or ``[H, W, C]`` image, H and W >= 11.
        b: Same shape as ``a``.
        data_range: Largest minus smallest possible pixel value (1 for [0, 1] images).

    Returns:
        ``[]`` SSIM in [-1, 1]; 1 exactly when ``a == b``.
    """
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    window = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2

    def one_channel(x, y):
        blur = functools.partial(_filter_valid, window=window)
        mu_x, mu_y = blur(x), blur(y)
        # (Co)variances do not change when each image is shifted by a constant; centring
        # first keeps E[x²] - E[x]² from cancelling catastrophically in float32.
        xc, yc = x - x.mean(), y - y.mean()
        mu_xc, mu_yc = blur(xc), blur(yc)
        var_x = blur(xc * xc) - mu_xc**2
        var_y = blur(yc * yc) - mu_yc**2
        cov = blur(xc * yc) - mu_xc * mu_yc
        numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
        denominator = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
        return jnp.mean(numerator / denominator)

    return jnp.mean(jax.vmap(one_channel, in_axes=(2, 2))(a, b))


def _group_by_person(features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``[n, p], [n] -> [k, m, p]``: the m images of each person (m must be equal)."""
    counts = np.bincount(labels, minlength=num_classes)
    if counts.min() == 0 or counts.min() != counts.max():
        raise InvalidDataError(f"the gallery needs the same number (>= 1) of images of every "
                               f"person; counts range from {counts.min()} to {counts.max()}.")
    order = np.argsort(labels, kind="stable")
    return features[order].reshape(num_classes, int(counts[0]), -1)


@functools.partial(jax.jit, static_argnames=("num_lineups", "lineup_size"))
def lineup_accuracies(
    key: jax.Array, query: jax.Array, labels: jax.Array, gallery: jax.Array, *,
    num_lineups: int, lineup_size: int,
) -> jax.Array:
    """Nearest-face lineups, all at once.

    Args:
        key: Draws the other people and which image of each is shown.
        query: ``[L, p]`` features of the reconstructions.
        labels: ``[L]`` the true person of each.
        gallery: ``[k, m, p]`` features of m real images per person.
        num_lineups: R lineups per reconstruction.
        lineup_size: People per lineup (the true one and ``lineup_size - 1`` others).

    Returns:
        ``[L]`` fraction of the R lineups in which the true person's face is the nearest
        (a tie for nearest gives each tied face an equal share).
    """
    num_people, per_person = gallery.shape[:2]
    num_labels = query.shape[0]
    others_key, image_key = jax.random.split(key)
    scores = jax.random.uniform(others_key, (num_labels, num_lineups, num_people))
    scores = jnp.where(jax.nn.one_hot(labels, num_people, dtype=bool)[:, None, :], jnp.inf,
                       scores)
    others = jnp.argsort(scores, axis=-1)[..., : lineup_size - 1]
    truth = jnp.broadcast_to(labels[:, None, None], (num_labels, num_lineups, 1))
    people = jnp.concatenate([truth, others], axis=-1)  # [L, R, size], truth first
    shown = jax.random.randint(image_key, people.shape, 0, per_person)
    faces = gallery[people, shown]  # [L, R, size, p]
    distances = jnp.sum((faces - query[:, None, None, :]) ** 2, axis=-1)
    nearest = distances == distances.min(axis=-1, keepdims=True)
    credit = nearest[..., 0] / nearest.sum(axis=-1)
    return credit.mean(axis=1)


def score_reconstructions(
    evaluator: FaceEvaluator,
    images,
    labels,
    *,
    gallery_images,
    gallery_labels,
    key: jax.Array,
    num_lineups: int = 200,
    lineup_size: int = 5,
) -> InversionScores:
    """Scores reconstructions by identification, lineups, MSE and SSIM.

    Args:
        evaluator: From :func:`fit_face_evaluator`, fitted on images the target never saw.
        images: ``[L, *image_shape]`` one reconstruction per label.
        labels: ``[L]`` the person each was inverted for.
        gallery_images: ``[n, *image_shape]`` real images shown in lineups and averaged into
            each person's mean image (the target's training images); an equal number per
            person.
        gallery_labels: ``[n]``.
        key: Drives the lineups; the same key gives the same lineups.
        num_lineups: Lineups per reconstruction.
        lineup_size: Faces per lineup (the paper's 5).

    Returns:
        The means and per-label values of the four measures.

    Raises:
        InvalidDataError: for images of the wrong shape, NaN, labels out of range, or a
            gallery with unequal counts per person.
        ConfigError: for ``num_lineups < 1`` or a lineup size outside [2, k].
    """
    images = _check_images("reconstructions", images, evaluator.image_shape)
    labels = np.asarray(labels)
    k = evaluator.num_classes
    _validate.check_examples("reconstructions", images, "labels", labels, num_classes=k)
    gallery_images = _check_images("gallery images", gallery_images, evaluator.image_shape)
    gallery_labels = np.asarray(gallery_labels)
    _validate.check_examples("gallery images", gallery_images, "gallery labels",
                             gallery_labels, num_classes=k)
    _validate.check_integers(num_lineups=num_lineups, lineup_size=lineup_size)
    _validate.check_positive(num_lineups=num_lineups)
    if not 2 <= lineup_size <= k:
        raise ConfigError(f"lineup_size must lie in [2, {k}], got lineup_size={lineup_size}.")

    # Identification and lineups in the evaluator's feature space.
    identified = evaluator.identify(images)
    gallery = _group_by_person(evaluator.features(gallery_images), gallery_labels, k)
    lineups = np.asarray(lineup_accuracies(
        key, jnp.asarray(evaluator.features(images)), jnp.asarray(labels), jnp.asarray(gallery),
        num_lineups=num_lineups, lineup_size=lineup_size))

    # Pixel measures against each person's mean gallery image.
    means = person_mean_images(gallery_images, gallery_labels, k)[labels]
    mse = ((images - means) ** 2).reshape(len(labels), -1).mean(axis=1)
    ssims = np.asarray(jax.vmap(ssim)(jnp.asarray(images), jnp.asarray(means)))
    return InversionScores(
        identification_rate=float(np.mean(identified == labels)),
        lineup_accuracy=float(lineups.mean()), mse=float(mse.mean()),
        ssim=float(ssims.mean()), identified=identified, lineup_per_label=lineups,
        mse_per_label=mse, ssim_per_label=ssims,
    )


def person_mean_images(images, labels, num_classes: int) -> np.ndarray:
    """``[n, *image_shape], [n] -> [k, *image_shape]``: each person's mean image."""
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels)
    return np.stack([images[labels == c].mean(axis=0) for c in range(num_classes)])


def calibration_images(gallery_images, gallery_labels, labels, *, num_classes: int,
                       key: jax.Array) -> dict[str, np.ndarray]:
    """Reference "reconstructions" to print beside every result.

    Args:
        gallery_images: ``[n, *image_shape]`` the target's training images.
        gallery_labels: ``[n]``.
        labels: ``[L]`` the labels being inverted.
        num_classes: k.
        key: Draws the noise.

    Returns:
        ``{name: [L, *image_shape]}`` for ``"person's mean image"`` (upper bound),
        ``"blank image"``, ``"uniform noise"`` and ``"mean face of everyone"`` (chance).
    """
    labels = np.asarray(labels)
    gallery_images = np.asarray(gallery_images, np.float32)
    shape = (len(labels), *gallery_images.shape[1:])
    means = person_mean_images(gallery_images, gallery_labels, num_classes)
    everyone = np.broadcast_to(means.mean(axis=0), shape)
    return {
        "person's mean image": means[labels],
        "blank image": np.zeros(shape, np.float32),
        "uniform noise": np.asarray(jax.random.uniform(key, shape), np.float32),
        "mean face of everyone": np.ascontiguousarray(everyone),
    }


def match_contrast(images, reference_images) -> np.ndarray:
    """Rescales each image to the reference's mean brightness and contrast ("auto-contrast").

    MI-FACE reconstructions are often faint (pixels near 0): a viewer that stretches contrast
    on display, as many do by default, sees more than the raw pixels show. Scoring both the
    raw and the matched images separates "is there a face pattern" from "does it look like a
    photograph". Each image becomes ``(x - mean(x)) / std(x) * s + m``, where m and s are the
    mean and the average per-image standard deviation of ``reference_images``, clipped to
    [0, 1]; a flat image (std 0) becomes the flat image m.

    Args:
        images: ``[n, ...]`` float images.
        reference_images: ``[r, ...]`` real images (e.g. the gallery).

    Returns:
        ``[n, ...]`` float32, values in [0, 1].
    """
    images = np.asarray(images, np.float32)
    reference = np.asarray(reference_images, np.float32)
    flat = images.reshape(images.shape[0], -1)
    ref_flat = reference.reshape(reference.shape[0], -1)
    target_mean, target_std = ref_flat.mean(), ref_flat.std(axis=1).mean()
    std = flat.std(axis=1, keepdims=True)
    scale = np.divide(target_std, std, out=np.zeros_like(std), where=std > 0)
    matched = (flat - flat.mean(axis=1, keepdims=True)) * scale + target_mean
    return np.clip(matched, 0.0, 1.0).reshape(images.shape)


def evaluator_accuracy(evaluator: FaceEvaluator, images, labels) -> float:
    """Fraction of real ``images [n, *image_shape]`` the evaluator assigns to ``labels [n]``:
    a sanity check on faces it did not see (e.g. the target's training images)."""
    return float(np.mean(evaluator.identify(images) == np.asarray(labels)))


__all__ = [
    "FaceEvaluator", "InversionScores", "calibration_images", "evaluator_accuracy",
    "fit_face_evaluator", "lineup_accuracies", "match_contrast", "person_mean_images",
    "score_reconstructions",
    "ssim",
]
