"""Progressive-validation metrics and the cluster quality measures."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from segstream.learning.quality import (
    BinnedAUC,
    ChurnQuality,
    ClusterQuality,
    MomentAUC,
    adjusted_rand_index,
)


@pytest.mark.parametrize(
    ("truth", "predicted", "expected"),
    [
        ([0, 0, 1, 1], [1, 1, 0, 0], 1.0),  # relabelled: the same partition
        ([0, 0, 1, 1], [0, 0, 1, 2], 0.5714285714285715),  # scikit-learn's documented value
        ([0, 0, 0, 0], [0, 1, 2, 3], 0.0),
        (["a", "a", "b", "b", "c", "c"], [1, 2, 1, 2, 1, 2], -4 / 11),  # (0 - 1.2) / (4.5 - 1.2)
    ],
)
def test_adjusted_rand_index(truth: list[object], predicted: list[object], expected: float) -> None:
    assert adjusted_rand_index(truth, predicted) == pytest.approx(expected)


def test_adjusted_rand_index_needs_the_same_items() -> None:
    with pytest.raises(ValueError, match="same items"):
        adjusted_rand_index([1, 2], [1])


def test_churn_quality_scores_what_was_predicted() -> None:
    quality = ChurnQuality()
    outcomes = [(True, 0.9), (False, 0.1), (True, 0.4), (False, 0.6), (True, 0.7)]
    for churned, probability in outcomes:
        quality.update(churned, probability)
    scores = quality.as_dict()
    assert scores["roc_auc"] == pytest.approx(5 / 6)
    assert scores["log_loss"] == pytest.approx(
        -sum(math.log(p if y else 1 - p) for y, p in outcomes) / 5
    )
    assert scores["brier"] == pytest.approx(sum((y - p) ** 2 for y, p in outcomes) / 5)
    assert (scores["labelled"], scores["positives"]) == (5.0, 3.0)


def test_churn_quality_is_undefined_before_outcomes() -> None:
    quality = ChurnQuality()
    assert all(math.isnan(quality.as_dict()[k]) for k in ("roc_auc", "log_loss", "brier"))
    quality.update(True, 0.8)
    assert math.isnan(quality.as_dict()["roc_auc"])
    assert quality.as_dict()["brier"] == pytest.approx(0.04)


def test_silhouette_is_one_at_the_own_centre_and_zero_midway() -> None:
    at_centre, midway = ClusterQuality(), ClusterQuality()
    at_centre.update(0, {0: 0.0, 1: 4.0})
    midway.update(0, {0: 1.0, 1: 1.0})
    assert at_centre.as_dict()["silhouette"] == 1.0
    assert midway.as_dict()["silhouette"] == 0.0


def test_stability_is_the_share_of_kept_assignments() -> None:
    quality = ClusterQuality()
    for kept in (True, True, True, False):
        quality.reassigned(kept)
    assert quality.as_dict()["stability"] == pytest.approx(0.75)


@pytest.mark.parametrize("seed", range(5))
def test_binned_auc_equals_the_pairwise_definition(seed: int) -> None:
    rng = random.Random(seed)
    scored = [(rng.random() < 0.3, (rng.randrange(100) + 0.5) / 100) for _ in range(300)]
    auc = BinnedAUC(bins=100)
    for label, score in scored:
        auc.update(label, score)
    positives = [s for label, s in scored if label]
    negatives = [s for label, s in scored if not label]
    pairs = [(p > n) + 0.5 * (p == n) for p in positives for n in negatives]
    # one score value per bin: binning loses nothing here
    assert auc.get() == pytest.approx(sum(pairs) / len(pairs))


def test_binned_auc_clips_scores_and_is_undefined_with_one_outcome() -> None:
    auc = BinnedAUC()
    auc.update(True, 1.0)
    assert math.isnan(auc.get())
    auc.update(False, -0.5)
    assert auc.get() == 1.0


def _near_pairs(scored: list[tuple[int, bool, float]], width: int) -> list[float]:
    """Every (churned, stayed) pair predicted less than ``width`` days apart: won or not."""
    return [
        (p > n) + 0.5 * (p == n)
        for day, label, p in scored
        if label
        for other, stayed, n in scored
        if not stayed and abs(other - day) < width
    ]


@pytest.mark.parametrize(
    ("seed", "width"), [(seed, width) for seed in range(3) for width in (1, 7)]
)
def test_moment_auc_ranks_only_predictions_made_close_together(seed: int, width: int) -> None:
    rng = random.Random(seed)
    scored = [
        (day, rng.random() < 0.3, (rng.randrange(100) + 0.5) / 100)
        for day in range(40)
        for _ in range(rng.randrange(1, 6))
    ]
    auc = MomentAUC(bins=100, width_days=width)
    for day, label, score in scored:  # settled in prediction order, as the labeller does
        auc.update(label, score, day + 0.5)
    pairs = _near_pairs(scored, width)
    assert auc.get() == pytest.approx(sum(pairs) / len(pairs))


def test_moment_auc_is_not_lowered_by_days_that_score_at_other_levels() -> None:
    """Each month ranks perfectly, but the later month's probabilities are all higher:
    pooled, its non-churners outrank the earlier month's churners; a holdout never
    compares them."""
    pooled, moment = BinnedAUC(), MomentAUC()
    for day, shift in ((0, 0.0), (30, 0.5)):
        for label, score in ((True, 0.3 + shift), (False, 0.1 + shift)):
            pooled.update(label, score)
            moment.update(label, score, day)
    assert pooled.get() == pytest.approx(0.75)
    assert moment.get() == 1.0


def test_moment_auc_fades_with_the_prediction_day() -> None:
    auc = MomentAUC(tau_days=10.0)
    for day, won in ((0.0, False), (10.0, True)):  # one pair each, lost then won
        auc.update(True, 0.9 if won else 0.1, day)
        auc.update(False, 0.5, day)
    assert auc.get() == pytest.approx(1.0 / (1.0 + math.exp(-1.0)))


def test_moment_auc_keeps_a_bounded_number_of_days_and_counts_late_outcomes() -> None:
    auc = MomentAUC(width_days=3, keep_days=7)
    for day in range(100):
        auc.update(True, 0.9, day)
        auc.update(False, 0.1, day)
        assert len(auc.days) <= 7
    auc.update(True, 0.0, 50.0)  # a settlement far behind the others: no pairs
    auc.update(False, 1.0, 50.0)
    assert (auc.get(), auc.late) == (1.0, 2)
    assert math.isnan(MomentAUC().get())


def test_churn_quality_restores_a_pooled_auc_checkpoint_keeping_its_losses() -> None:
    quality = ChurnQuality(tau_days=30.0)
    for churned, probability in ((True, 0.8), (False, 0.3)):
        quality.update(churned, probability)
    state = dict(quality.__dict__, roc_auc=BinnedAUC())  # as checkpointed before MomentAUC
    old = ChurnQuality.__new__(ChurnQuality)
    old.__setstate__(state)
    restored = pickle.loads(pickle.dumps(old))
    assert isinstance(restored.roc_auc, MomentAUC)
    assert math.isnan(restored.as_dict()["roc_auc"])
    assert restored.as_dict()["brier"] == quality.as_dict()["brier"]
    restored.update(True, 0.9, 1.0)
    restored.update(False, 0.2, 1.0)
    assert restored.as_dict()["roc_auc"] == 1.0
