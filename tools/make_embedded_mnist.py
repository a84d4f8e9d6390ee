"""Rebuilds the MNIST subset shipped in jaxreform/data/embedded/mnist/ from the official files.

Usage: python tools/make_embedded_mnist.py ../shared/data/mnist

Takes the first 6,000 training and the first 1,000 test images (official order) with their
labels, and writes them as gzip-compressed IDX files (fixed mtime, so rebuilds are identical).
"""

import gzip
import sys
from pathlib import Path

from jaxreform.data.idx import encode_idx, read_idx

NUM_TRAIN, NUM_TEST = 6000, 1000


def main(source: str) -> None:
    target = Path(__file__).resolve().parents[1] / "jaxreform/data/embedded/mnist"
    plan = {
        "train-images-idx3-ubyte": (3, NUM_TRAIN),
        "train-labels-idx1-ubyte": (1, NUM_TRAIN),
        "t10k-images-idx3-ubyte": (3, NUM_TEST),
        "t10k-labels-idx1-ubyte": (1, NUM_TEST),
    }
    for stem, (ndim, count) in plan.items():
        array = read_idx(Path(source) / f"{stem}.gz", expected_ndim=ndim)[:count]
        with gzip.GzipFile(target / f"{stem}.gz", "wb", compresslevel=9, mtime=0) as out:
            out.write(encode_idx(array))
        print(f"{stem}.gz: {array.shape}")


if __name__ == "__main__":
    main(sys.argv[1])
