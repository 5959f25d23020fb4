"""How good the learned models are, measured as they learn (progressive validation).

- :class:`ChurnQuality`: every settled churn prediction is scored with the
  probability published *when it was made*, before the model learns from it:
  ROC AUC (:class:`MomentAUC`: over pairs of predictions made within a week of each
  other, as a holdout compares customers at one moment), log loss and Brier score (mean squared
  error of the probability). Given a time scale ``tau_days``, all three fade (a
  prediction made ``d`` days before the latest one counts ``exp(-d / tau_days)`` as
  much), so they describe the model as it is now rather than as it was while it started.
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
    ``2 x bins`` numbers of state, exact up to ties inside a bin (counted as half).
    Scores can be weighted, and the counts so far scaled down (:meth:`fade`).

    >>> auc = BinnedAUC()
    >>> for label, score in [(True, 0.9), (False, 0.1), (True, 0.4), (False, 0.6)]:
    ...     auc.update(label, score)
    >>> auc.get()
    0.75
    """

    def __init__(self, bins: int = 200) -> None:
        self.positives = [0.0] * bins
        self.negatives = [0.0] * bins

    def update(self, label: bool, score: float, weight: float = 1.0) -> None:
        """Count one scored outcome (scores are clipped to 0..1)."""
        bins = len(self.positives)
        index = min(bins - 1, max(0, int(score * bins)))
        (self.positives if label else self.negatives)[index] += weight

    def fade(self, factor: float) -> None:
        """Scale every count so far by ``factor``."""
        self.positives = [v * factor for v in self.positives]
        self.negatives = [v * factor for v in self.negatives]

    def get(self) -> float:
        """P(a positive scores above a negative), ties half; NaN without both outcomes."""
        pairs = sum(self.positives) * sum(self.negatives)
        if pairs == 0:
            return math.nan
        below = 0.0
        wins = 0.0
        for positive, negative in zip(self.positives, self.negatives, strict=True):
            wins += positive * (below + 0.5 * negative)
            below += negative
        return wins / pairs


class DayFading:
    """Sums that fade with time: a value added ``d`` days before the latest day seen counts
    ``exp(-d / tau_days)`` as much (None: nothing fades)."""

    def __init__(self, size: int, tau_days: float | None = None) -> None:
        self.tau_days = tau_days
        self.sums = [0.0] * size
        self.latest: float | None = None

    def add(self, day: float, values: Sequence[float]) -> float:
        """Add ``values`` (one per sum) of ``day``; the weight they were added with (a later
        day first fades the sums so far, see :meth:`advance`)."""
        weight = self.advance(day)
        for n, value in enumerate(values):
            self.sums[n] += weight * value
        return weight

    def advance(self, day: float) -> float:
        """The weight of a value of ``day``; a day later than any before fades the sums
        (and whatever :meth:`faded` is told) to it."""
        if self.tau_days is None:
            return 1.0
        if self.latest is not None and day <= self.latest:
            return math.exp((day - self.latest) / self.tau_days)
        if self.latest is not None:
            self.faded(math.exp((self.latest - day) / self.tau_days))
        self.latest = day
        return 1.0

    def faded(self, factor: float) -> None:
        """Scale the sums by ``factor`` (a subclass scales what it keeps besides)."""
        self.sums = [v * factor for v in self.sums]


class MomentAUC(DayFading):
    """ROC AUC over pairs of predictions made within ``width_days`` of each other only,
    fading over ``tau_days``.

    A holdout ranks a shop's customers against each other at one moment. Pooling
    predictions of all days into one AUC also ranks a customer of May against one of
    June, whose probabilities were made by another model of another population: on CDNOW
    such far pairs pulled the pooled figure below every single week's. So each pair is
    formed within a week of prediction days (the customers due for a snapshot then: a
    random share of the shop's buyers by id, see :mod:`segstream.learning.labels`) and
    weighs as the prediction day of the one settled later. A week rather than a day: a
    shop of 200 buyers settles two or three predictions a day, and its figure rested on a
    handful of pairs.

    State: for each of the latest ``keep_days`` prediction days, the churned and stayed
    counts of the score bins its outcomes fell in (sparse: a day's predictions are a small
    share of the shop's buyers), and the faded sums of pairs won and formed. An outcome of a
    day older than that (settled late) forms no pairs, and is counted in ``late``.

    >>> auc = MomentAUC()
    >>> outcomes = [(1, True, 0.9), (1, False, 0.1), (30, True, 0.2), (30, False, 0.8)]
    >>> for day, label, score in outcomes:
    ...     auc.update(label, score, day)
    >>> auc.get()  # right on day 1, wrong on day 30; day 1 and day 30 not compared
    0.5
    """

    def __init__(
        self,
        tau_days: float | None = None,
        bins: int = 200,
        width_days: int = 7,
        keep_days: int = 8,
    ) -> None:
        super().__init__(2, tau_days)  # pairs won, pairs formed
        self.bins = bins
        self.width_days = width_days
        self.keep_days = max(keep_days, width_days)
        self.days: dict[int, dict[int, list[float]]] = {}
        """Prediction day -> score bin -> [churned, stayed] outcomes."""
        self.late = 0

    def update(self, label: bool, score: float, day: float = 0.0) -> None:
        """Pair one outcome of a prediction made on ``day`` (days since the epoch) with the
        outcomes settled before it of predictions made within ``width_days`` of it."""
        key = math.floor(day)
        counts = self._day(key)
        if counts is None:
            self.late += 1
            return
        index = min(self.bins - 1, max(0, int(score * self.bins)))
        won = formed = 0.0
        for other, kept in self.days.items():
            if abs(other - key) < self.width_days:
                pair_won, pairs = _against(kept, label, index)
                won, formed = won + pair_won, formed + pairs
        counts.setdefault(index, [0.0, 0.0])[0 if label else 1] += 1.0
        if formed:
            self.add(day, (won, formed))

    def _day(self, key: int) -> dict[int, list[float]] | None:
        """The counts of prediction day ``key`` (a new one retires days out of reach);
        None if the day is already out of reach."""
        if key in self.days:
            return self.days[key]
        newest = max(self.days, default=key)
        if key <= newest - self.keep_days:
            return None
        self.days[key] = {}
        newest = max(newest, key)
        for old in [k for k in self.days if k <= newest - self.keep_days]:
            del self.days[old]
        return self.days[key]

    def get(self) -> float:
        """Pairs won over pairs formed (faded); NaN before a first pair."""
        won, formed = self.sums
        return won / formed if formed > 0.0 else math.nan


def _against(counts: Mapping[int, list[float]], label: bool, index: int) -> tuple[float, float]:
    """The pairs an outcome in score bin ``index`` forms with the outcomes of ``counts`` (bin
    -> [churned, stayed]), and how many it wins (ranks on the right side; ties half)."""
    other = 1 if label else 0
    won = formed = 0.0
    for at, both in counts.items():
        formed += both[other]
        if at == index:
            won += 0.5 * both[other]
        elif (at < index) == label:
            won += both[other]
    return won, formed


class ChurnQuality(DayFading):
    """Progressive-validation metrics of a churn probability (fading over ``tau_days`` of
    prediction time; None: every prediction counts alike)."""

    def __init__(self, tau_days: float | None = None) -> None:
        self.roc_auc = MomentAUC(tau_days)
        super().__init__(3, tau_days)  # weights, log losses, squared errors
        self.labelled = 0
        self.positives = 0

    def update(self, churned: bool, probability: float, day: float = 0.0) -> None:
        """Score one prediction, made on ``day`` (days since the epoch), before its outcome
        was known."""
        clipped = min(max(probability, EPSILON), 1.0 - EPSILON)
        loss = -math.log(clipped if churned else 1.0 - clipped)
        self.add(day, (1.0, loss, (float(churned) - probability) ** 2))
        self.roc_auc.update(churned, clipped, day)
        self.labelled += 1
        self.positives += int(churned)

    def retime(self, tau_days: float | None) -> None:
        """Fade over ``tau_days`` from now on (the sums so far are kept)."""
        self.tau_days = self.roc_auc.tau_days = tau_days

    def as_dict(self) -> dict[str, float]:
        """``roc_auc``, ``log_loss``, ``brier`` (NaN before both outcomes were seen within a
        week of prediction days for AUC, before any outcome for the others), ``labelled``
        and ``positives``."""
        return {
            "roc_auc": float(self.roc_auc.get()),
            "log_loss": self.sums[1] / self.sums[0] if self.labelled else math.nan,
            "brier": self.sums[2] / self.sums[0] if self.labelled else math.nan,
            "labelled": float(self.labelled),
            "positives": float(self.positives),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint; one from before :class:`MomentAUC` (a pooled
        :class:`BinnedAUC`) keeps its losses and counts, and its AUC starts afresh."""
        if isinstance(state.get("roc_auc"), BinnedAUC):
            state["roc_auc"] = MomentAUC(state.get("tau_days"))
        self.__dict__.update(state)


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
