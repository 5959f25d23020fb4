"""RFM quintile scores and names."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pandas as pd
import pytest

from segstream.domain.features import snapshot
from segstream.segments.rfm import SEGMENT_GRID, RfmModel, grid_segment, quintile_score, values
from tests.states import state

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
    model.observe(None, values(last_day=739000, purchase_days=1, spend=20.0))
    assert model.scores(values(739000, 1, 20.0)) == (5, 1, 1)


def test_distinct_values_fill_each_quintile_equally() -> None:
    ordered = [float(v) for v in range(100)]
    scores = [quintile_score(ordered, v) for v in ordered]
    assert [scores.count(s) for s in range(1, 6)] == [20] * 5


def test_observe_replaces_previous_values() -> None:
    model = RfmModel()
    kept = [values(1000 + n, 1 + n, 10.0 * n) for n in range(10)]
    for found in kept:
        model.observe(None, found)
    assert model.scores(kept[9]) == (5, 5, 5)
    model.observe(kept[9], values(990, 1, 0.0))
    assert model.scores(values(990, 1, 0.0)) == (1, 1, 1)
    assert model.scores(kept[1]) == (2, 2, 2)
    assert len(model) == 10


@pytest.mark.parametrize("seed", [0, 1])
def test_scores_from_the_distribution_match_scores_from_sorted_values(seed: int) -> None:
    rng = random.Random(seed)
    model = RfmModel()
    kept = [values(rng.randint(0, 40), rng.randint(1, 6), rng.uniform(0, 200)) for _ in range(97)]
    for found in kept:
        model.observe(None, found)
    for _ in range(30):  # customers change: old values out, new ones in
        n = rng.randrange(len(kept))
        new = values(rng.randint(0, 40), rng.randint(1, 6), rng.uniform(0, 200))
        model.observe(kept[n], new)
        kept[n] = new
    for axis, ties in enumerate(("high", "low", "low")):
        ordered = sorted(float(found[axis]) for found in kept)
        expected = [quintile_score(ordered, float(found[axis]), ties) for found in kept]
        assert [model.scores(found)[axis] for found in kept] == expected


def test_no_segment_until_the_shop_has_enough_buyers() -> None:
    model = RfmModel(min_customers=3)
    now = datetime(2025, 5, 1, tzinfo=UTC)
    views = [
        snapshot(state("shop", f"c{n}", purchase_days={f"2025-04-0{n + 1}": 10.0}), now)
        for n in range(3)
    ]
    for view in views[:2]:
        model.learn(view)
    assert model.assign(views[1]) is None
    model.learn(views[2])
    assert [model.assign(view) for view in views] == ["Hibernating", "Promising", "New"]
