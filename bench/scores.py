"""Scores of a ranking or a probability against binary outcomes, for ``bench.quality``.

Written out here (no scikit-learn) so that every figure the quality benchmark prints can be
checked by reading a dozen lines: ROC AUC as the Mann-Whitney statistic with average ranks
for ties, log loss with probabilities clipped to [1e-15, 1 - 1e-15], the Brier score, and a
reliability table of equal-count bins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

EPSILON = 1e-15
"""Probabilities are clipped to [EPSILON, 1 - EPSILON] for the log loss (as river and
scikit-learn do): a certain prediction that is wrong costs ~34.5, not infinity."""


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks of ``values``; tied values share the mean of their ranks.

    >>> average_ranks([0.5, 0.1, 0.5, 0.9])
    [2.5, 1.0, 2.5, 4.0]
    """
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        stop = start
        while stop + 1 < len(order) and values[order[stop + 1]] == values[order[start]]:
            stop += 1
        for position in range(start, stop + 1):
            ranks[order[position]] = (start + stop) / 2 + 1
        start = stop + 1
    return ranks


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """ROC AUC: the chance that a random positive scores above a random negative, ties
    counted half (the Mann-Whitney U over both counts); NaN without both outcomes.

    >>> auc([0.9, 0.1, 0.4, 0.6], [True, False, True, False])
    0.75
    >>> auc([1, 1, 0, 0], [True, False, True, False])  # ties inside: a coin
    0.5
    """
    if len(scores) != len(labels):
        raise ValueError("scores and labels must be of the same customers")
    positives = sum(labels)
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return math.nan
    ranks = average_ranks(scores)
    rank_sum = sum(rank for rank, label in zip(ranks, labels, strict=True) if label)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def auc_margin(area: float, positives: int, negatives: int) -> float:
    """Half-width of a 95 % interval of an AUC over ``positives`` and ``negatives``
    (1.96 standard errors, Hanley & McNeil 1982). Two signals scored on the same customers
    are correlated, so their difference is known better than both margins suggest: treat
    non-overlapping intervals as a clear difference, overlapping ones as not yet shown.

    >>> round(auc_margin(0.77, 684, 1673), 3)
    0.023
    """
    if math.isnan(area) or positives == 0 or negatives == 0:
        return math.nan
    q1, q2 = area / (2 - area), 2 * area**2 / (1 + area)
    variance = (
        area * (1 - area) + (positives - 1) * (q1 - area**2) + (negatives - 1) * (q2 - area**2)
    ) / (positives * negatives)
    return 1.96 * math.sqrt(variance)


def log_loss(probabilities: Sequence[float], labels: Sequence[bool]) -> float:
    """Mean negative log-likelihood of the outcomes (natural log; NaN when empty).

    >>> round(log_loss([0.5, 0.5], [True, False]), 4)
    0.6931
    """
    if not labels:
        return math.nan
    total = 0.0
    for p, label in zip(probabilities, labels, strict=True):
        clipped = min(max(p, EPSILON), 1.0 - EPSILON)
        total -= math.log(clipped if label else 1.0 - clipped)
    return total / len(labels)


def brier(probabilities: Sequence[float], labels: Sequence[bool]) -> float:
    """Mean squared gap between probability and outcome (NaN when empty).

    >>> brier([0.8, 0.3], [True, False])
    0.065
    """
    if not labels:
        return math.nan
    gaps = [(p - float(label)) ** 2 for p, label in zip(probabilities, labels, strict=True)]
    return round(sum(gaps) / len(gaps), 12)


@dataclass(frozen=True, slots=True)
class Bin:
    """One bin of a reliability table: its customers, mean probability and observed rate."""

    count: int
    predicted: float
    observed: float

    @property
    def gap(self) -> float:
        """Mean probability minus observed rate (positive: too confident of the outcome)."""
        return self.predicted - self.observed


def reliability(
    probabilities: Sequence[float], labels: Sequence[bool], bins: int = 10
) -> list[Bin]:
    """Equal-count bins by probability (deciles by default), lowest first: how often the
    outcome happened against how likely it was said to be. Ties are ordered by position
    (deterministic); bins differ in size by one at most.

    >>> [(b.count, b.predicted, b.observed) for b in reliability(
    ...     [0.1, 0.2, 0.8, 0.9], [False, True, True, True], bins=2)]
    [(2, 0.15, 0.5), (2, 0.85, 1.0)]
    """
    order = sorted(range(len(labels)), key=lambda i: (probabilities[i], i))
    found = []
    for number in range(bins):
        members = order[number * len(order) // bins : (number + 1) * len(order) // bins]
        if not members:
            continue
        found.append(
            Bin(
                len(members),
                round(sum(probabilities[i] for i in members) / len(members), 12),
                sum(labels[i] for i in members) / len(members),
            )
        )
    return found
