"""The stuck-input watchdog: a topic partition behind whose committed offset stands still is
found after the patience, and its owner seeks the partition back to where the tables
end, which also ends a gap guard's wait for a sought offset that never came."""

from __future__ import annotations

from typing import Any

import pytest

from harness.stores import DictStore
from segstream.domain.events import Order
from segstream.engine.pipeline import Pipeline
from segstream.settings import Settings
from segstream.state.keyspace import shop_partition
from segstream.stream.runner import BatchRunner
from segstream.stream.stalls import Stall
from segstream.stream.topics import TABLES
from segstream.stream.watchdog import StuckInput, refetch_stuck
from segstream.stream.wiring import Wiring
from tests.unit.stream.fakes import Event, FakeCheckpoint, Message, order_value, table_state
from tests.unit.stream.test_runner import ProbedGuard

SETTINGS = Settings(topic_partitions=4, input_stuck_after_s=30.0)
ORDERS = SETTINGS.topic("orders")
SHOP = "tea-1"
PARTITION = shop_partition(SHOP, 4)
OTHER = (PARTITION + 1) % 4


def test_a_partition_behind_is_stuck_once_its_offset_stood_still_for_the_patience() -> None:
    watch = StuckInput(30.0)
    behind = {(ORDERS, PARTITION): 130}
    assert watch.stuck(behind, {(ORDERS, PARTITION): 17}, now=0.0) == set()
    assert watch.stuck(behind, {(ORDERS, PARTITION): 18}, now=20.0) == set(), "it moved"
    assert watch.stuck(behind, {(ORDERS, PARTITION): 18}, now=45.0) == set()
    assert watch.stuck(behind, {(ORDERS, PARTITION): 18}, now=50.0) == {(ORDERS, PARTITION)}
    assert watch.stuck(behind, {(ORDERS, PARTITION): 18}, now=60.0) == set(), "once a patience"
    assert watch.stuck(behind, {(ORDERS, PARTITION): 18}, now=80.0) == {(ORDERS, PARTITION)}


def test_a_partition_that_caught_up_starts_again() -> None:
    watch = StuckInput(30.0)
    committed = {(ORDERS, PARTITION): 5}
    watch.stuck({(ORDERS, PARTITION): 3}, committed, now=0.0)
    watch.stuck({(ORDERS, PARTITION): 0}, committed, now=10.0)
    assert watch.stuck({(ORDERS, PARTITION): 3}, committed, now=35.0) == set()
    assert watch.stuck({(ORDERS, PARTITION): 3}, committed, now=65.0) == {(ORDERS, PARTITION)}


async def always(pair: tuple[str, int]) -> bool:
    return True


async def never(pair: tuple[str, int]) -> bool:
    return False


def events(*offsets: int) -> list[Any]:
    return [
        Event(Message(ORDERS, PARTITION, n), order_value(SHOP, n), SHOP.encode()) for n in offsets
    ]


@pytest.fixture
def wiring() -> Wiring:
    owned = {PARTITION, OTHER}
    tables = {name: table_state(name, DictStore(), owned) for name in TABLES}
    pipeline = Pipeline(SETTINGS, *(tables[name] for name in TABLES))
    checkpoint = FakeCheckpoint(SETTINGS, assigned={PARTITION})
    runner = BatchRunner(SETTINGS, pipeline, tables, checkpoint, {ORDERS: Order})  # type: ignore[arg-type]
    runner.guard = ProbedGuard(first=0)
    runner.topics = [ORDERS]
    runner.ready = True
    return Wiring(None, SETTINGS, pipeline, tables, runner)  # type: ignore[arg-type]


def order_count(wiring: Wiring) -> int:
    return int(wiring.tables["customers"][f"{SHOP}/c-1"].order_count)


async def test_a_refetch_ends_the_wait_for_a_sought_offset_that_never_came(
    wiring: Wiring,
) -> None:
    """Records 3 and 4 were dropped before the worker saw them; 5 reveals the gap and the
    guard seeks back to 3, but the consumer drops 3 and 4 again (its read offset raised by
    an old fetch) and 5 was the partition's last record: nothing more comes. The watchdog
    seeks back, and the records that then come are processed."""
    runner, guard = wiring.runner, wiring.runner.guard
    assert isinstance(guard, ProbedGuard)
    await runner.run(events(0, 1, 2))
    await runner.run(events(5))
    assert guard.sought == [(ORDERS, PARTITION, 3)]
    await runner.run(events(5))  # not 3, the offset awaited: set aside
    assert order_count(wiring) == 3

    watch = StuckInput(SETTINGS.input_stuck_after_s)
    lag, committed = {(ORDERS, PARTITION): 3}, {(ORDERS, PARTITION): 3}
    assert await refetch_stuck(wiring.runner, watch, lag, committed, always) == 0
    watch._still[(ORDERS, PARTITION)] = (3, -60.0)  # as if first seen a minute ago
    assert await refetch_stuck(wiring.runner, watch, lag, committed, always) == 1

    assert guard.sought == [(ORDERS, PARTITION, 3)] * 2, "sought back again"
    assert guard._rewinding == {}, "and no longer waiting for 3 alone"
    await runner.run(events(4, 5))  # 3 dropped once more: the guard's check finds it
    assert guard.sought[-1] == (ORDERS, PARTITION, 3)
    await runner.run(events(3, 4, 5))
    assert order_count(wiring) == 6


async def test_only_owned_ready_unstalled_partitions_are_sought_back(wiring: Wiring) -> None:
    runner, guard = wiring.runner, wiring.runner.guard
    assert isinstance(guard, ProbedGuard)
    watch = StuckInput(SETTINGS.input_stuck_after_s)
    lag = {(ORDERS, PARTITION): 3, (ORDERS, OTHER): 3}
    committed = {(ORDERS, PARTITION): 0, (ORDERS, OTHER): 0}

    def stale() -> None:
        for pair in lag:
            watch._still[pair] = (0, -60.0)

    stale()
    runner.stalling.stalled[PARTITION] = Stall("disk full", 0.0, 1, 1e12)
    assert await refetch_stuck(wiring.runner, watch, lag, committed, always) == 0, (
        "other's, stalled"
    )
    del runner.stalling.stalled[PARTITION]
    stale()
    runner.ready = False
    assert await refetch_stuck(wiring.runner, watch, lag, committed, always) == 0, "recovering"
    assert watch._still == {}, "a rebalance starts every clock again"
    runner.ready = True
    stale()
    assert await refetch_stuck(wiring.runner, watch, lag, committed, always) == 1
    assert {partition for _, partition, _ in guard.sought} == {PARTITION}


async def test_a_lag_of_aborted_records_and_markers_only_is_not_sought(wiring: Wiring) -> None:
    guard = wiring.runner.guard
    assert isinstance(guard, ProbedGuard)
    watch = StuckInput(SETTINGS.input_stuck_after_s)
    lag, committed = {(ORDERS, PARTITION): 90}, {(ORDERS, PARTITION): 0}
    watch._still[(ORDERS, PARTITION)] = (0, -60.0)
    assert await refetch_stuck(wiring.runner, watch, lag, committed, never) == 0
    assert guard.sought == []
