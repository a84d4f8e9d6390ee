"""The AT&T faces loader: real files from the staged data folder, and broken PGM files."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxreform.data import att_faces
from jaxreform.data.core import DATA_DIR_ENV
from jaxreform.errors import ConfigError, DataDirError, DataFileError

GOOD_HEADER = b"P5\n92 112\n255\n"


@pytest.fixture(scope="module")
def faces_dir(shared_data_dir):
    folder = shared_data_dir / "att_faces"
    if not folder.is_dir():
        pytest.skip(f"{folder} not staged")
    return folder


@pytest.fixture(scope="module")
def faces(shared_data_dir, faces_dir):
    return att_faces.load_att_faces(shared_data_dir)


@pytest.fixture
def faces_copy(faces_dir, tmp_path):
    """A private copy of the 400 images that a test may break."""
    return shutil.copytree(faces_dir, tmp_path / "att_faces")


def test_loads_all_real_faces_split_per_person(faces, faces_dir):
    assert faces.name == "att_faces" and faces.num_classes == 40
    assert faces.train_inputs.shape == (280, 112, 92, 1)
    assert faces.test_inputs.shape == (120, 112, 92, 1)
    assert faces.train_inputs.dtype == np.float32 and faces.train_labels.dtype == np.int32
    assert 0.0 <= faces.train_inputs.min() and faces.train_inputs.max() <= 1.0
    assert np.array_equal(np.bincount(faces.train_labels), np.full(40, 7))
    assert np.array_equal(np.bincount(faces.test_labels), np.full(40, 3))
    # The manifest's numbers: pixel range 0..251, mean 112.63 over all 400 images.
    every = np.concatenate([faces.train_inputs, faces.test_inputs]) * 255
    assert every.max() == pytest.approx(251) and every.mean() == pytest.approx(112.63, abs=0.01)
    # Image i of person p in the split is exactly s{p+1}/{i+1}.pgm after its 14-byte header.
    train_index, _ = att_faces.att_faces_split(0, 7)
    first = train_index[4, 0]
    raw = (faces_dir / "s5" / f"{first + 1}.pgm").read_bytes()
    expected = np.frombuffer(raw[14:], np.uint8).reshape(112, 92) / np.float32(255)
    np.testing.assert_array_equal(faces.train_inputs[4 * 7, ..., 0], expected)
    assert faces.train_labels[4 * 7] == 4


def test_split_is_deterministic_disjoint_and_seeded():
    train, test = att_faces.att_faces_split(0, 7)
    again, _ = att_faces.att_faces_split(0, 7)
    other, _ = att_faces.att_faces_split(1, 7)
    np.testing.assert_array_equal(train, again)
    assert not np.array_equal(train, other)
    for row_train, row_test in zip(train, test):
        assert sorted([*row_train, *row_test]) == list(range(10))


@pytest.mark.parametrize("bad", [0, 10, 2.5])
def test_train_per_person_out_of_range_is_refused(bad):
    with pytest.raises(ConfigError, match="train_per_person"):
        att_faces.att_faces_split(0, bad)


def test_without_a_data_dir_says_how_to_give_one(monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(DataDirError, match=r"--data-dir.*JAXREFORM_DATA_DIR"):
        att_faces.load_att_faces()


def test_missing_person_folder_is_a_data_dir_error(faces_copy):
    shutil.rmtree(faces_copy / "s17")
    with pytest.raises(DataDirError, match="s17"):
        att_faces.load_att_faces(faces_copy.parent)
    with pytest.raises(DataDirError, match="not found"):
        att_faces.load_att_faces(faces_copy / "s1")


@pytest.mark.parametrize("name, content, problem", [
    ("wrong magic", b"P2\n92 112\n255\n" + bytes(10304), "magic"),
    ("truncated payload", GOOD_HEADER + bytes(10303), "truncated"),
    ("trailing bytes", GOOD_HEADER + bytes(10305), "trailing"),
    ("wrong size", b"P5\n10 10\n255\n" + bytes(100), "92 x 112"),
    ("header cut short", b"P5\n92 ", "ends before"),
    ("letters in header", b"P5\n92 1x2\n255\n" + bytes(10304), "not followed by whitespace"),
    ("maxval zero", b"P5\n92 112\n0\n" + bytes(10304), "maxval"),
    ("pixel above maxval", b"P5\n92 112\n100\n" + bytes([101]) * 10304, "exceeds maxval"),
    ("empty file", b"", "magic"),
])
def test_bad_pgm_is_a_data_file_error_naming_the_file(faces_copy, name, content, problem):
    bad = faces_copy / "s3" / "7.pgm"
    bad.write_bytes(content)
    with pytest.raises(DataFileError, match=problem) as raised:
        att_faces.load_att_faces(faces_copy.parent)
    assert raised.value.path == str(bad)


def test_missing_image_is_a_data_file_error(faces_copy):
    (faces_copy / "s40" / "10.pgm").unlink()
    with pytest.raises(DataFileError, match="missing") as raised:
        att_faces.load_att_faces(faces_copy)
    assert raised.value.path.endswith("10.pgm")


def test_header_comments_and_any_whitespace_are_accepted():
    pixels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    raw = b"P5 # a comment\n#another\n 4\t3\r\n# maxval next\n255\n" + pixels.tobytes()
    parsed, maxval = att_faces.parse_pgm(raw)
    np.testing.assert_array_equal(parsed, pixels)
    assert maxval == 255


@settings(max_examples=40, deadline=None)
@given(width=st.integers(1, 9), height=st.integers(1, 9), maxval=st.integers(1, 65535),
       data=st.data())
def test_parse_pgm_round_trips_8_and_16_bit(width, height, maxval, data):
    values = data.draw(st.lists(st.integers(0, maxval), min_size=width * height,
                                max_size=width * height))
    dtype = np.uint8 if maxval < 256 else np.dtype(">u2")
    pixels = np.array(values, dtype=dtype).reshape(height, width)
    raw = f"P5\n{width} {height}\n{maxval}\n".encode() + pixels.tobytes()
    parsed, parsed_maxval = att_faces.parse_pgm(raw)
    np.testing.assert_array_equal(parsed, pixels)
    assert parsed_maxval == maxval
