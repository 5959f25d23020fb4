"""Referral counts: how many known customers of the shop name a customer as their referrer,
whatever order the signups arrive in, also when the referrer comes after the referee or
is erased. (tests/unit/engine/test_arrival_order.py checks it over random interleavings.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from harness.stores import feed
from segstream.domain.changes import Source
from segstream.domain.contracts import EVENT_TYPES, validate_output
from segstream.engine.pipeline import Outcome, Pipeline
from segstream.settings import Settings
from segstream.state.keyspace import customer_key, referrals_key, shop_partition
from tests import factories

SHOP = "snack-box-2"
T0 = datetime(2025, 3, 1, 9, tzinfo=UTC)
PARTITION = shop_partition(SHOP, 8)


def signup(customer: str, day: int, referrer: str | None = None, number: int = 0) -> Any:
    """``customer``'s signup ``day`` days after T0, referred by ``referrer`` if given."""
    at, event_id = T0 + timedelta(days=day), f"{customer}-signup-{day}-{number}"
    box = factories.plan(20, plan_id="box")
    channel = "web" if referrer is None else "referral"
    payload = factories.signup(
        customer, at, event_id, shop=SHOP, to_plan=box, channel=channel, referred_by=referrer
    )
    return ("signups", payload)


def erasure(customer: str, day: int) -> Any:
    """``customer``'s erasure request ``day`` days after T0."""
    at = T0 + timedelta(days=day)
    return (
        "erasure_requests",
        factories.erasure(customer, at, f"{customer}-erased-{day}", shop=SHOP),
    )


def run(*records: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    customers: dict[str, Any] = {}
    shops: dict[str, Any] = {}
    feed(Pipeline(Settings(), customers, shops, {}, {}), records)
    return customers, shops


def count(customers: dict[str, Any], customer: str) -> int:
    return int(customers[customer_key(SHOP, customer)].referral_count)


def test_a_referrer_who_arrives_after_the_referee_is_credited() -> None:
    """The chaos case (seed 4242): the referee's signup was consumed before the referrer's."""
    referee, referrer = signup("c-0049", 3, referrer="c-0048"), signup("c-0048", 1)
    early, _ = run(referrer, referee)
    late, shops = run(referee, referrer)
    assert count(early, "c-0048") == count(late, "c-0048") == 1
    assert referrals_key(SHOP, "c-0048") not in shops, "picked up, and deleted"


def test_a_referral_waits_for_its_referrer_on_a_record_keyed_by_their_id_hashed() -> None:
    _, shops = run(signup("c-1", 1, referrer="c-0"), signup("c-2", 2, referrer="c-0"))
    assert shops[referrals_key(SHOP, "c-0")] == {"count": 2}
    assert "c-0" not in referrals_key(SHOP, "c-0")


def test_erasing_a_referee_withdraws_their_referral_in_either_order() -> None:
    history = [signup("c-0", 1), signup("c-1", 2, referrer="c-0"), erasure("c-1", 5)]
    erased_last, _ = run(*history)
    erased_first, _ = run(history[2], history[0], history[1])  # the signup is then dropped
    assert count(erased_last, "c-0") == count(erased_first, "c-0") == 0


def test_an_erased_referrer_keeps_the_referees_facts_for_their_id() -> None:
    """Referrals are the referees' facts: erasing the referrer deletes their state (and the
    count on it); the count waits for their id, which a new customer of it picks up."""
    history = [signup("c-0", 1), signup("c-1", 2, referrer="c-0"), erasure("c-0", 5)]
    customers, shops = run(*history)
    assert customer_key(SHOP, "c-0") not in customers
    assert shops[referrals_key(SHOP, "c-0")] == {"count": 1}
    back, shops = run(*history, signup("c-0", 9))
    also, _ = run(history[2], signup("c-0", 9), history[0], history[1])
    assert count(back, "c-0") == count(also, "c-0") == 1
    assert referrals_key(SHOP, "c-0") not in shops


def test_the_latest_signup_names_the_referrer_and_a_self_referral_counts_for_no_one() -> None:
    first, again = signup("c-1", 2, referrer="c-0"), signup("c-1", 40, referrer="c-2")
    for order in ((first, again), (again, first)):
        customers, _ = run(signup("c-0", 1), signup("c-2", 1), *order)
        assert (count(customers, "c-0"), count(customers, "c-2")) == (0, 1)
    customers, shops = run(signup("c-3", 1, referrer="c-3"))
    assert count(customers, "c-3") == 0 and referrals_key(SHOP, "c-3") not in shops


def test_a_referral_moves_the_referrer_in_and_out_of_a_defined_segment() -> None:
    pipeline = Pipeline(Settings(), {}, {}, {}, {})
    feed(pipeline, [signup("c-0", 1)])
    rule = {"field": "behaviour.referral_count", "op": "gte", "value": 1}
    definition = {
        "schema_version": 1,
        "shop_id": SHOP,
        "segment_id": "referrers",
        "name": "Referrers",
        "version": 1,
        "rule": rule,
    }
    source = Source("segstream.segment-definitions", PARTITION, 0)
    pipeline.define(f"{SHOP}|referrers".encode(), json.dumps(definition).encode(), source)
    joined = send(pipeline, signup("c-1", 2, referrer="c-0"))
    assert ("c-0", "referrers", "event") in moves(joined)
    left = send(pipeline, erasure("c-1", 3))
    assert ("c-0", None, "event") in moves(left), "the referrer's move is no erasure of theirs"
    for change in joined.changes + left.changes:
        validate_output("segment_changed", change.to_json())


def send(pipeline: Pipeline, record: Any) -> Outcome:
    role, payload = record
    raw = json.dumps(payload).encode()
    return pipeline.handle(raw, EVENT_TYPES[role], Source(role, PARTITION, 0), None)


def moves(outcome: Outcome) -> list[tuple[str, str | None, str]]:
    """(customer, segment joined, cause) of the defined segment's changes."""
    model = "defined:referrers"
    return [(c.customer_id, c.current, c.cause.kind) for c in outcome.changes if c.model == model]
