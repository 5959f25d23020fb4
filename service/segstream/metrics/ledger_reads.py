"""Reads of the metric ledger's buckets: a window's metrics (flows inside it, the running
totals at its ends) and the signup cohorts' table, summed from the stored day buckets and
running totals of one shop and dimension (``docs/design/metrics-ledger.md``).

The ledger (:class:`~segstream.metrics.ledger.MetricsLedger`) flushes what it booked and
hands the shop's index over; these reads never write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from segstream.metrics.buckets import (
    ALL,
    ShopIndex,
    add_counters,
    before_start,
    cohort_dimension,
    net,
)
from segstream.metrics.cohorts import CohortCell, CohortRow, cohort_months, month_start
from segstream.metrics.definitions import share
from segstream.metrics.flows import SegmentFlows, flows_of, sum_moves
from segstream.metrics.windows import (
    BadWindowError,
    WindowMetrics,
    next_month,
    period_months,
    window_bounds,
)
from segstream.state.keyspace import day_key, total_key


@dataclass(slots=True)
class _Scan:
    """Sums over the day buckets of one dimension from a window's first day on."""

    flows: dict[str, Any] = field(default_factory=dict)
    net_from_first: tuple[int, float] = (0, 0.0)
    net_from_end: tuple[int, float] = (0, 0.0)
    churned_start: int = 0
    ordering_customers: int = 0


class LedgerReads:
    """Windows and cohort tables of the shops whose buckets are in ``buckets``, the day
    buckets kept for ``retention_days``."""

    def __init__(self, buckets: Mapping[str, dict[str, Any]], retention_days: int) -> None:
        self.buckets = buckets
        self.retention_days = retention_days

    def oldest_day(self, index: ShopIndex) -> date:
        """The oldest day a window of the shop of ``index`` may start on (older buckets
        are deleted)."""
        return today_of(index) - timedelta(days=self.retention_days)

    def window(
        self,
        index: ShopIndex,
        shop_id: str,
        grain: str,
        start: date,
        dimension: str = ALL,
        as_of: date | None = None,
    ) -> WindowMetrics:
        """Metrics of the ``grain`` window containing ``start`` (see
        :func:`~segstream.metrics.windows.window_bounds`), cut at ``as_of`` (default and
        latest: the shop's stream day); ``index`` is the shop's. :class:`BadWindowError`."""
        today, first, end, cut = self._bounds(index, grain, start, as_of)
        scan = self._scan(shop_id, dimension, first, cut, index.last_day)
        total = self.buckets.get(total_key(shop_id, dimension), {})
        subscribers, mrr = total.get("subscribers", 0), total.get("mrr", 0.0)
        flows = scan.flows
        return WindowMetrics(
            shop_id=shop_id,
            dimension=dimension,
            grain=grain,
            start=first,
            end=cut,
            complete=end <= today,  # the stream day is past the window: it no longer runs
            period_months=period_months(grain, first, end),
            subscribers_start=subscribers - scan.net_from_first[0],
            subscribers_end=subscribers - scan.net_from_end[0],
            mrr_start=round(mrr - scan.net_from_first[1], 6),
            mrr_end=round(mrr - scan.net_from_end[1], 6),
            signups=flows.get("signups", 0),
            new_subscribers=flows.get("new_subs", 0),
            reactivations=flows.get("reactivated_subs", 0),
            churned_subscribers=flows.get("churned_subs", 0),
            churned_start_subscribers=scan.churned_start,
            cancellations=flows.get("cancellations", 0),
            moved_in=flows.get("moved_in_subs", 0),
            moved_out=flows.get("moved_out_subs", 0),
            new_mrr=flows.get("new_mrr", 0.0),
            expansion_mrr=flows.get("expansion_mrr", 0.0),
            contraction_mrr=flows.get("contraction_mrr", 0.0),
            churn_mrr=flows.get("churn_mrr", 0.0),
            reactivation_mrr=flows.get("reactivation_mrr", 0.0),
            moved_in_mrr=flows.get("moved_in_mrr", 0.0),
            moved_out_mrr=flows.get("moved_out_mrr", 0.0),
            orders=flows.get("orders", 0),
            revenue=flows.get("revenue", 0.0),
            renewals=flows.get("renewals", 0),
            renewal_revenue=flows.get("renewal_revenue", 0.0),
            ordering_customers=scan.ordering_customers,
        )

    def flows(
        self,
        index: ShopIndex,
        shop_id: str,
        model: str,
        grain: str,
        start: date,
        as_of: date | None = None,
    ) -> SegmentFlows:
        """``model``'s segment flows in the window :meth:`window` would read;
        :class:`BadWindowError` for a window that ends before the ledger began counting
        flows (a shop whose state an older release wrote)."""
        today, first, end, cut = self._bounds(index, grain, start, as_of)
        since = index.flows_since or today + timedelta(days=1)
        if cut <= since:
            raise BadWindowError(f"segment flows are counted from {since}, after this window")
        moves = sum_moves(self.buckets, shop_id, model, first, cut)
        return SegmentFlows(model, first, cut, end <= today, flows_of(moves), since)

    def _bounds(
        self, index: ShopIndex, grain: str, start: date, as_of: date | None
    ) -> tuple[date, date, date, date]:
        """The shop's day (cut at ``as_of``), and the window's first day, end and cut
        (its end, or the day after the shop's day while it runs). :class:`BadWindowError`
        for a window after the shop's day or older than the kept days."""
        today = today_of(index) if as_of is None else min(as_of, today_of(index))
        first, end = window_bounds(grain, start)
        if first > today:
            raise BadWindowError(f"window starts {first} after the shop's stream day {today}")
        if first < self.oldest_day(index):
            raise BadWindowError(f"window starts {first} before the oldest kept day")
        return today, first, end, min(end, today + timedelta(days=1))

    def _scan(
        self, shop_id: str, dimension: str, first: date, cut: date, last_day: date | None
    ) -> _Scan:
        """Sum the window ``[first, cut)`` and the net changes from ``first`` and ``cut`` on."""
        scan = _Scan()
        last = max(last_day or first, cut - timedelta(days=1))
        day = first
        while day <= last:
            bucket = self.buckets.get(day_key(shop_id, day, dimension))
            if bucket:
                self._scan_day(scan, bucket, (day - first).days, day < cut)
            day += timedelta(days=1)
        return scan

    @staticmethod
    def _scan_day(scan: _Scan, bucket: dict[str, Any], age: int, inside: bool) -> None:
        subscribers, mrr = net(bucket)
        scan.net_from_first = (scan.net_from_first[0] + subscribers, scan.net_from_first[1] + mrr)
        if not inside:
            scan.net_from_end = (scan.net_from_end[0] + subscribers, scan.net_from_end[1] + mrr)
            return
        scan.flows = add_counters(
            scan.flows,
            {name: value for name, value in bucket.items() if not isinstance(value, dict)},
        )
        scan.churned_start += before_start(bucket.get("churn_age", {}), age)
        scan.ordering_customers += before_start(bucket.get("orderers", {}), age)

    def cohort_table(self, index: ShopIndex, shop_id: str, months: int) -> list[CohortRow]:
        """Signup-month cohorts of the last ``months`` months (the current one included)
        by months since signup: paying customers and MRR at each month's end; ``index``
        is the shop's."""
        today = today_of(index)
        if months < 1:
            raise BadWindowError(f"months must be at least 1, got {months}")
        cohorts = cohort_months(today, months)
        if next_month(month_start(cohorts[0])) < self.oldest_day(index):
            raise BadWindowError(f"{months} months reach back before the oldest kept day")
        return [self._cohort_row(shop_id, month, today, index.last_day) for month in cohorts]

    def _cohort_row(
        self, shop_id: str, month: str, today: date, last_day: date | None
    ) -> CohortRow:
        dimension = cohort_dimension(month)
        customers = self.buckets.get(total_key(shop_id, dimension), {}).get("customers", 0)
        cuts = []
        end = next_month(month_start(month))
        while end <= next_month(today):
            cuts.append(min(end, today + timedelta(days=1)))
            end = next_month(end)
        cells = tuple(
            CohortCell(since_signup, subscribers, mrr, share(subscribers, customers))
            for since_signup, (subscribers, mrr) in enumerate(
                self._totals_before(shop_id, dimension, cuts, last_day)
            )
        )
        return CohortRow(month, customers, cells)

    def _totals_before(
        self, shop_id: str, dimension: str, cuts: list[date], last_day: date | None
    ) -> list[tuple[int, float]]:
        """Paying subscribers and MRR at the end of the day before each of ``cuts``: the
        running totals minus everything booked from that day on (one pass)."""
        total = self.buckets.get(total_key(shop_id, dimension), {})
        first = min(cuts)
        last = max(last_day or first, max(cuts))
        nets = []
        day = first
        while day <= last:
            nets.append(net(self.buckets.get(day_key(shop_id, day, dimension), {})))
            day += timedelta(days=1)
        suffix: list[tuple[int, float]] = [(0, 0.0)] * (len(nets) + 1)
        for position in range(len(nets) - 1, -1, -1):
            later = suffix[position + 1]
            suffix[position] = (later[0] + nets[position][0], later[1] + nets[position][1])
        return [
            (
                total.get("subscribers", 0) - suffix[(cut - first).days][0],
                round(total.get("mrr", 0.0) - suffix[(cut - first).days][1], 6),
            )
            for cut in cuts
        ]


def today_of(index: ShopIndex) -> date:
    """The stream day of a shop the ledger has seen (its index has one)."""
    assert index.stream_day is not None, "MetricsLedger.shop_index() checks it"
    return index.stream_day
