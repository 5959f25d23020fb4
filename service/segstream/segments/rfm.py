"""RFM: recency, frequency and monetary scores 1-5 by quintile within the shop.

- Recency ranks the last purchase day (later is better), so the ranking does not
  drift as the clock moves; frequency ranks distinct purchase days; monetary ranks
  total spend.
- Ties share a score, so no quintile cut has to split equal values. Frequency and
  monetary ties score low (``1 + floor(5 * share strictly below)``: one-time buyers
  are F=1 however many there are); recency ties score high (``ceil(5 * share at or
  below)``: whoever bought on the latest day is as recent as anyone). On distinct
  values both are plain quintiles; a shop's very first buyer is R=5, F=1: "New".
- Named segments follow the usual R x F grid (M is reported, not used for naming).
- Until a shop has ``min_customers`` buying customers quintiles mean nothing, and
  every new order would reshuffle everyone: nobody gets an RFM segment before that.
- The shop's distribution is three counts by value (:class:`RankCounter`): last purchase
  day, purchase days, and total spend in 1 % steps. Their size is bounded by the days
  of history and the spread of spend, not by the number of customers; each customer's
  own values live in their ``memory`` so they can be taken back out when they change.
- Other customers' orders move everyone's ranks a little. A customer's segment is
  re-evaluated at their own events and on the quiet-days ladder
  (:data:`~segstream.segments.base.QUIET_LADDER_DAYS`), not at every order of the shop.

>>> grid_segment(5, 5), grid_segment(1, 1), grid_segment(1, 5), grid_segment(4, 1)
('Champions', 'Lost', "Can't Lose Them", 'Promising')
>>> model = RfmModel()
>>> for spend in (10.0, 20.0, 30.0, 40.0, 50.0):
...     model.observe(None, values(last_day=738000, purchase_days=1, spend=spend))
>>> model.scores(values(738000, 1, 50.0)), model.scores(values(738000, 1, 10.0))
((5, 1, 5), (5, 1, 1))
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from datetime import datetime, timedelta
from typing import Any, ClassVar, Self

from segstream.domain.features import CustomerSnapshot
from segstream.segments.base import ModelHooks, next_on_ladder
from segstream.settings import Settings

SEGMENT_GRID: dict[int, tuple[str, str, str, str, str]] = {
    # recency score: named segment for frequency scores 1, 2, 3, 4, 5
    5: ("New", "Potential Loyalist", "Potential Loyalist", "Champions", "Champions"),
    4: ("Promising", "Potential Loyalist", "Potential Loyalist", "Loyal", "Loyal"),
    3: ("About to Sleep", "About to Sleep", "Need Attention", "Loyal", "Loyal"),
    2: ("Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"),
    1: ("Lost", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"),
}

SEGMENTS = tuple(sorted({name for row in SEGMENT_GRID.values() for name in row}))

Values = tuple[int, int, int]
"""A customer's (last purchase day number, purchase days, spend step)."""

SPEND_STEP = math.log(1.01)


def values(last_day: int, purchase_days: int, spend: float) -> Values:
    """A customer's RFM values as the distribution counts them."""
    return (last_day, purchase_days, round(math.log1p(max(spend, 0.0)) / SPEND_STEP))


def grid_segment(recency_score: int, frequency_score: int) -> str:
    """Named RFM segment for an R and an F score."""
    return SEGMENT_GRID[recency_score][frequency_score - 1]


def quintile_score(sorted_values: list[float], value: float, ties: str = "low") -> int:
    """1-5 score of ``value`` against the shop's sorted values; ``ties`` "low" or "high"."""
    count = max(len(sorted_values), 1)
    if ties == "high":
        at_or_below = bisect_right(sorted_values, value)
        return max(1, -(-5 * at_or_below // count))
    return min(5, 1 + (5 * bisect_left(sorted_values, value)) // count)


def score(below: int, at_or_below: int, total: int, ties: str) -> int:
    """:func:`quintile_score` from counts: values strictly below and at or below."""
    count = max(total, 1)
    if ties == "high":
        return max(1, -(-5 * at_or_below // count))
    return min(5, 1 + (5 * below) // count)


def _held_of(kept: list[Any]) -> tuple[int, int] | None:
    """The R and F scores a customer's memory holds (None before scores were kept)."""
    return (kept[3], kept[4]) if len(kept) >= 5 else None


def _held(raw: int, held: int, rank: float, margin: float, upper_inclusive: bool) -> int:
    """``held`` while ``rank`` (a share of the shop) is within ``margin`` of the quintile
    that gives score ``held``, else ``raw``.

    >>> _held(3, 2, 0.41, 0.05, upper_inclusive=False), _held(3, 2, 0.46, 0.05, False)
    (2, 3)
    """
    if raw == held:
        return raw
    low, high = (held - 1) / 5, held / 5
    inside = (
        low - margin < rank <= high + margin
        if upper_inclusive
        else (low - margin <= rank < high + margin)
    )
    return held if inside else raw


class RankCounter:
    """Counts of integer values with ranks in O(log n): distinct values sorted, a Fenwick
    tree over their counts (rebuilt when a value appears or disappears).

    >>> counter = RankCounter()
    >>> for v in (3, 1, 3, 7):
    ...     counter.add(v, 1)
    >>> counter.below(3), counter.at_or_below(3), counter.total
    (1, 3, 4)
    """

    def __init__(self) -> None:
        self.keys: list[int] = []
        self.counts: list[int] = []
        self.total = 0
        self._tree: list[int] | None = None

    def add(self, value: int, delta: int) -> None:
        """Count ``value`` ``delta`` more times (negative: fewer)."""
        index = bisect_left(self.keys, value)
        self.total += delta
        if index < len(self.keys) and self.keys[index] == value:
            self.counts[index] += delta
            if self.counts[index] > 0:
                self._update(index, delta)
                return
            del self.keys[index], self.counts[index]
        else:
            self.keys.insert(index, value)
            self.counts.insert(index, delta)
        self._tree = None

    def below(self, value: int) -> int:
        """How many counted values are smaller than ``value``."""
        return self._prefix(bisect_left(self.keys, value))

    def at_or_below(self, value: int) -> int:
        """How many counted values are at most ``value``."""
        return self._prefix(bisect_right(self.keys, value))

    def _update(self, index: int, delta: int) -> None:
        tree = self._tree
        if tree is None:
            return
        position = index + 1
        while position < len(tree):
            tree[position] += delta
            position += position & -position

    def _prefix(self, length: int) -> int:
        tree = self._tree if self._tree is not None else self._build()
        total, position = 0, length
        while position > 0:
            total += tree[position]
            position -= position & -position
        return total

    def _build(self) -> list[int]:
        tree = [0, *self.counts]
        for position in range(1, len(tree)):
            parent = position + (position & -position)
            if parent < len(tree):
                tree[parent] += tree[position]
        self._tree = tree
        return tree

    def __getstate__(self) -> dict[str, Any]:
        """Keys, counts and total (the tree is rebuilt on first use)."""
        return {"keys": self.keys, "counts": self.counts, "total": self.total}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.keys, self.counts, self.total = state["keys"], state["counts"], state["total"]
        self._tree = None


class RfmModel(ModelHooks):
    """Per-shop RFM scoring over the shop's distribution of R, F and M values."""

    name: ClassVar[str] = "rfm"
    summary: ClassVar[str] = (
        "recency/frequency/monetary quintile scores within the shop, named by the usual RFM grid"
    )
    segment_description: ClassVar[str] = (
        "Named RFM segment from the recency (R) and frequency (F) quintile scores 1-5 "
        "within the shop (monetary is scored, not used for naming)."
    )
    segment_names: ClassVar[dict[str, Any]] = {"enum": list(SEGMENTS)}

    def __init__(
        self, min_customers: int = 1, score_margin: float = 0.05, min_dwell_days: float = 120.0
    ) -> None:
        self.min_customers = min_customers
        self.score_margin = score_margin
        self.min_dwell_days = min_dwell_days
        self.axes = (RankCounter(), RankCounter(), RankCounter())

    @classmethod
    def create(cls, settings: Settings, seed: int) -> Self:
        """An empty shop distribution; RFM needs no randomness."""
        return cls(
            min_customers=settings.rfm_min_customers,
            score_margin=settings.rfm_score_margin,
            min_dwell_days=settings.rfm_min_dwell_days,
        )

    def learn(self, customer: CustomerSnapshot) -> None:
        """Count the customer's current values (customers who never bought: none)."""
        if customer.last_purchase is None:
            return
        new = values(
            customer.last_purchase.toordinal(), customer.frequency + 1, customer.total_spend
        )
        kept = customer.memory.get(self.name)
        old = None if kept is None else (kept[0], kept[1], kept[2])
        if old != new:
            self.observe(old, new)
        held = None if kept is None else _held_of(kept)
        customer.memory[self.name] = [*new, *self._held_scores(new, held)]

    def _held_scores(self, found: Values, held: tuple[int, int] | None) -> tuple[int, int]:
        """The R and F scores the name comes from: each keeps its previous value until the
        customer's rank is ``score_margin`` of the shop past that quintile's edge."""
        recency, frequency, _ = self.axes
        total = recency.total
        at_or_below, below = recency.at_or_below(found[0]), frequency.below(found[1])
        raw = (score(0, at_or_below, total, "high"), score(below, 0, total, "low"))
        if held is None:
            return raw
        share = max(total, 1)
        return (
            _held(raw[0], held[0], at_or_below / share, self.score_margin, upper_inclusive=True),
            _held(raw[1], held[1], below / share, self.score_margin, upper_inclusive=False),
        )

    def observe(self, old: Values | None, new: Values) -> None:
        """Replace one customer's values (``old``, None if new to the shop) by ``new``."""
        for axis, counter in enumerate(self.axes):
            if old is not None:
                counter.add(old[axis], -1)
            counter.add(new[axis], 1)

    def scores(self, found: Values) -> tuple[int, int, int]:
        """(R, F, M) scores of values already counted in the distribution."""
        recency, frequency, monetary = self.axes
        total = recency.total
        return (
            score(recency.below(found[0]), recency.at_or_below(found[0]), total, "high"),
            score(frequency.below(found[1]), 0, total, "low"),
            score(monetary.below(found[2]), 0, total, "low"),
        )

    def _values(self, customer: CustomerSnapshot) -> Values | None:
        kept = customer.memory.get(self.name)
        return None if kept is None else (kept[0], kept[1], kept[2])

    def assign(self, customer: CustomerSnapshot) -> str | None:
        """Named segment from the R and F scores."""
        found = self._values(customer)
        if found is None or len(self) < self.min_customers:
            return None
        return grid_segment(*self._held_scores(found, _held_of(customer.memory[self.name])))

    def next_review(self, customer: CustomerSnapshot) -> datetime | None:
        """Others' orders move the ranks: look again on the quiet-days ladder."""
        return None if customer.last_purchase is None else next_on_ladder(customer)

    def min_dwell(self) -> timedelta:
        """Days in a segment before time alone moves a customer (``rfm_min_dwell_days``)."""
        return timedelta(days=self.min_dwell_days)

    def explain(self, customer: CustomerSnapshot) -> dict[str, Any] | None:
        """The R, F and M scores behind the name (for the query API)."""
        found = self._values(customer)
        if found is None:
            return None
        return dict(zip(("recency", "frequency", "monetary"), self.scores(found), strict=True))

    def __len__(self) -> int:
        return self.axes[0].total


MODEL = RfmModel
