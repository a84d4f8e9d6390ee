"""Reader for the IDX format of MNIST, with every header field checked against the file.

IDX layout (LeCun et al.): two zero bytes, a type code (0x08 = unsigned byte), the number of
dimensions d, then d big-endian uint32 sizes, then prod(sizes) values in row-major order.
Files may be gzip-compressed (``.gz``). A file that is shorter or longer than its header
says, or whose compression stream is broken, is refused with :class:`DataFileError`.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from jaxreform.errors import DataFileError

_UNSIGNED_BYTE = 0x08


def read_raw_bytes(path: str | os.PathLike) -> bytes:
    """Returns the (decompressed, if the name ends in ``.gz``) bytes of ``path``.

    Raises:
        DataFileError: if the file is missing, unreadable, or its gzip stream is truncated or
            corrupt.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataFileError(path, "file not found") from None
    except OSError as error:
        raise DataFileError(path, f"cannot be read ({error.strerror or error})") from None
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise DataFileError(
            path, f"gzip stream ends early ({len(raw):,} compressed bytes): the file is truncated"
        ) from None
    except (gzip.BadGzipFile, zlib.error, OSError) as error:
        raise DataFileError(path, f"not a valid gzip file ({error})") from None


def parse_idx(data: bytes, path: str | os.PathLike, *, expected_ndim: int) -> np.ndarray:
    """Parses IDX bytes into a uint8 array of the header's shape.

    Args:
        data: Uncompressed IDX bytes.
        path: Only used to name the file in error messages.
        expected_ndim: 1 for label files, 3 for image files.

    Returns:
        ``uint8`` array with the shape given by the header.

    Raises:
        DataFileError: on a wrong magic number, type code or dimension count, or when the
            payload is shorter (truncated) or longer than the header's sizes imply.
    """
    if len(data) < 4:
        raise DataFileError(path, f"only {len(data)} bytes: too short for an IDX header")
    zero0, zero1, type_code, ndim = data[:4]
    magic = int.from_bytes(data[:4], "big")
    expected_magic = (_UNSIGNED_BYTE << 8) | expected_ndim
    if zero0 != 0 or zero1 != 0 or type_code != _UNSIGNED_BYTE or ndim != expected_ndim:
        raise DataFileError(
            path,
            f"bad IDX magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"(unsigned bytes, {expected_ndim} dimension(s)); is this the right file?",
        )
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataFileError(path, "truncated inside the IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    expected_size = header_size + int(np.prod(shape, dtype=np.int64))
    if len(data) < expected_size:
        raise DataFileError(
            path,
            f"header promises shape {shape} ({expected_size:,} bytes) but the file holds "
            f"{len(data):,} bytes: the file is truncated",
        )
    if len(data) > expected_size:
        raise DataFileError(
            path,
            f"header promises shape {shape} ({expected_size:,} bytes) but the file holds "
            f"{len(data) - expected_size:,} extra bytes after the data",
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def read_idx(path: str | os.PathLike, *, expected_ndim: int) -> np.ndarray:
    """Reads and validates one IDX(.gz) file; see :func:`parse_idx`."""
    return parse_idx(read_raw_bytes(path), path, expected_ndim=expected_ndim)


def encode_idx(array: np.ndarray) -> bytes:
    """Encodes a uint8 array as IDX bytes (the inverse of :func:`parse_idx`)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, _UNSIGNED_BYTE, array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    return header + array.tobytes()
