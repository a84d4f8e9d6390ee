"""AT&T (ORL) "Database of Faces": 40 people, 10 binary PGM images each, 92 x 112 pixels.

Expected layout, as distributed: ``<data_dir>/att_faces/s1 ... s40``, each holding
``1.pgm ... 10.pgm`` (``<data_dir>`` itself may also be the ``att_faces`` folder). Subject
``sK`` is label ``K - 1``. Every header field of every file is parsed and checked (magic
``P5``, whitespace and ``#`` comments, width, height, maxval) and the payload must have
exactly the size the header promises; anything else is a :class:`DataFileError` naming the
file. There is no embedded copy: without a data folder the loader says how to give one.

The split is per person: for each person ``train_per_person`` of the 10 images go to the
training set and the rest to the test set, chosen by a permutation drawn from ``seed``, so
every person appears in both splits and the same seed always gives the same split.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np

from jaxreform import _validate
from jaxreform.data.core import DATA_DIR_ENV, Dataset, resolve_data_dir
from jaxreform.errors import ConfigError, DataDirError, DataFileError

NUM_PEOPLE = 40
IMAGES_PER_PERSON = 10
IMAGE_HEIGHT, IMAGE_WIDTH = 112, 92
IMAGE_SHAPE = (IMAGE_HEIGHT, IMAGE_WIDTH, 1)
FOLDER_NAME = "att_faces"

_WHITESPACE = b" \t\n\r\x0b\x0c"
_DIGITS = b"0123456789"
# A header field longer than this is corrupt, not a real size (and must not become a huge int).
_MAX_FIELD_DIGITS = 9


def _header_fields(raw: bytes, path: os.PathLike | str) -> tuple[list[int], int]:
    """Reads width, height and maxval after the magic; returns them and the payload offset."""
    names = ("width", "height", "maxval")
    fields: list[int] = []
    pos = 2
    if pos >= len(raw) or raw[pos] not in _WHITESPACE:
        raise DataFileError(path, "the magic number P5 must be followed by whitespace")
    while len(fields) < 3:
        if pos >= len(raw):
            raise DataFileError(path, f"the header ends before its {names[len(fields)]} field "
                                      f"(file is {len(raw)} bytes)")
        byte = raw[pos]
        if byte in _WHITESPACE:
            pos += 1
        elif byte == ord("#"):  # a comment runs to the end of its line
            while pos < len(raw) and raw[pos] not in b"\n\r":
                pos += 1
        elif byte in _DIGITS:
            start = pos
            while pos < len(raw) and raw[pos] in _DIGITS:
                pos += 1
            if pos - start > _MAX_FIELD_DIGITS:
                raise DataFileError(path, f"header field {names[len(fields)]} has "
                                          f"{pos - start} digits; the header is corrupt")
            # Width and height end at whitespace or a comment; maxval is checked below.
            if len(fields) < 2 and (pos >= len(raw) or raw[pos] not in _WHITESPACE + b"#"):
                raise DataFileError(path, f"header field {names[len(fields)]} is not "
                                          "followed by whitespace")
            fields.append(int(raw[start:pos]))
        else:
            raise DataFileError(path, f"header field {names[len(fields)]} is not a decimal "
                                      f"number: found byte {bytes([byte])!r} at offset {pos}")
    if pos >= len(raw) or raw[pos] not in _WHITESPACE:
        raise DataFileError(path, "maxval must be followed by exactly one whitespace byte "
                                  "before the pixels")
    return fields, pos + 1


def parse_pgm(raw: bytes, path: os.PathLike | str = "<bytes>") -> tuple[np.ndarray, int]:
    """Parses one binary (``P5``) PGM image.

    Args:
        raw: The whole file's bytes.
        path: Used only in error messages.

    Returns:
        ``(pixels [height, width] uint8 or uint16, maxval)``; 16-bit samples (maxval > 255)
        are big-endian in the file, as the format says.

    Raises:
        DataFileError: on a wrong magic number, a malformed or out-of-range header field, a
            payload shorter or longer than ``width * height`` samples, or a sample > maxval.
    """
    if raw[:2] != b"P5":
        raise DataFileError(path, f"not a binary PGM image: starts with {raw[:2]!r}, "
                                  "expected the magic number b'P5'")
    (width, height, maxval), offset = _header_fields(raw, path)
    if width <= 0 or height <= 0:
        raise DataFileError(path, f"header gives a {width} x {height} image; both sizes must "
                                  "be positive")
    if not 0 < maxval < 65536:
        raise DataFileError(path, f"maxval {maxval} is outside 1..65535")
    dtype = np.dtype(np.uint8) if maxval < 256 else np.dtype(">u2")
    expected = width * height * dtype.itemsize
    payload = len(raw) - offset
    if payload != expected:
        problem = "truncated" if payload < expected else "has trailing bytes"
        raise DataFileError(path, f"{problem}: the payload is {payload:,} bytes but a {width} "
                                  f"x {height} image with maxval {maxval} needs {expected:,}")
    pixels = np.frombuffer(raw, dtype=dtype, offset=offset).reshape(height, width)
    if int(pixels.max()) > maxval:
        raise DataFileError(path, f"a pixel value {int(pixels.max())} exceeds maxval {maxval}")
    return pixels, maxval


def read_pgm(path: str | os.PathLike) -> np.ndarray:
    """Reads a binary PGM file as ``[height, width]`` float32 in [0, 1] (divided by maxval).

    Raises:
        DataFileError: if the file is missing, unreadable or malformed (see :func:`parse_pgm`).
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataFileError(path, "file is missing") from None
    except OSError as error:
        raise DataFileError(path, f"cannot be read: {error.strerror or error}") from None
    pixels, maxval = parse_pgm(raw, path)
    return pixels.astype(np.float32) / np.float32(maxval)


def find_att_faces_dir(data_dir: str | os.PathLike) -> Path:
    """The folder holding ``s1 ... s40``: ``data_dir/att_faces`` or ``data_dir`` itself.

    Raises:
        DataDirError: naming the folders searched and the first missing person folder.
    """
    data_dir = Path(data_dir)
    candidates = [data_dir / FOLDER_NAME, data_dir]
    for folder in candidates:
        if (folder / "s1").is_dir():
            missing = [f"s{k}" for k in range(1, NUM_PEOPLE + 1) if not (folder / f"s{k}").is_dir()]
            if missing:
                raise DataDirError(f"AT&T faces folder {str(folder)!r} lacks the person "
                                   f"folder(s) {', '.join(missing)}; expected s1 ... "
                                   f"s{NUM_PEOPLE}.")
            return folder
    raise DataDirError(f"AT&T faces not found in {str(data_dir)!r}: searched "
                       f"{[str(c) for c in candidates]} for the folders s1 ... s{NUM_PEOPLE}.")


def read_att_faces(folder: str | os.PathLike) -> np.ndarray:
    """Reads all 400 images of the folder from :func:`find_att_faces_dir`.

    Returns:
        ``[40, 10, 112, 92, 1]`` float32 in [0, 1]; ``[p, i]`` is ``s{p+1}/{i+1}.pgm``.

    Raises:
        DataFileError: naming the file that is missing, malformed or not 92 x 112 pixels.
    """
    folder = Path(folder)
    images = np.empty((NUM_PEOPLE, IMAGES_PER_PERSON, *IMAGE_SHAPE), np.float32)
    for person in range(NUM_PEOPLE):
        for index in range(IMAGES_PER_PERSON):
            path = folder / f"s{person + 1}" / f"{index + 1}.pgm"
            pixels = read_pgm(path)
            if pixels.shape != (IMAGE_HEIGHT, IMAGE_WIDTH):
                raise DataFileError(path, f"image is {pixels.shape[1]} x {pixels.shape[0]} "
                                          f"pixels; AT&T faces are {IMAGE_WIDTH} x "
                                          f"{IMAGE_HEIGHT} (width x height)")
            images[person, index, ..., 0] = pixels
    return images


def att_faces_split(seed: int, train_per_person: int) -> tuple[np.ndarray, np.ndarray]:
    """Which images of each person are for training and which for testing.

    Args:
        seed: Drives one random permutation of the 10 images per person.
        train_per_person: Images per person in the training split, in [1, 9].

    Returns:
        ``(train [40, t], test [40, 10 - t])`` int image indices (0-based, sorted per row).

    Raises:
        ConfigError: if ``train_per_person`` is not an integer in [1, 9].
    """
    _validate.check_integers(seed=seed, train_per_person=train_per_person)
    if not 1 <= train_per_person < IMAGES_PER_PERSON:
        raise ConfigError(f"train_per_person must lie in [1, {IMAGES_PER_PERSON - 1}] so that "
                          f"both splits hold every person, got train_per_person="
                          f"{train_per_person}.")
    keys = jax.random.split(jax.random.key(seed), NUM_PEOPLE)
    order = np.asarray(jax.vmap(lambda k: jax.random.permutation(k, IMAGES_PER_PERSON))(keys))
    return (np.sort(order[:, :train_per_person], axis=1),
            np.sort(order[:, train_per_person:], axis=1))


def load_att_faces(
    data_dir: str | os.PathLike | None = None, *, train_per_person: int = 7, seed: int = 0
) -> Dataset:
    """Loads the AT&T faces as ``[n, 112, 92, 1]`` float32 images in [0, 1], labels 0..39.

    Args:
        data_dir: Folder holding ``att_faces/`` (or the ``att_faces`` folder itself); if None,
            ``$JAXREFORM_DATA_DIR``.
        train_per_person: Training images per person (the rest, ``10 - t``, are the test set).
        seed: Chooses the per-person split (see :func:`att_faces_split`).

    Returns:
        A dataset with ``40 * t`` training and ``40 * (10 - t)`` test images, person by person
        (label ``K - 1`` for folder ``sK``), ``num_classes=40``.

    Raises:
        DataDirError: if no folder is given or set, or a person folder is missing.
        DataFileError: if an image is missing, malformed or of the wrong size.
        ConfigError: for a bad ``train_per_person`` or ``seed``.
    """
    train_index, test_index = att_faces_split(seed, train_per_person)
    folder = resolve_data_dir(data_dir)
    if folder is None:
        raise DataDirError("the AT&T faces are not shipped with jaxreform: pass --data-dir "
                           f"(the folder holding {FOLDER_NAME}/) or set ${DATA_DIR_ENV}.")
    folder = find_att_faces_dir(folder)
    images = read_att_faces(folder)
    people = np.arange(NUM_PEOPLE, dtype=np.int32)[:, None]

    def gather(index):
        inputs = images[people, index].reshape(-1, *IMAGE_SHAPE)
        labels = np.broadcast_to(people, index.shape).reshape(-1).astype(np.int32)
        return inputs, labels

    train_inputs, train_labels = gather(train_index)
    test_inputs, test_labels = gather(test_index)
    return Dataset(
        name="att_faces",
        train_inputs=train_inputs, train_labels=train_labels,
        test_inputs=test_inputs, test_labels=test_labels,
        num_classes=NUM_PEOPLE, source=str(folder.resolve()),
    )
