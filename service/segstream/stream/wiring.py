"""Stream wiring: the input topic, the tables and the agent that hands batches of input
records to the :class:`~segstream.stream.runner.BatchRunner`.

The worker's logic lives in :mod:`segstream.engine.pipeline`; the batch loop, its commits
and their exactly-once bookkeeping in :mod:`segstream.stream.runner` and
:mod:`segstream.stream.committer`. Here: what Faust is told to declare, and the hooks that
start the partitions' producers before Faust recovers their tables and hold processing
until that recovery has ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from faust.types import TP

from segstream.engine.pipeline import Pipeline
from segstream.observability.logs import get_logger
from segstream.settings import Settings
from segstream.stream.batching import batches
from segstream.stream.checkpoint import Checkpoint
from segstream.stream.gaps import GapGuard
from segstream.stream.kafka import connection_options
from segstream.stream.runner import BatchRunner
from segstream.stream.store_full import RecoveryGuard
from segstream.stream.tables import CODECS, TableState, engine_tables, local_store
from segstream.stream.topics import TABLES, input_event_types, input_topics

log = get_logger(__name__)

REJOIN_REQUEST_S = 10.0
"""Longest wait for the consumer's thread to take a rejoin request."""


@dataclass(frozen=True, slots=True)
class Wiring:
    """Handles on what :func:`wire` declared (the API, timers and tests use them)."""

    app: faust.App
    settings: Settings
    pipeline: Pipeline
    tables: dict[str, TableState]
    runner: BatchRunner


def raw_topic(app: faust.App, settings: Settings, *names: str) -> faust.TopicT:
    """A topic of undecoded bytes: validation is ours, against ``schemas/``."""
    return app.topic(
        *names,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
    )


def raw_table(app: faust.App, settings: Settings, name: str) -> faust.types.TableT[Any, Any]:
    """A changelog-backed table of bytes, co-partitioned with the input topics."""
    return app.Table(
        name,
        default=None,
        partitions=settings.topic_partitions,
        key_type=bytes,  # bytes types make Faust's recovery keep keys and values raw
        value_type=bytes,
        options={  # Faust's defaults (64 MB memtables, a 2 GB cache) are per partition
            "write_buffer_size": settings.rocksdb_write_buffer_bytes,
            "max_write_buffer_number": 2,
            "block_cache_size": settings.rocksdb_block_cache_bytes,
        },
    )


def wire(app: faust.App, settings: Settings) -> Wiring:
    """Declare topics, tables and the agent on ``app``."""
    expected = input_event_types(settings)
    inputs = raw_topic(app, settings, *input_topics(settings))
    declared = {name: raw_table(app, settings, name) for name in TABLES}

    async def commit_offsets(offsets: Mapping[TopicPartition, int]) -> None:
        consumer: Any = app.consumer
        await consumer._commit(offsets)  # at_least_once only: after every write

    rejoin = rejoin_when_fenced(app)
    checkpoint = Checkpoint(settings, commit_offsets, rejoin)
    tables = {
        name: TableState(
            name,
            lambda table=table: local_store(table),  # type: ignore[misc]
            settings.topic_partitions,
            lambda: checkpoint.partitions,
            CODECS[name],
            settings.state_cache_entries,
        )
        for name, table in declared.items()
    }
    pipeline = Pipeline(settings, engine_tables(tables))

    async def seek(topic: str, partition: int, offset: int) -> None:
        # On the consumer's own thread: Faust's Consumer.seek changes aiokafka's fetcher
        # from the caller's thread, and a fetch in flight then crashed the worker
        # (KeyError in Fetcher.fetched_records; robinhood/aiokafka #19). seek_wait runs
        # there and waits. A partition a rebalance just took away is left to its new
        # owner, which seeks from the committed progress (faust-streaming #54).
        consumer: Any = app.consumer
        try:
            await consumer.seek_wait({TP(topic, partition): offset})
        except IllegalStateError:
            log.info("seek_skipped_not_assigned", topic=topic, partition=partition)

    guard = GapGuard(connection_options(settings), seek)
    runner = BatchRunner(settings, pipeline, tables, checkpoint, expected, guard, rejoin)
    stores = RecoveryGuard(
        {name: (table, tables[name]) for name, table in declared.items()},
        lambda error: runner.stores.refused_in_recovery(error, checkpoint.partitions),
    )

    @app.agent(inputs)
    async def process(stream: Any) -> None:
        highwater = app.consumer.highwater
        limits = settings.batch_max_events, settings.batch_interval_s
        async for events in batches(stream, *limits, highwater):
            await runner.run(events)

    _before_recovery(app, runner, stores, set(input_topics(settings)))

    async def close(sender: Any, *args: Any, **kwargs: Any) -> None:
        await checkpoint.close()
        await guard.close()

    app.on_before_shutdown.connect(close)  # type: ignore[arg-type]
    return Wiring(app, settings, pipeline, tables, runner)


def rejoin_when_fenced(app: faust.App) -> Callable[[int], None]:
    """What a fenced partition does: ask the group for a new assignment, as Kafka Streams
    does on a fence (``StreamThread.handleTaskMigrated`` rejoins the group). If another
    worker owns the partition now, the rebalance confirms it; if the group still gives it
    to this worker (the coordinator aborted a transaction that outlived its timeout, or
    two of this worker's producers raced), the assignment starts a new producer, recovers
    and seeks back, and the partition runs again. The same for a partition parked by a
    failed transaction. One request at a time; one that fails is logged, and the gauges
    timer asks again for a partition still parked (``Checkpoint.remind``)."""
    pending: set[asyncio.Task[None]] = set()

    def fenced(partition: int) -> None:
        if pending:
            return
        log.warning("rejoining_group", partition=partition)
        task = asyncio.get_running_loop().create_task(_request_rejoin(app))
        pending.add(task)
        task.add_done_callback(_rejoin_done)
        task.add_done_callback(pending.discard)

    return fenced


def _rejoin_done(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("rejoin_request_failed", error=repr(task.exception()))


async def _request_rejoin(app: faust.App) -> None:
    """Make the worker's consumer rejoin its group (on the consumer's own thread, where
    aiokafka's group coordinator runs)."""
    thread: Any = app.consumer._thread  # type: ignore[attr-defined]
    consumer = thread._ensure_consumer()

    async def request() -> None:
        consumer._coordinator.request_rejoin()

    await asyncio.wait_for(thread.call_thread(request), REJOIN_REQUEST_S)


def _before_recovery(
    app: faust.App, runner: BatchRunner, stores: RecoveryGuard, inputs: set[str]
) -> None:
    """Start the partitions' producers before Faust recovers their tables (fences the
    previous owner first, so recovery sees everything it committed), write what the
    recovery reads through ``stores`` (a full disk stops partitions, never the worker),
    and hold processing until that recovery has finished (see
    :meth:`BatchRunner.recovered`)."""
    manager: Any = app.tables
    recover = manager.on_rebalance
    recovery: Any = manager.recovery

    async def on_rebalance(assigned: set[Any], *args: Any, **kwargs: Any) -> None:
        runner.rebalancing()
        stores.purge(recovery.buffers)  # before the assignment forgets what was refused
        actives = {tp.partition for tp in assigned if tp.topic in inputs}
        await runner.assign(actives)
        stores.install()
        await recover(assigned, *args, **kwargs)

    manager.on_rebalance = on_rebalance
    for name in ("on_recovery_completed", "_resume_streams"):  # the two ways recovery ends
        _after(recovery, name, lambda generation: _recovered(app, runner, generation))


def _after(target: Any, name: str, then: Callable[[int], Awaitable[None]]) -> None:
    """Await ``then(generation_id)`` after ``target.name(generation_id)`` returns."""
    original = getattr(target, name)

    async def wrapped(generation_id: int = 0) -> None:
        await original(generation_id)
        await then(generation_id)

    setattr(target, name, wrapped)


async def _recovered(app: faust.App, runner: BatchRunner, generation: int) -> None:
    """Recovery of ``generation`` ended; a later rebalance that began meanwhile keeps
    processing held."""
    if generation == app.consumer_generation_id:
        await runner.recovered()
