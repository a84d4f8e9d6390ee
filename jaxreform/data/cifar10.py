"""CIFAR-10 from the official binary files or from an image folder, with a checksummed cache.

Two layouts are read; the python-pickle distribution is refused, never unpickled:

``binary`` (exact pixels): the official ``cifar-10-batches-bin/`` folder, holding
    ``data_batch_1.bin`` … ``data_batch_5.bin`` and ``test_batch.bin``. Each file is 10,000
    records of 3,073 bytes: one label byte, then 1,024 red, 1,024 green and 1,024 blue bytes,
    each plane row-major. A file of the wrong size is refused, naming it.

``images`` (lossy JPEG copies, as staged in ``shared/data/cifar10``):
    ``images/{train,test}/<class name>/NNNN.jpg`` plus ``train_labels_official_order.txt``
    (50,000 labels, one per line). The i-th training image of class c in official order is
    ``images/train/<c>/{i:04d}.jpg``, so the label file puts the training set back into
    official order. No such file exists for the test set: test images are returned
    round-robin over the classes (rank 0 of every class in label order, then rank 1, ...),
    which keeps every prefix class-balanced but is *not* the official test order.

``source="auto"`` prefers the exact binary files when both layouts are present.

``tfds`` (optional, for users with internet): ``tensorflow_datasets.load("cifar10")``, which
downloads into ``data_dir`` (tfds's own cache when None). Neither tensorflow nor
tensorflow-datasets is a dependency of jaxreform, nothing here downloads unless this source
is asked for, and the arrays tfds returns are validated like any other source.

Decoded arrays can be cached as ``.npz`` files named by a SHA-256 key over the layout, the
selection (``max_per_split``) and the SHA-256 of every source file read. The key is stored
inside the file too and compared on load: a cache whose key does not match, or that cannot be
read, is ignored and rebuilt, never trusted. Hashing the sources costs about as much as reading
them once, so a cached load still reads every byte but skips the JPEG decoding.

Shapes: n images; every image is ``[32, 32, 3]`` float32 in [0, 1] (RGB, height-major).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from jaxreform import _validate
from jaxreform.data.core import Dataset, resolve_data_dir
from jaxreform.errors import DataDirError, DataFileError

log = logging.getLogger(__name__)

NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
RECORD_BYTES = 1 + 32 * 32 * 3
RECORDS_PER_FILE = 10_000
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")
BINARY_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
BINARY_TEST_FILE = "test_batch.bin"
BINARY_FOLDER = "cifar-10-batches-bin"
PICKLE_FOLDER = "cifar-10-batches-py"
TRAIN_LABEL_FILE = "train_labels_official_order.txt"
SOURCES = ("auto", "images", "binary", "tfds")
CACHE_ENV = "XDG_CACHE_HOME"
_CACHE_VERSION = "cifar10-cache-v1"


# ----------------------------------------------------------------------------------------------
# The official binary format.


def parse_cifar10_records(
    raw: bytes, path: str | os.PathLike, *, expected_records: int | None = RECORDS_PER_FILE
) -> tuple[np.ndarray, np.ndarray]:
    """Parses bytes in the official binary record layout.

    Args:
        raw: The file's bytes: records of 1 label byte + 3,072 pixel bytes.
        path: The file the bytes came from (named in errors).
        expected_records: How many records the file must hold (10,000 for an official file);
            None accepts any whole number of records (for excerpts such as the staged
            ``exact/data_batch_1.first4000.bin``).

    Returns:
        ``(images [n, 32, 32, 3] uint8, labels [n] int32)``.

    Raises:
        DataFileError: if the size is not a whole number of records, the count is not the
            expected one, or a label lies outside 0..9.
    """
    size = len(raw)
    if size == 0 or size % RECORD_BYTES:
        raise DataFileError(
            path, f"is {size:,} bytes, not a whole number of {RECORD_BYTES}-byte CIFAR-10 "
            f"records ({size // RECORD_BYTES:,} whole records and {size % RECORD_BYTES} bytes "
            "left over): the file is truncated or not in the CIFAR-10 binary format")
    count = size // RECORD_BYTES
    if expected_records is not None and count != expected_records:
        raise DataFileError(
            path, f"holds {count:,} records, an official CIFAR-10 batch holds "
            f"{expected_records:,} ({expected_records * RECORD_BYTES:,} bytes): the file is "
            "truncated or is an excerpt")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(count, RECORD_BYTES)
    labels = records[:, 0].astype(np.int32)
    if labels.max() >= NUM_CLASSES:
        bad = int(np.argmax(labels >= NUM_CLASSES))
        raise DataFileError(path, f"record {bad} has label byte {int(labels[bad])}, outside "
                                  f"0..{NUM_CLASSES - 1}")
    images = records[:, 1:].reshape(count, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def read_cifar10_binary(
    path: str | os.PathLike, *, expected_records: int | None = RECORDS_PER_FILE
) -> tuple[np.ndarray, np.ndarray]:
    """Reads one file in the official binary layout (see :func:`parse_cifar10_records`).

    Returns:
        ``(images [n, 32, 32, 3] uint8, labels [n] int32)``.

    Raises:
        DataFileError: if the file is missing, unreadable, truncated or corrupt.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise DataFileError(path, f"cannot be read: {error.strerror or error}") from None
    return parse_cifar10_records(raw, path, expected_records=expected_records)


# ----------------------------------------------------------------------------------------------
# Locating the files.


def _is_pickle_folder(folder: Path) -> bool:
    return folder.name == PICKLE_FOLDER or (
        (folder / "data_batch_1").is_file() and (folder / "batches.meta").is_file())


def _binary_folder(folder: Path) -> Path | None:
    for candidate in (folder, folder / BINARY_FOLDER, folder / "cifar10" / BINARY_FOLDER):
        if all((candidate / name).is_file() for name in BINARY_TRAIN_FILES + (BINARY_TEST_FILE,)):
            return candidate
    return None


def _image_folder(folder: Path) -> Path | None:
    for candidate in (folder, folder / "cifar10"):
        if (candidate / "images" / "train").is_dir() and (candidate / TRAIN_LABEL_FILE).is_file():
            return candidate
    return None


def _refuse_pickle(folder: Path) -> None:
    for candidate in (folder, folder / PICKLE_FOLDER, folder / "cifar10" / PICKLE_FOLDER):
        if candidate.is_dir() and _is_pickle_folder(candidate):
            raise DataDirError(
                f"{str(candidate)!r} is the python-pickle distribution of CIFAR-10, which "
                "jaxreform never unpickles (loading a pickle can run arbitrary code). Use the "
                f"binary distribution instead (the folder {BINARY_FOLDER}/ from "
                "cifar-10-binary.tar.gz, same images) or an image folder "
                f"(images/{{train,test}}/<class>/NNNN.jpg with {TRAIN_LABEL_FILE}).")


def find_cifar10(data_dir: str | os.PathLike, source: str = "auto") -> tuple[str, Path]:
    """Locates CIFAR-10 in ``data_dir``, ``data_dir/cifar10`` or a ``cifar-10-batches-bin/``.

    Args:
        data_dir: The data folder.
        source: ``"auto"`` (binary if present, else images), ``"binary"`` or ``"images"``.

    Returns:
        ``(layout, folder)``: ``"binary"`` or ``"images"`` and the folder holding its files.

    Raises:
        ConfigError: for an unknown ``source``.
        DataDirError: if the layout asked for is absent (the message says what was searched),
            or the folder is the python-pickle distribution.
    """
    _validate.check_choice("source", source, SOURCES)
    folder = Path(data_dir)
    binary = _binary_folder(folder) if source in ("auto", "binary") else None
    if binary is not None:
        return "binary", binary
    images = _image_folder(folder) if source in ("auto", "images") else None
    if images is not None:
        return "images", images
    _refuse_pickle(folder)
    wanted = {
        "binary": f"{BINARY_FOLDER}/ with {', '.join(BINARY_TRAIN_FILES)} and {BINARY_TEST_FILE}",
        "images": f"images/train/<class>/NNNN.jpg, images/test/... and {TRAIN_LABEL_FILE}",
    }
    searched = [wanted[s] for s in (("binary", "images") if source == "auto" else (source,))]
    raise DataDirError(f"CIFAR-10 not found in {str(folder)!r} or its cifar10/ subfolder: "
                       f"looked for {' or '.join(searched)}.")


# ----------------------------------------------------------------------------------------------
# Reading each layout. Both return uint8 images and int32 labels per split, plus the source
# files read (for the cache key).


def _take_first(images, labels, limit):
    return (images, labels) if limit is None else (images[:limit], labels[:limit])


def _read_binary_layout(folder: Path, max_per_split: int | None):
    train_parts, files = [], []
    for name in BINARY_TRAIN_FILES:
        if max_per_split is not None and sum(len(p[1]) for p in train_parts) >= max_per_split:
            break
        train_parts.append(read_cifar10_binary(folder / name))
        files.append(folder / name)
    train = _take_first(np.concatenate([p[0] for p in train_parts]),
                        np.concatenate([p[1] for p in train_parts]), max_per_split)
    test = _take_first(*read_cifar10_binary(folder / BINARY_TEST_FILE), max_per_split)
    return train, test, files + [folder / BINARY_TEST_FILE]


def read_train_labels(path: str | os.PathLike) -> np.ndarray:
    """Reads ``train_labels_official_order.txt``: one label 0..9 per line.

    Returns:
        ``[50000]`` int32 labels of data_batch_1 … data_batch_5 in official order.

    Raises:
        DataFileError: if the file is unreadable, a line is not a label 0..9, or the count is
            not 50,000.
    """
    try:
        lines = Path(path).read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError) as error:
        raise DataFileError(path, f"cannot be read as text: {error}") from None
    bad = [i for i, line in enumerate(lines) if not (line.isdigit() and int(line) < NUM_CLASSES)]
    if bad:
        raise DataFileError(path, f"line {bad[0] + 1} is {lines[bad[0]]!r}, not a label "
                                  f"0..{NUM_CLASSES - 1}")
    expected = 5 * RECORDS_PER_FILE
    if len(lines) != expected:
        raise DataFileError(path, f"holds {len(lines):,} labels, CIFAR-10 has {expected:,} "
                                  "training images: the file is truncated or not this one")
    return np.asarray([int(line) for line in lines], dtype=np.int32)


def _within_class_rank(labels: np.ndarray) -> np.ndarray:
    """``[n]``: how many earlier entries of ``labels [n]`` share each entry's label."""
    rank = np.empty(len(labels), dtype=np.int64)
    for c in range(NUM_CLASSES):
        where = np.flatnonzero(labels == c)
        rank[where] = np.arange(len(where))
    return rank


def _decode_jpeg(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError  # Pillow is needed for this layout only

    try:
        with Image.open(io.BytesIO(path.read_bytes())) as image:
            pixels = np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise DataFileError(path, "is missing from the image folder") from None
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise DataFileError(path, f"cannot be decoded as an image: {error}") from None
    if pixels.shape != IMAGE_SHAPE:
        raise DataFileError(path, f"is {pixels.shape[1]}x{pixels.shape[0]} pixels, CIFAR-10 "
                                  "images are 32x32")
    return pixels


def _image_paths(folder: Path, split: str, labels: np.ndarray) -> list[Path]:
    ranks = _within_class_rank(labels)
    return [folder / "images" / split / CLASS_NAMES[c] / f"{r:04d}.jpg"
            for c, r in zip(labels, ranks)]


def _test_labels_round_robin(folder: Path, limit: int | None) -> np.ndarray:
    counts = []
    for name in CLASS_NAMES:
        class_dir = folder / "images" / "test" / name
        if not class_dir.is_dir():
            raise DataDirError(f"{str(class_dir)!r} is missing: the image folder needs one "
                               f"sub-folder per class ({', '.join(CLASS_NAMES)}).")
        counts.append(sum(1 for _ in class_dir.glob("*.jpg")))
    labels = [c for r in range(max(counts)) for c in range(NUM_CLASSES) if r < counts[c]]
    return np.asarray(labels[:limit] if limit is not None else labels, dtype=np.int32)


def _read_image_layout(folder: Path, max_per_split: int | None):
    label_file = folder / TRAIN_LABEL_FILE
    train_labels = read_train_labels(label_file)[:max_per_split]
    test_labels = _test_labels_round_robin(folder, max_per_split)
    train_paths = _image_paths(folder, "train", train_labels)
    test_paths = _image_paths(folder, "test", test_labels)
    start = time.perf_counter()
    train_images = np.stack([_decode_jpeg(p) for p in train_paths])
    test_images = np.stack([_decode_jpeg(p) for p in test_paths])
    seconds = time.perf_counter() - start
    log.info("decoded %d JPEGs in %.1f s (%.0f per second)", len(train_paths) + len(test_paths),
             seconds, (len(train_paths) + len(test_paths)) / max(seconds, 1e-9))
    return ((train_images, train_labels), (test_images, test_labels),
            [label_file] + train_paths + test_paths)


# ----------------------------------------------------------------------------------------------
# The cache.


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/jaxreform`` (``~/.cache/jaxreform`` when the variable is unset)."""
    base = os.environ.get(CACHE_ENV) or str(Path.home() / ".cache")
    return Path(base) / "jaxreform"


def _cache_key(layout: str, folder: Path, files: list[Path], max_per_split: int | None) -> str:
    digest = hashlib.sha256(f"{_CACHE_VERSION}|{layout}|{max_per_split}".encode())
    for path in files:
        try:
            content = path.read_bytes()
        except OSError as error:
            raise DataFileError(path, f"cannot be read: {error.strerror or error}") from None
        digest.update(f"|{path.relative_to(folder).as_posix()}|".encode())
        digest.update(hashlib.sha256(content).digest())
    return digest.hexdigest()


def _load_cache(path: Path, key: str):
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["key"]) != key:
                log.warning("ignoring cache %s: its stored key does not match its sources", path)
                return None
            arrays = tuple(stored[name] for name in
                           ("train_images", "train_labels", "test_images", "test_labels"))
    except (OSError, KeyError, ValueError, EOFError) as error:
        log.warning("ignoring unreadable cache %s: %s", path, error)
        return None
    for images, labels in (arrays[:2], arrays[2:]):
        if images.dtype != np.uint8 or images.shape[1:] != IMAGE_SHAPE or \
                labels.shape != images.shape[:1]:
            log.warning("ignoring cache %s: arrays have unexpected shapes", path)
            return None
    log.info("reusing cached CIFAR-10 arrays %s", path)
    return (arrays[0], arrays[1]), (arrays[2], arrays[3])


def _save_cache(path: Path, key: str, train, test) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, key=np.asarray(key), train_images=train[0], train_labels=train[1],
                     test_images=test[0], test_labels=test[1])
        os.replace(temporary, path)
    except OSError as error:  # a cache that cannot be written only costs time
        log.warning("could not write the CIFAR-10 cache %s: %s", path, error)


# ----------------------------------------------------------------------------------------------
# The loader.


def load_cifar10(
    data_dir: str | os.PathLike | None = None,
    *,
    source: str = "auto",
    max_per_split: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> Dataset:
    """Loads CIFAR-10 as ``[n, 32, 32, 3]`` float32 images in [0, 1] and int32 labels.

    Args:
        data_dir: Folder holding ``cifar-10-batches-bin/`` or the image layout, directly or
            in a ``cifar10/`` subfolder. None: ``$JAXREFORM_DATA_DIR``.
        source: ``"auto"``, ``"binary"``, ``"images"`` or ``"tfds"`` (see the module
            docstring).
        max_per_split: Read only the first this-many training and test images (official
            order for training; for the image layout's test split, the class-balanced
            round-robin order). None reads all 50,000 / 10,000.
        cache_dir: Where decoded arrays are cached; None: :func:`default_cache_dir`.
        use_cache: False neither reads nor writes a cache.

    Returns:
        The dataset; ``source`` names the layout and folder read.

    Raises:
        ConfigError: for an unknown ``source`` or a ``max_per_split`` below 1.
        DataDirError: if no folder is given or found, or it is the pickle distribution.
        DataFileError: if a file is missing, truncated or corrupt (the message names it).
    """
    if max_per_split is not None:
        _validate.check_integers(max_per_split=max_per_split)
        _validate.check_positive(max_per_split=max_per_split)
    _validate.check_choice("source", source, SOURCES)
    if source == "tfds":
        return _load_from_tfds(data_dir, max_per_split)
    folder = resolve_data_dir(data_dir)
    if folder is None:
        raise DataDirError("CIFAR-10 has no embedded copy: pass a data folder (--data-dir) or "
                           "set $JAXREFORM_DATA_DIR to one holding cifar-10-batches-bin/ or "
                           "cifar10/images/.")
    layout, found = find_cifar10(folder, source)
    train, test = _read_layout(layout, found, max_per_split, cache_dir, use_cache)
    return Dataset(
        name="cifar10",
        train_inputs=train[0].astype(np.float32) / 255.0, train_labels=train[1],
        test_inputs=test[0].astype(np.float32) / 255.0, test_labels=test[1],
        num_classes=NUM_CLASSES, source=f"{layout} layout in {found.resolve()}",
    )


def _load_from_tfds(data_dir, max_per_split: int | None) -> Dataset:
    """CIFAR-10 through tensorflow-datasets (optional; see the module docstring)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataDirError("source='tfds' needs tensorflow-datasets, which jaxreform does not "
                           "install (pip install tensorflow tensorflow-datasets); or pass a "
                           "folder holding cifar-10-batches-bin/ or cifar10/images/.") from None
    splits = []
    for split in ("train", "test"):
        selection = split if max_per_split is None else f"{split}[:{max_per_split}]"
        arrays = tfds.as_numpy(tfds.load("cifar10", split=selection, batch_size=-1,
                                         data_dir=None if data_dir is None else str(data_dir)))
        images = np.asarray(arrays["image"])
        labels = np.asarray(arrays["label"])
        origin = f"tensorflow-datasets cifar10[{selection}]"
        if images.ndim != 4 or images.shape[1:] != (32, 32, 3) or images.dtype != np.uint8:
            raise DataFileError(origin, f"images of shape {images.shape} and dtype "
                                f"{images.dtype}; expected [n, 32, 32, 3] uint8.")
        if labels.shape != (len(images),) or labels.min() < 0 or labels.max() >= NUM_CLASSES:
            raise DataFileError(origin, f"{labels.shape} labels for {len(images)} images, or "
                                f"labels outside [0, {NUM_CLASSES - 1}].")
        splits.append((images.astype(np.float32) / 255.0, labels.astype(np.int32)))
    (train_x, train_y), (test_x, test_y) = splits
    return Dataset(name="cifar10", train_inputs=train_x, train_labels=train_y,
                   test_inputs=test_x, test_labels=test_y, num_classes=NUM_CLASSES,
                   source="tensorflow-datasets cifar10")


def _source_files(layout: str, folder: Path, max_per_split: int | None) -> list[Path]:
    if layout == "binary":
        train_files = list(BINARY_TRAIN_FILES)
        if max_per_split is not None:
            train_files = train_files[: -(-max_per_split // RECORDS_PER_FILE)]
        return [folder / n for n in train_files + [BINARY_TEST_FILE]]
    train_labels = read_train_labels(folder / TRAIN_LABEL_FILE)[:max_per_split]
    test_labels = _test_labels_round_robin(folder, max_per_split)
    return ([folder / TRAIN_LABEL_FILE] + _image_paths(folder, "train", train_labels)
            + _image_paths(folder, "test", test_labels))


def _read_layout(layout, folder, max_per_split, cache_dir, use_cache):
    reader = _read_binary_layout if layout == "binary" else _read_image_layout
    if not use_cache:
        train, test, _ = reader(folder, max_per_split)
        return train, test
    files = _source_files(layout, folder, max_per_split)
    key = _cache_key(layout, folder, files, max_per_split)
    path = Path(cache_dir or default_cache_dir()) / f"cifar10-{key}.npz"
    cached = _load_cache(path, key) if path.is_file() else None
    if cached is not None:
        return cached
    train, test, _ = reader(folder, max_per_split)
    _save_cache(path, key, train, test)
    return train, test
