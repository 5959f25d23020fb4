"""The pipeline over plain dicts: validation, de-duplication, segment changes, timers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from segstream.domain.changes import Source
from segstream.domain.contracts import validate_output
from segstream.domain.events import Order, Signup
from segstream.engine.pipeline import Pipeline
from segstream.settings import Settings
from segstream.state.keyspace import customer_key, shop_partition
from tests import factories
from tests.factories import encoded, order, plan

T0 = datetime(2025, 3, 1, 9, tzinfo=UTC)
RULES = {"lifecycle", "rfm"}
SOURCE = Source("segstream.orders", shop_partition("tea-1", 8), 0)


@pytest.fixture
def tables() -> tuple[dict[str, Any], ...]:
    return {}, {}, {}, {}


@pytest.fixture
def pipeline(tables: tuple[dict[str, Any], ...]) -> Pipeline:
    return Pipeline(Settings(rfm_min_customers=1), *tables)


def test_invalid_record_becomes_a_dead_letter_with_reason(pipeline: Pipeline) -> None:
    outcome = pipeline.handle(b'{"type": "order"', Order, SOURCE, b"tea-1")
    assert outcome.status == "dead_lettered"
    assert outcome.dead_letter is not None and outcome.dead_letter.reason == "invalid_json"
    payload = outcome.dead_letter.to_json(T0)
    validate_output("dead_letter", payload)
    assert payload["source"] == {
        "topic": "segstream.orders",
        "partition": SOURCE.partition,
        "offset": 0,
    }


def test_the_earliest_event_time_is_the_settings(tables: tuple[dict[str, Any], ...]) -> None:
    """A 1997 order is implausible by default; a worker set to an earlier bound takes it."""
    old = encoded(order("c-1", datetime(1997, 1, 1, tzinfo=UTC), "e-old"))
    refused = Pipeline(Settings(), *tables).handle(old, Order, SOURCE, None)
    assert refused.dead_letter is not None and refused.dead_letter.reason == "implausible_time"
    earlier = Settings(earliest_event_time=datetime(1995, 1, 1, tzinfo=UTC))
    assert Pipeline(earlier, *tables).handle(old, Order, SOURCE, None).status == "processed"


def test_first_order_assigns_segments_and_duplicate_is_counted_once(pipeline: Pipeline) -> None:
    first = pipeline.handle(encoded(order("c-1", T0, "e1")), Order, SOURCE, None)
    assert first.status == "processed"
    assert {(c.model, c.previous, c.current) for c in first.changes if c.model in RULES} == {
        ("lifecycle", None, "new"),
        ("rfm", None, "New"),
    }
    for change in first.changes:
        validate_output("segment_changed", change.to_json())
    again = pipeline.handle(encoded(order("c-1", T0, "e1")), Order, SOURCE, None)
    assert again.status == "duplicate" and again.changes == []
    assert pipeline.load("tea-1", "c-1").order_count == 1


def test_stream_time_of_other_customers_moves_a_quiet_customer_to_at_risk(
    pipeline: Pipeline,
) -> None:
    pipeline.handle(encoded(order("quiet", T0, "q1")), Order, SOURCE, None)
    seen = []
    for day in range(1, 60):
        outcome = pipeline.handle(
            encoded(order("busy", T0 + timedelta(days=day), f"b{day}")), Order, SOURCE, None
        )
        seen += [
            (day, c.previous, c.current, c.cause.kind)
            for c in outcome.changes
            if c.customer_id == "quiet" and c.model == "lifecycle"
        ]
    assert seen == [(46, "new", "at_risk", "timer")]  # a one-off buyer is never active
    assert pipeline.load("tea-1", "quiet").segments["lifecycle"] == "at_risk"


def test_rebuilt_caches_reproduce_the_same_assignments(
    pipeline: Pipeline, tables: tuple[dict[str, Any], ...]
) -> None:
    for n in range(30):
        pipeline.handle(
            encoded(order(f"c-{n % 7}", T0 + timedelta(days=n), f"e{n}", 5.0 + n)),
            Order,
            SOURCE,
            None,
        )
    pipeline.flush()
    restarted = Pipeline(Settings(), *tables)
    rfm_before = pipeline.book("tea-1").models["rfm"]
    rfm_after = restarted.book("tea-1").models["rfm"]
    now = T0 + timedelta(days=29)
    for n in range(7):
        state = restarted.load("tea-1", f"c-{n}")
        assert rfm_after.explain(restarted.view(state, now)) == rfm_before.explain(
            pipeline.view(pipeline.load("tea-1", f"c-{n}"), now)
        )
    assert restarted.book("tea-1").sizes == pipeline.book("tea-1").sizes
    outcome = restarted.handle(
        encoded(order("c-0", T0 + timedelta(days=30), "e30", 1.0)), Order, SOURCE, None
    )
    assert outcome.status == "processed"
    assert customer_key("tea-1", "c-0") in tables[0]


def test_changes_carry_consent_and_the_same_ids_when_emitted_again(
    tables: tuple[dict[str, Any], ...],
) -> None:
    """A batch that is run again (after a crash, from the committed state) emits changes
    with the same ids; each change carries the customer's consent as the signup stated it."""
    signup = factories.signup("c-1", T0, "s1", to_plan=plan(12.0, plan_id="p"))
    signup["marketing_opt_in"] = False
    records = [
        (json.dumps(signup).encode(), Signup),
        (encoded(order("c-1", T0 + timedelta(hours=1), "e1")), Order),
        (encoded(order("c-2", T0 + timedelta(days=50), "e2")), Order),
    ]

    def emitted() -> list[dict[str, Any]]:
        run = Pipeline(Settings(rfm_min_customers=1), *(dict(t) for t in tables))
        outcomes = [run.handle(value, kind, SOURCE, None) for value, kind in records]
        return [change.to_json() for o in outcomes for change in o.changes]

    first, again = emitted(), emitted()
    assert [c["event_id"] for c in first] == [c["event_id"] for c in again]
    assert len({c["event_id"] for c in first}) == len(first)
    consent = {c["customer_id"]: c["marketing_opt_in"] for c in first}
    assert consent == {"c-1": False, "c-2": None}
    for change in first:
        validate_output("segment_changed", change)


def test_only_live_shops_follow_the_wall_clock(pipeline: Pipeline) -> None:
    pipeline.handle(encoded(order("c-1", T0, "e1")), Order, SOURCE, None)
    day = 86_400
    replay = pipeline.advance_clock("tea-1", T0 + timedelta(days=46), live_s=30 * day)
    assert replay is None  # 46 days behind the wall clock: history keeps event time
    assert pipeline.stream_time("tea-1") == T0
    quiet = pipeline.advance_clock("tea-1", T0 + timedelta(days=3), live_s=30 * day)
    assert quiet is None  # nobody due yet, well inside the live window: nothing written
    moved = pipeline.advance_clock("tea-1", T0 + timedelta(days=47), live_s=60 * day)
    assert moved is not None
    assert [(c.current, c.cause.kind) for c in moved.changes if c.model == "lifecycle"] == [
        ("at_risk", "timer")
    ]
    assert pipeline.stream_time("tea-1") == T0 + timedelta(days=47)
    assert pipeline.advance_clock("tea-1", T0 + timedelta(days=46), live_s=60 * day) is None
    # nobody due for days, but half the live window behind: moved, so the shop stays live
    kept_live = pipeline.advance_clock("tea-1", T0 + timedelta(days=48), live_s=1.5 * day)
    assert kept_live is not None and kept_live.changes == []
    assert pipeline.stream_time("tea-1") == T0 + timedelta(days=48)


def test_time_alone_moves_a_customer_only_after_the_models_minimum_dwell(
    tables: tuple[dict[str, Any], ...],
) -> None:
    """With a 60-day dwell in RFM, a quiet customer's RFM segment, set by their order,
    stays until the dwell is over (reviewed again then); lifecycle (no dwell) moves on
    time; the customer's own order moves them at once."""
    settings = Settings(rfm_min_customers=1, rfm_min_dwell_days=60)
    run = Pipeline(settings, *tables)
    run.handle(encoded(order("quiet", T0, "q1")), Order, SOURCE, None)
    moves: list[tuple[int, str, str | None, str]] = []
    for day in range(1, 90):
        at = T0 + timedelta(days=day)
        for n in range(3):  # busy customers order, so the quiet one's rank falls
            busy = encoded(order(f"busy-{n}", at, f"b{day}-{n}"))
            moves += [
                (day, c.model, c.current, c.cause.kind)
                for c in run.handle(busy, Order, SOURCE, None).changes
                if c.customer_id == "quiet" and c.model in ("rfm", "lifecycle")
            ]
    rfm = [move for move in moves if move[1] == "rfm"]
    assert rfm and all(day >= 60 for day, *_ in rfm), moves
    assert ("lifecycle", "at_risk") in {(model, current) for _, model, current, _ in moves}
    since = run.load("tea-1", "quiet").segment_since
    assert set(since) >= {"rfm", "lifecycle"}
    back = run.handle(encoded(order("quiet", T0 + timedelta(days=90), "q2")), Order, SOURCE, None)
    assert any(c.model == "lifecycle" and c.cause.kind == "event" for c in back.changes)


def test_a_churn_risk_change_carries_the_probability_and_expected_orders(
    pipeline: Pipeline,
) -> None:
    for week in range(6):  # eight weekly buyers: enough repeat buyers for a lifetime fit
        for n in range(8):
            pipeline.handle(
                encoded(order(f"c-{n}", T0 + timedelta(weeks=week), f"w{week}-{n}")),
                Order,
                SOURCE,
                None,
            )
    assert pipeline.book("tea-1").lifetime.fit is not None
    outcome = pipeline.handle(
        encoded(order("new", T0 + timedelta(weeks=6), "n1")), Order, SOURCE, None
    )
    (change,) = [c for c in outcome.changes if c.model == "churn_risk"]
    payload = change.to_json()
    validate_output("segment_changed", payload)
    model = pipeline.book("tea-1").models["churn_risk"]
    view = pipeline.view(pipeline.load("tea-1", "new"), T0 + timedelta(weeks=6))
    assert payload["predictions"] == model.change_details(view)
    assert (
        0
        < payload["predictions"]["expected_orders_30d"]
        < payload["predictions"]["expected_orders_365d"]
    )
    others = [c.to_json() for c in outcome.changes if c.model != "churn_risk"]
    assert others and all("predictions" not in c for c in others)
