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

>>> grid_segment(5, 5), grid_segment(1, 1), grid_segment(1, 5), grid_segment(4, 1)
('Champions', 'Lost', "Can't Lose Them", 'Promising')
>>> model = RfmModel()
>>> for spend in (10.0, 20.0, 30.0, 40.0, 50.0):
...     model.observe(f"c-{spend:.0f}", last_day=738000, purchase_days=1, spend=spend)
>>> model.scores("c-50"), model.scores("c-10")
((5, 1, 5), (5, 1, 1))
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from typing import ClassVar, Self

from service.core.features import CustomerSnapshot
from service.settings import Settings

SEGMENT_GRID: dict[int, tuple[str, str, str, str, str]] = {
    # recency score: named segment for frequency scores 1, 2, 3, 4, 5
    5: ("New", "Potential Loyalist", "Potential Loyalist", "Champions", "Champions"),
    4: ("Promising", "Potential Loyalist", "Potential Loyalist", "Loyal", "Loyal"),
    3: ("About to Sleep", "About to Sleep", "Need Attention", "Loyal", "Loyal"),
    2: ("Hibernating", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"),
    1: ("Lost", "Hibernating", "At Risk", "At Risk", "Can't Lose Them"),
}

SEGMENTS = tuple(sorted({name for row in SEGMENT_GRID.values() for name in row}))

Values = tuple[int, int, float]


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


class RfmModel:
    """Per-shop RFM scoring; keeps each customer's R, F and M values, sorted per axis."""

    name: ClassVar[str] = "rfm"
    derived_from_customers: ClassVar[bool] = True

    def __init__(self, min_customers: int = 1) -> None:
        self.min_customers = min_customers
        self._values: dict[str, Values] = {}
        self._sorted: tuple[list[float], list[float], list[float]] = ([], [], [])

    @classmethod
    def create(cls, settings: Settings, seed: int) -> Self:
        """An empty shop distribution; RFM needs no randomness."""
        return cls(min_customers=settings.rfm_min_customers)

    def learn(self, customer: CustomerSnapshot) -> None:
        """Record the customer's current R, F and M values (customers who never bought: none)."""
        if customer.last_purchase is None:
            return
        self.observe(
            customer.customer_id,
            last_day=customer.last_purchase.toordinal(),
            purchase_days=customer.frequency + 1,
            spend=customer.total_spend,
        )

    def observe(self, customer_id: str, *, last_day: int, purchase_days: int, spend: float) -> None:
        """Replace one customer's values in the shop's distribution."""
        new = (last_day, purchase_days, spend)
        old = self._values.get(customer_id)
        if old == new:
            return
        for axis, column in enumerate(self._sorted):
            if old is not None:
                del column[bisect_left(column, old[axis])]
            insort(column, new[axis])
        self._values[customer_id] = new

    def scores(self, customer_id: str) -> tuple[int, int, int] | None:
        """(R, F, M) scores, or None for a customer with no purchase."""
        values = self._values.get(customer_id)
        if values is None:
            return None
        (days, counts, spends), (day, count, spend) = self._sorted, values
        return (
            quintile_score(days, day, ties="high"),
            quintile_score(counts, count),
            quintile_score(spends, spend),
        )

    def assign(self, customer: CustomerSnapshot) -> str | None:
        """Named segment from the R and F scores."""
        scores = self.scores(customer.customer_id)
        if scores is None or len(self._values) < self.min_customers:
            return None
        return grid_segment(scores[0], scores[1])

    def explain(self, customer: CustomerSnapshot) -> dict[str, int] | None:
        """The R, F and M scores behind the name (for the query API)."""
        scores = self.scores(customer.customer_id)
        if scores is None:
            return None
        return dict(zip(("recency", "frequency", "monetary"), scores, strict=True))

    def __len__(self) -> int:
        return len(self._values)


MODEL = RfmModel
