"""The contract every segment model keeps (runs over all models in service.segments)."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta

import pytest

from service.core.customer import CustomerState
from service.core.events import format_time
from service.core.features import CustomerSnapshot, snapshot
from service.segments import SegmentModel, available_models
from service.settings import Settings

MODELS = sorted(available_models().items())
DERIVED = [(name, model) for name, model in MODELS if model.derived_from_customers]
NOW = datetime(2025, 12, 1, tzinfo=UTC)


def customers(seed: int, count: int = 120) -> list[CustomerSnapshot]:
    rng = random.Random(seed)
    views = []
    for n in range(count):
        first = NOW - timedelta(days=rng.randint(1, 330))
        days = {
            (first + timedelta(days=rng.randint(0, (NOW - first).days))).date().isoformat(): round(
                rng.uniform(5, 90), 2
            )
            for _ in range(rng.randint(0, 10))
        }
        state = CustomerState(
            "shop",
            f"c-{n}",
            first_seen_at=format_time(first),
            purchase_days=days,
            signups=[format_time(first)],
            order_count=len(days),
            total_spend=round(sum(days.values()), 2),
        )
        views.append(snapshot(state, NOW))
    return views


def run(model: SegmentModel, views: list[CustomerSnapshot]) -> list[str | None]:
    for view in views:
        model.learn(view)
    return [model.assign(view) for view in views]


def test_models_are_discovered() -> None:
    assert {"rfm", "lifecycle"} <= set(available_models())


@pytest.mark.parametrize(("name", "model_class"), MODELS)
def test_satisfies_protocol_and_names_segments(name: str, model_class: type[SegmentModel]) -> None:
    model = model_class.create(Settings(), seed=7)
    assert isinstance(model, SegmentModel)
    assert model.name == name
    labels = run(model, customers(1))
    assert all(label is None or (isinstance(label, str) and label) for label in labels)
    assert len({label for label in labels if label}) >= 2


@pytest.mark.parametrize(("name", "model_class"), MODELS)
def test_same_seed_same_result(name: str, model_class: type[SegmentModel]) -> None:
    views = customers(2)
    first = run(model_class.create(Settings(), seed=11), views)
    second = run(model_class.create(Settings(), seed=11), views)
    assert first == second


@pytest.mark.parametrize(("name", "model_class"), MODELS)
def test_pickle_round_trip_continues_identically(
    name: str, model_class: type[SegmentModel]
) -> None:
    views = customers(3)
    original = model_class.create(Settings(), seed=5)
    run(original, views[:60])
    restored = pickle.loads(pickle.dumps(original))
    assert run(restored, views[60:]) == run(original, views[60:])


@pytest.mark.parametrize(("name", "model_class"), DERIVED)
def test_derived_models_rebuild_from_customers(name: str, model_class: type[SegmentModel]) -> None:
    views = customers(4)
    incremental = model_class.create(Settings(), seed=1)
    for view in views:
        incremental.learn(view)
        incremental.assign(view)
    rebuilt = model_class.create(Settings(), seed=1)
    for view in views:
        rebuilt.learn(view)
    assert [rebuilt.assign(v) for v in views] == [incremental.assign(v) for v in views]
