"""The journey stage rules, the funnel the pipeline books, and the touchpoint contract."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.stores import feed
from segstream.domain.contracts import SCHEMA_DIR
from segstream.domain.customer import CustomerState, apply
from segstream.domain.events import ACQUISITION_CHANNELS, TOUCHPOINTS, from_payload, parse_time
from segstream.engine.pipeline import Pipeline
from segstream.metrics.journey import STAGES, Funnel, ShopFunnel, journey_of, recount
from segstream.settings import Settings
from segstream.state.codec import decode_state, encode_state
from segstream.state.keyspace import customer_key, funnel_key
from segstream.tools.simulation import SimulationConfig, generate
from segstream.tools.simulation.shops import shops_per_kind

SHOP = "tea-1"


def event(kind: str, at: str, number: int, **fields: Any) -> dict[str, Any]:
    """A valid payload of ``kind`` for customer c-1 at ``at``."""
    by_kind: dict[str, dict[str, Any]] = {
        "signup": {
            "plan": {"plan_id": "m", "price": 20.0, "currency": "EUR", "interval": "month"},
            "acquisition_channel": "web",
        },
        "order": {"order_id": f"o-{number}", "amount": 20.0, "currency": "EUR", "is_renewal": True},
    }
    extra = by_kind.get(kind, {})
    return {
        "schema_version": 1,
        "type": kind,
        "event_id": f"e-{number}",
        "shop_id": SHOP,
        "customer_id": "c-1",
        "occurred_at": at,
        **extra,
        **fields,
    }


def touch(
    at: str, number: int, kind: str = "site_visit", channel: str = "social"
) -> dict[str, Any]:
    return event("touchpoint", at, number, touchpoint=kind, channel=channel)


def state_of(*payloads: dict[str, Any]) -> CustomerState:
    state = CustomerState(SHOP, "c-1")
    for payload in payloads:
        apply(state, from_payload(payload))
    return state


def test_a_visitor_is_aware_and_a_trial_shows_consideration() -> None:
    visitor = state_of(touch("2026-01-30T10:00:00Z", 1))
    assert visitor.is_prospect
    journey = journey_of(visitor)
    assert journey is not None
    assert (journey.stage, journey.month, journey.channel) == ("awareness", "2026-01", "social")
    trying = state_of(touch("2026-01-30T10:00:00Z", 1), touch("2026-02-03T10:00:00Z", 2, "trial"))
    journey = journey_of(trying)
    assert journey is not None and journey.stage == "consideration"


def test_buying_implies_consideration_and_a_second_purchase_day_is_retention() -> None:
    signed = state_of(event("signup", "2026-03-01T09:00:00Z", 1))
    journey = journey_of(signed)
    assert journey is not None and journey.stage == "purchase"
    assert journey.reached == (parse_time("2026-03-01T09:00:00Z"),) * 3
    assert journey.channel == "web"  # the signup's channel: no touchpoint
    renewed = state_of(
        event("signup", "2026-03-01T09:00:00Z", 1),
        event("order", "2026-03-01T09:00:05Z", 2),
        event("order", "2026-03-01T18:00:00Z", 3),  # the same purchase day: no repeat yet
    )
    journey = journey_of(renewed)
    assert journey is not None and journey.stage == "purchase"
    apply(renewed, from_payload(event("order", "2026-04-01T09:00:00Z", 4)))
    journey = journey_of(renewed)
    assert journey is not None and journey.stage == "retention"
    assert journey.reached[-1] == parse_time("2026-04-01T00:00:00Z")


def test_a_touchpoint_after_the_purchase_changes_neither_cohort_nor_channel() -> None:
    state = state_of(event("signup", "2026-03-01T09:00:00Z", 1), touch("2026-05-01T10:00:00Z", 2))
    journey = journey_of(state)
    assert journey is not None
    assert (journey.month, journey.channel) == ("2026-03", "web")
    assert not state.is_prospect


def test_an_earlier_touchpoint_arriving_late_moves_the_customer_to_its_cohort() -> None:
    state = state_of(event("signup", "2026-03-01T09:00:00Z", 1), touch("2026-02-20T10:00:00Z", 2))
    journey = journey_of(state)
    assert journey is not None
    assert (journey.month, journey.channel, journey.stage) == ("2026-02", "social", "purchase")


def test_a_customer_with_no_event_has_no_journey() -> None:
    assert journey_of(CustomerState(SHOP, "c-1")) is None


def test_the_journey_fields_survive_the_codec_and_the_readable_form() -> None:
    state = state_of(
        touch("2026-01-30T10:00:00Z", 1), touch("2026-02-01T10:00:00Z", 2, "sample_request")
    )
    assert decode_state(SHOP, "c-1", encode_state(state)) == state
    readable = CustomerState.from_json(SHOP, "c-1", state.to_json())
    assert (readable.first_touch, readable.considered_at) == (
        state.first_touch,
        state.considered_at,
    )
    plain = CustomerState(SHOP, "c-2")
    assert len(encode_state(plain)) == len(
        encode_state(decode_state(SHOP, "c-2", encode_state(plain)))
    )


@given(st.permutations(range(7)), st.integers(min_value=0, max_value=6))
@settings(max_examples=60, deadline=None)
def test_the_journey_is_the_same_whatever_order_the_events_arrive_in(
    order: list[int], duplicate: int
) -> None:
    payloads = [
        touch("2026-02-10T10:00:00Z", 1, channel="email"),
        touch("2026-02-09T10:00:00Z", 2, channel="social"),
        touch("2026-02-12T10:00:00Z", 3, "trial", channel="web"),
        touch("2026-02-11T10:00:00Z", 4, "sample_request", channel="web"),
        event("signup", "2026-03-01T09:00:00Z", 5),
        event("order", "2026-03-01T09:00:00Z", 6),
        event("order", "2026-04-01T09:00:00Z", 7),
    ]
    shuffled = [payloads[n] for n in order] + [payloads[duplicate]]
    journey = journey_of(state_of(*shuffled))
    assert journey is not None
    assert journey.reached == tuple(
        parse_time(at)
        for at in (
            "2026-02-09T10:00:00Z",
            "2026-02-11T10:00:00Z",
            "2026-03-01T00:00:00Z",
            "2026-04-01T00:00:00Z",
        )
    )
    assert journey.channel == "social"


def test_the_funnel_moves_a_customer_between_cohorts_and_drops_expired_months() -> None:
    funnel = ShopFunnel({})
    early = state_of(touch("2026-01-05T10:00:00Z", 1))
    later = state_of(touch("2026-01-05T10:00:00Z", 1), event("signup", "2026-02-01T00:00:00Z", 2))
    assert funnel.move(None, journey_of(early), oldest="2025-01")
    assert funnel.move(journey_of(early), journey_of(later), oldest="2025-01")
    assert funnel.months == {"2026-01": {"social": [1, 1, 1, 0]}}
    assert not funnel.move(journey_of(later), journey_of(later), oldest="2025-01")
    assert funnel.move(journey_of(later), None, oldest="2025-01")
    assert funnel.months == {}
    funnel.move(None, journey_of(later), oldest="2025-01")
    assert funnel.expire("2026-02") and funnel.months == {}
    funnel.move(None, journey_of(later), oldest="2026-02")  # an expired cohort is not kept
    assert funnel.months == {}


def test_conversion_and_drop_off_are_shares_of_the_stage_before() -> None:
    answer = Funnel((20, 8, 5, 0)).to_json()
    stages = answer["stages"]
    assert [s["stage"] for s in stages] == list(STAGES)
    assert stages[0]["conversion"] is None and stages[0]["drop_off"] is None
    assert (stages[1]["conversion"], stages[1]["drop_off"]) == (0.4, 12)
    assert stages[2]["drop_off_rate"] == pytest.approx(1 - 5 / 8)
    assert stages[3]["conversion"] == 0.0
    assert answer["purchase_conversion"] == 0.25
    empty = Funnel((0, 0, 0, 0)).to_json()
    assert empty["purchase_conversion"] is None and empty["stages"][1]["conversion"] is None


@pytest.mark.parametrize("seed", [1, 2])
def test_the_booked_funnel_equals_a_recount_of_the_customers_after_a_messy_stream(
    seed: int,
) -> None:
    """Out of order, duplicated, prospects: the funnel the pipeline keeps equals the one
    counted from its customers' states; prospects are in no segment and no lifetime
    sample."""
    simulation = generate(
        SimulationConfig(
            seed=seed,
            shops=tuple(shops_per_kind(1)[:1]),
            customers_per_shop=60,
            start=date(2025, 3, 1),
            days=200,
            touchpoints=True,
            duplicate_ratio=0.05,
            out_of_order_ratio=0.2,
        )
    )
    settings_ = Settings()
    customers: dict[str, Any] = {}
    shops: dict[str, Any] = {}
    pipeline = Pipeline(settings_, customers, shops, {}, {})
    feed(pipeline, [(role, event) for role, event in simulation.outbox()])
    shop_id = simulation.events[0]["shop_id"]
    states = [s for k, s in customers.items() if k.startswith(customer_key(shop_id, ""))]
    booked = ShopFunnel.load(shops[funnel_key(shop_id)])
    assert booked.months == recount(states).months
    prospects = [s for s in states if s.is_prospect]
    assert prospects and all(not s.segments for s in prospects)
    assert not {s.customer_id for s in prospects} & set(pipeline.book(shop_id).lifetime.sample)
    stages = {journey.stage for s in states if (journey := journey_of(s)) is not None}
    assert stages == set(STAGES)
    assert all(not s.is_prospect for s in states if s.customer_id.startswith("c-"))


def test_a_prospect_turning_customer_enters_segments_and_the_lifetime_sample() -> None:
    customers: dict[str, Any] = {}
    pipeline = Pipeline(Settings(), customers, {}, {}, {})
    feed(pipeline, [("touchpoints", touch("2026-02-01T10:00:00Z", 1, "trial"))])
    assert customers[customer_key(SHOP, "c-1")].segments == {}
    feed(pipeline, [("signups", event("signup", "2026-02-03T10:00:00Z", 2))])
    state = customers[customer_key(SHOP, "c-1")]
    assert state.segments.get("lifecycle") == "new"
    assert state.first_seen_at == parse_time("2026-02-03T10:00:00Z")  # the visit is no tenure
    assert "c-1" in pipeline.book(SHOP).lifetime.sample


def test_touchpoint_values_equal_the_schema() -> None:
    schema = json.loads((SCHEMA_DIR / "touchpoint.json").read_text())
    signup = json.loads((SCHEMA_DIR / "signup.json").read_text())
    assert list(TOUCHPOINTS) == schema["properties"]["touchpoint"]["enum"]
    assert list(ACQUISITION_CHANNELS) == schema["properties"]["channel"]["enum"]
    assert list(ACQUISITION_CHANNELS) == signup["properties"]["acquisition_channel"]["enum"]


def test_simulated_touchpoints_come_before_their_customers_first_event() -> None:
    simulation = generate(
        SimulationConfig(
            seed=4,
            shops=tuple(shops_per_kind(1)[:1]),
            customers_per_shop=40,
            touchpoints=True,
            invalid_ratio=0.5,  # every kind of corruption meets touchpoints too
        )
    )
    assert len(simulation.invalid) == len(simulation.events) // 2
    first: dict[str, str] = {}
    touches: dict[str, list[str]] = {}
    for payload in simulation.events:
        who = payload["customer_id"]
        if payload["type"] == "touchpoint":
            touches.setdefault(who, []).append(payload["occurred_at"])
        else:
            first[who] = min(first.get(who, payload["occurred_at"]), payload["occurred_at"])
    assert all(max(times) < first[who] for who, times in touches.items() if who in first)
    prospects = [who for who in touches if who not in first]
    assert len(prospects) == 20
