"""Customer states for tests, written with ISO strings as people read them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from segstream.domain.customer import CustomerState
from segstream.domain.events import Plan, parse_time


def plan(price: float, interval: str = "month", tier: str | None = None) -> Plan:
    """A plan of ``price`` per ``interval``."""
    return Plan(f"plan-{price}-{interval}", price, "EUR", interval, tier)


def state(
    shop_id: str = "shop",
    customer_id: str = "c-1",
    *,
    signups: Sequence[str] = (),
    cancellations: Sequence[tuple[str, str]] = (),
    plans: Sequence[tuple[str, Plan]] = (),
    purchase_days: dict[str, float] | None = None,
    first_seen_at: str | None = None,
    **fields: Any,
) -> CustomerState:
    """A :class:`CustomerState` from readable values: times and days as ISO strings."""
    return CustomerState(
        shop_id,
        customer_id,
        signups=[parse_time(s) for s in signups],
        cancellations=[(parse_time(o), parse_time(e)) for o, e in cancellations],
        plan_history=[(parse_time(at), p) for at, p in plans],
        purchase_days={date.fromisoformat(d): a for d, a in (purchase_days or {}).items()},
        first_seen_at=None if first_seen_at is None else parse_time(first_seen_at),
        **fields,
    )
