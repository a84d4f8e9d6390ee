"""Attribute inference by model inversion (Fredrikson et al., USENIX Security 2014).

The attacker holds the trained model ``apply(params, x) -> logits``, a record's true label y
and every attribute of the record but one categorical attribute a, and knows the prior of a
(its frequency in the training data). For each candidate value v of a it completes the record
with ``a = v`` (the one-hot block of a set to v), and scores

    score(v) = p_model(y | x with a = v) * prior(v),

guessing the v with the highest score. This is the general form of the paper's attack with
the model's output probability standing in for its error model. The baseline it must beat
guesses the most frequent value of a for every record, which is what the prior alone gives.

Shapes: n records, d encoded features, c candidate values of the attribute, k classes.

References:
    M. Fredrikson, E. Lantz, S. Jha, S. Lin, D. Page, T. Ristenpart, "Privacy in
    Pharmacogenetics: An End-to-End Case Study of Personalized Warfarin Dosing", USENIX
    Security 2014. https://www.usenix.org/conference/usenixsecurity14/technical-sessions/
    presentation/fredrikson_matthew
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxreform import _validate
from jaxreform.data.adult import TabularEncoding
from jaxreform.errors import InvalidDataError
from jaxreform.train import map_in_chunks

Params = Any
ApplyFn = Callable[[Params, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class AttributeInferenceResult:
    """Outcome of :func:`attribute_inference_attack`.

    Attributes:
        attribute: Name of the attacked column.
        candidates: The c values the attacker chose among.
        predictions: ``[n]`` int32 index into ``candidates`` of each guess.
        true_values: ``[n]`` int32 index of each record's real value.
        accuracy: Fraction of records whose value the attack guessed.
        baseline_value: The most frequent value under the prior.
        baseline_accuracy: Fraction of records whose value is ``baseline_value``.
        num_records: n.
    """

    attribute: str
    candidates: tuple[str, ...]
    predictions: np.ndarray
    true_values: np.ndarray
    accuracy: float
    baseline_value: str
    baseline_accuracy: float
    num_records: int

    @property
    def advantage(self) -> float:
        """``accuracy - baseline_accuracy``: what the model leaks beyond the prior."""
        return self.accuracy - self.baseline_accuracy

    def summary(self) -> dict:
        """The numbers as plain JSON-ready values (no per-record arrays)."""
        return {
            "attribute": self.attribute,
            "num_records": self.num_records,
            "num_candidates": len(self.candidates),
            "accuracy": self.accuracy,
            "baseline_value": self.baseline_value,
            "baseline_accuracy": self.baseline_accuracy,
            "advantage": self.advantage,
        }


def candidate_scores(
    apply_fn: ApplyFn,
    params: Params,
    record: jax.Array,
    label: jax.Array,
    log_prior: jax.Array,
    *,
    start: int,
) -> jax.Array:
    """Log-scores of every candidate value for one record.

    Args:
        apply_fn: ``apply(params, x [b, d]) -> logits [b, k]``.
        params: The model's parameter pytree.
        record: ``[d]`` encoded record; its block ``[start, start + c)`` is overwritten.
        label: ``[]`` int, the record's known class.
        log_prior: ``[c]`` log prior of the candidate values (``-inf`` rules one out).
        start: Feature index of the attribute's one-hot block (static).

    Returns:
        ``[c]`` float32: ``log p_model(label | record with value v) + log_prior[v]``.
    """
    size = log_prior.shape[0]
    completed = jnp.tile(record, (size, 1)).at[:, start:start + size].set(jnp.eye(size))
    log_probs = jax.nn.log_softmax(apply_fn(params, completed), axis=-1)
    return log_probs[:, label] + log_prior


@functools.partial(jax.jit, static_argnames=("apply_fn", "start", "chunk_size"))
def infer_attribute(
    apply_fn: ApplyFn,
    params: Params,
    inputs: jax.Array,
    labels: jax.Array,
    log_prior: jax.Array,
    *,
    start: int,
    chunk_size: int = 1024,
) -> jax.Array:
    """The attack's guess for every record: vmapped over records, ``chunk_size`` at a time.

    Args:
        apply_fn: ``apply(params, x [b, d]) -> logits [b, k]`` (hashable: it is static).
        params: The model's parameter pytree.
        inputs: ``[n, d]`` encoded records (the attacked block's content is ignored).
        labels: ``[n]`` int known classes.
        log_prior: ``[c]`` log prior of the candidate values.
        start: Feature index of the attribute's one-hot block.
        chunk_size: Records per vmapped chunk; memory grows as ``chunk_size * c * d``.

    Returns:
        ``[n]`` int32 index of the highest-scoring candidate (the first one on ties).
    """
    def chunk(records, chunk_labels):
        score = functools.partial(candidate_scores, apply_fn, params, start=start)
        scores = jax.vmap(score, in_axes=(0, 0, None))(records, chunk_labels, log_prior)
        return jnp.argmax(scores, axis=-1).astype(jnp.int32)

    return map_in_chunks(chunk, (inputs, labels), min(chunk_size, inputs.shape[0]))


def _true_values(inputs: np.ndarray, block: slice, attribute: str) -> np.ndarray:
    values = inputs[:, block]
    if not np.all((values == 0) | (values == 1)) or not np.all(values.sum(axis=1) == 1):
        bad = int(np.argmax(~((values == 0) | (values == 1)).all(axis=1)
                            | (values.sum(axis=1) != 1)))
        raise InvalidDataError(
            f"inputs[{bad}] does not hold exactly one 1 in the one-hot block of {attribute!r} "
            f"(features {block.start}..{block.stop - 1}); pass records encoded with this "
            "encoding (not reformed or standardised ones).")
    return np.argmax(values, axis=1).astype(np.int32)


def _log_prior(prior, column_prior: np.ndarray, attribute: str) -> np.ndarray:
    prior = column_prior if prior is None else np.asarray(prior, dtype=np.float64)
    if prior.shape != column_prior.shape:
        raise InvalidDataError(f"prior of {attribute!r} must have shape {column_prior.shape} "
                               f"(one weight per category), got {prior.shape}.")
    _validate.check_finite(f"prior of {attribute!r}", prior)
    if (prior < 0).any() or prior.sum() <= 0:
        raise InvalidDataError(f"prior of {attribute!r} must be non-negative with a positive "
                               f"sum, got {prior.tolist()}.")
    with np.errstate(divide="ignore"):
        return np.log(prior / prior.sum()).astype(np.float32)


def attribute_inference_attack(
    apply_fn: ApplyFn,
    params: Params,
    inputs,
    labels,
    encoding: TabularEncoding,
    attribute_name: str,
    *,
    prior: np.ndarray | Sequence[float] | None = None,
    chunk_size: int = 1024,
) -> AttributeInferenceResult:
    """Runs the Fredrikson et al. attack on one categorical attribute of every record.

    Args:
        apply_fn: ``apply(params, x [b, d]) -> logits [b, k]`` of the attacked model, taking
            records encoded by ``encoding`` (for a reformed model: classifier ∘ encoder).
        params: The model's parameter pytree.
        inputs: ``[n, d]`` records encoded by ``encoding``; the attacked block must be
            one-hot (it holds the true values the guesses are scored against).
        labels: ``[n]`` int true classes in ``[0, k)``, known to the attacker.
        encoding: The dataset's :class:`~jaxreform.data.adult.TabularEncoding`.
        attribute_name: The categorical column to infer, e.g. ``"marital-status"``.
        prior: ``[c]`` non-negative weights of the candidates; default the training-split
            frequencies stored in ``encoding``. The baseline guesses its most likely value.
        chunk_size: Records scored per vmapped chunk.

    Returns:
        The guesses, their accuracy and the prior-only baseline's.

    Raises:
        ConfigError: if the attribute is unknown or continuous.
        InvalidDataError: for mismatched shapes, labels outside the model's k classes, a block
            that is not one-hot, or a bad prior.
    """
    column = encoding.categorical(attribute_name)
    inputs = np.asarray(inputs, dtype=np.float32)
    labels = np.asarray(labels)
    _validate.check_examples("inputs", inputs, "labels", labels)
    _validate.check_integers(chunk_size=chunk_size)
    _validate.check_positive(chunk_size=chunk_size)
    if inputs.ndim != 2 or inputs.shape[1] != encoding.num_features:
        raise InvalidDataError(f"inputs must have shape [n, {encoding.num_features}] (the "
                               f"{encoding.dataset} encoding's width), got {inputs.shape}.")
    num_classes = jax.eval_shape(apply_fn, params, jnp.asarray(inputs[:1])).shape[-1]
    if labels.min() < 0 or labels.max() >= num_classes:
        raise InvalidDataError(f"labels must lie in [0, {num_classes - 1}] (the model has "
                               f"{num_classes} classes), found values in "
                               f"[{labels.min()}, {labels.max()}].")
    true_values = _true_values(inputs, column.slice, attribute_name)
    log_prior = _log_prior(prior, column.prior(), attribute_name)

    predictions = np.asarray(infer_attribute(
        apply_fn, params, jnp.asarray(inputs), jnp.asarray(labels, dtype=jnp.int32),
        jnp.asarray(log_prior), start=column.start, chunk_size=chunk_size))
    baseline = int(np.argmax(log_prior))
    return AttributeInferenceResult(
        attribute=attribute_name,
        candidates=column.categories,
        predictions=predictions,
        true_values=true_values,
        accuracy=float(np.mean(predictions == true_values)),
        baseline_value=column.categories[baseline],
        baseline_accuracy=float(np.mean(true_values == baseline)),
        num_records=int(inputs.shape[0]),
    )
