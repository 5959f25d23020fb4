"""How good the learned models are, measured as they learn (progressive validation).

- :class:`ChurnQuality`: every settled churn prediction is scored with the
  probability published *when it was made*, before the model learns from it:
  ROC AUC (:class:`BinnedAUC`), log loss and Brier score (mean squared error of the
  probability).
- :class:`ClusterQuality`: the simplified (centroid) silhouette of each assignment,
  ``(b - a) / max(a, b)`` with ``a`` the distance to the own centre and ``b`` to the
  nearest other one (-1..1, higher is better), and stability: the share of
  re-evaluations that left a customer in the same cluster. Both are means that fade
  (memory about ``1 / fading`` updates), so they describe the model as it is now.
- :func:`adjusted_rand_index` compares a clustering with known groups.

>>> adjusted_rand_index(["a", "a", "b", "b"], [1, 1, 0, 0])
1.0
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from river import metrics as river_metrics

EPSILON = 1e-15
metrics: Any = river_metrics  # river has no type hints


def adjusted_rand_index(truth: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    """Adjusted Rand index of two labellings of the same items (1 identical, ~0 random)."""
    if len(truth) != len(predicted):
        raise ValueError("both labellings must cover the same items")
    metric = metrics.AdjustedRand()
    for true, found in zip(truth, predicted, strict=True):
        metric.update(true, found)
    return float(metric.get())


class FadingMean:
    """Mean of a stream, exact for the first ``1 / fading`` values, then exponentially fading."""

    def __init__(self, fading: float) -> None:
        self.fading = fading
        self.count = 0
        self.value = math.nan

    def update(self, value: float) -> None:
        """Take in one value."""
        self.count += 1
        if self.count == 1:
            self.value = value
            return
        self.value += max(1.0 / self.count, self.fading) * (value - self.value)


class BinnedAUC:
    """ROC AUC from per-bin counts of positive and negative scores: O(1) per update and
    ``2 x bins`` integers of state, exact up to ties inside a bin (counted as half).

    >>> auc = BinnedAUC()
    >>> for label, score in [(True, 0.9), (False, 0.1), (True, 0.4), (False, 0.6)]:
    ...     auc.update(label, score)
    >>> auc.get()
    0.75
    """

    def __init__(self, bins: int = 200) -> None:
        self.positives = [0] * bins
        self.negatives = [0] * bins

    def update(self, label: bool, score: float) -> None:
        """Count one scored outcome (scores are clipped to 0..1)."""
        bins = len(self.positives)
        index = min(bins - 1, max(0, int(score * bins)))
        (self.positives if label else self.negatives)[index] += 1

    def get(self) -> float:
        """P(a positive scores above a negative), ties half; NaN without both outcomes."""
        pairs = sum(self.positives) * sum(self.negatives)
        if pairs == 0:
            return math.nan
        below = 0
        wins = 0.0
        for positive, negative in zip(self.positives, self.negatives, strict=True):
            wins += positive * (below + 0.5 * negative)
            below += negative
        return wins / pairs


class ChurnQuality:
    """Progressive-validation metrics of a churn probability."""

    def __init__(self) -> None:
        self.roc_auc = BinnedAUC()
        self.log_loss = metrics.LogLoss()
        self.brier = metrics.MSE()
        self.labelled = 0
        self.positives = 0

    def update(self, churned: bool, probability: float) -> None:
        """Score one prediction made before its outcome was known."""
        clipped = min(max(probability, EPSILON), 1.0 - EPSILON)
        self.roc_auc.update(churned, clipped)
        self.log_loss.update(churned, clipped)
        self.brier.update(float(churned), probability)
        self.labelled += 1
        self.positives += int(churned)

    def as_dict(self) -> dict[str, float]:
        """``roc_auc``, ``log_loss``, ``brier`` (NaN before both outcomes were seen for AUC,
        before any for the others), ``labelled`` and ``positives``."""
        both_seen = 0 < self.positives < self.labelled
        return {
            "roc_auc": float(self.roc_auc.get()) if both_seen else math.nan,
            "log_loss": float(self.log_loss.get()) if self.labelled else math.nan,
            "brier": float(self.brier.get()) if self.labelled else math.nan,
            "labelled": float(self.labelled),
            "positives": float(self.positives),
        }


class ClusterQuality:
    """Fading silhouette and stability of a clustering's assignments."""

    def __init__(self, fading: float = 0.001) -> None:
        self.silhouette = FadingMean(fading)
        self.stability = FadingMean(fading)

    def update(self, own: Hashable, squared_distances: Mapping[Any, float]) -> None:
        """Score an assignment to centre ``own``, given the point's squared distance to
        every centre (needs two centres at least)."""
        if len(squared_distances) < 2:
            return
        own_distance = math.sqrt(squared_distances[own])
        other = math.sqrt(min(d for key, d in squared_distances.items() if key != own))
        widest = max(own_distance, other)
        self.silhouette.update(0.0 if widest == 0.0 else (other - own_distance) / widest)

    def reassigned(self, kept: bool) -> None:
        """Record whether a re-evaluated customer stayed in their cluster."""
        self.stability.update(1.0 if kept else 0.0)

    def as_dict(self) -> dict[str, float]:
        """``silhouette`` and ``stability`` (NaN before any update)."""
        return {"silhouette": self.silhouette.value, "stability": self.stability.value}


def distance(x: Mapping[str, float], centre: Mapping[str, float]) -> float:
    """Euclidean distance over the features of ``x`` (missing centre features count as 0)."""
    return math.dist(tuple(x.values()), [centre.get(name, 0.0) for name in x])
