"""The reformer interface: fit on the training data, then transform.

A :class:`Reformer` is a frozen config with one method, ``fit``. Fitting returns a
:class:`FittedReformer` holding the reformed training inputs and the transform applied to
inputs at deployment (the encoder for the autoencoder reformer; the identity for reformers that
only distort the training set). Pipelines train the task model on ``reformed_train`` and
deploy ``classifier(transform(x))``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import jax


class FittedReformer(Protocol):
    """A reformer after ``fit``.

    Attributes:
        reformed_train: ``[n, ...]`` reformed training inputs (same n as the fit inputs).
        transform: ``[b, ...] -> [b, ...]`` applied to every input at deployment.
        info: JSON-ready facts for the report (config, training history, code shape).
    """

    reformed_train: jax.Array
    transform: Callable[[jax.Array], jax.Array]
    info: dict[str, Any]


class Reformer(Protocol):
    """A data-reformation method; see the module docstring."""

    name: str

    def fit(
        self, key: jax.Array, inputs: jax.Array, labels: jax.Array, *, progress: bool = True
    ) -> FittedReformer:
        """Fits on ``inputs [n, ...]``, ``labels [n]`` and reforms them."""
        ...
