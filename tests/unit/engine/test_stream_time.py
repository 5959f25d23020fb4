"""Administrative records (erasure requests, segment definitions, experiments) never move a
shop's stream time: only the shop's own events do (and the wall clock while it is live).

The case that showed it: an erasure request dated today, for a shop replayed up to last
year, moved the shop's clock a year ahead, and every quiet customer with it."""

from __future__ import annotations

import json
from datetime import timedelta

from segstream.domain.changes import Source
from segstream.domain.events import format_time
from segstream.engine.pipeline import Pipeline
from segstream.settings import Settings
from segstream.state.keyspace import customer_key, erasure_key, shop_partition
from tests.factories import erasure
from tests.unit.engine.test_erasure import SHOP, paying_member, send, simulated_shop

A_YEAR = timedelta(days=365)


def test_an_erasure_dated_a_year_ahead_takes_effect_at_the_shops_stream_time() -> None:
    pipeline, customers, shops = simulated_shop()
    state = paying_member(pipeline, customers)
    now = pipeline.stream_time(SHOP)
    assert now is not None
    request = now + A_YEAR
    outcome = send(
        pipeline, "erasure_requests", erasure(state.customer_id, request, "erase-1", shop=SHOP)
    )

    assert pipeline.stream_time(SHOP) == now
    assert shops[SHOP]["stream_time"] == now.timestamp()
    assert outcome.changes, "the erased customer leaves their segments"
    assert {(c.customer_id, c.cause.kind, c.changed_at) for c in outcome.changes} == {
        (state.customer_id, "erased", now)
    }, "nobody else moves: no clock moved"
    erased = pipeline.ledger.window(SHOP, "day", now.date(), "cancel_reason:erased")
    assert erased.churned_subscribers == 1, "their churn is booked at the stream time"
    assert shops[erasure_key(SHOP, state.customer_id)] == {"at": request.timestamp()}
    late = erasure(state.customer_id, now + timedelta(days=30), "erase-1", shop=SHOP)
    late = {**late, "type": "feedback", "event_id": "fb-1", "score": 2}
    send(pipeline, "feedback_responses", late)  # occurred before the request: dropped
    assert customer_key(SHOP, state.customer_id) not in customers
    assert pipeline.stream_time(SHOP) == now + timedelta(days=30), "events move the clock"


def test_an_erasure_for_a_shop_without_events_leaves_only_its_marker() -> None:
    shops: dict[str, object] = {}
    pipeline = Pipeline(Settings(), {}, shops, {}, {})
    outcome = send(
        pipeline, "erasure_requests", erasure("c-1", "2026-01-01T00:00:00Z", "erase-1", shop=SHOP)
    )
    assert outcome.status == "processed" and outcome.changes == []
    assert pipeline.stream_time(SHOP) is None
    assert list(shops) == [erasure_key(SHOP, "c-1")]


def test_definitions_and_experiments_dated_ahead_move_no_clock() -> None:
    pipeline, _, shops = simulated_shop()
    now = pipeline.stream_time(SHOP)
    assert now is not None
    source = Source("segstream.segment-definitions", shop_partition(SHOP, 8), 0)
    rule = {"field": "behaviour.order_count", "op": "gte", "value": 2}
    definition = {
        "schema_version": 1,
        "shop_id": SHOP,
        "segment_id": "repeat",
        "name": "Repeat buyers",
        "version": 1,
        "rule": rule,
    }
    experiment = {
        "schema_version": 1,
        "shop_id": SHOP,
        "experiment_id": "later",
        "name": "Next year",
        "version": 1,
        "model": "defined:repeat",
        "segment": "repeat",
        "arms": [{"name": "holdout", "share": 0.5}, {"name": "treatment", "share": 0.5}],
        "starts_at": format_time(now + A_YEAR),
    }
    for key, payload in ((f"{SHOP}|repeat", definition), (f"{SHOP}|experiment:later", experiment)):
        outcome = pipeline.define(key.encode(), json.dumps(payload).encode(), source)
        assert outcome.status == "processed", outcome.dead_letter
    while pipeline.reevaluate(SHOP, 1000) is not None:
        pipeline.flush()
    pipeline.flush()
    assert pipeline.stream_time(SHOP) == now
    assert shops[SHOP]["stream_time"] == now.timestamp()
    assert pipeline.book(SHOP).experiments.pending, "the experiment waits for its start"
