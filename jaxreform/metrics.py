"""Utility and privacy metrics: how much the data changed, and how well an attack works.

Per-example functions are pure ``jnp`` and jit-able; the ``summarize_*`` helpers turn their
outputs into JSON-ready floats on the host. Shapes: n examples; d features per example.

Distances are *relative* to the original example, as in the jaxreform seed:

======================  ==========================================================
``l0``                  fraction of the d coordinates with ``|x' - x| > tolerance``
``l2``                  ``||x' - x||_2 / ||x||_2``
``linf``                ``||x' - x||_inf / ||x||_inf``
======================  ==========================================================

An all-zero original has no relative L2 or L∞ change: those entries are NaN, and the summary
excludes them and reports how many there were (``undefined``), rather than a made-up number.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxreform import _validate
from jaxreform.errors import InvalidDataError

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def norm_distances(
    original: jax.Array, reformed: jax.Array, *, l0_tolerance: float = 1e-3
) -> dict[str, jax.Array]:
    """Relative L0, L2 and L∞ change of each example (see the module docstring).

    Args:
        original: ``[n, ...]`` inputs before reformation.
        reformed: ``[n, ...]`` the same examples after, same shape.
        l0_tolerance: A coordinate counts as changed when it moved by more than this.

    Returns:
        ``{"l0": [n], "l2": [n], "linf": [n]}`` float32; NaN where the original is all zero.

    Raises:
        InvalidDataError: if the shapes differ (e.g. a code that left input space).
    """
    if original.shape != reformed.shape:
        raise InvalidDataError(
            f"original {original.shape} and reformed {reformed.shape} data must have the same "
            "shape to be compared; a reformer whose output leaves input space has no norm "
            "distance."
        )
    flat_original = original.reshape(original.shape[0], -1)
    change = reformed.reshape(reformed.shape[0], -1) - flat_original

    def relative(numerator, denominator):
        return jnp.where(denominator > 0, numerator / jnp.where(denominator > 0, denominator, 1),
                         jnp.nan)

    return {
        "l0": jnp.mean(jnp.abs(change) > l0_tolerance, axis=1).astype(jnp.float32),
        "l2": relative(jnp.linalg.norm(change, axis=1), jnp.linalg.norm(flat_original, axis=1)),
        "linf": relative(jnp.max(jnp.abs(change), axis=1), jnp.max(jnp.abs(flat_original), axis=1)),
    }


def summarize(values) -> dict[str, float]:
    """Mean, std, min, quantiles and max of ``values [n]``, skipping NaN (counted as undefined).

    Raises:
        InvalidDataError: if every value is NaN, or any is ±Inf.
    """
    values = np.asarray(values, dtype=np.float64)
    if np.isinf(values).any():
        raise InvalidDataError(f"{int(np.isinf(values).sum())} value(s) are infinite.")
    defined = values[~np.isnan(values)]
    if values.size == 0:
        raise InvalidDataError("nothing to summarize: no values.")
    if defined.size == 0:
        raise InvalidDataError(f"all {values.size} values are undefined (NaN).")
    summary = {"mean": float(defined.mean()), "std": float(defined.std()),
               "min": float(defined.min())}
    for q in QUANTILES:
        summary[f"q{round(q * 100):02d}"] = float(np.quantile(defined, q))
    summary["max"] = float(defined.max())
    summary["undefined"] = int(values.size - defined.size)
    return summary


def summarize_distances(original, reformed, *, l0_tolerance: float = 1e-3) -> dict:
    """:func:`norm_distances` summarized per metric, plus the tolerance used for L0.

    Raises:
        InvalidDataError: if either array holds NaN or Inf (a distance to NaN is no distance).
    """
    _validate.check_finite("original data", original)
    _validate.check_finite("reformed data", reformed)
    distances = norm_distances(jnp.asarray(original), jnp.asarray(reformed),
                               l0_tolerance=l0_tolerance)
    summary = {name: summarize(values) for name, values in distances.items()}
    summary["l0_tolerance"] = l0_tolerance
    return summary


def roc_points(member_scores: jax.Array, nonmember_scores: jax.Array):
    """ROC of "member if score >= t", one point per distinct threshold, exact under ties.

    Args:
        member_scores: ``[n1]``; higher means "more likely a member".
        nonmember_scores: ``[n0]``.

    Returns:
        ``(fpr, tpr)``, each ``[n1 + n0 + 1]``, ordered by increasing fpr, starting at (0, 0).
        Thresholds are every observed score plus +inf, so tied scores move together.
    """
    thresholds = jnp.sort(jnp.concatenate([member_scores, nonmember_scores]))[::-1]
    members_sorted = jnp.sort(member_scores)
    nonmembers_sorted = jnp.sort(nonmember_scores)

    def rate_at_or_above(sorted_scores):
        below = jnp.searchsorted(sorted_scores, thresholds, side="left")
        return (sorted_scores.shape[0] - below) / sorted_scores.shape[0]

    zero = jnp.zeros(1)
    return (jnp.concatenate([zero, rate_at_or_above(nonmembers_sorted)]),
            jnp.concatenate([zero, rate_at_or_above(members_sorted)]))


def auc(member_scores: jax.Array, nonmember_scores: jax.Array) -> jax.Array:
    """Area under the ROC curve: P(member score > non-member score) + ½ P(tie).

    Computed from mid-ranks (the Mann-Whitney statistic), so ties count one half. Pure and
    jit-able, so it cannot refuse NaN scores: :func:`threshold_attack_metrics` checks them.
    """
    pooled = jnp.sort(jnp.concatenate([member_scores, nonmember_scores]))
    mid_rank = 0.5 * (jnp.searchsorted(pooled, member_scores, side="left")
                      + jnp.searchsorted(pooled, member_scores, side="right") + 1)
    n1, n0 = member_scores.shape[0], nonmember_scores.shape[0]
    return (jnp.sum(mid_rank) - n1 * (n1 + 1) / 2) / (n1 * n0)


def tpr_at_fpr(member_scores: jax.Array, nonmember_scores: jax.Array, max_fpr: float):
    """Highest TPR over thresholds whose FPR is at most ``max_fpr`` (a scalar)."""
    fpr, tpr = roc_points(member_scores, nonmember_scores)
    return jnp.max(jnp.where(fpr <= max_fpr, tpr, 0.0))


def threshold_attack_metrics(
    member_scores, nonmember_scores, threshold: float
) -> dict[str, float]:
    """Every metric of the attack "member if score >= threshold", plus threshold-free ones.

    Args:
        member_scores: ``[n1]`` attack scores of members (higher = more member-like).
        nonmember_scores: ``[n0]`` scores of non-members. Precision depends on the base rate;
            pass balanced sets (n1 = n0) to read it as the seed and Shokri et al. do.
        threshold: Decision threshold on the score.

    Returns:
        precision, recall (= TPR), fpr, advantage (TPR - FPR at the threshold),
        max_advantage (over all thresholds, an optimistic upper bound), auc, tpr_at_0.1%_fpr,
        tpr_at_1%_fpr, and the sizes.
    """
    members = jnp.asarray(member_scores)
    nonmembers = jnp.asarray(nonmember_scores)
    _validate.check_finite_numbers(threshold=threshold)
    _validate.check_finite("member scores", members)
    _validate.check_finite("non-member scores", nonmembers)
    if members.size == 0 or nonmembers.size == 0:
        raise InvalidDataError("an attack needs at least one member and one non-member score.")
    true_positives = float(jnp.sum(members >= threshold))
    false_positives = float(jnp.sum(nonmembers >= threshold))
    tpr = true_positives / members.size
    fpr_value = false_positives / nonmembers.size
    predicted = true_positives + false_positives
    fpr_curve, tpr_curve = roc_points(members, nonmembers)
    return {
        "threshold": float(threshold),
        "precision": true_positives / predicted if predicted else float("nan"),
        "recall": tpr,
        "fpr": fpr_value,
        "advantage": tpr - fpr_value,
        "max_advantage": float(jnp.max(tpr_curve - fpr_curve)),
        "auc": float(auc(members, nonmembers)),
        "tpr_at_0.1%_fpr": float(tpr_at_fpr(members, nonmembers, 0.001)),
        "tpr_at_1%_fpr": float(tpr_at_fpr(members, nonmembers, 0.01)),
        "num_members": int(members.size),
        "num_nonmembers": int(nonmembers.size),
    }


def loss_threshold_attack(
    member_losses, nonmember_losses, *, threshold: float | None = None
) -> dict[str, float]:
    """The loss-threshold membership attack of Yeom et al. (2018): member if loss <= τ.

    Args:
        member_losses: ``[n1]`` per-example losses of training points.
        nonmember_losses: ``[n0]`` losses of held-out points.
        threshold: τ. Yeom et al. use the model's mean training loss, which the pipeline
            passes; None falls back to the mean of ``member_losses``.

    Returns:
        The metrics of :func:`threshold_attack_metrics` with ``threshold`` reported as τ on
        the loss (scores are negated losses internally).

    References:
        Yeom, Giacomelli, Fredrikson, Jha. "Privacy Risk in Machine Learning: Analyzing the
        Connection to Overfitting", CSF 2018. https://arxiv.org/abs/1709.01604
    """
    member_losses = jnp.asarray(member_losses)
    tau = float(jnp.mean(member_losses)) if threshold is None else float(threshold)
    metrics = threshold_attack_metrics(-member_losses, -jnp.asarray(nonmember_losses), -tau)
    metrics["threshold"] = tau
    return metrics
