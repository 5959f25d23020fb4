"""Experiments' enrolment passes have their own queue, in the experiments record; one a
record of before that holds among the definitions' re-evaluations is taken over."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from segstream.domain.changes import Source
from segstream.domain.events import Order, format_time
from segstream.engine.pipeline import Pipeline
from segstream.settings import Settings
from segstream.state.keyspace import definitions_key, experiments_key, shop_partition
from segstream.state.store import Tables

T0 = datetime(2025, 3, 1, 9, tzinfo=UTC)
SOURCE = Source("segstream.segment-definitions", shop_partition("tea-1", 8), 0)
SEGMENT = {"field": "behaviour.total_spend", "op": "gte", "value": 50}


def record(**fields: Any) -> bytes:
    return json.dumps({"schema_version": 1, "shop_id": "tea-1", **fields}).encode()


def spenders(pipeline: Pipeline, count: int) -> None:
    """``count`` customers in the segment ``big`` (defined and re-evaluated)."""
    for i in range(count):
        raw = record(
            type="order",
            event_id=f"e-{i}",
            customer_id=f"c-{i}",
            occurred_at=format_time(T0 + timedelta(minutes=i)),
            order_id=f"o-{i}",
            amount=60.0,
            currency="EUR",
            is_renewal=False,
        )
        assert pipeline.handle(raw, Order, SOURCE, b"tea-1").status == "processed"
    definition = record(segment_id="big", name="Big", version=1, rule=SEGMENT)
    assert pipeline.define(b"tea-1|big", definition, SOURCE).status == "processed"
    while pipeline.reevaluate("tea-1", 100) is not None:
        pass


def start_experiment(pipeline: Pipeline) -> None:
    arms = [{"name": "holdout", "share": 0.5}, {"name": "treatment", "share": 0.5}]
    experiment = record(
        experiment_id="gift",
        name="Gift",
        version=1,
        model="defined:big",
        segment="big",
        arms=arms,
        starts_at=format_time(T0),
    )
    assert pipeline.define(b"tea-1|experiment:gift", experiment, SOURCE).status == "processed"


def enrolled(pipeline: Pipeline) -> int:
    return sum(1 for state in pipeline.shop_customers("tea-1") if "gift" in state.enrolments)


def test_an_enrolment_pass_is_queued_with_the_experiments_not_the_definitions() -> None:
    pipeline = Pipeline(Settings(), {}, {}, {}, {})
    spenders(pipeline, 5)
    start_experiment(pipeline)
    pipeline.flush()
    assert pipeline.shops[definitions_key("tea-1")]["pending"] == []
    assert pipeline.shops[experiments_key("tea-1")]["pending"] == [
        {"experiment_id": "gift", "version": 1, "after": None}
    ]
    assert pipeline.reevaluating() == ["tea-1"]
    steps = 0
    while pipeline.reevaluate("tea-1", 2) is not None:
        steps += 1
        pipeline.flush()
        pipeline.forget_shops()  # each step from the tables, as after a crash
    assert (steps, enrolled(pipeline), pipeline.reevaluating()) == (3, 5, [])
    assert "pending" not in pipeline.shops[experiments_key("tea-1")]


def test_a_pass_queued_among_the_definitions_before_is_taken_over() -> None:
    pipeline = Pipeline(Settings(), {}, {}, {}, {})
    spenders(pipeline, 5)
    start_experiment(pipeline)
    pipeline.flush()
    # as a worker before the experiments' own queue wrote it: a cursor two customers in
    experiments = pipeline.shops[experiments_key("tea-1")]
    del experiments["pending"]
    definitions = pipeline.shops[definitions_key("tea-1")]
    old = {"segment_id": "experiment:gift", "version": 1, "deleted": False, "after": "c-1"}
    definitions["pending"] = [old]
    restarted = Pipeline(Settings(), Tables(pipeline.customers, pipeline.shops))
    assert restarted.reevaluating() == ["tea-1"]
    while restarted.reevaluate("tea-1", 100) is not None:
        pass
    restarted.flush()
    assert enrolled(restarted) == 3  # c-2, c-3, c-4: the cursor was kept
    assert pipeline.shops[definitions_key("tea-1")]["pending"] == []
    assert "pending" not in pipeline.shops[experiments_key("tea-1")]
