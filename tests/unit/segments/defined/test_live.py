"""Live definitions in the pipeline: records of the definitions topic, membership kept with
every event, re-evaluation of existing customers in bounded steps, versions, deletion."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from segstream.domain.changes import SegmentChange, Source
from segstream.domain.contracts import validate_output
from segstream.domain.events import Order, Signup
from segstream.engine.pipeline import MAX_DEFINITIONS, Pipeline
from segstream.segments.defined.live import ShopDefinitions
from segstream.settings import Settings
from segstream.state.keyspace import definitions_key, shop_partition
from tests import factories
from tests.factories import encoded, order

T0 = datetime(2025, 3, 1, 9, tzinfo=UTC)
PARTITION = shop_partition("tea-1", 8)
ORDERS = Source("segstream.orders", PARTITION, 0)
DEFINITIONS = Source("segstream.segment-definitions", PARTITION, 0)
BIG = "big-spenders"
MODEL = f"defined:{BIG}"


def definition(version: int, at_least: float, segment: str = BIG) -> bytes:
    """Customers whose spend is at least ``at_least``."""
    rule = {"field": "behaviour.total_spend", "op": "gte", "value": at_least}
    return json.dumps(
        {
            "schema_version": 1,
            "shop_id": "tea-1",
            "segment_id": segment,
            "name": "Big spenders",
            "version": version,
            "rule": rule,
        }
    ).encode()


def key(segment: str = BIG) -> bytes:
    return f"tea-1|{segment}".encode()


@pytest.fixture
def pipeline() -> Pipeline:
    return Pipeline(Settings(rfm_min_customers=1), {}, {}, {}, {})


def buy(pipeline: Pipeline, customer: str, amount: float, day: int) -> list[SegmentChange]:
    raw = encoded(order(customer, T0 + timedelta(days=day), f"{customer}-{day}", amount))
    outcome = pipeline.handle(raw, Order, ORDERS, b"tea-1")
    assert outcome.status == "processed"
    return [c for c in outcome.changes if c.model == MODEL]


def reevaluate_all(pipeline: Pipeline, limit: int) -> list[list[SegmentChange]]:
    """Every step of the pending re-evaluations, flushed after each as a commit is."""
    steps = []
    while (outcome := pipeline.reevaluate("tea-1", limit)) is not None:
        steps.append(outcome.changes)
        pipeline.flush()
        pipeline.forget_shops()  # each step starts from the tables, as after a crash
    return steps


def members(pipeline: Pipeline) -> set[str]:
    return {s.customer_id for s in pipeline.shop_customers("tea-1") if MODEL in s.segments}


def test_a_new_definition_puts_existing_customers_in_by_bounded_steps(
    pipeline: Pipeline,
) -> None:
    for i, amount in enumerate([10, 50, 80, 5, 120]):
        buy(pipeline, f"c-{i}", amount, i)
    outcome = pipeline.define(key(), definition(1, 50), DEFINITIONS)
    assert outcome.status == "processed" and outcome.changes == []
    pipeline.flush()
    steps = reevaluate_all(pipeline, limit=2)
    assert [len(step) for step in steps] == [1, 1, 1]  # c-0 c-1 | c-2 c-3 | c-4
    assert members(pipeline) == {"c-1", "c-2", "c-4"}
    change = steps[0][0]
    assert (change.previous, change.current, change.definition_version) == (None, BIG, 1)
    payload = change.to_json()
    validate_output("segment_changed", payload)
    assert payload["cause"] == {"kind": "definition"} and payload["definition_version"] == 1
    validate_output("segment_membership", change.membership() or {})
    assert pipeline.reevaluate("tea-1", 2) is None


def test_events_keep_membership_current_and_carry_the_version(pipeline: Pipeline) -> None:
    buy(pipeline, "c-1", 10, 0)
    pipeline.define(key(), definition(1, 50), DEFINITIONS)
    reevaluate_all(pipeline, limit=10)
    [entered] = buy(pipeline, "c-1", 45, 1)
    assert (entered.current, entered.definition_version, entered.cause.kind) == (BIG, 1, "event")
    assert buy(pipeline, "c-1", 1, 2) == []  # still in: no change


def test_a_replaced_definition_moves_exactly_the_customers_it_changes(
    pipeline: Pipeline,
) -> None:
    for i, amount in enumerate([10, 50, 80, 5, 120]):
        buy(pipeline, f"c-{i}", amount, i)
    pipeline.define(key(), definition(1, 50), DEFINITIONS)
    reevaluate_all(pipeline, limit=3)
    pipeline.define(key(), definition(2, 100), DEFINITIONS)
    moved = [c for step in reevaluate_all(pipeline, limit=3) for c in step]
    assert [(c.customer_id, c.current, c.definition_version) for c in moved] == [
        ("c-1", None, 2),
        ("c-2", None, 2),
    ]
    assert members(pipeline) == {"c-4"}
    assert pipeline.book("tea-1").sizes[MODEL] == {BIG: 1}


def test_deleting_a_definition_takes_everyone_out_with_its_last_version(
    pipeline: Pipeline,
) -> None:
    for i, amount in enumerate([60, 70]):
        buy(pipeline, f"c-{i}", amount, i)
    pipeline.define(key(), definition(3, 50), DEFINITIONS)
    reevaluate_all(pipeline, limit=10)
    assert pipeline.define(key(), None, DEFINITIONS).status == "processed"
    exits = [c for step in reevaluate_all(pipeline, limit=10) for c in step]
    assert [(c.previous, c.current, c.definition_version) for c in exits] == [(BIG, None, 3)] * 2
    assert all(c.membership() is None for c in exits)  # tombstones
    assert members(pipeline) == set()
    assert buy(pipeline, "c-0", 100, 5) == []  # no longer evaluated


def test_a_version_not_above_the_last_one_is_dead_lettered(pipeline: Pipeline) -> None:
    pipeline.define(key(), definition(2, 50), DEFINITIONS)
    stale = pipeline.define(key(), definition(2, 10), DEFINITIONS)
    assert stale.status == "dead_lettered" and stale.dead_letter is not None
    assert stale.dead_letter.reason == "stale_definition"
    pipeline.define(key(), None, DEFINITIONS)  # deleted at version 2 ...
    again = pipeline.define(key(), definition(1, 10), DEFINITIONS)  # ... so ids never repeat
    assert again.dead_letter is not None and again.dead_letter.reason == "stale_definition"
    assert pipeline.define(key(), definition(3, 10), DEFINITIONS).status == "processed"


@pytest.mark.parametrize(
    ("record_key", "value", "path"),
    [
        (b"tea-1", definition(1, 5), "key"),
        (None, definition(1, 5), "key"),
        (b"tea-1|other", definition(1, 5), "segment_id"),
        (key(), b"{not json", "definition"),
        (key(), b'{"version": 1, ' + definition(1, 5)[1:], "definition"),  # a duplicate key
        (key(), definition(1, 5).replace(b"5", b"1e999", 1), "definition"),
        (key(), b"\xff" + definition(1, 5), "definition"),
        (key(), definition(1, 5).replace(b'"gte"', b'"matches"'), "rule"),
    ],
)
def test_a_record_that_breaks_the_contract_is_dead_lettered_with_its_bytes(
    pipeline: Pipeline, record_key: bytes | None, value: bytes, path: str
) -> None:
    outcome = pipeline.define(record_key, value, DEFINITIONS)
    assert outcome.status == "dead_lettered" and outcome.dead_letter is not None
    letter = outcome.dead_letter
    assert letter.reason == "invalid_definition" and letter.detail.startswith(path)
    assert (letter.key, letter.value) == (record_key, value)
    validate_output("dead_letter", letter.to_json(T0))
    assert pipeline.book("tea-1").definitions.rules == {}


def test_a_shop_defines_a_bounded_number_of_segments(pipeline: Pipeline) -> None:
    for i in range(MAX_DEFINITIONS):
        segment = f"s-{i}"
        assert (
            pipeline.define(key(segment), definition(1, i, segment), DEFINITIONS).dead_letter
            is None
        )
    refused = pipeline.define(key("one-more"), definition(1, 1, "one-more"), DEFINITIONS)
    assert refused.dead_letter is not None and "at most" in refused.dead_letter.detail


def test_definitions_and_an_unfinished_reevaluation_survive_a_restart(
    pipeline: Pipeline,
) -> None:
    for i in range(5):
        buy(pipeline, f"c-{i}", 100, i)
    pipeline.define(key(), definition(1, 50), DEFINITIONS)
    pipeline.flush()
    first = pipeline.reevaluate("tea-1", 2)
    assert first is not None and len(first.changes) == 2
    pipeline.flush()
    stored: dict[str, Any] = pipeline.shops[definitions_key("tea-1")]
    assert stored["pending"][0]["after"] == "c-1"
    restored = ShopDefinitions.load(json.loads(json.dumps(stored)))
    assert restored.version(BIG) == 1 and restored.pending[0].after == "c-1"
    pipeline.forget_shops()
    rest = [c.customer_id for step in reevaluate_all(pipeline, limit=2) for c in step]
    assert rest == ["c-2", "c-3", "c-4"]


def signup(customer: str, day: int, referred_by: str | None = None, event_id: str = "") -> bytes:
    """A signup to the tea box ``day`` days after T0 (referred: through the referral channel)."""
    payload = factories.signup(
        customer,
        T0 + timedelta(days=day),
        event_id or f"s-{customer}",
        to_plan=factories.plan(15.0, plan_id="tea-box"),
        channel="referral" if referred_by else "web",
        referred_by=referred_by,
    )
    return encoded(payload)


def test_a_referral_is_credited_once_to_a_known_referrer_whose_segments_follow(
    pipeline: Pipeline,
) -> None:
    rule = {"field": "behaviour.referral_count", "op": "gte", "value": 1}
    value = json.loads(definition(1, 0, "referrers"))
    pipeline.define(key("referrers"), json.dumps({**value, "rule": rule}).encode(), DEFINITIONS)
    signups = Source("segstream.signups", PARTITION, 0)
    pipeline.handle(signup("ann", 0), Signup, signups, b"tea-1")
    outcome = pipeline.handle(signup("bob", 1, referred_by="ann"), Signup, signups, b"tea-1")
    entered = [c for c in outcome.changes if c.model == "defined:referrers"]
    assert [(c.customer_id, c.current, c.cause.event_id) for c in entered] == [
        ("ann", "referrers", "s-bob")
    ]
    again = pipeline.handle(signup("bob", 1, referred_by="ann"), Signup, signups, b"tea-1")
    assert again.status == "duplicate"
    later = pipeline.handle(signup("bob", 9, "ann", "s-bob-2"), Signup, signups, b"tea-1")
    assert later.status == "processed"  # a second signup of bob's is no second referral
    pipeline.handle(signup("cy", 2, referred_by="nobody-known"), Signup, signups, b"tea-1")
    states = {s.customer_id: s.referral_count for s in pipeline.shop_customers("tea-1")}
    assert states == {"ann": 1, "bob": 0, "cy": 0}
