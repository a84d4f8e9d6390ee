"""Reader for the IDX format of MNIST, with every header field checked against the file.

IDX layout (LeCun et al.): two zero bytes, a type code (0x08 = unsigned byte), the number of
dimensions d, then d big-endian uint32 sizes, then prod(sizes) values in row-major order.
Files may be gzip-compressed (``.gz``). A file that is shorter or longer than its header
says, or whose compression stream is broken, is refused with :class:`DataFileError`.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from jaxreform.errors import DataFileError

_UNSIGNED_BYTE = 0x08


# Refuse headers that promise more than this: no real IDX dataset comes close, and a corrupt
# header must not make us allocate (or decompress) an absurd amount.
MAX_PAYLOAD_BYTES = 1 << 34


def _open(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def _read_exactly(stream, size: int, path: Path) -> bytes:
    """Reads up to ``size`` bytes, turning gzip and OS failures into DataFileError."""
    try:
        return stream.read(size)
    except EOFError:
        raise DataFileError(path, "gzip stream ends early: the file is truncated") from None
    except (gzip.BadGzipFile, zlib.error) as error:
        raise DataFileError(path, f"not a valid gzip file ({error})") from None
    except OSError as error:
        raise DataFileError(path, f"cannot be read ({error.strerror or error})") from None


def read_idx(path: str | os.PathLike, *, expected_ndim: int) -> np.ndarray:
    """Reads one IDX file (gzip-compressed if its name ends in ``.gz``), checking as it goes.

    The header is read and checked first, then exactly the promised payload plus one byte (to
    detect extra data), so a corrupt header or a decompression bomb is refused early.

    Args:
        path: The file.
        expected_ndim: 1 for label files, 3 for image files.

    Returns:
        ``uint8`` array with the shape given by the header.

    Raises:
        DataFileError: if the file is missing or unreadable, its gzip stream is broken, its
            magic number or dimension count is wrong, or it is shorter (truncated) or longer
            than the header promises.
    """
    path = Path(path)
    try:
        stream = _open(path)
    except FileNotFoundError:
        raise DataFileError(path, "file not found") from None
    except OSError as error:
        raise DataFileError(path, f"cannot be opened ({error.strerror or error})") from None
    with stream:
        magic = _read_exactly(stream, 4, path)
        header = _check_magic(magic, path, expected_ndim)
        dims = _read_exactly(stream, 4 * expected_ndim, path)
        if len(dims) < 4 * expected_ndim:
            raise DataFileError(path, "truncated inside the IDX header")
        shape = struct.unpack(f">{expected_ndim}I", dims)
        payload_size = math.prod(shape)  # Python ints: no overflow
        if payload_size > MAX_PAYLOAD_BYTES:
            raise DataFileError(path, f"header promises shape {shape}, an implausible "
                                      f"{payload_size:,} bytes: the header is corrupt")
        payload = _read_exactly(stream, payload_size + 1, path)
    return _check_payload(header + dims + payload, path, shape)


def _check_magic(magic: bytes, path, expected_ndim: int) -> bytes:
    expected_magic = (_UNSIGNED_BYTE << 8) | expected_ndim
    if len(magic) < 4:
        raise DataFileError(path, f"only {len(magic)} bytes: too short for an IDX header")
    if magic != bytes([0, 0, _UNSIGNED_BYTE, expected_ndim]):
        raise DataFileError(
            path,
            f"bad IDX magic number 0x{int.from_bytes(magic, 'big'):08x}, expected "
            f"0x{expected_magic:08x} (unsigned bytes, {expected_ndim} dimension(s)); is this "
            "the right file?",
        )
    return magic


def _check_payload(data: bytes, path, shape: tuple[int, ...]) -> np.ndarray:
    header_size = 4 + 4 * len(shape)
    expected_size = header_size + math.prod(shape)
    if len(data) < expected_size:
        raise DataFileError(
            path,
            f"header promises shape {shape} ({expected_size:,} bytes) but the file holds "
            f"{len(data):,} bytes: the file is truncated",
        )
    if len(data) > expected_size:
        raise DataFileError(
            path, f"header promises shape {shape} ({expected_size:,} bytes) but the file holds "
                  "extra bytes after the data")
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def parse_idx(data: bytes, path: str | os.PathLike, *, expected_ndim: int) -> np.ndarray:
    """Parses in-memory (uncompressed) IDX bytes; same checks as :func:`read_idx`.

    ``path`` only names the source in error messages.
    """
    _check_magic(data[:4], path, expected_ndim)
    if len(data) < 4 + 4 * expected_ndim:
        raise DataFileError(path, "truncated inside the IDX header")
    shape = struct.unpack(f">{expected_ndim}I", data[4:4 + 4 * expected_ndim])
    if math.prod(shape) > MAX_PAYLOAD_BYTES:
        raise DataFileError(path, f"header promises shape {shape}: the header is corrupt")
    return _check_payload(data, path, shape)


def encode_idx(array: np.ndarray) -> bytes:
    """Encodes a uint8 array as IDX bytes (the inverse of :func:`parse_idx`)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, _UNSIGNED_BYTE, array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    return header + array.tobytes()
