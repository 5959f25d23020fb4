"""RFM quintile scores and names."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pandas as pd
import pytest

from service.core.customer import CustomerState
from service.core.features import snapshot
from service.segments.rfm import SEGMENT_GRID, RfmModel, grid_segment, quintile_score

BRIEF_SEGMENTS = {
    "Champions",
    "Loyal",
    "Potential Loyalist",
    "New",
    "Promising",
    "Need Attention",
    "About to Sleep",
    "At Risk",
    "Can't Lose Them",
    "Hibernating",
    "Lost",
}


def test_grid_names_exactly_the_standard_segments() -> None:
    named = {grid_segment(r, f) for r in range(1, 6) for f in range(1, 6)}
    assert named == BRIEF_SEGMENTS
    assert set(SEGMENT_GRID) == {1, 2, 3, 4, 5}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quintile_score_matches_pandas_ranks(seed: int) -> None:
    rng = random.Random(seed)
    values = [float(rng.randint(0, 30)) for _ in range(137)]
    ranks = pd.Series(values)
    low = (1 + (5 * (ranks.rank(method="min") - 1)) // len(values)).clip(upper=5)
    high = (5 * ranks.rank(method="max") / len(values)).apply(math.ceil)
    ordered = sorted(values)
    assert [quintile_score(ordered, v) for v in values] == low.astype(int).tolist()
    assert [quintile_score(ordered, v, ties="high") for v in values] == high.tolist()


def test_first_buyer_of_a_shop_is_new() -> None:
    model = RfmModel()
    model.observe("c-1", last_day=739000, purchase_days=1, spend=20.0)
    assert model.scores("c-1") == (5, 1, 1)


def test_distinct_values_fill_each_quintile_equally() -> None:
    ordered = [float(v) for v in range(100)]
    scores = [quintile_score(ordered, v) for v in ordered]
    assert [scores.count(s) for s in range(1, 6)] == [20] * 5


def test_observe_replaces_previous_values() -> None:
    model = RfmModel()
    for n in range(10):
        model.observe(f"c{n}", last_day=1000 + n, purchase_days=1 + n, spend=10.0 * n)
    assert model.scores("c9") == (5, 5, 5)
    model.observe("c9", last_day=990, purchase_days=1, spend=0.0)
    assert model.scores("c9") == (1, 1, 1)
    assert model.scores("c1") == (2, 2, 2)
    assert len(model) == 10
    assert model.scores("unknown") is None


def test_no_segment_until_the_shop_has_enough_buyers() -> None:
    model = RfmModel(min_customers=3)
    now = datetime(2025, 5, 1, tzinfo=UTC)
    views = [
        snapshot(CustomerState("shop", f"c{n}", purchase_days={f"2025-04-0{n + 1}": 10.0}), now)
        for n in range(3)
    ]
    for view in views[:2]:
        model.learn(view)
    assert model.assign(views[1]) is None
    model.learn(views[2])
    assert [model.assign(view) for view in views] == ["Hibernating", "Promising", "New"]
