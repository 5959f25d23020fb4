"""A customer_erased event forgets the customer everywhere the pipeline keeps them."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pytest

from harness.stores import feed
from segstream.domain.changes import Source
from segstream.domain.contracts import EVENT_TYPES, validate_output
from segstream.domain.customer import CustomerState, apply
from segstream.domain.events import CustomerErased, format_time, from_payload
from segstream.engine.pipeline import Outcome, Pipeline
from segstream.metrics.bookings import Contribution
from segstream.metrics.journey import ShopFunnel, recount
from segstream.settings import Settings
from segstream.state.keyspace import customer_key, erasure_key, funnel_key, shop_partition
from segstream.tools.publish import encode
from segstream.tools.simulation import SimulationConfig, generate
from segstream.tools.simulation.shops import shops_per_kind
from tests.factories import erasure, order

SHOP = shops_per_kind(1)[0].shop_id


def send(pipeline: Pipeline, role: str, payload: dict[str, Any]) -> Outcome:
    partition = shop_partition(payload["shop_id"], pipeline.settings.topic_partitions)
    source = Source(role, partition, 0)
    outcome = pipeline.handle(encode(payload), EVENT_TYPES[role], source, None)
    pipeline.flush()
    return outcome


@pytest.fixture
def shop() -> tuple[Pipeline, dict[str, Any], dict[str, Any]]:
    return simulated_shop()


def simulated_shop() -> tuple[Pipeline, dict[str, Any], dict[str, Any]]:
    """A coffee roaster's 200 days with touchpoints; the pipeline and its two tables."""
    simulation = generate(
        SimulationConfig(
            seed=8,
            shops=tuple(shops_per_kind(1)[:1]),
            customers_per_shop=40,
            start=date(2025, 1, 1),
            days=200,
            touchpoints=True,
        )
    )
    customers: dict[str, Any] = {}
    shops: dict[str, Any] = {}
    pipeline = Pipeline(Settings(), customers, shops, {}, {})
    feed(pipeline, simulation.outbox())
    return pipeline, customers, shops


def paying_member(pipeline: Pipeline, customers: dict[str, Any]) -> CustomerState:
    now = pipeline.stream_time(SHOP)
    assert now is not None
    sample = pipeline.book(SHOP).lifetime.sample
    member = next(
        state
        for key, state in sorted(customers.items())
        if key.startswith(customer_key(SHOP, ""))
        and Contribution(state).standing(now).subscribers == 1  # pays (not a free plan)
        and state.customer_id in sample
        and len(state.segments) >= 3
    )
    assert isinstance(member, CustomerState)
    return member


def test_an_erased_customer_leaves_every_segment_table_sample_and_count(
    shop: tuple[Pipeline, dict[str, Any], dict[str, Any]],
) -> None:
    pipeline, customers, shops = shop
    state = paying_member(pipeline, customers)
    now = pipeline.stream_time(SHOP)
    assert now is not None
    held = dict(state.segments)
    ledger = pipeline.ledger
    before = ledger.window(SHOP, "day", now.date(), "all")
    outcome = send(
        pipeline, "erasure_requests", erasure(state.customer_id, now, "erase-1", shop=SHOP)
    )

    assert customer_key(SHOP, state.customer_id) not in customers
    assert {c.model: (c.previous, c.current) for c in outcome.changes} == {
        model: (segment, None) for model, segment in held.items()
    }
    for change in outcome.changes:
        payload = change.to_json()
        assert payload["cause"] == {
            "kind": "erased",
            "event_id": "erase-1",
            "event_type": "customer_erased",
        }
        validate_output("segment_changed", payload)
        assert change.membership() is None  # a tombstone on the membership topic
    assert state.customer_id not in pipeline.book(SHOP).lifetime.sample
    assert state.customer_id not in json.dumps(shops, default=str)
    remaining = [s for k, s in customers.items() if k.startswith(customer_key(SHOP, ""))]
    assert ShopFunnel.load(shops[funnel_key(SHOP)]).months == recount(remaining).months
    after = ledger.window(SHOP, "day", now.date(), "all")
    assert after.subscribers_end == before.subscribers_end - 1
    assert after.churned_subscribers == before.churned_subscribers + 1
    erased = ledger.window(SHOP, "day", now.date(), "cancel_reason:erased")
    assert erased.churned_subscribers == 1
    sizes = pipeline.shops[SHOP]["sizes"]
    for model, segment in held.items():
        members = [s for s in remaining if s.segments.get(model) == segment]
        assert sizes.get(model, {}).get(segment, 0) == len(members)


def test_late_events_from_before_the_erasure_are_dropped_and_later_ones_start_afresh(
    shop: tuple[Pipeline, dict[str, Any], dict[str, Any]],
) -> None:
    pipeline, customers, shops = shop
    state = paying_member(pipeline, customers)
    now = pipeline.stream_time(SHOP)
    assert now is not None
    send(pipeline, "erasure_requests", erasure(state.customer_id, now, "erase-1", shop=SHOP))
    before = now - timedelta(days=3)
    late = order(
        state.customer_id, before, "late-order", 12.0, shop=SHOP, order_id="o-late", is_renewal=True
    )
    assert send(pipeline, "orders", late).changes == []
    assert customer_key(SHOP, state.customer_id) not in customers
    again = {**late, "event_id": "new-order", "occurred_at": format_time(now + timedelta(days=1))}
    send(pipeline, "orders", again)
    assert customers[customer_key(SHOP, state.customer_id)].order_count == 1
    marker = erasure_key(SHOP, state.customer_id)
    assert state.customer_id not in marker and marker in shops


def test_an_event_from_before_the_erasure_is_dropped_also_after_the_customer_came_back(
    shop: tuple[Pipeline, dict[str, Any], dict[str, Any]],
) -> None:
    """The marker is read for a known customer too: their state after an erasure holds only
    events after it, so an earlier event is the forgotten customer's, whenever it comes."""
    pipeline, customers, _ = shop
    state = paying_member(pipeline, customers)
    now = pipeline.stream_time(SHOP)
    assert now is not None
    send(pipeline, "erasure_requests", erasure(state.customer_id, now, "erase-1", shop=SHOP))
    back = order(state.customer_id, now + timedelta(days=1), "back", 12.0, shop=SHOP)
    send(pipeline, "orders", back)
    late = {**back, "event_id": "late", "occurred_at": format_time(now - timedelta(days=2))}
    send(pipeline, "orders", late)
    came_back = customers[customer_key(SHOP, state.customer_id)]
    assert came_back.order_count == 1
    assert list(came_back.purchase_days) == [(now + timedelta(days=1)).date()]


def test_erasing_twice_or_a_stranger_changes_nothing_more(
    shop: tuple[Pipeline, dict[str, Any], dict[str, Any]],
) -> None:
    pipeline, customers, _ = shop
    state = paying_member(pipeline, customers)
    stream_time = pipeline.stream_time(SHOP)
    assert stream_time is not None
    now = format_time(stream_time)
    whom = (state.customer_id, state.customer_id, "nobody")
    first, again, stranger = (
        erasure(customer, now, f"erase-{n}", shop=SHOP) for n, customer in enumerate(whom, 1)
    )
    assert send(pipeline, "erasure_requests", first).changes
    assert send(pipeline, "erasure_requests", again).changes == []
    assert send(pipeline, "erasure_requests", stranger).changes == []


def test_an_erasure_is_no_fact_to_fold() -> None:
    event = from_payload(erasure("c-1", "2026-01-01T00:00:00Z", "erase-1", shop=SHOP))
    assert isinstance(event, CustomerErased)
    with pytest.raises(TypeError, match="no fact to fold"):
        apply(CustomerState(SHOP, "c-1"), event)
