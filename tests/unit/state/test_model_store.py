"""Model checkpoints say which versions wrote them, older ones load, unreadable ones are
relearned instead of stopping the worker."""

from __future__ import annotations

import pickle
from datetime import date
from typing import Any

import pytest

from harness.stores import feed
from segstream.engine.pipeline import Pipeline, ShopBook
from segstream.segments import available_models
from segstream.segments.cluster import ClusterModel
from segstream.settings import Settings
from segstream.state import model_store as checkpoints
from segstream.state.codec import decode, encode
from segstream.state.model_store import FORMAT, Checkpoints, running_versions
from segstream.tools.simulation import SimulationConfig, generate
from segstream.tools.simulation.shops import shops_per_kind
from tests.factories import LogRecorder

MISSING_CLASS = b"\x80\x05cno_such_module\nModel\n)\x81."
"""A pickle of a class whose module a library upgrade removed."""


@pytest.fixture(scope="module")
def trained() -> tuple[Pipeline, dict[str, Any], str]:
    """A coffee roaster's four months through a pipeline: every model has learned."""
    simulation = generate(
        SimulationConfig(
            seed=2,
            shops=tuple(shops_per_kind(1)[:1]),
            customers_per_shop=60,
            start=date(2025, 1, 1),
            days=120,
        )
    )
    models: dict[str, Any] = {}
    pipeline = Pipeline(Settings(), {}, {}, models, {})
    feed(pipeline, simulation.outbox())
    return pipeline, models, simulation.events[0]["shop_id"]


def test_a_checkpoint_records_the_versions_that_wrote_it(
    trained: tuple[Pipeline, dict[str, Any], str],
) -> None:
    _, models, shop = trained
    record = decode(models[shop])
    assert record["format"] == FORMAT
    assert record["versions"] == running_versions()
    assert set(record["versions"]) == {"python", "river", "numpy", "scipy"}
    assert set(record["models"]) == set(available_models())


def test_a_checkpoint_of_the_previous_format_loads_the_same_models(
    trained: tuple[Pipeline, dict[str, Any], str],
) -> None:
    """Format 1 was the bare {name: pickle} mapping, without versions."""
    _, models, shop = trained
    current = Checkpoints(models).load(shop)
    blobs = {name: pickle.dumps(m, protocol=5) for name, m in current.items()}
    old = {shop: encode(blobs)}
    loaded = Checkpoints(old).load(shop)
    assert set(loaded) == set(current)
    for name, model in loaded.items():
        assert pickle.dumps(model, protocol=5) == pickle.dumps(current[name], protocol=5)
    assert Checkpoints(old).sizes(shop) == {name: len(blob) for name, blob in blobs.items()}


def test_an_unreadable_model_is_relearned_and_the_others_kept(
    trained: tuple[Pipeline, dict[str, Any], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, models, shop = trained
    record = decode(models[shop])
    record["models"]["cluster"] = MISSING_CLASS
    record["versions"] = {**record["versions"], "river": "0.1.0"}
    damaged = {shop: encode(record)}
    recorder = LogRecorder()
    monkeypatch.setattr(checkpoints, "get_logger", lambda name: recorder)
    loaded = Checkpoints(damaged).load(shop)
    [(event, fields)] = recorder.said("warning")
    assert event == "checkpoint_unreadable" and fields["model"] == "cluster"
    assert fields["written_by"]["river"] == "0.1.0"
    assert fields["running"] == running_versions()
    assert "cluster" not in loaded and set(loaded) == set(available_models()) - {"cluster"}
    pipeline = Pipeline(Settings(log_level="warning"), {}, {}, damaged, {})
    book = pipeline.book(shop)
    assert set(book.models) == set(available_models())
    cluster = book.models["cluster"]
    assert isinstance(cluster, ClusterModel)
    assert cluster.space.learned == 0  # fresh: it learns again from the stream
    assert pickle.dumps(book.models["rfm"]) == pickle.dumps(loaded["rfm"])


def test_a_checkpoint_pickled_under_the_former_package_name_is_read() -> None:
    # releases before the wheel named the package ``service``: their model checkpoints
    # name classes ``service.x.Y``, which an upgraded worker must still find
    blob = pickle.dumps(Checkpoints, protocol=0)  # the class, by module and name
    assert blob.startswith(b"csegstream.state.model_store\n")
    former = blob.replace(b"csegstream.", b"cservice.", 1)
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(former)
    assert checkpoints.loads(former) is Checkpoints


@pytest.mark.parametrize("package", [b"segstream", b"service"])
def test_a_checkpoint_pickled_before_core_was_split_is_read(package: bytes) -> None:
    # before issue 27's layers the engine and the domain lived in ``segstream.core``:
    # a pickle naming ``segstream.core.pipeline.X`` (or ``service.core...``) still loads
    blob = pickle.dumps(ShopBook, protocol=0)
    assert blob.startswith(b"csegstream.engine.books\n")  # it left engine.pipeline since
    former = blob.replace(b"csegstream.engine.books", b"c" + package + b".core.pipeline", 1)
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(former)
    assert checkpoints.loads(former) is ShopBook
