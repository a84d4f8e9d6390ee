"""Metrics on hand-computed examples and against scikit-learn as a reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from jaxreform import metrics
from jaxreform.errors import InvalidDataError


def test_norm_distances_by_hand():
    original = jnp.array([[3.0, 4.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    reformed = jnp.array([[3.0, 0.0, 0.0, 0.0005], [1.0, 2.0, 1.0, -1.0]])
    distances = metrics.norm_distances(original, reformed, l0_tolerance=1e-3)
    # Row 0: only one coordinate moved beyond 1e-3 (by 4); ||x|| = 5, max|x| = 4.
    # Row 1: two moved (by 1 and by 2): ||d|| = sqrt(5), ||x|| = 2, max|d| = 2, max|x| = 1.
    np.testing.assert_allclose(distances["l0"], [0.25, 0.5])
    np.testing.assert_allclose(distances["l2"], [4 / 5, np.sqrt(5) / 2], rtol=1e-6)
    np.testing.assert_allclose(distances["linf"], [1.0, 2.0])


def test_all_zero_original_is_undefined_not_invented():
    original = jnp.array([[0.0, 0.0], [1.0, 0.0]])
    reformed = jnp.array([[0.5, 0.0], [1.0, 0.5]])
    summary = metrics.summarize_distances(original, reformed)
    assert summary["l2"]["undefined"] == 1
    assert summary["l2"]["mean"] == pytest.approx(0.5)
    assert summary["l0"]["mean"] == pytest.approx(0.5)  # L0 is defined for both rows
    with pytest.raises(InvalidDataError, match="same shape"):
        metrics.norm_distances(original, reformed[:, :1])


def test_norm_distances_jit_and_vmap_agree_with_eager():
    key_a, key_b = jax.random.split(jax.random.key(0))
    original = jax.random.uniform(key_a, (5, 3, 4))
    reformed = original + 0.1 * jax.random.normal(key_b, (5, 3, 4))
    eager = metrics.norm_distances(original, reformed)
    jitted = jax.jit(metrics.norm_distances)(original, reformed)
    for name in eager:
        np.testing.assert_allclose(jitted[name], eager[name], rtol=1e-6)


def test_summary_quantiles_match_numpy():
    values = np.arange(101, dtype=np.float64)
    summary = metrics.summarize(values)
    assert summary["mean"] == 50.0 and summary["q05"] == 5.0 and summary["q95"] == 95.0
    assert summary["min"] == 0.0 and summary["max"] == 100.0 and summary["undefined"] == 0


@pytest.fixture
def tied_scores():
    rng = np.random.default_rng(0)
    # Rounded to one decimal so that many scores tie, across and within the two groups.
    members = np.round(rng.normal(0.4, 1.0, 300), 1)
    nonmembers = np.round(rng.normal(0.0, 1.0, 500), 1)
    return members, nonmembers


def test_auc_matches_sklearn_with_ties(tied_scores):
    members, nonmembers = tied_scores
    expected = sk_metrics.roc_auc_score(
        np.r_[np.ones(300), np.zeros(500)], np.r_[members, nonmembers])
    assert float(metrics.auc(jnp.asarray(members), jnp.asarray(nonmembers))) == pytest.approx(
        expected, abs=1e-6)


def test_roc_points_match_sklearn(tied_scores):
    members, nonmembers = tied_scores
    fpr, tpr = metrics.roc_points(jnp.asarray(members), jnp.asarray(nonmembers))
    sk_fpr, sk_tpr, _ = sk_metrics.roc_curve(
        np.r_[np.ones(300), np.zeros(500)], np.r_[members, nonmembers], drop_intermediate=False)
    # Compare as counts of false and true positives, free of float32 rounding.
    def counts(rates_fp, rates_tp):
        return set(zip(np.rint(np.asarray(rates_fp) * 500).astype(int),
                       np.rint(np.asarray(rates_tp) * 300).astype(int)))

    ours, theirs = counts(fpr, tpr), counts(sk_fpr, sk_tpr)
    assert ours == theirs
    # TPR at low FPR read off sklearn's curve.
    for max_fpr in (0.01, 0.1):
        expected = sk_tpr[sk_fpr <= max_fpr].max()
        got = float(metrics.tpr_at_fpr(jnp.asarray(members), jnp.asarray(nonmembers), max_fpr))
        assert got == pytest.approx(expected, abs=1e-6)


def test_loss_threshold_attack_by_hand():
    member_losses = jnp.array([0.1, 0.2, 0.9])
    nonmember_losses = jnp.array([0.5, 1.0, 2.0])
    result = metrics.loss_threshold_attack(member_losses, nonmember_losses, threshold=0.4)
    # Losses <= 0.4 are called members: two true positives, no false positive.
    assert result["precision"] == 1.0
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["fpr"] == 0.0
    assert result["advantage"] == pytest.approx(2 / 3)
    # Member ranks among all six by loss: 0.1 and 0.2 beat all three, 0.9 beats two of three.
    assert result["auc"] == pytest.approx(8 / 9)
    # Threshold 0.9 admits all members and one non-member: advantage 1 - 1/3.
    assert result["max_advantage"] == pytest.approx(2 / 3)
    default = metrics.loss_threshold_attack(member_losses, nonmember_losses)
    assert default["threshold"] == pytest.approx(0.4)  # mean member loss


def test_precision_against_sklearn(tied_scores):
    members, nonmembers = tied_scores
    result = metrics.threshold_attack_metrics(jnp.asarray(members), jnp.asarray(nonmembers), 0.3)
    truth = np.r_[np.ones(300), np.zeros(500)]
    predicted = np.r_[members, nonmembers] >= 0.3
    assert result["precision"] == pytest.approx(sk_metrics.precision_score(truth, predicted))
    assert result["recall"] == pytest.approx(sk_metrics.recall_score(truth, predicted))


def test_attack_refuses_nan_scores():
    with pytest.raises(InvalidDataError, match="member scores holds 1 non-finite"):
        metrics.threshold_attack_metrics(jnp.array([0.1, jnp.nan]), jnp.array([0.2]), 0.0)
