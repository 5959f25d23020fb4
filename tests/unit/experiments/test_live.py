"""Experiments in the pipeline: enrolment of a segment's members, arms on changes, per-arm
figures from events, survival of a restart, bad records dead-lettered."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from segstream.domain.changes import SegmentChange
from segstream.domain.contracts import validate_output
from segstream.domain.customer import CustomerState
from segstream.domain.events import Order, format_time
from segstream.engine.pipeline import Pipeline
from segstream.experiments import Arm, arm_of
from segstream.experiments.live import ShopExperiments
from segstream.metrics.snapshot import snapshot_payload
from segstream.settings import Settings
from segstream.state.codec import decode_state, encode_state
from segstream.state.keyspace import experiments_key
from tests.factories import encoded, order
from tests.unit.segments.defined.test_live import (
    BIG,
    DEFINITIONS,
    MODEL,
    ORDERS,
    T0,
    buy,
    definition,
    key,
    reevaluate_all,
)

ARMS = (Arm("holdout", 0.3), Arm("treatment", 0.7))


def experiment(version: int = 1, start_day: int = 0, **changes: Any) -> bytes:
    payload = {
        "schema_version": 1,
        "shop_id": "tea-1",
        "experiment_id": "thanks",
        "name": "Thank-you gift",
        "version": version,
        "model": MODEL,
        "segment": BIG,
        "arms": [{"name": arm.name, "share": arm.share} for arm in ARMS],
        "starts_at": format_time(T0 + timedelta(days=start_day)),
    }
    return json.dumps({**payload, **changes}).encode()


EXPERIMENT_KEY = b"tea-1|experiment:thanks"


@pytest.fixture
def pipeline() -> Pipeline:
    return Pipeline(Settings(rfm_min_customers=1), {}, {}, {}, {})


def arm(customer: str) -> str:
    return arm_of("tea-1", "thanks", customer, ARMS)


def figures(pipeline: Pipeline) -> dict[str, Any]:
    """The read-out as the tables hold it (what a restarted worker would load)."""
    pipeline.flush()
    return ShopExperiments.load(pipeline.shops[experiments_key("tea-1")]).readout("thanks")


def started(pipeline: Pipeline, spenders: int = 12) -> None:
    """``spenders`` customers in the big-spenders segment, then the experiment on it."""
    for i in range(spenders):
        buy(pipeline, f"c-{i}", 60, 0)
    buy(pipeline, "small", 5, 0)
    pipeline.define(key(), definition(1, 50), DEFINITIONS)
    reevaluate_all(pipeline, limit=100)
    assert pipeline.define(EXPERIMENT_KEY, experiment(), DEFINITIONS).status == "processed"
    reevaluate_all(pipeline, limit=5)


def test_the_members_a_segment_has_are_enrolled_in_their_hashed_arms(
    pipeline: Pipeline,
) -> None:
    started(pipeline)
    readout = figures(pipeline)
    expected = Counter(arm(f"c-{i}") for i in range(12))
    assert {name: a["members"] for name, a in readout["arms"].items()} == {
        name: expected[name] for name in ("holdout", "treatment")
    }
    assert readout["control"] == "holdout"


def test_changes_and_memberships_carry_the_arm(pipeline: Pipeline) -> None:
    started(pipeline)
    [entered] = buy(pipeline, "small", 50, 1)
    payload = entered.to_json()
    validate_output("segment_changed", payload)
    assert payload["experiments"] == {"thanks": arm("small")}
    membership = entered.membership()
    assert membership is not None and membership["experiments"] == {"thanks": arm("small")}
    validate_output("segment_membership", membership)
    other = [c for c in _all_changes(pipeline, "small", 1, 2) if c.model == "lifecycle"]
    assert all(not c.arms and not c.arms_left for c in other)


def _all_changes(pipeline: Pipeline, customer: str, amount: float, day: int) -> list[SegmentChange]:
    raw = encoded(order(customer, T0 + timedelta(days=day), f"{customer}-{day}-all", amount))
    return pipeline.handle(raw, Order, ORDERS, b"tea-1").changes


def test_orders_of_members_count_for_their_arm_from_enrolment(pipeline: Pipeline) -> None:
    started(pipeline)
    buy(pipeline, "c-0", 20, 1)
    buy(pipeline, "c-0", 10, 2)
    buy(pipeline, "small", 50, 3)  # this order enrols them: it does not count
    arms = figures(pipeline)["arms"]
    own = arms[arm("c-0")]
    assert (own["orders"], own["revenue"]) == (2, 30)
    assert sum(a["members"] for a in arms.values()) == 13


def test_a_member_who_leaves_and_returns_keeps_their_arm_and_counts_once(
    pipeline: Pipeline,
) -> None:
    started(pipeline)
    pipeline.define(key(), definition(2, 100), DEFINITIONS)  # everyone leaves ...
    left = [c for step in reevaluate_all(pipeline, limit=100) for c in step]
    assert {c.arms_left for c in left} == {(("thanks", arm(f"c-{i}")),) for i in range(12)}
    [back] = buy(pipeline, "c-3", 50, 1)  # ... c-3 returns (110 spent)
    assert back.arms == (("thanks", arm("c-3")),)
    assert sum(a["members"] for a in figures(pipeline)["arms"].values()) == 12


def test_the_first_churn_of_a_member_counts_once(pipeline: Pipeline) -> None:
    started(pipeline, spenders=4)
    buy(pipeline, "late", 1, 200)  # 200 days on: the one-off buyers have churned
    arms = figures(pipeline)["arms"]
    assert sum(a["churned"] for a in arms.values()) == 4
    buy(pipeline, "late", 1, 400)
    assert sum(a["churned"] for a in figures(pipeline)["arms"].values()) == 4


def test_an_experiment_that_starts_later_enrols_the_members_then(pipeline: Pipeline) -> None:
    for i in range(3):
        buy(pipeline, f"c-{i}", 60, 0)
    pipeline.define(key(), definition(1, 50), DEFINITIONS)
    reevaluate_all(pipeline, limit=100)
    pipeline.define(EXPERIMENT_KEY, experiment(start_day=10), DEFINITIONS)
    assert pipeline.reevaluate("tea-1", 100) is None  # waits for its start
    assert sum(a["members"] for a in figures(pipeline)["arms"].values()) == 0
    buy(pipeline, "other", 1, 11)
    reevaluate_all(pipeline, limit=100)
    assert sum(a["members"] for a in figures(pipeline)["arms"].values()) == 3


def test_bad_and_stale_experiments_are_dead_lettered(pipeline: Pipeline) -> None:
    started(pipeline)
    bad = pipeline.define(EXPERIMENT_KEY, experiment(2, arms=[]), DEFINITIONS)
    assert bad.dead_letter is not None and bad.dead_letter.reason == "invalid_definition"
    stale = pipeline.define(EXPERIMENT_KEY, experiment(1), DEFINITIONS)
    assert stale.dead_letter is not None and stale.dead_letter.reason == "stale_definition"
    reshared = [{"name": "holdout", "share": 0.5}, {"name": "treatment", "share": 0.5}]
    moved = pipeline.define(EXPERIMENT_KEY, experiment(2, arms=reshared), DEFINITIONS)
    assert moved.dead_letter is not None and moved.dead_letter.reason == "invalid_definition"
    assert "arms of a running experiment cannot change" in moved.dead_letter.detail
    ended = pipeline.define(
        EXPERIMENT_KEY, experiment(2, ends_at="2030-01-01T00:00:00Z"), DEFINITIONS
    )
    assert ended.status == "processed"  # an end date (or a name) may change
    other = pipeline.define(b"tea-1|experiment:other", experiment(1), DEFINITIONS)
    assert other.dead_letter is not None and "key names" in other.dead_letter.detail
    assert pipeline.define(EXPERIMENT_KEY, None, DEFINITIONS).status == "processed"
    pipeline.flush()
    assert ShopExperiments.load(pipeline.shops[experiments_key("tea-1")]).experiments == {}


def test_enrolments_round_trip_through_the_state_codec() -> None:
    state = CustomerState("tea-1", "c-1", enrolments={"thanks": [1.7e9, 2, 30.5, True]})
    assert decode_state("tea-1", "c-1", encode_state(state)) == state
    bare = CustomerState("tea-1", "c-1")
    assert len(encode_state(bare)) < len(encode_state(state))
    assert decode_state("tea-1", "c-1", encode_state(bare)).enrolments == {}


def test_each_arm_is_a_metrics_dimension_from_enrolment_on(pipeline: Pipeline) -> None:
    """Orders and revenue of the month under ``experiment:thanks=<arm>`` are those the arm
    counted: members' orders after their enrolment (not the ones before it, nor the one
    that enrolled them)."""
    started(pipeline)
    for day, (customer, amount) in enumerate([("c-0", 20), ("c-1", 7), ("c-2", 11), ("c-0", 5)]):
        buy(pipeline, customer, amount, day + 1)
    buy(pipeline, "small", 50, 6)  # enters the segment: this order is before enrolment
    buy(pipeline, "small", 3, 7)
    pipeline.flush()
    arms = figures(pipeline)["arms"]
    dimensions = pipeline.ledger.dimensions("tea-1")
    for name, found in arms.items():
        dimension = f"experiment:thanks={name}"
        assert (dimension in dimensions) == (found["members"] > 0)
        window = pipeline.ledger.window("tea-1", "month", T0.date(), dimension)
        assert (window.orders, window.revenue) == (found["orders"], found["revenue"]), name


def test_the_metrics_snapshot_carries_every_arm(pipeline: Pipeline) -> None:
    started(pipeline)
    buy(pipeline, "c-0", 20, 1)
    pipeline.flush()
    payload = snapshot_payload("tea-1", T0 + timedelta(days=1), pipeline.ledger)
    validate_output("metrics_snapshot", payload)
    arms = {(a["experiment_id"], a["arm"]): a for a in payload["arms"]}
    assert arms[("thanks", arm("c-0"))]["orders"] == 1
    assert {key[1] for key in arms} <= {"holdout", "treatment"}
