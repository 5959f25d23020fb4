"""The whole pipeline on the real broker: a real worker process, real producers and consumers.

A simulated history (with duplicates, out-of-order and invalid records) goes in; the
customers table (read back from its changelog topic), the segment-change topic and
the dead-letter topic come out and are checked against an independent pandas
computation over the same events.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from collections import defaultdict
from typing import Any

import pandas as pd
import pytest

from harness.kafka_io import consume_all, read_table, settled
from harness.workers import WorkerProcess, isolated_settings
from segstream.domain.contracts import validate_output
from segstream.domain.customer import CustomerState
from segstream.domain.events import parse_time
from segstream.domain.features import snapshot
from segstream.settings import Settings
from segstream.tools.publish import publish
from segstream.tools.simulation.generator import Simulation, SimulationConfig, generate
from tests.factories import order
from tests.oracle import lifetimes_summary

pytestmark = pytest.mark.asyncio(loop_scope="session")


def walk_in_orders(shop_id: str) -> list[dict[str, Any]]:
    """One-off buyers who never sign up (valid: not every buyer subscribes)."""
    return [
        order(
            f"walk-in-{n % 2}",
            f"2025-02-{n + 1:02d}T12:00:00Z",
            f"walk-in-{n}",
            7.5 + n,
            shop=shop_id,
            order_id=f"w-{n}",
        )
        for n in range(3)
    ]


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    config = SimulationConfig(
        seed=42,
        shops_per_kind=1,
        customers_per_shop=25,
        days=150,
        duplicate_ratio=0.03,
        out_of_order_ratio=0.05,
        invalid_ratio=0.02,
    )
    generated = generate(config)
    extra = walk_in_orders(generated.events[0]["shop_id"])
    return Simulation(generated.events + extra, generated.invalid, generated.truth)


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str) -> Settings:
    return isolated_settings(kafka_bootstrap, "it")


async def wait_for_count(worker: WorkerProcess, expected: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        worker.assert_running()
        if (worker.events_handled() or 0) >= expected:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(
        f"worker handled {worker.metric('segstream_events_total')} of {expected} records\n"
        f"{worker.log_tail()}"
    )


@pytest.fixture(scope="module")
async def processed(
    simulation: Simulation, settings: Settings, worker: WorkerProcess
) -> dict[str, Any]:
    sent = await publish(simulation.outbox(), settings)
    await wait_for_count(worker, sent)
    return await read_table(settings, "customers")


def unique_orders(simulation: Simulation) -> pd.DataFrame:
    orders = {e["event_id"]: e for e in simulation.events if e["type"] == "order"}
    frame = pd.DataFrame(
        [
            {
                "shop_id": e["shop_id"],
                "customer_id": e["customer_id"],
                "occurred_at": e["occurred_at"],
                "amount": e["amount"],
            }
            for e in orders.values()
        ]
    )
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    return frame


def stream_times(simulation: Simulation) -> dict[str, pd.Timestamp]:
    times: dict[str, pd.Timestamp] = {}
    for event in simulation.events:
        at = pd.Timestamp(event["occurred_at"])
        times[event["shop_id"]] = max(times.get(event["shop_id"], at), at)
    return times


async def test_customer_table_matches_independent_lifetimes_summary(
    simulation: Simulation, processed: dict[str, Any]
) -> None:
    orders = unique_orders(simulation)
    now_by_shop = stream_times(simulation)
    checked = 0
    for shop_id, shop_orders in orders.groupby("shop_id"):
        expected = lifetimes_summary(shop_orders, now_by_shop[str(shop_id)])
        for customer_id, row in expected.iterrows():
            stored = processed[f"{shop_id}/{customer_id}"]
            state = CustomerState.from_json(str(shop_id), str(customer_id), stored)
            got = snapshot(state, now_by_shop[str(shop_id)].to_pydatetime())
            assert (got.frequency, got.recency, got.T) == (
                row["frequency"],
                row["recency"],
                row["T"],
            ), f"{shop_id}/{customer_id}"
            assert got.monetary_value == pytest.approx(row["monetary_value"])
            assert state.order_count == len(shop_orders[shop_orders["customer_id"] == customer_id])
            checked += 1
    assert checked > 50


async def test_every_customer_seen_is_in_the_table_including_order_only_buyers(
    simulation: Simulation, processed: dict[str, Any]
) -> None:
    customers = {f"{e['shop_id']}/{e['customer_id']}" for e in simulation.events}
    assert set(processed) == customers
    signed_up = {
        f"{e['shop_id']}/{e['customer_id']}" for e in simulation.events if e["type"] == "signup"
    }
    order_only = customers - signed_up
    assert order_only, "the simulation should contain one-off buyers who never signed up"
    assert all(processed[key]["order_count"] > 0 for key in order_only)


async def test_duplicates_are_counted_not_applied(
    simulation: Simulation, worker: WorkerProcess, processed: dict[str, Any]
) -> None:
    ids = [e["event_id"] for e in simulation.events]
    duplicates = len(ids) - len(set(ids))
    assert duplicates > 0
    assert worker.metric("segstream_events_total", outcome="duplicate") == duplicates
    assert worker.metric("segstream_events_total", outcome="processed") == len(set(ids))


async def test_invalid_records_are_dead_lettered_with_reason_and_original_bytes(
    simulation: Simulation, settings: Settings, worker: WorkerProcess, processed: dict[str, Any]
) -> None:
    letters = await consume_all(
        settings.kafka_bootstrap,
        settings.topic("dead_letters"),
        until=lambda got: len(got) >= len(simulation.invalid),
        timeout_s=30,
    )
    payloads = [json.loads(record.value) for record in letters]
    for payload in payloads:
        validate_output("dead_letter", payload)
        assert payload["detail"]
    originals = sorted(base64.b64decode(p["original_value_b64"]) for p in payloads)
    assert originals == sorted(raw for _, raw in simulation.invalid)
    assert worker.metric("segstream_dead_letters_total") == len(simulation.invalid)
    worker.assert_running()


async def test_segment_changes_chain_and_end_where_the_table_is(
    settings: Settings, processed: dict[str, Any]
) -> None:
    # a model's pass (the cluster model retiring a cluster moves its members) may still be
    # moving customers after the last input record: compare once no change came for 3 s
    changes = await settled(settings.kafka_bootstrap, settings.topic("segment_changes"))
    table = await read_table(settings, "customers")
    assert len(changes) > len(processed)
    history: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in changes:
        change = json.loads(record.value)
        assert record.key == change["shop_id"].encode()
        if change["kind"] == "segment_formed":
            validate_output("segment_formed", change)
            continue
        validate_output("segment_changed", change)
        history[(change["shop_id"], change["customer_id"], change["model"])].append(change)
    for (shop_id, customer_id, model), chain in history.items():
        chain.sort(key=lambda c: parse_time(c["changed_at"]))
        for before, after in itertools.pairwise(chain):
            assert after["previous"] == before["current"], (shop_id, customer_id, model)
        final = table[f"{shop_id}/{customer_id}"]["segments"].get(model)
        assert chain[-1]["current"] == final
    assert {model for _, _, model in history} >= {"rfm", "lifecycle"}
    assert any(c["cause"]["kind"] == "timer" for chain in history.values() for c in chain)
