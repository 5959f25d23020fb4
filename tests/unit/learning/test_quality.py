"""Progressive-validation metrics and the cluster quality measures."""

from __future__ import annotations

import math
import random

import pytest

from segstream.learning.quality import BinnedAUC, ChurnQuality, ClusterQuality, adjusted_rand_index


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
