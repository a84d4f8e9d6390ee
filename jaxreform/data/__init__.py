"""Dataset loaders. Each returns a validated :class:`Dataset`; nothing is ever downloaded.

Use :func:`load_dataset` with a name, or the per-dataset loaders directly.
"""

from __future__ import annotations

import os

from jaxreform import _validate
from jaxreform.data.core import (
    DATA_DIR_ENV,
    Dataset,
    resolve_data_dir,
    subset_indices,
    take_subset,
)
from jaxreform.data.idx import encode_idx, parse_idx, read_idx
from jaxreform.data.att_faces import load_att_faces
from jaxreform.data.cifar10 import load_cifar10
from jaxreform.data.adult import TabularEncoding, load_adult, load_adult_with_encoding
from jaxreform.data.malware import load_malware, load_malware_with_encoding
from jaxreform.data.mnist import EMBEDDED_SOURCE, load_mnist

LOADERS = {"mnist": load_mnist, "adult": load_adult, "malware": load_malware,
           "att_faces": load_att_faces, "cifar10": load_cifar10}


def load_dataset(name: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Loads a dataset by name (see ``LOADERS``) from ``data_dir`` or ``$JAXREFORM_DATA_DIR``.

    Raises:
        ConfigError: for an unknown name, listing the known ones.
    """
    _validate.check_choice("dataset", name, LOADERS)
    return LOADERS[name](data_dir)


__all__ = [
    "DATA_DIR_ENV", "Dataset", "EMBEDDED_SOURCE", "LOADERS", "TabularEncoding", "encode_idx",
    "load_adult", "load_adult_with_encoding", "load_att_faces", "load_cifar10", "load_dataset",
    "load_malware", "load_malware_with_encoding", "load_mnist", "parse_idx", "read_idx",
    "resolve_data_dir", "subset_indices", "take_subset",
]
