"""State survives a crash: SIGKILL a worker mid-stream, start a new one on an empty data
directory, and the tables it rebuilds from the changelogs end where an uninterrupted
run ends."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from harness.kafka_io import read_table
from harness.stores import feed
from harness.workers import WorkerProcess, isolated_settings
from segstream.engine.pipeline import Pipeline
from segstream.settings import Settings
from segstream.stream.topics import ensure_topics
from segstream.tools.publish import publish
from segstream.tools.simulation.generator import SimulationConfig, generate
from tests.integration.ticks import tick_orders

pytestmark = pytest.mark.asyncio(loop_scope="session")


def reference_tables(outbox: list[Any], settings: Settings) -> dict[str, Any]:
    """The customers table of one uninterrupted in-process run over the same records."""
    customers: dict[str, Any] = {}
    feed(Pipeline(settings, customers, {}, {}), outbox)
    return {key: state.to_json() for key, state in customers.items()}


def comparable(state: dict[str, Any], facts_only: bool = False) -> dict[str, Any]:
    """Every fact, and the lifecycle stage (it depends on the customer's own facts and the
    shop's stream time alone); not the other segments: RFM ranks depend on when others
    were evaluated, learned models on the order events arrived in (Kafka orders nothing
    across the input topics). The remembered ids as a set. With ``facts_only`` no
    segments at all."""
    lifecycle = state["segments"].get("lifecycle")
    segments = {} if facts_only or lifecycle is None else {"lifecycle": lifecycle}
    return {**state, "recent_event_ids": sorted(state["recent_event_ids"]), "segments": segments}


async def wait_until_equal(
    settings: Settings,
    expected: dict[str, Any],
    worker: WorkerProcess,
    facts_only: bool = False,
    timeout_s: float = 150,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        worker.assert_running()
        got = await read_table(settings, "customers")
        if {k: comparable(v, facts_only) for k, v in got.items()} == {
            k: comparable(v, facts_only) for k, v in expected.items()
        }:
            return got
        if time.monotonic() > deadline:
            missing = set(expected) - set(got)
            differing = [
                k for k in expected if k in got and comparable(got[k]) != comparable(expected[k])
            ]
            example = differing[0] if differing else None
            fields = example and {
                field: (got[example][field], value)
                for field, value in comparable(expected[example]).items()
                if comparable(got[example])[field] != value
            }
            raise AssertionError(
                f"table never matched: {len(missing)} missing, {len(differing)} differ; "
                f"{example}: (got, expected) {fields}\n{worker.log_tail()}"
            )
        await asyncio.sleep(2)


async def test_killed_worker_is_replaced_and_state_recovered_from_changelogs(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, "crash")
    await ensure_topics(settings)
    simulation = generate(
        SimulationConfig(
            seed=11, shops_per_kind=1, customers_per_shop=20, days=200, duplicate_ratio=0.02
        )
    )
    outbox = simulation.outbox()
    half = len(outbox) // 2
    first_ticks = tick_orders(outbox[:half], timedelta(days=2), "first")
    last_ticks = tick_orders(outbox, timedelta(days=2), "last")
    first_phase = outbox[:half] + first_ticks
    everything = first_phase + outbox[half:] + last_ticks

    def worker(name: str) -> WorkerProcess:
        return WorkerProcess.for_settings(settings, tmp_path / name)

    first, second = worker("first"), worker("second")
    try:
        first.start()
        first.wait_ready()
        await publish(outbox[:half], settings)
        facts = reference_tables(outbox[:half], settings)
        await wait_until_equal(settings, facts, first, facts_only=True)
        await publish(first_ticks, settings)
        await wait_until_equal(settings, reference_tables(first_phase, settings), first)

        crash_at = len(first_phase) + 200
        await publish(everything[len(first_phase) : crash_at], settings)
        first.kill()
        second.start()
        second.wait_ready(timeout_s=120)
        await publish(everything[crash_at : -len(last_ticks)], settings)
        facts = reference_tables(everything[: -len(last_ticks)], settings)
        await wait_until_equal(settings, facts, second, facts_only=True)
        await publish(last_ticks, settings)
        recovered = await wait_until_equal(settings, reference_tables(everything, settings), second)
    finally:
        first.kill()
        second.stop()
    customers = {(e["shop_id"], e["customer_id"]) for e in simulation.events}
    assert len(recovered) == len(customers) + len({shop for shop, _ in customers})
