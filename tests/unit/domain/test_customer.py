"""Folding events into customer state: de-duplication, order independence, subscriptions."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from segstream.domain.customer import (
    CustomerState,
    DedupPolicy,
    apply,
    id_hash,
    subscription_status,
)
from segstream.domain.events import Cancellation, Event, Order, Plan, Signup, from_payload
from segstream.state.codec import decode_state, encode_state
from tests.unit.state.v1_layout import encode_before

T0 = datetime(2025, 2, 1, 8, tzinfo=UTC)
PLAN = Plan("beans-monthly", 24.0, "EUR", "month", "basic")


def signup(at: datetime, event_id: str = "s1") -> Signup:
    return Signup(event_id, "shop-1", "c-1", at, PLAN, "web", attributes={"age": 34})


def order(at: datetime, event_id: str, amount: float = 24.0) -> Order:
    return Order(event_id, "shop-1", "c-1", at, f"o-{event_id}", amount, "EUR", True)


def cancel(at: datetime, effective: datetime, event_id: str = "x1") -> Cancellation:
    return Cancellation(event_id, "shop-1", "c-1", at, "price", effective)


def folded(events: list[Event]) -> CustomerState:
    state = CustomerState("shop-1", "c-1")
    for event in events:
        apply(state, event)
    return state


def test_duplicate_event_is_applied_once() -> None:
    state = CustomerState("shop-1", "c-1")
    assert apply(state, order(T0, "e1")) is True
    assert apply(state, order(T0, "e1")) is False
    assert (state.order_count, state.total_spend) == (1, 24.0)


def test_dedup_memory_keeps_the_latest_ids_by_count_and_event_time() -> None:
    state = CustomerState("shop-1", "c-1")
    policy = DedupPolicy(window=3, horizon_days=30)
    for n in range(5):
        apply(state, order(T0 + timedelta(days=n), f"e{n}"), policy)
    assert [h for h, _ in state.seen_ids] == [id_hash(f"e{n}") for n in (2, 3, 4)]
    apply(state, order(T0 - timedelta(days=1), "late"), policy)  # older than all: dropped
    assert not state.has_seen("late") and state.has_seen("e4")
    apply(state, order(T0 + timedelta(days=40), "far"), policy)  # 30-day horizon
    assert [h for h, _ in state.seen_ids] == [id_hash("far")]
    assert apply(state, order(T0 + timedelta(days=2), "e2"), policy) is True  # forgotten


def test_out_of_order_gives_same_state_as_in_order() -> None:
    upgrade = Order(
        "up",
        "shop-1",
        "c-1",
        T0 + timedelta(days=45),
        "o-up",
        30.0,
        "EUR",
        True,
        plan=Plan("beans-premium", 30.0, "EUR", "month", "premium"),
    )
    events: list[Event] = [signup(T0), upgrade] + [
        order(T0 + timedelta(days=30 * n, hours=n), f"e{n}", 20.0 + n) for n in range(6)
    ]
    events.append(cancel(T0 + timedelta(days=170), T0 + timedelta(days=180)))
    in_order = folded(events)
    shuffled = events[:]
    random.Random(4).shuffle(shuffled)
    out_of_order = folded(shuffled)
    assert replace(out_of_order, seen_ids=[]) == replace(in_order, seen_ids=[])
    assert sorted(out_of_order.seen_ids) == sorted(in_order.seen_ids)
    assert out_of_order.plan is not None and out_of_order.plan.tier == "premium"


def test_subscription_status_follows_signups_and_cancellations() -> None:
    state = folded([signup(T0), cancel(T0 + timedelta(days=10), T0 + timedelta(days=28))])
    assert subscription_status(state, T0 - timedelta(days=1)) == "none"
    assert subscription_status(state, T0 + timedelta(days=5)) == "active"
    assert subscription_status(state, T0 + timedelta(days=12)) == "cancelling"
    assert subscription_status(state, T0 + timedelta(days=28)) == "cancelled"
    apply(state, signup(T0 + timedelta(days=60), "s2"))
    assert subscription_status(state, T0 + timedelta(days=61)) == "active"


def test_state_round_trips_through_json_and_the_binary_codec() -> None:
    state = folded([signup(T0), order(T0, "e1"), cancel(T0, T0 + timedelta(days=3))])
    state.segments["rfm"] = "New"
    readable = CustomerState.from_json("shop-1", "c-1", json.loads(json.dumps(state.to_json())))
    assert replace(readable, seen_ids=[]) == replace(state, seen_ids=[])
    assert [h for h, _ in readable.seen_ids] == [h for h, _ in state.seen_ids]
    state.memory["rfm"] = [739000, 2, 410]
    state.due_at = T0 + timedelta(days=7, seconds=0.5)
    assert decode_state("shop-1", "c-1", encode_state(state)) == state


def test_amounts_that_are_not_whole_cents_survive_the_codec() -> None:
    state = folded([order(T0, "e1", amount=0.125), order(T0 + timedelta(days=1), "e2", 1e9)])
    assert decode_state("shop-1", "c-1", encode_state(state)) == state


@pytest.mark.parametrize("amount", [1e308, 1e18, 9.3e16, 5e-324, -0.0, 1e9])
def test_any_float_amount_survives_the_codec(amount: float) -> None:
    """The contracts refuse amounts above 1e9, but the codec must not be where a value
    stops a partition: an amount whose cents overflow a 64-bit integer (or a float at
    all) is kept as the float itself."""
    state = folded([order(T0, "e1", amount=amount), order(T0 + timedelta(days=2), "e2", amount)])
    assert decode_state("shop-1", "c-1", encode_state(state)) == state


def test_consent_follows_the_latest_signup_that_states_it_and_survives_the_codec() -> None:
    def consenting(at: datetime, event_id: str, opt_in: bool | None) -> Signup:
        return replace(signup(at, event_id), marketing_opt_in=opt_in)

    state = folded([consenting(T0, "s1", True)])
    assert state.marketing_opt_in is True
    apply(state, consenting(T0 + timedelta(days=40), "s2", None))  # said nothing: kept
    assert state.marketing_opt_in is True
    apply(state, consenting(T0 + timedelta(days=50), "s3", False))
    assert state.marketing_opt_in is False
    assert decode_state("shop-1", "c-1", encode_state(state)) == state
    readable = CustomerState.from_json("shop-1", "c-1", json.loads(json.dumps(state.to_json())))
    assert readable.marketing_opt_in is False


def test_a_state_stored_before_consent_existed_decodes_as_never_stated() -> None:
    state = folded([replace(signup(T0), marketing_opt_in=True)])
    older = encode_before(state, "consent")  # as the release before consent wrote it
    assert decode_state("shop-1", "c-1", older).marketing_opt_in is None


def test_the_cancel_reason_is_the_latest_cancellations_in_any_order() -> None:
    payloads = [
        {"occurred_at": "2025-03-01T00:00:00Z", "reason": "price", "event_id": "x-1"},
        {"occurred_at": "2025-05-01T00:00:00Z", "reason": "moved", "event_id": "x-2"},
    ]
    for order in (payloads, payloads[::-1]):
        customer = CustomerState("shop", "c-1")
        for fields in order:
            payload = {
                "schema_version": 1,
                "type": "cancellation",
                "shop_id": "shop",
                "customer_id": "c-1",
                **fields,
            }
            apply(customer, from_payload(payload))
        assert customer.cancel_reason == "moved"


def test_statements_are_latest_wins_in_event_time_in_any_order() -> None:
    early = Signup(
        "s1",
        "shop-1",
        "c-1",
        T0,
        PLAN,
        "web",
        preferred_channel="sms",
        attributes={"age": 30, "region": "north"},
        marketing_opt_in=False,
    )
    late = Signup(
        "s2",
        "shop-1",
        "c-1",
        T0 + timedelta(days=90),
        PLAN,
        "app",
        attributes={"age": 31},  # states neither channel nor consent
        marketing_opt_in=True,
    )
    for events in ([early, late], [late, early]):
        state = folded(list(events))
        assert state.attributes == {"age": 31, "region": "north"}
        assert state.attribute_times == {"age": late.occurred_at, "region": T0}
        assert (state.preferred_channel, state.preferred_channel_at) == ("sms", T0)
        assert (state.marketing_opt_in, state.marketing_opt_in_at) == (True, late.occurred_at)
        assert state.acquisition_channel == "app"
    assert folded([early, late]) == folded([late, early])


def test_at_the_same_event_time_an_opt_out_wins() -> None:
    yes = replace(signup(T0, "s1"), marketing_opt_in=True, preferred_channel="sms")
    no = replace(signup(T0, "s2"), marketing_opt_in=False, preferred_channel="email")
    for events in ([yes, no], [no, yes]):
        state = folded(list(events))
        assert state.marketing_opt_in is False
        assert state.preferred_channel == "sms"  # the higher of the two, whatever the order


def test_a_state_stored_before_statement_times_counts_them_as_of_the_latest_signup() -> None:
    first = replace(signup(T0, "s1"), preferred_channel="push", marketing_opt_in=True)
    second = signup(T0 + timedelta(days=30), "s2")
    state = folded([first, second])
    older = encode_before(state, "statement_times")
    decoded = decode_state("shop-1", "c-1", older)
    assert decoded.attribute_times == {"age": second.occurred_at}
    assert decoded.preferred_channel_at == decoded.marketing_opt_in_at == second.occurred_at
    assert replace(decoded, attribute_times={}, preferred_channel_at=None) == replace(
        state, attribute_times={}, preferred_channel_at=None, marketing_opt_in_at=second.occurred_at
    )
