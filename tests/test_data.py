"""MNIST loading: real files read exactly, bad files refused with the file and cause named."""

from __future__ import annotations

import gzip
import shutil
import struct

import jax
import numpy as np
import pytest

from jaxreform import data
from jaxreform.data import mnist
from jaxreform.errors import ConfigError, DataDirError, DataFileError, InvalidDataError

STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte")


def test_full_mnist_matches_the_published_statistics(full_mnist):
    assert full_mnist.train_inputs.shape == (60000, 28, 28, 1)
    assert full_mnist.test_inputs.shape == (10000, 28, 28, 1)
    # MANIFEST.md: train pixel mean 33.3184 and std 78.5675 on the 0..255 scale.
    assert full_mnist.train_inputs.mean() * 255 == pytest.approx(33.3184, abs=1e-3)
    assert full_mnist.train_inputs.std() * 255 == pytest.approx(78.5675, abs=1e-3)
    # The well-known first training labels, and the class counts of the test set.
    assert full_mnist.train_labels[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]
    assert np.bincount(full_mnist.test_labels).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_embedded_subset_is_the_first_official_images(full_mnist, embedded_mnist):
    assert embedded_mnist.source == data.EMBEDDED_SOURCE
    np.testing.assert_array_equal(embedded_mnist.train_inputs, full_mnist.train_inputs[:6000])
    np.testing.assert_array_equal(embedded_mnist.train_labels, full_mnist.train_labels[:6000])
    np.testing.assert_array_equal(embedded_mnist.test_inputs, full_mnist.test_inputs[:1000])


def test_without_data_dir_the_embedded_subset_is_used(no_data_env):
    dataset = data.load_dataset("mnist")
    assert dataset.source == data.EMBEDDED_SOURCE
    assert len(dataset.train_labels) == 6000


def test_environment_variable_names_the_data_dir(monkeypatch, shared_data_dir):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(shared_data_dir))
    assert len(data.load_dataset("mnist").test_labels) == 10000


def _copy_subset(tmp_path):
    """A writable copy of the embedded files, to damage one at a time."""
    folder = tmp_path / "mnist"
    shutil.copytree(mnist.embedded_mnist_dir(), folder)
    return folder


def _rewrite(path, transform_raw):
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(transform_raw(raw)))


def _edit_array(folder, stem, edit):
    """Reads ``folder/stem.gz``, applies ``edit`` to its array, writes the result back."""
    path = folder / f"{stem}.gz"
    array = data.read_idx(path, expected_ndim=3 if "images" in stem else 1)
    path.write_bytes(gzip.compress(data.encode_idx(edit(array.copy()))))


def test_truncated_gzip_is_refused(tmp_path):
    folder = _copy_subset(tmp_path)
    target = folder / "train-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:400_000])
    with pytest.raises(DataFileError, match="gzip stream ends early") as caught:
        data.load_mnist(tmp_path)
    assert caught.value.path.endswith("train-images-idx3-ubyte.gz")


def test_truncated_payload_is_refused(tmp_path):
    folder = _copy_subset(tmp_path)
    target = folder / "train-images-idx3-ubyte.gz"
    _rewrite(target, lambda raw: raw[: len(raw) - 1000])
    with pytest.raises(DataFileError, match=r"train-images.*truncated"):
        data.load_mnist(tmp_path)


def test_uncompressed_files_are_read_and_checked(tmp_path, embedded_mnist):
    for stem in STEMS:
        raw = gzip.decompress((mnist.embedded_mnist_dir() / f"{stem}.gz").read_bytes())
        (tmp_path / stem).write_bytes(raw)
    np.testing.assert_array_equal(data.load_mnist(tmp_path).train_inputs,
                                  embedded_mnist.train_inputs)
    test_images = tmp_path / STEMS[2]
    test_images.write_bytes(test_images.read_bytes()[:-5])
    with pytest.raises(DataFileError, match="t10k-images-idx3-ubyte: header promises"):
        data.load_mnist(tmp_path)


@pytest.mark.parametrize("damage, message", [
    (lambda raw: b"\x00\x00\x08\x01" + raw[4:], "bad IDX magic number 0x00000801"),
    (lambda raw: raw + b"\x00" * 7, "extra bytes after the data"),
    (lambda raw: raw[:2], "too short for an IDX header"),
])
def test_malformed_image_file_is_refused(tmp_path, damage, message):
    folder = _copy_subset(tmp_path)
    _rewrite(folder / "t10k-images-idx3-ubyte.gz", damage)
    with pytest.raises(DataFileError, match=message):
        data.load_mnist(tmp_path)


def test_absurd_header_is_refused_before_reading(tmp_path):
    folder = _copy_subset(tmp_path)
    # (2^22, 2^21, 2^21) overflows a 64-bit product to 0: the check must use exact integers.
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 1 << 22, 1 << 21, 1 << 21)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header))
    with pytest.raises(DataFileError, match="implausible .* the header is corrupt"):
        data.load_mnist(tmp_path)


def test_corrupt_gzip_stream_is_refused(tmp_path):
    folder = _copy_subset(tmp_path)
    target = folder / "train-labels-idx1-ubyte.gz"
    raw = bytearray(target.read_bytes())
    raw[100:140] = bytes(40)
    target.write_bytes(bytes(raw))
    with pytest.raises(DataFileError, match="train-labels-idx1-ubyte.gz: "):
        data.load_mnist(tmp_path)


def test_label_count_mismatch_is_refused(tmp_path):
    _edit_array(_copy_subset(tmp_path), "t10k-labels-idx1-ubyte", lambda labels: labels[:999])
    with pytest.raises(DataFileError, match="holds 999 labels but t10k-images-idx3-ubyte.gz "
                                            "holds 1,000 images"):
        data.load_mnist(tmp_path)


def test_label_out_of_range_is_refused(tmp_path):
    def corrupt(labels):
        labels[17] = 12
        return labels

    _edit_array(_copy_subset(tmp_path), "train-labels-idx1-ubyte", corrupt)
    with pytest.raises(DataFileError, match="label 12 at index 17 is outside 0..9"):
        data.load_mnist(tmp_path)


def test_wrong_image_size_is_refused(tmp_path):
    _edit_array(_copy_subset(tmp_path), "t10k-images-idx3-ubyte", lambda images: images[:, :27])
    with pytest.raises(DataFileError, match=r"images are \(27, 28\) pixels"):
        data.load_mnist(tmp_path)


def test_missing_folder_and_missing_file_are_named(tmp_path):
    with pytest.raises(DataDirError, match="does not exist"):
        data.load_mnist(tmp_path / "nowhere")
    (tmp_path / "plain-file").write_text("x")
    with pytest.raises(DataDirError, match="is a file, not a folder"):
        data.load_mnist(tmp_path / "plain-file")
    folder = _copy_subset(tmp_path)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataDirError, match=r"missing t10k-labels-idx1-ubyte\[\.gz\]"):
        data.load_mnist(tmp_path)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown dataset 'mnsit'; choose one of: "
                                          "adult, att_faces, cifar10, malware, mnist"):
        data.load_dataset("mnsit")


def test_dataset_refuses_nan_and_mismatched_labels(embedded_mnist):
    images = embedded_mnist.test_inputs.copy()
    images[3, 5, 5, 0] = np.nan
    with pytest.raises(InvalidDataError, match=r"1 non-finite value.*index \(3, 5, 5, 0\)"):
        data.Dataset("mnist", images, embedded_mnist.test_labels, images,
                     embedded_mnist.test_labels, 10, "test")
    with pytest.raises(InvalidDataError, match="1000 examples but .* has 999 labels"):
        data.Dataset("mnist", embedded_mnist.test_inputs, embedded_mnist.test_labels[:-1],
                     embedded_mnist.test_inputs, embedded_mnist.test_labels, 10, "test")


def test_subsets_are_deterministic_by_key(embedded_mnist):
    first = data.take_subset(embedded_mnist, jax.random.key(3), num_train=500, num_test=None)
    again = data.take_subset(embedded_mnist, jax.random.key(3), num_train=500, num_test=None)
    other = data.take_subset(embedded_mnist, jax.random.key(4), num_train=500, num_test=None)
    assert first.train_inputs.shape == (500, 28, 28, 1)
    assert len(first.test_labels) == 1000
    np.testing.assert_array_equal(first.train_labels, again.train_labels)
    np.testing.assert_array_equal(first.train_inputs, again.train_inputs)
    assert not np.array_equal(first.train_inputs, other.train_inputs)
    index = data.subset_indices(jax.random.key(3), 6000, 500)
    assert len(np.unique(index)) == 500 and index.max() < 6000
    with pytest.raises(ConfigError, match=r"subset size must lie in \[1, 6000\]"):
        data.subset_indices(jax.random.key(0), 6000, 6001)
