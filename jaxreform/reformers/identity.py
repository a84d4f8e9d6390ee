"""The do-nothing reformer: the clean baseline expressed through the same interface."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax


def _identity(inputs: jax.Array) -> jax.Array:
    return inputs


@dataclasses.dataclass(frozen=True)
class IdentityFitted:
    """Result of :class:`IdentityReformer`: training data and deployment unchanged."""

    reformed_train: jax.Array
    transform: Any = _identity
    info: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class IdentityReformer:
    """Leaves the data as it is (``--reformer none``)."""

    name: str = dataclasses.field(default="none", init=False)

    def fit(self, key, inputs, labels, *, progress: bool = True) -> IdentityFitted:
        """Returns the inputs unchanged; ``key`` and ``labels`` are unused."""
        del key, labels, progress
        return IdentityFitted(reformed_train=inputs)
