"""The input events beyond signups, orders and cancellations: customer updates, plan
changes, campaign responses and feedback. Each folds into state the same in any order,
keeps what it keeps bounded, and survives both codecs (and older stored states decode)."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import permutations
from typing import Any

from segstream.domain.contracts import schema_path
from segstream.domain.customer import (
    CAMPAIGN_MEMORY,
    FEEDBACK_MEMORY,
    CustomerState,
    apply,
    day_number,
    id_hash,
    renewal_of,
)
from segstream.domain.events import (
    CAMPAIGN_ACTIONS,
    CONTACT_CHANNELS,
    CampaignResponse,
    CustomerUpdated,
    Event,
    Feedback,
    Plan,
    PlanChanged,
    Signup,
    from_payload,
)
from segstream.state.codec import decode_state, encode_state
from tests.unit.state.v1_layout import encode_before

T0 = datetime(2025, 2, 1, 8, tzinfo=UTC)
PLAN = Plan("beans-monthly", 24.0, "EUR", "month", "basic")
PAUSED = Plan("paused", 0.0, "EUR", "month")


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def signup(when: datetime, **fields: Any) -> Signup:
    return replace(Signup("s1", "shop-1", "c-1", when, PLAN, "web"), **fields)


def update(event_id: str, when: datetime, **fields: Any) -> CustomerUpdated:
    return replace(CustomerUpdated(event_id, "shop-1", "c-1", when), **fields)


def response(
    event_id: str, when: datetime, action: str = "opened", channel: str = "email"
) -> CampaignResponse:
    return CampaignResponse(event_id, "shop-1", "c-1", when, f"cmp-{event_id}", channel, action)


def feedback(event_id: str, when: datetime, score: int) -> Feedback:
    return Feedback(event_id, "shop-1", "c-1", when, score)


def folded(events: list[Event]) -> CustomerState:
    state = CustomerState("shop-1", "c-1")
    for event in events:
        apply(state, event)
    return state


def same_in_every_order(events: list[Event]) -> CustomerState:
    """The state of ``events`` in every order (all orders up to 5 events, else 30 random
    ones), asserted equal but for the order of remembered ids; returns it."""
    if len(events) <= 5:
        orders = [list(p) for p in permutations(events)]
    else:
        rng = random.Random(len(events))
        orders = [rng.sample(events, len(events)) for _ in range(30)]
    states = [folded(order) for order in orders]
    first = states[0]
    for state in states[1:]:
        assert replace(state, seen_ids=sorted(state.seen_ids)) == replace(
            first, seen_ids=sorted(first.seen_ids)
        )
    return first


def round_trips(state: CustomerState) -> None:
    assert decode_state("shop-1", "c-1", encode_state(state)) == state
    readable = CustomerState.from_json("shop-1", "c-1", json.loads(json.dumps(state.to_json())))
    assert replace(readable, seen_ids=[]) == replace(state, seen_ids=[])


# --- customer_updated -------------------------------------------------------------------------


def test_updates_and_signups_merge_attributes_key_by_key_latest_in_event_time() -> None:
    state = same_in_every_order(
        [
            signup(at(0), attributes={"age": 34, "region": "north"}, preferred_channel="sms"),
            update("u1", at(10), attributes={"age": 35, "diet": "vegan"}),
            update("u2", at(5), attributes={"age": 99, "region": "south"}),  # older than u1
            update("u3", at(20), preferred_channel="push"),
        ]
    )
    assert state.attributes == {"age": 35, "region": "south", "diet": "vegan"}
    assert state.attribute_times == {"age": at(10), "region": at(5), "diet": at(10)}
    assert (state.preferred_channel, state.preferred_channel_at) == ("push", at(20))
    round_trips(state)


def test_an_update_older_than_the_signup_does_not_undo_it() -> None:
    state = same_in_every_order(
        [
            signup(at(10), marketing_opt_in=True, preferred_channel="email"),
            update("u1", at(3), marketing_opt_in=False, preferred_channel="sms"),
        ]
    )
    assert (state.marketing_opt_in, state.preferred_channel) == (True, "email")


def test_an_update_leaves_what_it_does_not_state() -> None:
    state = folded([signup(at(0), marketing_opt_in=True, preferred_channel="sms")])
    apply(state, update("u1", at(9), attributes={"age": 40}))
    assert (state.marketing_opt_in, state.preferred_channel) == (True, "sms")


def test_an_update_is_built_from_its_payload() -> None:
    payload = {
        "schema_version": 1,
        "type": "customer_updated",
        "event_id": "u-1",
        "shop_id": "shop-1",
        "customer_id": "c-1",
        "occurred_at": "2025-02-01T08:00:00Z",
        "marketing_opt_in": False,
    }
    event = from_payload(payload)
    assert event == CustomerUpdated("u-1", "shop-1", "c-1", T0, {}, None, False)


# --- plan_changed -----------------------------------------------------------------------------


def test_plan_changes_join_the_plan_history_in_event_time() -> None:
    premium = Plan("beans-premium", 30.0, "EUR", "month", "premium")
    state = same_in_every_order(
        [
            signup(at(0)),
            PlanChanged("p1", "shop-1", "c-1", at(30), premium, "upgrade"),
            PlanChanged("p2", "shop-1", "c-1", at(60), PAUSED, "pause"),
            PlanChanged("p3", "shop-1", "c-1", at(90), premium, "resume"),
        ]
    )
    assert state.plan_history == [
        (at(0), PLAN),
        (at(30), premium),
        (at(60), PAUSED),
        (at(90), premium),
    ]
    assert state.plan == premium
    assert renewal_of(PAUSED) is None  # a paused plan earns nothing and is not renewed
    round_trips(state)


# --- campaign_response ------------------------------------------------------------------------


def test_campaign_interactions_keep_the_latest_ones_in_any_order() -> None:
    actions = ("delivered", "opened", "clicked", "converted")
    events: list[Event] = [
        response(f"r{n}", at(n // 2), actions[n % 4], CONTACT_CHANNELS[n % 3]) for n in range(80)
    ]
    state = same_in_every_order(events)
    assert len(state.campaign_touches) == CAMPAIGN_MEMORY
    assert state.campaign_touches == sorted(state.campaign_touches)
    assert state.campaign_touches[0][0] == day_number(at(24))  # the 32 latest of 40 days
    assert (day_number(at(39)), "converted", "sms", id_hash("cmp-r79")) in state.campaign_touches
    assert state.marketing_opt_in is None  # only an unsubscribe states consent
    round_trips(state)


def test_unsubscribing_withdraws_consent_if_it_is_the_latest_statement() -> None:
    opted_in = signup(at(0), marketing_opt_in=True)
    unsubscribed = response("r1", at(10), "unsubscribed", "sms")
    state = same_in_every_order([opted_in, unsubscribed])
    assert (state.marketing_opt_in, state.marketing_opt_in_at) == (False, at(10))
    again = update("u1", at(20), marketing_opt_in=True)
    assert same_in_every_order([opted_in, unsubscribed, again]).marketing_opt_in is True
    same_time = update("u2", at(10), marketing_opt_in=True)
    assert same_in_every_order([unsubscribed, same_time]).marketing_opt_in is False


# --- feedback ---------------------------------------------------------------------------------


def test_feedback_keeps_the_latest_scores_in_any_order() -> None:
    events: list[Event] = [feedback(f"f{n}", at(3 * n), 1 + n % 5) for n in range(25)]
    state = same_in_every_order(events)
    assert len(state.feedback_scores) == FEEDBACK_MEMORY
    assert state.feedback_scores == [(day_number(at(3 * n)), 1 + n % 5) for n in range(9, 25)]
    round_trips(state)


def test_feedback_text_never_reaches_the_state() -> None:
    text = "Zoë Example, 12 Secret Lane: the beans were stale"
    payload = {
        "schema_version": 1,
        "type": "feedback",
        "event_id": "f-1",
        "shop_id": "shop-1",
        "customer_id": "c-1",
        "occurred_at": "2025-02-01T08:00:00Z",
        "score": 2,
        "text": text,
        "order_id": "o-7",
    }
    event = from_payload(payload)
    assert text not in repr(event)
    state = folded([event])
    assert state.feedback_scores == [(day_number(T0), 2)]
    assert "Secret" not in json.dumps(state.to_json())
    assert b"Secret" not in encode_state(state)


# --- the codec --------------------------------------------------------------------------------


def test_a_state_stored_before_these_events_existed_decodes_without_them() -> None:
    state = folded(
        [signup(at(0), attributes={"age": 34}), response("r1", at(1)), feedback("f1", at(2), 4)]
    )
    older = encode_before(state, "touches")  # as the release before these events wrote it
    assert decode_state("shop-1", "c-1", older) == replace(
        state, campaign_touches=[], feedback_scores=[]
    )


def test_the_codecs_value_tables_match_the_schemas() -> None:
    # The codec stores action and channel as their index in these tables: a value the
    # schema gains must be appended to them (never inserted).
    schema = json.loads(schema_path("campaign_response").read_text(encoding="utf-8"))
    assert list(CAMPAIGN_ACTIONS) == schema["properties"]["action"]["enum"]
    assert list(CONTACT_CHANNELS) == schema["properties"]["channel"]["enum"]
    update_schema = json.loads(schema_path("customer_updated").read_text(encoding="utf-8"))
    assert list(CONTACT_CHANNELS) == update_schema["properties"]["preferred_channel"]["enum"]
