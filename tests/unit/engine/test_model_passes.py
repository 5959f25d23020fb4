"""A learned model's pass over a shop's customers (issue 25): placing everyone once the
cluster model has clusters, moving the members of a retired cluster with cause ``model``,
names on the changes, and time alone moving nobody."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from segstream.api import queries
from segstream.domain.contracts import validate_output
from segstream.domain.events import Order
from segstream.engine.pipeline import Outcome, Pipeline
from segstream.segments.cluster import ClusterModel
from segstream.settings import Settings
from segstream.state.keyspace import REHOMING_PREFIX
from tests.factories import encoded, order
from tests.unit.engine.test_pipeline import SOURCE, T0

SHOP = "tea-1"
LIVE_S = 1e12


def spend(n: int) -> float:
    """Two kinds of customer: big baskets (odd) and small ones (even)."""
    return 90.0 + n if n % 2 else 8.0 + n / 10


@pytest.fixture
def pipeline() -> Pipeline:
    tables: tuple[dict[str, Any], ...] = ({}, {}, {}, {})
    return Pipeline(Settings(cluster_warmup=20, rfm_min_customers=1), *tables)


def cluster_model(pipeline: Pipeline) -> ClusterModel:
    model = pipeline.book(SHOP).models["cluster"]
    assert isinstance(model, ClusterModel)
    return model


def carried(pipeline: Pipeline) -> dict[str, str | None]:
    return {s.customer_id: s.segments.get("cluster") for s in pipeline.shop_customers(SHOP)}


def run_passes(pipeline: Pipeline, limit: int = 7) -> list[Outcome]:
    outcomes = []
    while SHOP in pipeline.reevaluating():
        found = pipeline.reevaluate(SHOP, limit)
        assert found is not None
        outcomes.append(found)
        pipeline.flush()
    return outcomes


def fill(pipeline: Pipeline, customers: int) -> None:
    for n in range(customers):
        at = T0 + timedelta(hours=n)
        pipeline.handle(encoded(order(f"c-{n:02d}", at, f"e{n}", spend(n))), Order, SOURCE, None)
    pipeline.flush()


def test_once_the_model_has_clusters_a_pass_places_everyone_with_names(
    pipeline: Pipeline,
) -> None:
    fill(pipeline, 30)
    before = carried(pipeline)
    assert sum(1 for c in before.values() if c is None) == 19  # the rows it was seeded from
    outcomes = run_passes(pipeline)
    assert len(outcomes) == 5  # 30 customers, 7 per step
    changes = [c for o in outcomes for c in o.changes]
    assert {c.customer_id for c in changes} == {k for k, v in before.items() if v is None}
    for change in changes:
        assert change.cause.kind == "model" and change.current_name
        validate_output("segment_changed", change.to_json())
        membership = change.membership()
        assert membership is not None and membership["name"] == change.current_name
        validate_output("segment_membership", membership)
    model = cluster_model(pipeline)
    assert all(
        c is not None and int(c[1:]) in model.space.members for c in carried(pipeline).values()
    )
    sizes = queries.segment_sizes(pipeline.reader, SHOP)
    assert set(sizes["names"]["cluster"]) == set(sizes["models"]["cluster"])
    assert sum(sizes["models"]["cluster"].values()) == 30 == model.space.assigned


def test_members_of_a_retired_cluster_move_once_with_cause_model(pipeline: Pipeline) -> None:
    fill(pipeline, 30)
    run_passes(pipeline)
    model = cluster_model(pipeline)
    gone = max(model.space.members, key=lambda c: model.space.members[c].count)
    members = {k for k, v in carried(pipeline).items() if v == f"c{gone}"}
    name = model.label(f"c{gone}")
    model.roster.retire(gone)
    outcome = pipeline.handle(
        encoded(order("c-99", T0 + timedelta(days=2), "e99")), Order, SOURCE, None
    )
    # a member whose review (another model's schedule) came due moves now, the rest in a pass
    early = [c for c in outcome.changes if c.model == "cluster" and c.customer_id in members]
    assert any(
        p.segment_id == f"{REHOMING_PREFIX}cluster" for p in pipeline.book(SHOP).definitions.pending
    )
    pipeline.flush()
    changes = early + [c for o in run_passes(pipeline) for c in o.changes]
    assert sorted(c.customer_id for c in changes) == sorted(members)
    assert {(c.previous, c.previous_name, c.cause.kind) for c in changes} == {
        (f"c{gone}", name, "model")
    }
    assert all(c.event_id == c.to_json()["event_id"] for c in changes)
    assert f"c{gone}" not in queries.segment_sizes(pipeline.reader, SHOP)["models"]["cluster"]
    assert not run_passes(pipeline)


def test_time_alone_moves_no_cluster(pipeline: Pipeline) -> None:
    fill(pipeline, 30)
    run_passes(pipeline)
    before = carried(pipeline)
    for days in (10, 40, 100, 200, 400):
        outcome = pipeline.advance_clock(SHOP, T0 + timedelta(days=days), LIVE_S)
        assert outcome is not None
        assert not [c for c in outcome.changes if c.model == "cluster"]
    assert carried(pipeline) == before
    assert cluster_model(pipeline).quality()["stability"] == 1.0
