"""Shared fixtures: the real MNIST files in ../shared/data and the embedded subset.

Full-data tests need the staged data folder. They are skipped, with the reason, when it is
absent, unless JAXREFORM_REQUIRE_DATA=1 (set by .ci/run), which turns the skip into a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jaxreform import data

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The staged data folder (``$JAXREFORM_DATA_DIR`` or ``../shared/data``)."""
    folder = Path(os.environ.get(data.DATA_DIR_ENV) or DEFAULT_SHARED_DATA)
    if not (folder / "mnist").is_dir():
        message = f"staged data folder {folder} with mnist/ not found"
        if os.environ.get("JAXREFORM_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return folder


@pytest.fixture(scope="session")
def full_mnist(shared_data_dir):
    """All 70,000 real MNIST images, read and validated from the staged IDX files."""
    return data.load_mnist(shared_data_dir)


@pytest.fixture(scope="session")
def embedded_mnist():
    """The 6,000 / 1,000 real MNIST subset shipped with the package."""
    return data.mnist.load_embedded_mnist()


@pytest.fixture
def no_data_env(monkeypatch):
    """Unsets ``$JAXREFORM_DATA_DIR`` so loaders fall back to the embedded subset."""
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
