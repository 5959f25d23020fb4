"""Arms: stable, independent of order and of who else is in the segment, in their shares."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segstream.experiments import Arm, Experiment, ExperimentError, arm_of, validate_experiment
from segstream.experiments.splits import hash_point

ARMS = (Arm("holdout", 0.2), Arm("treatment", 0.8))


def payload(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema_version": 1,
        "shop_id": "tea-1",
        "experiment_id": "winback-10",
        "name": "Win-back discount",
        "version": 1,
        "model": "lifecycle",
        "segment": "at_risk",
        "arms": [{"name": "holdout", "share": 0.2}, {"name": "treatment", "share": 0.8}],
        "starts_at": "2026-01-01T00:00:00Z",
    }
    return {**base, **changes}


@st.composite
def shares(draw: st.DrawFn) -> tuple[Arm, ...]:
    weights = draw(st.lists(st.integers(1, 100), min_size=2, max_size=8))
    total = sum(weights)
    return tuple(Arm(f"a{n}", weight / total) for n, weight in enumerate(weights))


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20), shares())
def test_an_arm_depends_only_on_shop_experiment_and_customer(
    experiment: str, customer: str, arms: tuple[Arm, ...]
) -> None:
    first = arm_of("tea-1", experiment, customer, arms)
    assert first in {arm.name for arm in arms}
    assert arm_of("tea-1", experiment, customer, arms) == first  # again, another "worker"
    assert 0.0 <= hash_point("tea-1", experiment, customer) < 1.0


@given(shares())
@settings(deadline=None)  # 4,000 hashes per example: over 200 ms on a loaded machine
def test_arms_get_their_shares(arms: tuple[Arm, ...]) -> None:
    """Over 4,000 customers each arm's count lies within 4.5 standard deviations of its
    share (a false alarm about once in 150,000 arms)."""
    n = 4_000
    counts = Counter(arm_of("shop", "exp", f"c-{i}", arms) for i in range(n))
    for arm in arms:
        spread = math.sqrt(n * arm.share * (1 - arm.share))
        assert abs(counts[arm.name] - n * arm.share) <= 4.5 * spread + 1, (arm, counts)


def test_another_experiment_splits_independently() -> None:
    """Holdouts of two experiments on the same customers overlap as chance says (20 % of
    20 %), not by construction."""
    customers = [f"c-{i}" for i in range(10_000)]
    first = {c for c in customers if arm_of("shop", "one", c, ARMS) == "holdout"}
    second = {c for c in customers if arm_of("shop", "two", c, ARMS) == "holdout"}
    assert 0.03 < len(first & second) / len(customers) < 0.05


def test_a_valid_definition_round_trips() -> None:
    experiment = validate_experiment(payload(ends_at="2026-03-01T00:00:00Z"))
    assert experiment.arms == ARMS
    assert validate_experiment(experiment.to_json()) == experiment
    assert experiment.running(datetime(2026, 2, 1, tzinfo=UTC))
    assert not experiment.running(datetime(2026, 3, 1, tzinfo=UTC))
    assert not experiment.running(datetime(2025, 12, 31, tzinfo=UTC))


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"arms": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.4}]}, "arms"),
        ({"arms": [{"name": "a", "share": 0.5}, {"name": "a", "share": 0.5}]}, "arms"),
        ({"arms": [{"name": "a", "share": 1.0}]}, "arms"),
        ({"ends_at": "2025-12-01T00:00:00Z"}, "ends_at"),
        ({"model": "Defined:x"}, "model"),
        ({"experiment_id": "Bad Id"}, "experiment_id"),
        ({"extra": 1}, "experiment"),
    ],
)
def test_an_invalid_definition_names_its_fault(changes: dict[str, Any], path: str) -> None:
    with pytest.raises(ExperimentError) as raised:
        validate_experiment(payload(**changes))
    assert raised.value.path == path


def test_the_last_arm_takes_the_rounding_sliver() -> None:
    arms = (Arm("a", 0.5), Arm("b", 0.5 - 1e-10))
    experiment = Experiment("s", "e", "n", 1, "rfm", "x", arms, datetime(2026, 1, 1, tzinfo=UTC))
    assert {experiment.arm(f"c-{i}") for i in range(200)} == {"a", "b"}
