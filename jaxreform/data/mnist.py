"""MNIST from the official IDX files, or from the small subset shipped with the package.

A data directory may hold the four official files directly or in a ``mnist/`` subfolder,
gzip-compressed (``train-images-idx3-ubyte.gz``) or not (``train-images-idx3-ubyte``, also the
common ``train-images.idx3-ubyte`` spelling). Without a data directory the embedded subset
(see ``embedded/mnist/README.md``) is used, and :attr:`Dataset.source` says so.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

import numpy as np

from jaxreform.data.core import Dataset, resolve_data_dir
from jaxreform.data.idx import read_idx
from jaxreform.errors import DataDirError, DataFileError

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)
EMBEDDED_SOURCE = "embedded MNIST subset shipped with jaxreform"

_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _find_file(folder: Path, stem: str) -> Path | None:
    dotted = stem.replace("-idx", ".idx")
    for name in (f"{stem}.gz", stem, f"{dotted}.gz", dotted):
        if (folder / name).is_file():
            return folder / name
    return None


def find_mnist_files(data_dir: str | os.PathLike) -> dict[str, Path]:
    """Locates the four MNIST files in ``data_dir`` or ``data_dir/mnist``.

    Raises:
        DataDirError: naming the folders searched and the files missing.
    """
    data_dir = Path(data_dir)
    candidates = [data_dir / "mnist", data_dir]
    for folder in candidates:
        found = {key: _find_file(folder, stem) for key, stem in _FILES.items()}
        if all(found.values()):
            return found
    best = max(candidates, key=lambda f: sum(_find_file(f, s) is not None for s in _FILES.values()))
    missing = [stem for stem in _FILES.values() if _find_file(best, stem) is None]
    raise DataDirError(
        f"MNIST not found in {str(data_dir)!r}: searched {[str(c) for c in candidates]}; "
        f"missing {', '.join(m + '[.gz]' for m in missing)}."
    )


def _load_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path, expected_ndim=3)
    labels = read_idx(labels_path, expected_ndim=1)
    if images.shape[1:] != IMAGE_SHAPE:
        raise DataFileError(
            images_path, f"images are {images.shape[1:]} pixels, MNIST's are {IMAGE_SHAPE}"
        )
    if images.shape[0] != labels.shape[0]:
        raise DataFileError(
            labels_path,
            f"holds {labels.shape[0]:,} labels but {images_path.name} holds "
            f"{images.shape[0]:,} images; the two files do not belong together",
        )
    if labels.size and labels.max() >= NUM_CLASSES:
        bad = int(np.argmax(labels >= NUM_CLASSES))
        raise DataFileError(
            labels_path, f"label {int(labels[bad])} at index {bad} is outside 0..{NUM_CLASSES - 1}"
        )
    inputs = (images.astype(np.float32) / 255.0)[..., None]
    return inputs, labels.astype(np.int32)


def load_mnist_files(files: dict[str, Path], source: str) -> Dataset:
    """Reads and validates the four files named by :func:`find_mnist_files`."""
    train_inputs, train_labels = _load_split(files["train_images"], files["train_labels"])
    test_inputs, test_labels = _load_split(files["test_images"], files["test_labels"])
    return Dataset(
        name="mnist",
        train_inputs=train_inputs, train_labels=train_labels,
        test_inputs=test_inputs, test_labels=test_labels,
        num_classes=NUM_CLASSES, source=source,
    )


def embedded_mnist_dir() -> Path:
    """Folder of the MNIST subset shipped inside the package."""
    return Path(str(importlib.resources.files("jaxreform.data") / "embedded" / "mnist"))


def load_embedded_mnist() -> Dataset:
    """The real MNIST subset shipped with the package (first 6,000 train / 1,000 test)."""
    return load_mnist_files(find_mnist_files(embedded_mnist_dir()), EMBEDDED_SOURCE)


def load_mnist(data_dir: str | os.PathLike | None = None) -> Dataset:
    """Loads MNIST as ``[n, 28, 28, 1]`` float32 images in [0, 1] and int32 labels.

    Args:
        data_dir: Folder holding the official files (or their ``mnist/`` subfolder). If None,
            ``$JAXREFORM_DATA_DIR`` is used; if that is unset too, the embedded subset.

    Returns:
        The dataset; ``source`` names the folder or the embedded subset.

    Raises:
        DataDirError: if the folder does not exist or lacks a file.
        DataFileError: if a file is truncated, corrupt or inconsistent (the message names it).
    """
    folder = resolve_data_dir(data_dir)
    if folder is None:
        return load_embedded_mnist()
    return load_mnist_files(find_mnist_files(folder), str(folder.resolve()))
