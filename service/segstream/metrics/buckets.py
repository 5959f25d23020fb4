"""The metric ledger's buckets: what a day bucket and a running total hold (counters,
amounts, histograms by days since an anchor), how changes add up in them, and a shop's
index of its booked days and dimensions (``docs/design/metrics-ledger.md``).

The ledger (:mod:`segstream.metrics.ledger`) writes them, its reads
(:mod:`segstream.metrics.ledger_reads`) sum them into windows and cohort tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from segstream.metrics.windows import MAX_WINDOW_DAYS

ALL = "all"
COUNTERS: dict[str, tuple[str | None, str | None, str | None]] = {
    "new": ("new_subs", "new_mrr", None),
    "reactivation": ("reactivated_subs", "reactivation_mrr", None),
    "expansion": ("expansions", "expansion_mrr", None),
    "contraction": ("contractions", "contraction_mrr", None),
    "churn": ("churned_subs", "churn_mrr", "churn_age"),
    "signup": ("signups", None, None),
    "cancellation": ("cancellations", None, None),
    "orderer": (None, None, "orderers"),
    "order": ("orders", "revenue", None),
    "renewal": ("renewals", "renewal_revenue", None),
    "moved_in": ("moved_in_subs", "moved_in_mrr", None),
    "moved_out": ("moved_out_subs", "moved_out_mrr", None),
}
"""Per booking kind: the bucket counter it counts in, the one its amount adds to, and the
histogram (by days since its anchor) it is counted in."""

NET: dict[str, tuple[int, int]] = {
    "new": (1, 1),
    "reactivation": (1, 1),
    "expansion": (0, 1),
    "contraction": (0, -1),
    "churn": (-1, -1),
    "moved_in": (1, 1),
    "moved_out": (-1, -1),
}
"""Per booking kind: its effect on the running paying subscribers and MRR."""

OPEN_BIN = MAX_WINDOW_DAYS
"""Histogram bin for "anchor 31 days or more before, or none": before any window start."""


def cohort_dimension(month: str) -> str:
    """Dimension of one signup-month cohort."""
    return f"cohort:{month}"


@dataclass(slots=True)
class ShopIndex:
    """A shop's stream day, range of booked days, dimensions and late-event count, and
    the day the ledger began counting segment flows (an index from a release before
    flows has none until its shop's next record)."""

    stream_day: date | None = None
    first_day: date | None = None
    last_day: date | None = None
    dimensions: set[str] = field(default_factory=set)
    too_late: int = 0
    flows_since: date | None = None

    def to_json(self) -> dict[str, Any]:
        """The index entry's value."""
        return {
            "stream_day": None if self.stream_day is None else self.stream_day.isoformat(),
            "first_day": None if self.first_day is None else self.first_day.isoformat(),
            "last_day": None if self.last_day is None else self.last_day.isoformat(),
            "dimensions": sorted(self.dimensions),
            "too_late": self.too_late,
            "flows_since": None if self.flows_since is None else self.flows_since.isoformat(),
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> ShopIndex:
        """Inverse of :meth:`to_json`."""
        return cls(
            stream_day=_day(payload["stream_day"]),
            first_day=_day(payload["first_day"]),
            last_day=_day(payload["last_day"]),
            dimensions=set(payload["dimensions"]),
            too_late=payload["too_late"],
            flows_since=_day(payload.get("flows_since")),
        )

    def note_day(self, day: date) -> None:
        """Widen the booked range to include ``day``."""
        self.first_day = day if self.first_day is None else min(self.first_day, day)
        self.last_day = day if self.last_day is None else max(self.last_day, day)


def _day(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


def histogram_bin(day: date, anchor: date | None) -> str:
    """Days from ``anchor`` to ``day``, capped at :data:`OPEN_BIN` (also for no anchor)."""
    if anchor is None:
        return str(OPEN_BIN)
    return str(min((day - anchor).days, OPEN_BIN))


def add_counters(bucket: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """``bucket`` plus ``delta`` (histograms by bin), without zero counters."""
    merged: dict[str, Any] = {
        name: dict(value) if isinstance(value, dict) else value for name, value in bucket.items()
    }
    for name, change in delta.items():
        if isinstance(change, dict):
            histogram = merged.get(name, {})
            for bin_, count in change.items():
                histogram[bin_] = histogram.get(bin_, 0) + count
            merged[name] = {b: c for b, c in histogram.items() if c != 0}
        else:
            merged[name] = _add(merged.get(name, 0), change)
    return {name: value for name, value in merged.items() if value not in (0, {})}


def accumulate(target: dict[str, Any], delta: dict[str, Any]) -> None:
    """Add ``delta`` into ``target`` in place (histograms by bin; zeros are kept)."""
    for name, change in delta.items():
        if isinstance(change, dict):
            histogram = target.setdefault(name, {})
            for bin_, count in change.items():
                histogram[bin_] = histogram.get(bin_, 0) + count
        else:
            target[name] = target.get(name, 0) + change


def _add(value: int | float, change: int | float) -> int | float:
    total = value + change
    if isinstance(total, float):
        total = round(total, 6)
        return 0 if abs(total) < 1e-9 else total
    return total


def net(bucket: dict[str, Any]) -> tuple[int, float]:
    """A bucket's change of paying subscribers and MRR."""
    subscribers = 0
    mrr = 0.0
    for kind, (sub_sign, mrr_sign) in NET.items():
        counter, amount, _ = COUNTERS[kind]
        if counter is not None:
            subscribers += sub_sign * bucket.get(counter, 0)
        if amount is not None:
            mrr += mrr_sign * bucket.get(amount, 0.0)
    return subscribers, mrr


def before_start(histogram: dict[str, int], age_of_start: int) -> int:
    """Count of a histogram's entries anchored before the window start, on a day
    ``age_of_start`` days after it."""
    return sum(count for bin_, count in histogram.items() if int(bin_) > age_of_start)
