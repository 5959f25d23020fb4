"""What every window of every dimension must satisfy, whatever the events were.

- every movement (subscribers and MRR: new, reactivation, expansion, contraction, churn,
  moved in and out) and every count is >= 0, and logo churn is part of churn;
- MRR: start + new + expansion + reactivation + moved_in - contraction - churn - moved_out
  = end; subscribers: start + new + reactivated + moved_in - churned - moved_out = end;
- nobody is counted at the start or end who does not pay: subscribers and MRR >= 0, and
  MRR > 0 exactly when there are subscribers.
"""

from __future__ import annotations

from datetime import date, timedelta

from segstream.metrics.ledger import MetricsLedger
from segstream.metrics.windows import GRAINS, WindowMetrics

MOVEMENTS = (
    "new_subscribers",
    "reactivations",
    "churned_subscribers",
    "moved_in",
    "moved_out",
    "new_mrr",
    "expansion_mrr",
    "contraction_mrr",
    "churn_mrr",
    "reactivation_mrr",
    "moved_in_mrr",
    "moved_out_mrr",
)
"""A window's movements, in subscribers and MRR."""
NON_NEGATIVE = (
    *MOVEMENTS,
    "churned_start_subscribers",
    "signups",
    "cancellations",
    "orders",
    "revenue",
    "renewals",
    "renewal_revenue",
    "ordering_customers",
    "subscribers_start",
    "subscribers_end",
    "mrr_start",
    "mrr_end",
)
TOLERANCE = 1e-6


def window_violations(window: WindowMetrics) -> list[str]:
    """What is wrong with one window (nothing: an empty list)."""
    where = f"{window.dimension} {window.grain} {window.start}"
    found = [
        f"{where}: {name} = {getattr(window, name)}"
        for name in NON_NEGATIVE
        if getattr(window, name) < -TOLERANCE
    ]
    if window.churned_start_subscribers > window.churned_subscribers:
        found.append(f"{where}: more logo churn than churn")
    mrr = (
        window.mrr_start
        + window.new_mrr
        + window.expansion_mrr
        + window.reactivation_mrr
        + window.moved_in_mrr
        - window.contraction_mrr
        - window.churn_mrr
        - window.moved_out_mrr
    )
    if abs(mrr - window.mrr_end) > 1e-4:
        found.append(f"{where}: MRR start + movements = {mrr:.6f}, end {window.mrr_end}")
    subscribers = (
        window.subscribers_start
        + window.new_subscribers
        + window.reactivations
        + window.moved_in
        - window.churned_subscribers
        - window.moved_out
    )
    if subscribers != window.subscribers_end:
        found.append(f"{where}: subscribers start + movements = {subscribers}, end")
    for edge, count, amount in (
        ("start", window.subscribers_start, window.mrr_start),
        ("end", window.subscribers_end, window.mrr_end),
    ):
        if (count > 0) != (amount > TOLERANCE):
            found.append(f"{where}: {count} subscribers at the {edge} paying {amount}")
    return found


def windows(
    ledger: MetricsLedger, shop_id: str, dimension: str, first: date
) -> list[WindowMetrics]:
    """Every window of every grain of ``dimension`` from the one containing ``first`` on
    (30-day windows: one starting every week)."""
    today = ledger.shop_index(shop_id).stream_day
    assert today is not None
    found = []
    for grain in GRAINS:
        day = first
        while day <= today:
            window = ledger.window(shop_id, grain, day, dimension)
            found.append(window)
            day = day + timedelta(days=7) if grain == "30d" else window.end
    return found


def violations(ledger: MetricsLedger, shop_id: str, first: date) -> list[str]:
    """Every invariant broken by any window of any dimension of the shop from ``first``."""
    return [
        problem
        for dimension in ledger.dimensions(shop_id)
        for window in windows(ledger, shop_id, dimension, first)
        for problem in window_violations(window)
    ]
