"""Events and a tiny stand-in for the pipeline, for the metrics tests.

The events are :mod:`tests.factories` events in the metrics tests' shorthand: shop
:data:`SHOP`, a fresh event id each, a plan given by its price.

:class:`Shop` does for the ledger what the pipeline does: fold each event into the
customer's state, (optionally) re-assign segments at the shop's stream time, and call
:meth:`MetricsLedger.record` with copies of the state before and after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from datetime import UTC, datetime
from itertools import count
from typing import Any

from segstream.domain.customer import (
    PAYING_STATUSES,
    CustomerState,
    DedupPolicy,
    apply,
    subscription_status,
)
from segstream.domain.events import Cancellation, CustomerErased, Event
from segstream.metrics.ledger import MetricsLedger, Recorded
from tests import factories

SHOP = "tea-1"
Segmenter = Callable[[CustomerState, datetime], dict[str, str]]
_ids: Iterator[int] = count()


def at(day: str, hour: int = 12) -> datetime:
    """``2025-03-01`` at ``hour`` o'clock UTC."""
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def _next_id() -> str:
    return f"e-{next(_ids)}"


def plan(price: float, interval: str = "month", tier: str = "basic") -> dict[str, Any]:
    """A plan payload (id ``<tier>-<interval>``)."""
    return factories.plan(price, interval, plan_id=f"{tier}-{interval}", tier=tier)


def signup(
    customer: str, when: datetime, price: float = 30.0, interval: str = "month", tier: str = "basic"
) -> Event:
    """A signup to a plan of ``price`` per ``interval``."""
    to_plan = plan(price, interval, tier)
    return factories.event(factories.signup(customer, when, _next_id(), shop=SHOP, to_plan=to_plan))


def order(
    customer: str, when: datetime, amount: float = 30.0, new_plan: dict[str, Any] | None = None
) -> Event:
    """An order, optionally switching to ``new_plan`` (then a renewal)."""
    event_id = _next_id()
    payload = factories.order(
        customer,
        when,
        event_id,
        shop=SHOP,
        amount=amount,
        order_id=event_id,
        is_renewal=new_plan is not None,
        new_plan=new_plan,
    )
    return factories.event(payload)


def cancel(customer: str, when: datetime, effective: datetime | None = None) -> Event:
    """A cancellation, effective at once unless ``effective`` is given."""
    payload = factories.cancellation(customer, when, _next_id(), shop=SHOP, effective_at=effective)
    return factories.event(payload)


def change_plan(
    customer: str, when: datetime, price: float, change: str, tier: str = "basic"
) -> Event:
    """A plan change to a monthly plan of ``price`` (a pause: price 0)."""
    to_plan = plan(price, tier="paused" if price == 0 else tier)
    payload = factories.plan_change(customer, when, _next_id(), to_plan, change, shop=SHOP)
    return factories.event(payload)


def erase(customer: str, when: datetime) -> Event:
    """An erasure request."""
    return factories.event(factories.erasure(customer, when, _next_id(), shop=SHOP))


def tier_and_status(state: CustomerState, now: datetime) -> dict[str, str]:
    """Two stand-in segment models: the plan tier and the subscription status."""
    segments = {"status": subscription_status(state, now)}
    if state.plan is not None and state.plan.tier:
        segments["tier"] = state.plan.tier
    return segments


def copy_state(state: CustomerState) -> CustomerState:
    """A copy (what the pipeline hands the ledger as ``before``)."""
    return state.copy()


class Shop:
    """Customer states of one shop, fed event by event into a ledger."""

    def __init__(self, ledger: MetricsLedger, segmenter: Segmenter | None = None) -> None:
        self.ledger = ledger
        self.segmenter = segmenter
        self.states: dict[str, CustomerState] = {}
        self.stream_time: datetime | None = None
        self.erased: dict[str, datetime] = {}

    def send(self, *events: Event) -> list[Recorded | None]:
        """Process ``events`` in the given order, as one batch (flushed at its end); None
        for an event the pipeline drops (of an erased customer) or books nothing for."""
        recorded = [self._one(event) for event in events]
        self.ledger.flush()
        return recorded

    def _one(self, event: Event) -> Recorded | None:
        now = event.occurred_at
        if self.stream_time is not None:
            now = max(now, self.stream_time)
        self.stream_time = now
        if isinstance(event, CustomerErased):
            return self._erase(event, now)
        if event.customer_id not in self.states and self._forgotten(event):
            return None
        state = self.states.setdefault(
            event.customer_id, CustomerState(event.shop_id, event.customer_id)
        )
        before = copy_state(state)
        assert apply(state, event, DedupPolicy(window=1000))
        if self.segmenter is not None:
            state.segments = self.segmenter(state, now)
        return self.ledger.record(event, before, copy_state(state), now)

    def _forgotten(self, event: Event) -> bool:
        """An event of an erased customer that occurred before their erasure."""
        erased_at = self.erased.get(event.customer_id)
        return erased_at is not None and event.occurred_at <= erased_at

    def _erase(self, event: Event, now: datetime) -> Recorded | None:
        """What the pipeline does: a paying subscription ends now (a cancellation with
        reason ``erased``), the customer leaves every segment, their state is deleted and
        their events that occurred before the erasure are dropped from then on."""
        erased_at = self.erased.get(event.customer_id, event.occurred_at)
        self.erased[event.customer_id] = max(erased_at, event.occurred_at)
        state = self.states.pop(event.customer_id, None)
        if state is None:
            return None
        leaving = copy_state(state)
        if subscription_status(state, now) in PAYING_STATUSES:
            ending = Cancellation(
                event_id=event.event_id,
                shop_id=event.shop_id,
                customer_id=event.customer_id,
                occurred_at=now,
                reason="erased",
                effective_at=now,
            )
            apply(leaving, ending, DedupPolicy(window=1000))
        leaving.segments = {}
        return self.ledger.record(event, state, leaving, now)

    def rescore(self) -> None:
        """Re-assign every customer's segments at the stream time (the pipeline's timer)."""
        assert self.segmenter is not None and self.stream_time is not None
        for state in self.states.values():
            segments = self.segmenter(state, self.stream_time)
            if segments != state.segments:
                before = copy_state(state)
                state.segments = segments
                self.ledger.record(None, before, copy_state(state), self.stream_time)
        self.ledger.flush()


class CountingBuckets(MutableMapping[str, dict[str, Any]]):
    """A dict that counts writes and deletions (changelog records)."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.writes = 0

    def __getitem__(self, key: str) -> dict[str, Any]:
        return self.data[key]

    def __setitem__(self, key: str, value: dict[str, Any]) -> None:
        self.writes += 1
        self.data[key] = value

    def __delitem__(self, key: str) -> None:
        self.writes += 1
        del self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)
