"""Per-customer state: everything segstream remembers about one customer of one shop.

State is a plain dataclass that round-trips through JSON (it is the value of the
changelog-backed ``customers`` table). :func:`apply` folds one event into it;
order does not matter, because every derived quantity is recomputed from the
kept facts (purchase days, signups, cancellations), so out-of-order events give
the same state as in-order ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

from service.core.events import (
    Cancellation,
    Event,
    Order,
    Plan,
    Signup,
    format_time,
    parse_time,
)


@dataclass(slots=True)
class CustomerState:
    """Facts about one customer, kept exactly so features can be recomputed at any time."""

    shop_id: str
    customer_id: str
    signups: list[str] = field(default_factory=list)
    cancellations: list[tuple[str, str]] = field(default_factory=list)
    cancel_reason: str | None = None
    plan: dict[str, Any] | None = None
    plan_history: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    acquisition_channel: str | None = None
    referred_by: str | None = None
    preferred_channel: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    purchase_days: dict[str, float] = field(default_factory=dict)
    first_seen_at: str | None = None
    order_count: int = 0
    renewal_count: int = 0
    discount_order_count: int = 0
    total_spend: float = 0.0
    categories: dict[str, int] = field(default_factory=dict)
    recent_event_ids: list[str] = field(default_factory=list)
    segments: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (the table value)."""
        return asdict(self)

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> CustomerState:
        """Inverse of :meth:`to_json`."""
        state = cls(**payload)
        state.cancellations = [(occurred, effective) for occurred, effective in state.cancellations]
        state.plan_history = [(when, plan) for when, plan in state.plan_history]
        return state

    def copy(self) -> CustomerState:
        """An independent deep copy (what the state was before an event; ``asdict``
        copies every container)."""
        return CustomerState.from_json(self.to_json())

    def has_seen(self, event_id: str) -> bool:
        """Whether this event was already applied (at-least-once delivery, producer retries)."""
        return event_id in self.recent_event_ids


def apply(state: CustomerState, event: Event, dedup_window: int) -> bool:
    """Fold ``event`` into ``state``; False (and no change) when it is a duplicate."""
    if state.has_seen(event.event_id):
        return False
    state.recent_event_ids.append(event.event_id)
    del state.recent_event_ids[:-dedup_window]
    _note_first_seen(state, event.occurred_at)
    if isinstance(event, Signup):
        _apply_signup(state, event)
    elif isinstance(event, Order):
        _apply_order(state, event)
    elif isinstance(event, Cancellation):
        _apply_cancellation(state, event)
    return True


def _note_first_seen(state: CustomerState, when: datetime) -> None:
    if state.first_seen_at is None or when < parse_time(state.first_seen_at):
        state.first_seen_at = format_time(when)


def _apply_signup(state: CustomerState, event: Signup) -> None:
    state.signups.append(format_time(event.occurred_at))
    state.signups.sort(key=parse_time)
    _note_plan(state, event.occurred_at, event.plan)
    if state.signups[-1] == format_time(event.occurred_at):
        state.acquisition_channel = event.acquisition_channel
        state.referred_by = event.referred_by
        state.preferred_channel = event.preferred_channel
    state.attributes.update(event.attributes)


def _apply_order(state: CustomerState, event: Order) -> None:
    day = event.occurred_at.date().isoformat()
    state.purchase_days[day] = round(state.purchase_days.get(day, 0.0) + event.amount, 6)
    state.order_count += 1
    state.total_spend = round(state.total_spend + event.amount, 6)
    state.renewal_count += int(event.is_renewal)
    state.discount_order_count += int(event.discount_code is not None)
    for category in event.categories:
        state.categories[category] = state.categories.get(category, 0) + 1
    if event.plan is not None:
        _note_plan(state, event.occurred_at, event.plan)


def _apply_cancellation(state: CustomerState, event: Cancellation) -> None:
    state.cancellations.append((format_time(event.occurred_at), format_time(event.effective_at)))
    state.cancellations.sort(key=lambda pair: parse_time(pair[0]))
    state.cancel_reason = event.reason


def _note_plan(state: CustomerState, when: datetime, plan: Plan) -> None:
    """Keep every plan with the time it took effect; the current plan is the latest one,
    whatever order the signups and plan changes arrive in."""
    state.plan_history.append((format_time(when), _plan_json(plan)))
    state.plan_history.sort(key=lambda entry: parse_time(entry[0]))
    state.plan = state.plan_history[-1][1]


def _plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "plan_id": plan.plan_id,
        "price": plan.price,
        "currency": plan.currency,
        "interval": plan.interval,
        "tier": plan.tier,
    }


def subscription_status(state: CustomerState, now: datetime) -> str:
    """``none``, ``active``, ``cancelling`` (ends later) or ``cancelled`` at ``now``.

    The latest signup decides, unless a cancellation occurred after it.
    """
    signups = [parse_time(s) for s in state.signups if parse_time(s) <= now]
    if not signups:
        return "none"
    latest_signup = signups[-1]
    later_cancels = [
        parse_time(effective)
        for occurred, effective in state.cancellations
        if latest_signup <= parse_time(occurred) <= now
    ]
    if not later_cancels:
        return "active"
    return "cancelled" if min(later_cancels) <= now else "cancelling"


def purchase_dates(state: CustomerState) -> list[date]:
    """Distinct purchase days, oldest first."""
    return sorted(date.fromisoformat(day) for day in state.purchase_days)
