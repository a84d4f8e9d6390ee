"""The in-memory dataset type shared by every loader, and deterministic subsets."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import jax
import numpy as np

from jaxreform import _validate
from jaxreform.errors import ConfigError, DataDirError, InvalidDataError

DATA_DIR_ENV = "JAXREFORM_DATA_DIR"


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A labelled train/test split held as NumPy arrays on the host.

    Attributes:
        name: Dataset name, e.g. ``"mnist"``.
        train_inputs: ``[n, ...]`` float32; images are ``[n, H, W, C]`` scaled to [0, 1].
        train_labels: ``[n]`` int32 class indices.
        test_inputs: ``[m, ...]`` float32, same trailing shape as ``train_inputs``.
        test_labels: ``[m]`` int32.
        num_classes: Number of classes k; labels lie in [0, k).
        source: Where the arrays came from (a folder, or the embedded subset), for reports.
    """

    name: str
    train_inputs: np.ndarray
    train_labels: np.ndarray
    test_inputs: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    source: str

    def __post_init__(self):
        _validate.check_examples(
            f"{self.name} train_inputs", self.train_inputs,
            f"{self.name} train_labels", self.train_labels, num_classes=self.num_classes,
        )
        _validate.check_examples(
            f"{self.name} test_inputs", self.test_inputs,
            f"{self.name} test_labels", self.test_labels, num_classes=self.num_classes,
        )
        if self.train_inputs.shape[1:] != self.test_inputs.shape[1:]:
            raise InvalidDataError(
                f"{self.name}: training examples have shape {self.train_inputs.shape[1:]} but "
                f"test examples {self.test_inputs.shape[1:]}; they must match.")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, e.g. ``(28, 28, 1)``."""
        return tuple(self.train_inputs.shape[1:])

    def summary(self) -> dict:
        """Sizes and provenance, as plain JSON-ready values."""
        return {
            "name": self.name,
            "source": self.source,
            "num_train": int(self.train_inputs.shape[0]),
            "num_test": int(self.test_inputs.shape[0]),
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
        }


def subset_indices(key: jax.Array, population: int, size: int) -> np.ndarray:
    """Draws ``size`` distinct indices from ``range(population)``, sorted, determined by ``key``."""
    if not 0 < size <= population:
        raise ConfigError(f"subset size must lie in [1, {population}] (the examples available), "
                          f"got {size}.")
    chosen = jax.random.choice(key, population, shape=(size,), replace=False)
    return np.sort(np.asarray(chosen))


def take_subset(
    dataset: Dataset, key: jax.Array, *, num_train: int | None, num_test: int | None
) -> Dataset:
    """Returns a deterministic random subset (``None`` keeps a split whole).

    The same ``key`` and sizes always give the same examples, on every backend.
    """
    train_key, test_key = jax.random.split(key)
    train_inputs, train_labels = dataset.train_inputs, dataset.train_labels
    test_inputs, test_labels = dataset.test_inputs, dataset.test_labels
    if num_train is not None and num_train != len(train_labels):
        index = subset_indices(train_key, len(train_labels), num_train)
        train_inputs, train_labels = train_inputs[index], train_labels[index]
    if num_test is not None and num_test != len(test_labels):
        index = subset_indices(test_key, len(test_labels), num_test)
        test_inputs, test_labels = test_inputs[index], test_labels[index]
    return dataclasses.replace(
        dataset,
        train_inputs=train_inputs, train_labels=train_labels,
        test_inputs=test_inputs, test_labels=test_labels,
    )


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """Returns the data directory: the argument, else ``$JAXREFORM_DATA_DIR``, else None.

    Raises:
        DataDirError: if a directory was given (either way) but does not exist.
    """
    origin = "--data-dir"
    if data_dir is not None and str(data_dir).strip() == "":
        raise DataDirError("the data directory given is an empty string; omit it to use "
                           f"${DATA_DIR_ENV} or the embedded subset.")
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or None  # set-but-empty counts as unset
        origin = f"${DATA_DIR_ENV}"
    if data_dir is None:
        return None
    try:
        path = Path(data_dir).expanduser()
        exists, is_dir = path.exists(), path.is_dir()
    except (OSError, RuntimeError) as error:
        raise DataDirError(f"data directory {str(data_dir)!r} (from {origin}) cannot be used: "
                           f"{getattr(error, 'strerror', None) or error}") from None
    if not exists:
        raise DataDirError(f"data directory {str(path)!r} (from {origin}) does not exist.")
    if not is_dir:
        raise DataDirError(f"data directory {str(path)!r} (from {origin}) is a file, not a "
                           "folder.")
    return path
