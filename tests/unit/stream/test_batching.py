"""Batches of a real (in-memory) Faust stream: every record once, in order, at most
``max_events``; what arrives while a batch is processed is the next batch, at once."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.types import TP

from segstream.observability import telemetry
from segstream.stream.batching import batches

_apps = itertools.count()

Feed = Callable[[Callable[[Any], Awaitable[None]]], Awaitable[None]]


def caught_up(tp: TP) -> int | None:
    return None


def run_agent(
    max_events: int,
    interval_s: float,
    busy_s: float,
    feed: Feed,
    highwater: Callable[[TP], int | None] = caught_up,
) -> list[tuple[float, float, list[object]]]:
    """Each batch as (start, end, values) for an agent that takes ``busy_s`` per batch;
    ``feed(put)`` sends the values."""
    seen: list[tuple[float, float, list[object]]] = []

    async def main() -> None:
        app = faust.App(f"test-batching-{next(_apps)}", store="memory://")
        loop = asyncio.get_running_loop()

        @app.agent(app.channel())
        async def agent(stream: Any) -> None:
            async for batch in batches(stream, max_events, interval_s, highwater):
                start = loop.time()
                await asyncio.sleep(busy_s)
                seen.append((start, loop.time(), [event.value for event in batch]))

        async with agent.test_context() as running:
            await feed(running.put)
            await asyncio.sleep(busy_s * 4 + interval_s * 4 + 0.2)

    asyncio.run(main())
    return seen


def test_every_record_once_in_order_and_never_more_than_max() -> None:
    async def feed(put: Callable[[Any], Awaitable[None]]) -> None:
        for value in range(25):
            await put(value)

    seen = run_agent(max_events=4, interval_s=0.001, busy_s=0.01, feed=feed)
    assert [v for _, _, values in seen for v in values] == list(range(25))
    assert max(len(values) for _, _, values in seen) == 4


def test_what_arrives_during_a_batch_is_the_next_batch_without_waiting() -> None:
    async def feed(put: Callable[[Any], Awaitable[None]]) -> None:
        await put(0)
        await asyncio.sleep(0.05)  # the first batch is being processed
        for value in range(1, 6):
            await put(value)

    seen = run_agent(max_events=100, interval_s=0.2, busy_s=0.3, feed=feed)
    assert [values for _, _, values in seen] == [[0], [1, 2, 3, 4, 5]]
    (_, first_end, _), (second_start, _, _) = seen
    assert second_start - first_end < 0.1  # the interval has passed: no further wait


def test_batches_start_no_sooner_than_the_interval_apart() -> None:
    async def feed(put: Callable[[Any], Awaitable[None]]) -> None:
        for value in range(6):
            await put(value)
            await asyncio.sleep(0.02)

    seen = run_agent(max_events=100, interval_s=0.2, busy_s=0.0, feed=feed)
    starts = [start for start, _, _ in seen]
    assert [values for _, _, values in seen] == [[0], [1, 2, 3, 4, 5]]
    assert starts[1] - starts[0] >= 0.19


def test_a_worker_behind_its_input_waits_for_a_full_batch() -> None:
    async def feed(put: Callable[[Any], Awaitable[None]]) -> None:
        for value in range(8):
            await put(value)
            await asyncio.sleep(0.01)

    def far_ahead(tp: TP) -> int | None:
        return 10**9  # more records exist than were delivered yet

    behind = run_agent(max_events=4, interval_s=0.5, busy_s=0.0, feed=feed, highwater=far_ahead)
    live = run_agent(max_events=4, interval_s=0.001, busy_s=0.0, feed=feed)
    assert [values for _, _, values in behind] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(live) > 2  # caught up: each record (or few) at once


def test_each_record_s_wait_and_batch_time_are_observed() -> None:
    """``segstream_record_stage_seconds``: a record's wait in the buffer (``queued``) and
    its batch's time to commit (``batch``), one observation per record."""

    def stage(name: str, sample: str) -> float:
        found = telemetry.REGISTRY.get_sample_value(
            f"segstream_record_stage_seconds_{sample}", {"stage": name}
        )
        return found or 0.0

    before = {name: (stage(name, "count"), stage(name, "sum")) for name in ("queued", "batch")}

    async def feed(put: Callable[[Any], Awaitable[None]]) -> None:
        for value in range(6):
            await put(value)

    seen = run_agent(max_events=3, interval_s=0.001, busy_s=0.05, feed=feed)
    records = sum(len(values) for _, _, values in seen)
    assert records == 6
    queued = stage("queued", "count") - before["queued"][0]
    batch_count = stage("batch", "count") - before["batch"][0]
    assert queued == batch_count == records
    assert stage("batch", "sum") - before["batch"][1] >= records * 0.05
