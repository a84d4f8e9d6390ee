"""Host-side checks on user input, run before anything is jitted.

Each helper names the offending argument in its message, says what was expected and what
arrived, and raises one of :mod:`jaxreform.errors`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from jaxreform.errors import ConfigError, InvalidDataError


def check_finite(name: str, array) -> None:
    """Raises InvalidDataError if ``array`` holds NaN or Inf, saying how many and where first."""
    values = np.asarray(array)
    if not np.issubdtype(values.dtype, np.floating):
        return
    bad = ~np.isfinite(values)
    if bad.any():
        first = np.unravel_index(int(np.argmax(bad)), values.shape)
        raise InvalidDataError(
            f"{name} holds {int(bad.sum())} non-finite value(s) (NaN or Inf); first at index "
            f"{tuple(int(i) for i in first)}. Clean or drop those examples first."
        )


def check_examples(
    inputs_name: str, inputs, labels_name: str, labels, *, num_classes: int | None = None
) -> None:
    """Checks an ``(inputs [n, ...], labels [n])`` pair: same n, n > 0, finite, labels in range."""
    inputs = np.asarray(inputs)
    labels = np.asarray(labels)
    if inputs.ndim < 2:
        raise InvalidDataError(
            f"{inputs_name} must have shape [n, ...] with at least 2 axes, got {inputs.shape}."
        )
    if labels.ndim != 1:
        raise InvalidDataError(f"{labels_name} must have shape [n], got {labels.shape}.")
    if inputs.shape[0] != labels.shape[0]:
        raise InvalidDataError(
            f"{inputs_name} has {inputs.shape[0]} examples but {labels_name} has "
            f"{labels.shape[0]} labels; they must match one to one."
        )
    if inputs.shape[0] == 0:
        raise InvalidDataError(f"{inputs_name} is empty: at least one example is needed.")
    check_finite(inputs_name, inputs)
    if not np.issubdtype(labels.dtype, np.integer):
        raise InvalidDataError(f"{labels_name} must be integers, got dtype {labels.dtype}.")
    if num_classes is not None:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            raise InvalidDataError(
                f"{labels_name} must lie in [0, {num_classes - 1}], found values in "
                f"[{low}, {high}]."
            )


def check_choice(name: str, value: str, choices: Iterable[str]) -> None:
    """Raises ConfigError if ``value`` is not one of ``choices``, listing the valid ones."""
    choices = sorted(choices)
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}.")


def check_integers(**named_values) -> None:
    """Raises ConfigError for any keyword whose value is not an integer (bools excluded)."""
    for name, value in named_values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(f"{name} must be an integer, got {name}={value!r}.")


def check_finite_numbers(**named_values) -> None:
    """Raises ConfigError for any keyword whose value is NaN or ±Inf."""
    for name, value in named_values.items():
        if not np.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {name}={value!r}.")


def check_positive(**named_values) -> None:
    """Raises ConfigError for any keyword whose value is not > 0, e.g. ``epochs=0``."""
    for name, value in named_values.items():
        if not value > 0:
            raise ConfigError(f"{name} must be > 0, got {name}={value!r}.")
        if not np.isfinite(value):
            raise ConfigError(f"{name} must be finite, got {name}={value!r}.")


def check_fraction(**named_values) -> None:
    """Raises ConfigError for any keyword whose value is not in [0, 1]."""
    for name, value in named_values.items():
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name} must lie in [0, 1], got {name}={value!r}.")
