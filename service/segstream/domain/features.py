"""Per-customer features at a point in event time, as the ``lifetimes`` package defines them.

With daily periods and ``now`` as the observation end:

- ``frequency``: repeat purchase days (distinct purchase days - 1);
- ``recency``: days between the first and the last purchase day;
- ``T``: days between the first purchase day and ``now``;
- ``monetary_value``: mean of the daily totals of the repeat purchase days (0 without any).

``now`` is the shop's stream time (its latest ``occurred_at``), so replaying a
historical log gives what an offline computation at its end gives.

>>> from datetime import date
>>> from segstream.domain.customer import CustomerState
>>> from segstream.domain.events import parse_time
>>> state = CustomerState("shop", "c-1", purchase_days={
...     date(2026, 1, 1): 10.0, date(2026, 1, 5): 20.0, date(2026, 1, 9): 40.0})
>>> f = snapshot(state, parse_time("2026-01-11T12:00:00Z"))
>>> (f.frequency, f.recency, f.T, f.monetary_value)
(2, 8.0, 10.0, 30.0)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from segstream.domain.customer import (
    DEFAULT_SILENCE,
    PAYING_STATUSES,
    CustomerState,
    Silence,
    purchase_dates,
    renewal_of,
    subscription_status,
)


@dataclass(frozen=True, slots=True)
class CustomerSnapshot:
    """What segment models read: one customer's features at ``as_of`` (read-only)."""

    shop_id: str
    customer_id: str
    as_of: datetime
    frequency: int
    recency: float
    T: float
    monetary_value: float
    first_purchase: date | None
    last_purchase: date | None
    days_since_last_purchase: float | None
    order_count: int
    total_spend: float
    tenure_days: float
    cadence_days: float | None
    subscription: str
    subscription_ends_at: datetime | None
    """When a pending cancellation takes effect (``subscription == "cancelling"``)."""
    last_activity_days: float
    returned_at: date | None
    renewal_count: int
    discount_order_count: int
    plan_price: float | None
    plan_tier: str | None
    plan_interval: str | None
    """Billing interval of the current plan (``week``, ``month``, ``quarter``, ``year``)."""
    acquisition_channel: str | None
    preferred_channel: str | None
    attributes: dict[str, Any]
    segments: dict[str, str]
    """The customer's segments before this evaluation (read only)."""
    memory: dict[str, Any]
    """What segment models keep about this customer, by model name; a model may change
    its own entry in ``learn`` (it is saved with the customer's state)."""
    held: frozenset[str] = frozenset()
    """Models whose segment this evaluation must not change: a review (time passing, no
    event of the customer's) before the model's minimum dwell in the segment is over."""
    review: bool = False
    """True when no event of the customer's caused this evaluation (time passed, or a pass
    over the shop's customers): a model whose features only the customer's own events
    change has nothing new to learn."""
    lifetime: Any = None
    """The shop's fitted lifetime model (``segstream.learning.lifetime.LifetimeFit``), if it
    has one: what the ``predictions.*`` fields of shop-defined segments read."""
    forecast: Any = None
    """What gives the customer's expected orders (``segstream.learning.retention.
    OrdersForecast``: the shop's churn model), if known: the ``predictions.expected_orders_*``
    fields read it."""
    cancelled_at: datetime | None = None
    """When the customer's latest cancellation up to ``as_of`` was requested (None: never):
    the churn model labels a window in which one came as left."""
    last_purchase_amount: float = 0.0
    """What the customer spent on their latest purchase day (0: no purchase)."""
    last_gap_days: float | None = None
    """Days between the customer's two latest purchase days (None: fewer than two)."""

    @property
    def has_purchased(self) -> bool:
        """Whether the customer has at least one purchase day."""
        return self.first_purchase is not None

    @property
    def is_customer(self) -> bool:
        """Whether the customer has bought or holds a paying subscription (may leave)."""
        return self.has_purchased or self.subscription in PAYING_STATUSES

    @property
    def first_seen(self) -> date:
        """The day the customer was first seen."""
        return self.as_of.date() - timedelta(days=int(self.tenure_days))


def snapshot(
    state: CustomerState,
    now: datetime,
    silence: Silence = DEFAULT_SILENCE,
    lifetime: Any = None,
    forecast: Any = None,
    review: bool = False,
    held: frozenset[str] = frozenset(),
) -> CustomerSnapshot:
    """Features of ``state`` observed at ``now`` (a returned customer is one back after a
    gap longer than their churn gap under ``silence``, or re-subscribed after cancelling);
    ``review`` and ``held`` as :class:`CustomerSnapshot` says."""
    days = purchase_dates(state)
    today = now.date()
    first_seen = state.first_seen_at.date() if state.first_seen_at else today
    plan = state.plan
    status = subscription_status(state, now)
    return CustomerSnapshot(
        shop_id=state.shop_id,
        customer_id=state.customer_id,
        as_of=now,
        frequency=max(len(days) - 1, 0),
        recency=float((days[-1] - days[0]).days) if days else 0.0,
        T=float((today - days[0]).days) if days else 0.0,
        monetary_value=_repeat_mean(state, days),
        first_purchase=days[0] if days else None,
        last_purchase=days[-1] if days else None,
        days_since_last_purchase=float((today - days[-1]).days) if days else None,
        order_count=state.order_count,
        total_spend=state.total_spend,
        tenure_days=float((today - first_seen).days),
        cadence_days=_cadence(days),
        subscription=status,
        subscription_ends_at=_ends_at(state, now) if status == "cancelling" else None,
        last_activity_days=float((today - _last_activity(state, days, first_seen)).days),
        returned_at=_returned_at(state, days, silence),
        renewal_count=state.renewal_count,
        discount_order_count=state.discount_order_count,
        plan_price=None if plan is None else plan.price,
        plan_tier=None if plan is None else plan.tier,
        plan_interval=None if plan is None else plan.interval,
        acquisition_channel=state.acquisition_channel,
        preferred_channel=state.preferred_channel,
        attributes=state.attributes,
        segments=state.segments,
        memory=state.memory,
        lifetime=lifetime,
        forecast=forecast,
        cancelled_at=max((o for o, _ in state.cancellations if o <= now), default=None),
        last_purchase_amount=state.purchase_days[days[-1]] if days else 0.0,
        last_gap_days=float((days[-1] - days[-2]).days) if len(days) > 1 else None,
        held=held,
        review=review,
    )


def later(view: CustomerSnapshot, state: CustomerState, at: datetime) -> CustomerSnapshot:
    """What a review at ``at`` reads when nothing happened since ``view`` of ``state``:
    equal to ``snapshot(state, at, ..., review=True)`` with ``view``'s silence, lifetime and
    forecast, for a fraction of its cost (shop-defined rules look many days ahead per
    customer). Only the day counts and the subscription move with time; a state never
    seen (no ``first_seen_at``) has none to move, and is snapshotted whole."""
    if state.first_seen_at is None:
        return replace(
            snapshot(state, at, lifetime=view.lifetime, forecast=view.forecast),
            returned_at=view.returned_at,
            review=True,
        )
    days = (at.date() - view.as_of.date()).days
    status = subscription_status(state, at)
    return replace(
        view,
        as_of=at,
        T=view.T + days if view.has_purchased else 0.0,
        days_since_last_purchase=(
            None if view.days_since_last_purchase is None else view.days_since_last_purchase + days
        ),
        tenure_days=view.tenure_days + days,
        last_activity_days=view.last_activity_days + days,
        subscription=status,
        subscription_ends_at=_ends_at(state, at) if status == "cancelling" else None,
        cancelled_at=max((o for o, _ in state.cancellations if o <= at), default=None),
        held=frozenset(),
        review=True,
    )


def _ends_at(state: CustomerState, now: datetime) -> datetime | None:
    """When the pending cancellation (the first one after the latest signup) takes effect."""
    latest = max((s for s in state.signups if s <= now), default=None)
    ends = [e for o, e in state.cancellations if latest is not None and latest <= o <= now]
    return min(ends, default=None)


def _repeat_mean(state: CustomerState, days: list[date]) -> float:
    if len(days) < 2:
        return 0.0
    repeat_totals = [state.purchase_days[day] for day in days[1:]]
    return sum(repeat_totals) / len(repeat_totals)


def _last_activity(state: CustomerState, days: list[date], first_seen: date) -> date:
    """Latest purchase or signup day: what inactivity is measured from."""
    candidates = [first_seen, *days[-1:]]
    candidates += [s.date() for s in state.signups[-1:]]
    return max(candidates)


def _cadence(days: list[date]) -> float | None:
    """Mean days between purchase days; None before a second one."""
    return _cadence_until(days, len(days) - 1)


def _cadence_until(days: list[date], last: int) -> float | None:
    """:func:`_cadence` of ``days[: last + 1]``."""
    return (days[last] - days[0]).days / last if last > 0 else None


def _returned_at(state: CustomerState, days: list[date], silence: Silence) -> date | None:
    """Latest comeback: a purchase after a gap longer than the churn gap the customer had
    then, or a signup after a cancellation."""
    renewal = renewal_of(state.plan)
    least = 0 if renewal is None else renewal.period + renewal.late  # a renewal is no comeback
    floor = max(least, silence.churned_days)  # no churn gap is shorter: most gaps stop here
    comebacks = []
    for n in range(len(days) - 1, 0, -1):  # the latest comeback is the one asked for
        gap = (days[n] - days[n - 1]).days
        if gap > floor and gap > max(least, silence.churned(_cadence_until(days, n - 1))):
            comebacks.append(days[n])
            break
    if state.cancellations:
        first_cancel = state.cancellations[0][0]
        comebacks += [signup.date() for signup in state.signups if signup > first_cancel]
    return max(comebacks, default=None)
