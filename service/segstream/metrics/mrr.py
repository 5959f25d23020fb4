"""Monthly recurring revenue (MRR): what a subscription is worth per month.

A plan's price is normalised to one month the way subscription-analytics tools do
(ChartMogul: a yearly plan of 120 is 10 MRR): weekly prices x 52 / 12, monthly as is,
quarterly / 3, yearly / 12. A customer's MRR at a moment is their plan's MRR while the
subscription is ``active`` or ``cancelling`` (paid until it ends) and 0 otherwise.
Amounts are rounded to 6 decimals so sums stay reproducible.

>>> monthly_price(30.0, "quarter"), monthly_price(10.0, "week")
(10.0, 43.333333)
"""

from __future__ import annotations

from datetime import datetime

from segstream.domain.customer import PAYING_STATUSES, CustomerState, subscription_status
from segstream.domain.events import Plan

PAYMENTS_PER_YEAR: dict[str, int] = {"week": 52, "month": 12, "quarter": 4, "year": 1}
"""How often a plan of each billing interval is paid in a year."""


def monthly_price(price: float, interval: str) -> float:
    """``price`` per ``interval`` as an amount per month.

    >>> monthly_price(120.0, "year"), monthly_price(19.9, "month")
    (10.0, 19.9)
    """
    return round(price * PAYMENTS_PER_YEAR[interval] / 12, 6)


def plan_mrr(plan: Plan | None) -> float:
    """MRR of a plan (``None``: no plan, 0).

    >>> plan_mrr(Plan("p", 9.0, "EUR", "quarter")), plan_mrr(None)
    (3.0, 0.0)
    """
    if plan is None:
        return 0.0
    return monthly_price(plan.price, plan.interval)


def plan_in_force(state: CustomerState, at: datetime) -> float:
    """MRR of the plan in force at ``at``: the latest one taken on at or before it (before
    the first plan change: the first plan).

    >>> from segstream.domain.events import parse_time
    >>> state = CustomerState("shop", "c-1", plan_history=[
    ...     (parse_time("2026-01-01T00:00:00Z"), Plan("a", 12.0, "EUR", "month")),
    ...     (parse_time("2026-03-01T00:00:00Z"), Plan("b", 60.0, "EUR", "quarter"))])
    >>> [plan_in_force(state, parse_time(f"2026-0{m}-15T00:00:00Z")) for m in (1, 2, 3)]
    [12.0, 12.0, 20.0]
    """
    if not state.plan_history:
        return 0.0
    current = state.plan_history[0][1]
    for taken_on, plan in state.plan_history:
        if taken_on > at:
            break
        current = plan
    return plan_mrr(current)


def customer_mrr(state: CustomerState, at: datetime) -> float:
    """The customer's MRR at ``at``: the plan in force while the subscription pays.

    >>> from segstream.domain.events import parse_time
    >>> start = parse_time("2026-01-01T00:00:00Z")
    >>> state = CustomerState("shop", "c-1", signups=[start],
    ...                       plan_history=[(start, Plan("p", 12.0, "EUR", "month"))])
    >>> customer_mrr(state, parse_time("2026-02-01T00:00:00Z"))
    12.0
    >>> customer_mrr(state, parse_time("2025-12-31T00:00:00Z"))
    0.0
    """
    if subscription_status(state, at) not in PAYING_STATUSES:
        return 0.0
    return plan_in_force(state, at)
