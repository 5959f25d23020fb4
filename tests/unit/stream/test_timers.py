"""Metric snapshots: every owned shop's goes out, one commit per partition; one shop whose
snapshot breaks its own schema (or cannot be made) is skipped, counted and logged with its
id, and never keeps the partition's other shops from theirs."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, get_args

import pytest

from harness.stores import DictStore
from segstream.domain.contracts import OutputSchema, validate_output
from segstream.domain.events import Order
from segstream.engine.pipeline import Pipeline
from segstream.metrics import snapshot
from segstream.observability import telemetry
from segstream.settings import Settings
from segstream.state.keyspace import shop_partition
from segstream.stream import timers
from segstream.stream.runner import BatchRunner
from segstream.stream.topics import TABLES
from segstream.stream.wiring import Wiring
from tests.unit.stream.fakes import (
    Event,
    FakeCheckpoint,
    Message,
    batch,
    order_value,
    table_state,
)

SETTINGS = Settings(topic_partitions=4)
ORDERS = SETTINGS.topic("orders")
METRICS = SETTINGS.topic("metrics")
PARTITION = shop_partition("tea-1", 4)
SHOPS = [f"tea-{n}" for n in range(1, 40) if shop_partition(f"tea-{n}", 4) == PARTITION][:3]


class Recorder:
    """Stands in for the module's logger: keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **fields: self.calls.append((level, event, fields))


@pytest.fixture
def wiring() -> Wiring:
    stores = {name: DictStore() for name in TABLES}
    tables = {name: table_state(name, stores[name], {PARTITION}) for name in TABLES}
    pipeline = Pipeline(SETTINGS, *(tables[name] for name in TABLES))
    checkpoint = FakeCheckpoint(SETTINGS, assigned={PARTITION})
    runner = BatchRunner(SETTINGS, pipeline, tables, checkpoint, {ORDERS: Order})  # type: ignore[arg-type]
    runner.ready = True
    return Wiring(None, SETTINGS, pipeline, tables, runner)  # type: ignore[arg-type]


async def feed(wiring: Wiring) -> None:
    records = [
        Event(Message(ORDERS, PARTITION, offset), order_value(shop_id, offset), shop_id.encode())
        for offset, shop_id in enumerate(SHOPS)
    ]
    await wiring.runner.run(batch(*records))


def published(wiring: Wiring) -> dict[str, dict[str, Any]]:
    """The metric snapshots committed, by shop."""
    checkpoint = wiring.runner.checkpoint
    assert isinstance(checkpoint, FakeCheckpoint)
    snapshots: dict[str, dict[str, Any]] = {}
    for record in (r for work in checkpoint.committed for r in work.outputs):
        if record.topic == METRICS:
            assert record.key is not None and record.value is not None
            snapshots[record.key.decode()] = json.loads(record.value)
    return snapshots


def failures() -> float:
    value = telemetry.REGISTRY.get_sample_value(
        "segstream_output_schema_failures_total", {"output": "metrics_snapshot"}
    )
    assert value is not None, "the series exists before the first failure"
    return value


async def test_every_owned_shop_gets_a_valid_snapshot(wiring: Wiring) -> None:
    assert len(SHOPS) == 3
    await feed(wiring)
    assert await timers.publish_snapshots(wiring) == 3
    sent = published(wiring)
    assert sorted(sent) == SHOPS
    for payload in sent.values():
        validate_output("metrics_snapshot", payload)


async def test_a_snapshot_breaking_its_schema_is_skipped_counted_and_logged_with_its_shop(
    wiring: Wiring, monkeypatch: pytest.MonkeyPatch
) -> None:
    await feed(wiring)
    broken = SHOPS[1]

    def payload(shop_id: str, as_of: datetime, ledger: Any) -> dict[str, Any]:
        made = snapshot.snapshot_payload(shop_id, as_of, ledger)
        if shop_id == broken:  # what issue 24's replay produced: a negative movement
            made["windows"][2]["mrr"]["churn"] = -23.1
        return made

    recorder = Recorder()
    monkeypatch.setattr(timers, "snapshot_payload", payload)
    monkeypatch.setattr(timers, "log", recorder)
    before = failures()
    assert await timers.publish_snapshots(wiring) == 2
    assert sorted(published(wiring)) == [SHOPS[0], SHOPS[2]]
    assert failures() == before + 1
    [(level, event, fields)] = recorder.calls
    assert (level, event) == ("error", "output_schema_failure")
    assert fields["shop_id"] == broken and fields["output"] == "metrics_snapshot"
    assert fields["path"] == "windows/2/mrr/churn"
    assert "-23.1" in fields["error"]


async def test_a_shop_whose_snapshot_cannot_be_made_is_skipped_and_logged(
    wiring: Wiring, monkeypatch: pytest.MonkeyPatch
) -> None:
    await feed(wiring)

    def payload(shop_id: str, as_of: datetime, ledger: Any) -> dict[str, Any]:
        if shop_id == SHOPS[0]:
            raise ZeroDivisionError("a bug")
        return snapshot.snapshot_payload(shop_id, as_of, ledger)

    recorder = Recorder()
    monkeypatch.setattr(timers, "snapshot_payload", payload)
    monkeypatch.setattr(timers, "log", recorder)
    assert await timers.publish_snapshots(wiring) == 2
    assert sorted(published(wiring)) == SHOPS[1:]
    [(level, event, fields)] = recorder.calls
    assert (level, event, fields) == ("exception", "metric_snapshot_failed", {"shop_id": SHOPS[0]})


def test_every_output_kind_has_a_failure_series() -> None:
    assert set(telemetry.OUTPUTS) == set(get_args(OutputSchema))
