"""The cohort retention table: customers by signup month x months since signup.

A cohort is the customers whose first signup fell in one calendar month (customers who
never signed up: their first purchase month). For every month since, the table shows
how many of them pay (MRR > 0) at the end of that month, and their MRR; the running
month ends at the shop's stream day. ``customers`` is everyone in the cohort who ever
started paying; ``retention`` is paying / customers.

>>> cohort_months(date(2025, 3, 10), 3)
['2025-01', '2025-02', '2025-03']
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any


def cohort_months(today: date, months: int) -> list[str]:
    """The ``months`` calendar months up to and including ``today``'s, oldest first."""
    index = today.year * 12 + today.month - 1
    return [f"{m // 12:04d}-{m % 12 + 1:02d}" for m in range(index - months + 1, index + 1)]


def month_start(month: str) -> date:
    """First day of a ``YYYY-MM`` month."""
    return date.fromisoformat(f"{month}-01")


@dataclass(frozen=True, slots=True)
class CohortCell:
    """One cohort at the end of one month since signup (month 0: the signup month)."""

    months_since_signup: int
    subscribers: int
    mrr: float
    retention: float | None

    def to_json(self) -> dict[str, Any]:
        """JSON form for the query API."""
        return {
            "months_since_signup": self.months_since_signup,
            "subscribers": self.subscribers,
            "mrr": self.mrr,
            "retention": self.retention,
        }


@dataclass(frozen=True, slots=True)
class CohortRow:
    """One signup month's customers over the months since."""

    cohort: str
    customers: int
    cells: tuple[CohortCell, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON form for the query API."""
        return {
            "cohort": self.cohort,
            "customers": self.customers,
            "months": [cell.to_json() for cell in self.cells],
        }
