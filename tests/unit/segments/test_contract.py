"""The contract every segment model keeps (runs over every registered model: the modules of
segstream.segments and the toy model of tests/toy_model.py, through every hook of the
protocol)."""

from __future__ import annotations

import ast
import pickle
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import segstream.segments
from segstream.domain.events import format_time
from segstream.domain.features import CustomerSnapshot, snapshot
from segstream.segments import SegmentModel, available_models, is_segment_of, registered
from segstream.settings import Settings
from tests.states import state
from tests.toy_model import SpendBandModel

with registered(SpendBandModel):
    MODELS = sorted(available_models().items())
"""Every registered model, and the toy one registered the way a plugin is."""
NOW = datetime(2025, 12, 1, tzinfo=UTC)


def customers(seed: int, count: int = 120, now: datetime = NOW) -> list[CustomerSnapshot]:
    """Snapshots of ``count`` customers (the same ones for the same seed, each with an
    empty memory of its own)."""
    rng = random.Random(seed)
    views = []
    for n in range(count):
        first = now - timedelta(days=rng.randint(1, 330))
        days = {
            (first + timedelta(days=rng.randint(0, (now - first).days))).date().isoformat(): round(
                rng.uniform(5, 90), 2
            )
            for _ in range(rng.randint(0, 10))
        }
        customer = state(
            "shop",
            f"c-{n}",
            first_seen_at=format_time(first),
            purchase_days=days,
            signups=[format_time(first)],
            order_count=len(days),
            total_spend=round(sum(days.values()), 2),
        )
        views.append(snapshot(customer, now))
    return views


def run(model: SegmentModel, views: list[CustomerSnapshot]) -> list[str | None]:
    for view in views:
        model.learn(view)
    return [model.assign(view) for view in views]


def _defines_model(path: Path) -> bool:
    """Whether the module's source assigns ``MODEL`` at its top level (read, not imported)."""
    tree = ast.parse(path.read_text())
    return any(
        isinstance(node, ast.Assign | ast.AnnAssign)
        and any(
            isinstance(target, ast.Name) and target.id == "MODEL"
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        )
        for node in tree.body
    )


def test_every_module_that_defines_a_model_is_discovered_and_nothing_else() -> None:
    package = Path(segstream.segments.__file__).parent
    defining = {path.stem for path in package.glob("*.py") if _defines_model(path)}
    assert len(defining) >= 4
    found = available_models()
    assert {model.__module__.removeprefix("segstream.segments.") for model in found.values()} == (
        defining
    )
    assert all(model.name == name for name, model in found.items())


def test_a_registered_model_joins_the_registry_for_the_block_only() -> None:
    before = available_models()
    assert "spend_band" not in before
    with registered(SpendBandModel):
        assert available_models() == {**before, "spend_band": SpendBandModel}
        with pytest.raises(ValueError, match="'spend_band' is taken"):
            segstream.segments.register(type("Twin", (SpendBandModel,), {}))
    assert available_models() == before
    assert "spend_band" in dict(MODELS)


@pytest.mark.parametrize("name", ["lifecycle", "Spend", "defined:x", ""])
def test_a_name_that_is_taken_or_not_plain_is_refused(name: str) -> None:
    clash = type("Clash", (SpendBandModel,), {"name": name})
    with pytest.raises(ValueError, match="segment model name"):
        segstream.segments.register(clash)
    assert name not in available_models() or available_models()[name] is not clash


@pytest.mark.parametrize(("name", "model_class"), MODELS)
def test_satisfies_protocol_and_names_segments(name: str, model_class: type[SegmentModel]) -> None:
    model = model_class.create(Settings(), seed=7)
    assert isinstance(model, SegmentModel)
    assert model.name == name
    labels = run(model, customers(1))
    assert all(label is None or (isinstance(label, str) and label) for label in labels)
    assert len({label for label in labels if label}) >= 2
    unnamed = {label for label in labels if label and not is_segment_of(model_class, label)}
    assert not unnamed, f"{name} assigns segments its segment_names do not name: {unnamed}"


@pytest.mark.parametrize(("name", "model_class"), MODELS)
def test_same_seed_same_result(name: str, model_class: type[SegmentModel]) -> None:
    first = run(model_class.create(Settings(), seed=11), customers(2))
    second = run(model_class.create(Settings(), seed=11), customers(2))
    assert first == second


@pytest.mark.parametrize(("name", "model_class"), MODELS)
def test_pickle_round_trip_continues_identically(
    name: str, model_class: type[SegmentModel]
) -> None:
    original, copied = model_class.create(Settings(), seed=5), None
    views, twins = customers(3), customers(3)
    run(original, views[:60])
    copied = pickle.loads(pickle.dumps(original))
    for view, twin in zip(views[:60], twins[:60], strict=True):
        twin.memory.update(pickle.loads(pickle.dumps(view.memory)))
    assert run(copied, twins[60:]) == run(original, views[60:])


@pytest.mark.parametrize(("name", "model_class"), MODELS)
def test_every_hook_answers_in_its_own_terms(name: str, model_class: type[SegmentModel]) -> None:
    model = model_class.create(Settings(cluster_warmup=20), seed=3)
    if model.uses_partition_prior:
        model.attach_prior(model_class.create(Settings(), seed=0))
    views = customers(4)
    run(model, views)
    for view in views:
        review = model.next_review(view)
        assert review is None or review > view.as_of
        explained = model.explain(view)
        assert explained is None or isinstance(explained, dict)
        details = model.change_details(view)
        assert details is None or all(
            isinstance(k, str) and (v is None or isinstance(v, float)) for k, v in details.items()
        )
    assert all(isinstance(value, float) for value in model.quality().values())
    assert timedelta(0) <= model.min_dwell() <= timedelta(days=365)
    for announcement in model.drain_announcements():
        assert announcement.segment and announcement.description and announcement.size > 0
    assert list(model.drain_announcements()) == []
    forgotten = views[-1]
    model.forget(forgotten)
    assert forgotten.customer_id.encode() not in pickle.dumps(model, protocol=5)
    assert run(model, views[:-1])  # the model goes on with the others


@pytest.mark.parametrize(("name", "model_class"), MODELS)
def test_model_size_does_not_grow_with_the_shop(name: str, model_class: type[SegmentModel]) -> None:
    """What a model keeps per customer lives in the customer's memory: 2,000 customers
    leave a checkpoint no bigger than 500 did (plus a little for new distinct values)."""
    sizes = []
    for count in (500, 2000):
        model = model_class.create(Settings(), seed=1)
        run(model, customers(5, count))
        sizes.append(len(pickle.dumps(model, protocol=5)))
    assert sizes[1] <= sizes[0] * 1.25 + 2048, sizes
    assert sizes[1] < 64 * 1024, sizes
