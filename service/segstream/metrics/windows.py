"""Metric windows: which days a window covers, and the metrics of one window.

Windows are in event time, by UTC day, half-open ``[start, end)``:

- ``day``: one day;
- ``week``: the ISO week (Monday to Sunday) containing the given day;
- ``month``: the calendar month containing the given day;
- ``30d``: the 30 days from the given day on.

A window that is still running ends with the shop's current stream day
(``complete`` is False). Every rate is computed by :mod:`segstream.metrics.definitions`.

>>> window_bounds("week", date(2025, 3, 5))
(datetime.date(2025, 3, 3), datetime.date(2025, 3, 10))
>>> window_bounds("month", date(2025, 2, 14))
(datetime.date(2025, 2, 1), datetime.date(2025, 3, 1))
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal, get_args

from segstream.metrics import definitions

Grain = Literal["day", "week", "month", "30d"]
GRAINS: tuple[str, ...] = get_args(Grain)
MAX_WINDOW_DAYS = 31
"""The longest window (a 31-day month); the ledger's "already there at the start?"
histograms need to tell ages up to this apart."""


class BadWindowError(ValueError):
    """A window that cannot be answered: unknown grain, or outside the shop's kept days."""


def next_month(day: date) -> date:
    """First day of the month after ``day``'s."""
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def window_bounds(grain: str, start: date) -> tuple[date, date]:
    """``[first, end)`` of the ``grain`` window containing ``start`` (``30d``: from it)."""
    if grain == "day":
        return start, start + timedelta(days=1)
    if grain == "week":
        monday = start - timedelta(days=start.weekday())
        return monday, monday + timedelta(days=7)
    if grain == "month":
        first = start.replace(day=1)
        return first, next_month(first)
    if grain == "30d":
        return start, start + timedelta(days=30)
    raise BadWindowError(f"unknown grain {grain!r}; expected one of {', '.join(GRAINS)}")


def period_months(grain: str, first: date, end: date) -> float:
    """Length of a full window in months: 1 for a calendar month, days / average month
    otherwise (used to scale its churn rate to a monthly one for LTV)."""
    if grain == "month":
        return 1.0
    return (end - first).days / definitions.DAYS_PER_MONTH


@dataclass(frozen=True, slots=True)
class WindowMetrics:
    """Counts and MRR of one window of one shop and dimension, with every rate.

    ``end`` is exclusive and is the day after the shop's stream day while the window
    runs. Start values are as of the end of the day before ``start``; end values as of
    the end of the day before ``end``. ``moved_in`` / ``moved_out`` are customers
    entering or leaving a segment (always 0 outside segment dimensions).
    """

    shop_id: str
    dimension: str
    grain: str
    start: date
    end: date
    complete: bool
    period_months: float
    subscribers_start: int = 0
    subscribers_end: int = 0
    mrr_start: float = 0.0
    mrr_end: float = 0.0
    signups: int = 0
    new_subscribers: int = 0
    reactivations: int = 0
    churned_subscribers: int = 0
    churned_start_subscribers: int = 0
    cancellations: int = 0
    moved_in: int = 0
    moved_out: int = 0
    new_mrr: float = 0.0
    expansion_mrr: float = 0.0
    contraction_mrr: float = 0.0
    churn_mrr: float = 0.0
    reactivation_mrr: float = 0.0
    moved_in_mrr: float = 0.0
    moved_out_mrr: float = 0.0
    orders: int = 0
    revenue: float = 0.0
    ordering_customers: int = 0
    renewals: int = 0
    renewal_revenue: float = 0.0

    @property
    def joined(self) -> int:
        """Subscriptions that started in the window: new, reactivated, moved in."""
        return self.new_subscribers + self.reactivations + self.moved_in

    @property
    def dropped_off(self) -> int:
        """Subscribers who joined in the window and churned within it."""
        return self.churned_subscribers - self.churned_start_subscribers

    @property
    def churn_rate(self) -> float | None:
        """See :func:`definitions.churn_rate`."""
        return definitions.churn_rate(self.churned_start_subscribers, self.subscribers_start)

    @property
    def retention_rate(self) -> float | None:
        """See :func:`definitions.retention_rate`."""
        return definitions.retention_rate(self.subscribers_end, self.joined, self.subscribers_start)

    @property
    def gross_mrr_churn_rate(self) -> float | None:
        """See :func:`definitions.gross_mrr_churn_rate`."""
        return definitions.gross_mrr_churn_rate(
            self.churn_mrr, self.contraction_mrr, self.mrr_start
        )

    @property
    def net_mrr_churn_rate(self) -> float | None:
        """See :func:`definitions.net_mrr_churn_rate`."""
        return definitions.net_mrr_churn_rate(
            self.churn_mrr,
            self.contraction_mrr,
            self.expansion_mrr,
            self.reactivation_mrr,
            self.mrr_start,
        )

    @property
    def net_revenue_retention(self) -> float | None:
        """See :func:`definitions.net_revenue_retention`."""
        return definitions.net_revenue_retention(
            self.mrr_start,
            self.expansion_mrr,
            self.reactivation_mrr,
            self.contraction_mrr,
            self.churn_mrr,
        )

    @property
    def quick_ratio(self) -> float | None:
        """See :func:`definitions.quick_ratio`."""
        return definitions.quick_ratio(
            self.new_mrr,
            self.expansion_mrr,
            self.reactivation_mrr,
            self.churn_mrr,
            self.contraction_mrr,
        )

    @property
    def arpu(self) -> float | None:
        """See :func:`definitions.arpu` (end of the window)."""
        return definitions.arpu(self.mrr_end, self.subscribers_end)

    @property
    def ltv(self) -> float | None:
        """See :func:`definitions.ltv`."""
        return definitions.ltv(self.arpu, self.churn_rate, self.period_months)

    @property
    def average_orders_per_customer(self) -> float | None:
        """See :func:`definitions.average_orders_per_customer`."""
        return definitions.average_orders_per_customer(self.orders, self.ordering_customers)

    @property
    def signup_rate(self) -> float | None:
        """See :func:`definitions.signup_rate`."""
        return definitions.signup_rate(self.signups, self.subscribers_start)

    @property
    def drop_off_rate(self) -> float | None:
        """See :func:`definitions.drop_off_rate`."""
        return definitions.drop_off_rate(self.dropped_off, self.joined)

    def to_json(self) -> dict[str, Any]:
        """JSON form, shared by the query API and the metrics snapshot."""
        return {
            "dimension": self.dimension,
            "grain": self.grain,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "complete": self.complete,
            "subscribers": {
                "start": self.subscribers_start,
                "end": self.subscribers_end,
                "new": self.new_subscribers,
                "reactivated": self.reactivations,
                "churned": self.churned_subscribers,
                "churned_from_start": self.churned_start_subscribers,
                "moved_in": self.moved_in,
                "moved_out": self.moved_out,
            },
            "signups": self.signups,
            "cancellations": self.cancellations,
            "mrr": {
                "start": self.mrr_start,
                "end": self.mrr_end,
                "new": self.new_mrr,
                "expansion": self.expansion_mrr,
                "contraction": self.contraction_mrr,
                "churn": self.churn_mrr,
                "reactivation": self.reactivation_mrr,
                "moved_in": self.moved_in_mrr,
                "moved_out": self.moved_out_mrr,
            },
            "orders": {
                "count": self.orders,
                "revenue": self.revenue,
                "customers": self.ordering_customers,
                "renewals": self.renewals,
                "renewal_revenue": self.renewal_revenue,
            },
            "rates": {
                "churn": self.churn_rate,
                "retention": self.retention_rate,
                "gross_mrr_churn": self.gross_mrr_churn_rate,
                "net_mrr_churn": self.net_mrr_churn_rate,
                "net_revenue_retention": self.net_revenue_retention,
                "quick_ratio": self.quick_ratio,
                "signup": self.signup_rate,
                "drop_off": self.drop_off_rate,
            },
            "arpu": self.arpu,
            "ltv": self.ltv,
            "average_orders_per_customer": self.average_orders_per_customer,
        }
