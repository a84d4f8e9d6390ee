"""CIFAR-10 loader: the staged image folder, the exact binary excerpts, a binary folder built
from them, the cache, and bad input (truncated records, the pickle distribution, bad JPEGs)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from jaxreform.data import cifar10
from jaxreform.data.cifar10 import load_cifar10, read_cifar10_binary
from jaxreform.errors import ConfigError, DataDirError, DataFileError

SUBSET = 2000
# Measured on the staged data: JPEG copies vs the exact pixels of the same 4,000 train /
# 1,000 test records, on a 0-255 scale: mean abs error 5.81 / 5.80, worst single image's mean
# 12.99 / 11.81 (the MANIFEST states 5.8 and 13.0). The tolerances leave a little room.
MEAN_ABS_TOLERANCE = 6.5 / 255
PER_IMAGE_TOLERANCE = 14.0 / 255
OFFICIAL_TRAIN_START = [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
OFFICIAL_TEST_START = [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]


@pytest.fixture(scope="module")
def cifar_dir(shared_data_dir) -> Path:
    folder = shared_data_dir / "cifar10"
    if not (folder / "images").is_dir():
        if os.environ.get("JAXREFORM_REQUIRE_DATA") == "1":
            pytest.fail(f"staged CIFAR-10 folder {folder} not found")
        pytest.skip(f"staged CIFAR-10 folder {folder} not found")
    return folder


@pytest.fixture(scope="module")
def jpeg_subset(cifar_dir):
    return load_cifar10(cifar_dir.parent, source="images", max_per_split=SUBSET, use_cache=False)


@pytest.fixture(scope="module")
def exact(cifar_dir):
    train = read_cifar10_binary(cifar_dir / "exact" / "data_batch_1.first4000.bin",
                                expected_records=None)
    test = read_cifar10_binary(cifar_dir / "exact" / "test_batch.first1000.bin",
                               expected_records=None)
    return train, test


@pytest.fixture(scope="module")
def binary_dir(tmp_path_factory, exact):
    """A ``cifar-10-batches-bin/`` of official-size files built by tiling the exact records."""
    folder = tmp_path_factory.mktemp("bin") / cifar10.BINARY_FOLDER
    folder.mkdir()
    (train_images, train_labels), (test_images, test_labels) = exact

    def write(path, images, labels, count):
        reps = -(-count // len(labels))
        images, labels = np.tile(images, (reps, 1, 1, 1))[:count], np.tile(labels, reps)[:count]
        planes = images.transpose(0, 3, 1, 2).reshape(count, -1)
        path.write_bytes(np.concatenate([labels[:, None].astype(np.uint8), planes], 1).tobytes())

    write(folder / "data_batch_1.bin", train_images, train_labels, 10_000)
    for name in cifar10.BINARY_TRAIN_FILES[1:]:
        os.symlink(folder / "data_batch_1.bin", folder / name)
    write(folder / "test_batch.bin", test_images, test_labels, 10_000)
    return folder


def test_image_folder_subset_has_official_order_and_range(jpeg_subset):
    assert jpeg_subset.train_inputs.shape == (SUBSET, 32, 32, 3)
    assert jpeg_subset.test_inputs.shape == (SUBSET, 32, 32, 3)
    assert jpeg_subset.train_inputs.dtype == np.float32
    assert jpeg_subset.train_labels.dtype == np.int32
    assert 0.0 <= jpeg_subset.train_inputs.min() and jpeg_subset.train_inputs.max() <= 1.0
    assert jpeg_subset.num_classes == 10
    assert jpeg_subset.train_labels[:10].tolist() == OFFICIAL_TRAIN_START
    # The test split is round-robin over the classes: every class 200 times.
    assert jpeg_subset.test_labels[:12].tolist() == list(range(10)) + [0, 1]
    assert np.bincount(jpeg_subset.test_labels).tolist() == [SUBSET // 10] * 10


def test_jpeg_copies_are_close_to_the_exact_train_pixels(jpeg_subset, exact):
    images, labels = exact[0]
    assert labels[:10].tolist() == OFFICIAL_TRAIN_START
    np.testing.assert_array_equal(jpeg_subset.train_labels, labels[:SUBSET])
    error = np.abs(jpeg_subset.train_inputs - images[:SUBSET] / 255.0)
    assert error.mean() < MEAN_ABS_TOLERANCE
    assert error.reshape(SUBSET, -1).mean(axis=1).max() < PER_IMAGE_TOLERANCE


def test_jpeg_copies_are_close_to_the_exact_test_pixels(jpeg_subset, exact):
    images, labels = exact[1]
    assert labels[:10].tolist() == OFFICIAL_TEST_START
    # Record i of class c is the JPEG of rank r (its r-th of class c): position 10 r + c.
    rank = np.array([np.sum(labels[:i] == labels[i]) for i in range(len(labels))])
    position = 10 * rank + labels
    np.testing.assert_array_equal(jpeg_subset.test_labels[position], labels)
    error = np.abs(jpeg_subset.test_inputs[position] - images / 255.0)
    assert error.mean() < MEAN_ABS_TOLERANCE
    assert error.reshape(len(labels), -1).mean(axis=1).max() < PER_IMAGE_TOLERANCE


def test_exact_excerpts_are_refused_as_official_files(cifar_dir):
    with pytest.raises(DataFileError, match="4,000 records.*10,000"):
        read_cifar10_binary(cifar_dir / "exact" / "data_batch_1.first4000.bin")


def test_binary_folder_is_read_exactly_and_preferred_by_auto(binary_dir, exact, tmp_path):
    dataset = load_cifar10(binary_dir.parent, max_per_split=12_000, cache_dir=tmp_path)
    assert dataset.source.startswith("binary layout")
    assert dataset.train_inputs.shape == (12_000, 32, 32, 3)  # crosses into data_batch_2
    np.testing.assert_array_equal(dataset.train_inputs[:4000] * 255.0, exact[0][0])
    np.testing.assert_array_equal(dataset.train_labels[10_000:10_004], exact[0][1][:4])
    np.testing.assert_array_equal(dataset.test_labels[:1000], exact[1][1])


def test_cache_is_reused_and_a_mismatched_key_is_never_trusted(binary_dir, tmp_path):
    first = load_cifar10(binary_dir.parent, max_per_split=100, cache_dir=tmp_path)
    (cached,) = tmp_path.glob("cifar10-*.npz")
    with np.load(cached) as stored:
        arrays = {name: stored[name] for name in stored.files}
    arrays["train_images"] = np.zeros_like(arrays["train_images"])  # poison it
    np.savez(cached, **{**arrays, "key": np.asarray("0" * 64)})
    again = load_cifar10(binary_dir.parent, max_per_split=100, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.train_inputs, first.train_inputs)
    cached.write_bytes(b"not an npz")
    again = load_cifar10(binary_dir.parent, max_per_split=100, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.train_inputs, first.train_inputs)


def _copy_binary(binary_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / cifar10.BINARY_FOLDER
    shutil.copytree(binary_dir, folder, symlinks=True)  # links to data_batch_1
    return folder


def test_truncated_binary_file_is_named(binary_dir, tmp_path):
    folder = _copy_binary(binary_dir, tmp_path)
    path = folder / "data_batch_2.bin"
    raw = path.read_bytes()
    path.unlink()  # a link to the shared data_batch_1: replace it, never write through it
    path.write_bytes(raw[:-100])
    with pytest.raises(DataFileError, match="data_batch_2.bin.*not a whole number"):
        load_cifar10(tmp_path, max_per_split=12_000, use_cache=False)
    path.write_bytes(raw[: 9_999 * cifar10.RECORD_BYTES])
    with pytest.raises(DataFileError, match="data_batch_2.bin: holds 9,999 records"):
        load_cifar10(tmp_path, max_per_split=12_000, use_cache=False)


def test_bad_label_byte_is_named(binary_dir, tmp_path):
    folder = _copy_binary(binary_dir, tmp_path)
    raw = bytearray((folder / "test_batch.bin").read_bytes())
    raw[5 * cifar10.RECORD_BYTES] = 12
    (folder / "test_batch.bin").write_bytes(bytes(raw))
    with pytest.raises(DataFileError, match="test_batch.bin: record 5 has label byte 12"):
        load_cifar10(tmp_path, max_per_split=10, use_cache=False)


def test_pickle_distribution_is_refused_without_unpickling(tmp_path):
    folder = tmp_path / cifar10.PICKLE_FOLDER
    folder.mkdir()
    for name in ("data_batch_1", "batches.meta", "test_batch"):
        (folder / name).write_bytes(b"this would fail to unpickle")
    for where in (tmp_path, folder):
        with pytest.raises(DataDirError, match="never unpickles.*cifar-10-batches-bin"):
            load_cifar10(where, use_cache=False)


def test_corrupt_jpeg_and_bad_label_file_are_named(cifar_dir, tmp_path):
    root = tmp_path / "cifar10"
    (root / "images" / "train").mkdir(parents=True)
    os.symlink(cifar_dir / "images" / "test", root / "images" / "test")
    for name in cifar10.CLASS_NAMES:
        if name != "frog":
            os.symlink(cifar_dir / "images" / "train" / name, root / "images" / "train" / name)
    (root / "images" / "train" / "frog").mkdir()
    (root / "images" / "train" / "frog" / "0000.jpg").write_bytes(b"\xff\xd8 broken")
    shutil.copy(cifar_dir / cifar10.TRAIN_LABEL_FILE, root / cifar10.TRAIN_LABEL_FILE)
    with pytest.raises(DataFileError, match="frog/0000.jpg: cannot be decoded"):
        load_cifar10(tmp_path, max_per_split=10, use_cache=False)
    (root / cifar10.TRAIN_LABEL_FILE).write_text("6\n9\nx\n")
    with pytest.raises(DataFileError, match="line 3 is 'x'"):
        load_cifar10(tmp_path, max_per_split=10, use_cache=False)
    (root / cifar10.TRAIN_LABEL_FILE).write_text("6\n9\n")
    with pytest.raises(DataFileError, match="holds 2 labels"):
        load_cifar10(tmp_path, max_per_split=10, use_cache=False)


def test_bad_arguments(tmp_path, cifar_dir):
    with pytest.raises(ConfigError, match="unknown source"):
        load_cifar10(cifar_dir.parent, source="pickle")
    with pytest.raises(ConfigError, match="max_per_split must be > 0"):
        load_cifar10(cifar_dir.parent, max_per_split=0)
    with pytest.raises(DataDirError, match="does not exist"):
        load_cifar10(tmp_path / "nowhere")
    with pytest.raises(DataDirError, match="CIFAR-10 not found"):
        load_cifar10(tmp_path, source="binary")
    with pytest.raises(DataDirError, match="CIFAR-10 not found.*cifar-10-batches-bin"):
        load_cifar10(cifar_dir.parent, source="binary")


def test_tensorflow_datasets_path_converts_and_validates(monkeypatch, tmp_path):
    """The optional tfds source, with tensorflow-datasets replaced by a stand-in module that
    returns what ``tfds.load(..., batch_size=-1)`` returns (nothing downloads in tests)."""
    import sys
    import types

    calls = []
    fake = types.ModuleType("tensorflow_datasets")

    def load(name, split, batch_size, data_dir):
        calls.append((name, split, batch_size, data_dir))
        n = 4 if split.startswith("train") else 2
        images = np.arange(n * 32 * 32 * 3, dtype=np.int64).reshape(n, 32, 32, 3) % 256
        return {"image": images.astype(np.uint8), "label": np.arange(n) % 10}

    fake.load = load
    fake.as_numpy = lambda tree: tree
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    data = load_cifar10(tmp_path, source="tfds", max_per_split=4)
    assert calls == [("cifar10", "train[:4]", -1, str(tmp_path)),
                     ("cifar10", "test[:4]", -1, str(tmp_path))]
    assert data.train_inputs.shape == (4, 32, 32, 3) and data.test_inputs.shape == (2, 32, 32, 3)
    assert data.train_inputs.dtype == np.float32 and data.train_inputs.max() == 1.0
    np.testing.assert_array_equal(data.train_labels, [0, 1, 2, 3])
    fake.load = lambda name, split, batch_size, data_dir: {
        "image": np.zeros((3, 28, 28, 1), np.uint8), "label": np.zeros(3, np.int64)}
    with pytest.raises(DataFileError, match=r"shape \(3, 28, 28, 1\)"):
        load_cifar10(None, source="tfds")
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # not installed
    with pytest.raises(DataDirError, match="needs tensorflow-datasets"):
        load_cifar10(None, source="tfds")
