"""Stream wiring: topics, tables, the agent and the batch loop around the pipeline.

Logic lives in :mod:`segstream.core.pipeline`. This module takes input records in batches
(:mod:`segstream.stream.batching`), hands each partition's records to the pipeline, and
commits the partition's table writes, outputs and offsets through
:mod:`segstream.stream.checkpoint`. A partition's progress record (``__progress__/<p>`` in
the ``shops`` table, committed in the same transaction) holds the next input offset per
topic and the outcome counts: a record below those offsets is already in the tables and
is skipped, whatever Kafka or Faust redelivers after a crash, a rebalance or a failed
commit.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import faust
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from faust.types import TP

from segstream.core.changes import ORIGIN_HEADER, DeadLetter, SegmentChange, Source
from segstream.core.contracts import DeadLetterReason, EventType
from segstream.core.keys import progress_key, shop_partition
from segstream.core.pipeline import DEFINITION, Outcome, Pipeline
from segstream.observability import telemetry
from segstream.observability.logs import get_logger
from segstream.settings import DEFINITIONS_ROLE, REPARTITION_ROLE, Settings
from segstream.stream.batching import batches
from segstream.stream.checkpoint import Checkpoint, FencedError, Record, RetryError, Work, Written
from segstream.stream.gaps import GapGuard
from segstream.stream.kafka import connection_options
from segstream.stream.tables import CODECS, Pending, TableState, local_store
from segstream.stream.topics import TABLES, changelog_topic, input_event_types, input_topics

log = get_logger(__name__)
QUIESCE_S = 10.0
"""Longest a rebalance waits for the work in flight on its partitions."""
MAX_LETTER_KEY = 1024
"""A dead letter is keyed by the original key up to this size (unkeyed beyond: the key
itself, bounded, is inside the letter)."""
MAX_ERROR_STREAK = 10
"""Consecutive records of one partition the pipeline may fail on before the failure is
taken for the worker's own (a bug every record meets) rather than the records': the
partition then stalls instead of dead-lettering its whole input."""
MAX_COMMIT_ATTEMPTS = 8
"""Failed commits of one batch in a row (each after a backoff) before its partition stalls:
a record the broker refuses (too large) fails every attempt."""
STALL_FIRST_RETRY_S = 5.0
"""The first wait before a stalled partition tries again; each next one doubles, up to
``Settings.stall_retry_max_s``."""


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

    checkpoint = Checkpoint(settings, commit_offsets)
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
    pipeline = Pipeline(settings, *(tables[name] for name in TABLES))

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
    runner = BatchRunner(settings, pipeline, tables, checkpoint, expected, guard)

    @app.agent(inputs)
    async def process(stream: Any) -> None:
        highwater = app.consumer.highwater
        limits = settings.batch_max_events, settings.batch_interval_s
        async for events in batches(stream, *limits, highwater):
            await runner.run(events)

    _before_recovery(app, runner, set(input_topics(settings)))

    async def close(sender: Any, *args: Any, **kwargs: Any) -> None:
        await checkpoint.close()
        await guard.close()

    app.on_before_shutdown.connect(close)  # type: ignore[arg-type]
    return Wiring(app, settings, pipeline, tables, runner)


def _before_recovery(app: faust.App, runner: BatchRunner, inputs: set[str]) -> None:
    """Start the partitions' producers before Faust recovers their tables (fences the
    previous owner first, so recovery sees everything it committed), and hold processing
    until that recovery has finished (see :meth:`BatchRunner.recovered`)."""
    manager: Any = app.tables
    recover = manager.on_rebalance

    async def on_rebalance(assigned: set[Any], *args: Any, **kwargs: Any) -> None:
        runner.rebalancing()
        actives = {tp.partition for tp in assigned if tp.topic in inputs}
        await runner.assign(actives)
        await recover(assigned, *args, **kwargs)

    manager.on_rebalance = on_rebalance
    recovery: Any = manager.recovery
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


@dataclass(slots=True)
class Progress:
    """What a partition's tables include: next input offset per topic, outcome counts."""

    offsets: dict[str, int] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def load(cls, shops: TableState, partition: int) -> Progress:
        """The committed (or this batch's) progress of ``partition``."""
        stored = shops.get(progress_key(partition))
        if stored is None:
            return cls()
        return cls(dict(stored["offsets"]), {k: dict(v) for k, v in stored["counts"].items()})

    def includes(self, topic: str, offset: int) -> bool:
        """Whether the tables already hold the record at ``offset``."""
        return offset < self.offsets.get(topic, -1)

    def note(self, topic: str, offset: int, outcome: Outcome) -> None:
        """Record one handled input record."""
        self.offsets[topic] = offset + 1
        counts = self.counts.setdefault(outcome.event_type or "unknown", {})
        counts[outcome.status] = counts.get(outcome.status, 0) + 1

    def save(self, shops: TableState, partition: int) -> None:
        """Write the progress (it commits with the batch)."""
        shops[progress_key(partition)] = {"offsets": self.offsets, "counts": self.counts}


class _RerunError(Exception):
    """A record failed inside the pipeline: undo the batch, run it again without it."""


@dataclass(slots=True)
class Stall:
    """Why a partition stopped, since when (epoch seconds), and when it tries again
    (event-loop time)."""

    reason: str
    since: float
    attempts: int
    retry_at: float

    def report(self) -> dict[str, Any]:
        """The stall as ``/ready`` shows it."""
        return {"reason": self.reason, "since": self.since, "attempts": self.attempts}


class BatchRunner:
    """Runs batches of input records through the pipeline and commits them per partition."""

    def __init__(
        self,
        settings: Settings,
        pipeline: Pipeline,
        tables: dict[str, TableState],
        checkpoint: Checkpoint,
        expected: dict[str, EventType],
        guard: GapGuard | None = None,
    ) -> None:
        self.settings = settings
        self.guard = guard
        self.pipeline = pipeline
        self.tables = tables
        self.checkpoint = checkpoint
        self.expected = expected
        self.definitions = settings.topic(DEFINITIONS_ROLE)
        self.repartition = settings.topic(REPARTITION_ROLE)
        self.topics = sorted([*expected, self.definitions, self.repartition])
        """Every topic the worker reads: the input events' and the segment definitions'."""
        self.locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._poison: dict[int, dict[tuple[str, int], str]] = defaultdict(dict)
        """Per partition: the records (topic, offset) the pipeline failed on, and why."""
        self._streaks: dict[int, int] = {}
        """Per partition: how many of its last committed records in a row failed."""
        self.stalls: dict[int, Stall] = {}
        """Partitions stopped by a failure that is not one record's (see :meth:`_stall`)."""
        self._retries: dict[int, asyncio.Task[None]] = {}
        self._pending: dict[int, dict[str, Pending]] = {}
        """Each partition's table writes between its batch's processing and commit."""
        self.ready = False
        """Whether the tables hold everything committed for the owned partitions (False
        from a rebalance until Faust's recovery of its assignment has ended)."""

    def rebalancing(self) -> None:
        """A rebalance began: hold processing until its recovery ends."""
        self.ready = False

    async def recovered(self) -> None:
        """Recovery ended: forget what was read meanwhile (timers and queries may have
        read tables half recovered, into caches and shop books), process again, and seek
        every owned input partition to where its tables end, so the records set aside
        during recovery come again.

        Processing resumes before the seeks: records the fetcher delivers while a seek is
        under way are then processed (each checked against the partition's committed
        progress), not set aside after the last seek that would have brought them again."""
        self._forget_reads()
        self.ready = True
        if self.guard is None:
            return
        for partition in sorted(self.checkpoint.partitions):
            async with self.locks[partition]:
                if not self.ready or partition not in self.checkpoint.partitions:
                    return  # a new rebalance began: its recovery seeks again
                committed = Progress.load(self.tables["shops"], partition).offsets
                await self.guard.restart(partition, self.topics, committed)

    async def assign(self, partitions: set[int]) -> None:
        """The worker owns exactly ``partitions`` now (caches are rebuilt from the tables).

        Work in flight (a batch, a timer's commit) ends first: the new assignment stops
        every producer, and one stopped under an open commit never answers it (a
        re-evaluation step kept a partition's lock that way and its batches waited for
        good). The wait is bounded, since a holder may itself wait for the rebalance."""
        held = await self._quiesce(QUIESCE_S)
        try:
            self._forget_reads()
            self._forget_stalls(partitions)
            await self.checkpoint.assign(partitions)
        finally:
            for lock in held:
                lock.release()
        telemetry.REBALANCES.inc()

    def _forget_stalls(self, kept: set[int]) -> None:
        """Stalls of partitions this worker no longer owns are their new owner's now."""
        for partition in set(self.stalls) - kept:
            del self.stalls[partition]
            self._streaks.pop(partition, None)
        telemetry.set_stalled({p: s.since for p, s in self.stalls.items()})

    async def _quiesce(self, within_s: float) -> list[asyncio.Lock]:
        """Take every partition's lock, waiting at most ``within_s`` in all; the ones taken."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        held = []
        for partition in sorted(self.locks):
            lock = self.locks[partition]
            try:
                await asyncio.wait_for(lock.acquire(), max(deadline - loop.time(), 0.001))
            except TimeoutError:
                log.warning("partition_busy_at_rebalance", partition=partition)
                continue
            held.append(lock)
        return held

    async def run(self, events: Sequence[faust.types.EventT[Any]]) -> None:
        """Process and commit one batch: each partition's records in arrival order, the
        partitions side by side (one partition's transaction commits while the next one's
        records are processed; each has its own producer).

        While tables are still being recovered the batch is dropped, not waited on
        (Faust's next rebalance would wait for it): when recovery ends Faust seeks every
        input partition back to its committed offset, so the records come again."""
        if not self.ready:
            telemetry.RECORDS_REFETCHED.inc(len(events))
            return
        groups: dict[int, list[faust.types.EventT[Any]]] = defaultdict(list)
        for event in events:
            groups[event.message.partition].append(event)
        await asyncio.gather(*(self._run_locked(p, group) for p, group in groups.items()))

    async def publish(self, partition: int, make: Callable[[], list[Record]]) -> int:
        """Commit outputs that no input record caused (metric snapshots), made by ``make``
        from committed state only: between the partition's batches, never during
        recovery. Returns how many were sent."""
        async with self.locks[partition]:
            if not self.ready or partition not in self.checkpoint.partitions:
                return 0
            outputs = make()
            if outputs:
                await self.checkpoint.publish(partition, outputs)
            return len(outputs)

    async def advance(self, partition: int, make: Callable[[], list[Outcome]]) -> int:
        """Commit what ``make`` changes in the tables and emits although no input record
        caused it (live shops' clocks following the wall clock): between the partition's
        batches, in one transaction with its state, never during recovery. Returns how
        many segment changes were committed."""
        async with self.locks[partition]:
            if not self.ready or partition not in self.checkpoint.partitions:
                return 0
            outcomes = make()
            if not outcomes:
                return 0
            work = Work(partition)
            for outcome in outcomes:
                work.outputs += output_records(self.settings, outcome)
            self.pipeline.flush()
            shops = self.tables["shops"]
            Progress.load(shops, partition).save(shops, partition)  # unchanged; written last
            work.writes, self._pending[partition] = self._writes(partition)
            try:
                written = await self.checkpoint.commit(work)
            except (FencedError, RetryError):
                self._undo(partition)  # the next tick tries again
                return 0
            self._apply(partition, written)
            changes = [change for outcome in outcomes for change in outcome.changes]
            count_changes(changes)
            return len(changes)

    async def _run_locked(self, partition: int, events: list[faust.types.EventT[Any]]) -> None:
        async with self.locks[partition]:
            await self._run(partition, events)

    async def _run(self, partition: int, events: list[faust.types.EventT[Any]]) -> None:
        if self._waiting(partition):
            telemetry.RECORDS_REFETCHED.inc(len(events))  # read again when it retries
            return
        if self.guard is not None and partition in self.checkpoint.partitions:
            committed = Progress.load(self.tables["shops"], partition).offsets
            events = await self.guard.admit(partition, events, committed)
        attempts = 0
        while partition in self.checkpoint.partitions:
            try:
                work, outcomes = self._process(partition, events)
            except _RerunError:
                self._undo(partition)
                continue
            except Exception as error:  # after the records: flushing or encoding the batch
                self._undo(partition)
                if self._blame(partition, events, error):
                    continue
                self._stall(partition, _describe(error))
                return
            if not work.offsets:
                return
            streak, trailing = _streaks(self._streaks.get(partition, 0), outcomes)
            if streak >= MAX_ERROR_STREAK:
                self._undo(partition)
                last = next(o.dead_letter for o, _ in reversed(outcomes) if _failed(o))
                detail = last.detail if last is not None else "?"
                self._stall(partition, f"{streak} records in a row failed; the last: {detail}")
                return
            try:
                written = await self.checkpoint.commit(work)
            except FencedError:
                self._undo(partition)
                return
            except RetryError as error:
                self._undo(partition)
                attempts += 1
                if attempts >= MAX_COMMIT_ATTEMPTS:
                    self._stall(partition, f"{attempts} commits in a row failed: {error}")
                    return
                continue
            self._apply(partition, written)
            self._streaks[partition] = trailing
            self._poison.pop(partition, None)
            self._resume(partition)
            count(outcomes)
            return

    def _process(
        self, partition: int, events: Sequence[faust.types.EventT[Any]], probe: bool = False
    ) -> tuple[Work, list[tuple[Outcome, float]]]:
        shops = self.tables["shops"]
        progress = Progress.load(shops, partition)
        work = Work(partition)
        outcomes = []
        for event in events:
            message = event.message
            if progress.includes(message.topic, message.offset):
                # already in the tables; its offset may not be committed yet (at_least_once
                # crashed between the two): commit it with this batch
                work.offsets[message.topic] = message.offset + 1
                continue
            started = time.perf_counter()
            source = Source(message.topic, partition, message.offset)
            outcome, outputs = self._handle(event, source)
            work.outputs += outputs
            progress.note(message.topic, message.offset, outcome)
            work.offsets[message.topic] = message.offset + 1
            outcomes.append((outcome, time.perf_counter() - started))
        if work.offsets or probe:  # a probe writes even for no record (see _blame)
            self.pipeline.flush()
            progress.save(shops, partition)
            work.writes, self._pending[partition] = self._writes(partition)
        return work, outcomes

    def _handle(
        self, event: faust.types.EventT[Any], source: Source
    ) -> tuple[Outcome, list[Record]]:
        """The pipeline's outcome and its output records; a record the pipeline fails on
        (a bug, or a value it cannot represent) is dead-lettered, and the batch re-runs
        without it, so none of its half-made writes commit."""
        topic = self._carried(event, source)
        poisoned = self._poison[source.partition].get((source.topic, source.offset))
        if poisoned is not None or topic is None:
            reason: DeadLetterReason = "processing_error" if topic is not None else "wrong_topic"
            detail = poisoned or f"{self.repartition} carries only records segstream took there"
            letter = DeadLetter(reason, detail, source, event.key, event.value)
            kind = self.expected.get(topic or "")
            name = DEFINITION if kind is None else kind.type_name
            outcome = Outcome("dead_lettered", event_type=name, dead_letter=letter)
            return outcome, output_records(self.settings, outcome)
        try:
            if topic == self.definitions:
                outcome = self.pipeline.define(event.key, event.value, source)
            else:
                outcome = self.pipeline.handle(event.value, self.expected[topic], source, event.key)
            return outcome, output_records(self.settings, outcome)
        except Exception as error:
            self._poisoned(source, error)
            raise _RerunError from error

    def _carried(self, event: faust.types.EventT[Any], source: Source) -> str | None:
        """The topic whose kind of record ``event`` is: its own, or for a record on the
        repartition topic the one it was found on (its origin header); None when a record
        there has no origin segstream reads."""
        if source.topic != self.repartition:
            return source.topic
        topic = _origin_topic(event.message.headers)
        return topic if topic in self.expected or topic == self.definitions else None

    def _poisoned(self, source: Source, error: Exception) -> None:
        """Remember that the record at ``source`` fails, so its re-run dead-letters it."""
        log.error(
            "processing_error",
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
            error=_describe(error),
            exc_info=error,
        )
        self._poison[source.partition][(source.topic, source.offset)] = _describe(error)

    def _blame(
        self, partition: int, events: Sequence[faust.types.EventT[Any]], error: Exception
    ) -> bool:
        """Find the record whose effects made the batch fail after its records were
        handled (flushing books, encoding states): the shortest failing prefix of the
        batch ends with it. Each probe is undone. True when a record was blamed (or the
        failure did not come again): run the batch again; False when even no record
        fails, which is not any record's fault."""

        def fails(count: int) -> bool:
            try:
                self._process(partition, events[:count], probe=True)
            except _RerunError:
                return False  # cannot happen: the full batch handled every record
            except Exception:
                return True
            finally:
                self._undo(partition)
            return False

        if fails(0):
            return False
        low, high = 0, len(events)  # the first ``low`` records pass; all ``high`` fail
        if not fails(high):
            log.warning("batch_failure_not_repeated", partition=partition, error=_describe(error))
            return True
        while high - low > 1:
            middle = (low + high) // 2
            if fails(middle):
                high = middle
            else:
                low = middle
        message = events[high - 1].message
        if (message.topic, message.offset) in self._poison[partition]:
            return False  # it fails although that record is dead-lettered: not its fault
        self._poisoned(Source(message.topic, partition, message.offset), error)
        return True

    def _waiting(self, partition: int) -> bool:
        """Whether ``partition`` is stalled and its next try has not come."""
        stall = self.stalls.get(partition)
        return stall is not None and asyncio.get_running_loop().time() < stall.retry_at

    def _stall(self, partition: int, reason: str) -> None:
        """Stop the partition loudly: nothing of it is committed, ``/ready`` and a gauge
        name it, and it tries again (from its committed offsets) after a growing wait."""
        self._poison.pop(partition, None)  # the retry tries every record again
        loop = asyncio.get_running_loop()
        previous = self.stalls.get(partition)
        attempts = 1 if previous is None else previous.attempts + 1
        first, longest = STALL_FIRST_RETRY_S, self.settings.stall_retry_max_s
        wait = min(first * 2 ** (attempts - 1), longest)
        since = time.time() if previous is None else previous.since
        self.stalls[partition] = Stall(reason, since, attempts, loop.time() + wait)
        telemetry.set_stalled({p: s.since for p, s in self.stalls.items()})
        log.error("partition_stalled", partition=partition, reason=reason, retry_in_s=wait)
        running = self._retries.get(partition)
        if running is None or running.done():
            self._retries[partition] = loop.create_task(self._retry(partition, wait))

    async def _retry(self, partition: int, after_s: float) -> None:
        """After ``after_s``, read the stalled partition again from its committed offsets."""
        await asyncio.sleep(after_s)
        async with self.locks[partition]:
            if partition not in self.stalls or partition not in self.checkpoint.partitions:
                return
            if self.guard is not None:
                committed = Progress.load(self.tables["shops"], partition).offsets
                await self.guard.restart(partition, self.topics, committed)

    def _resume(self, partition: int) -> None:
        """A batch of the partition committed: it is no longer stalled."""
        stall = self.stalls.pop(partition, None)
        if stall is not None:
            telemetry.set_stalled({p: s.since for p, s in self.stalls.items()})
            log.warning("partition_resumed", partition=partition, stalled_for=stall.reason)

    def _writes(self, partition: int) -> tuple[list[Record], dict[str, Pending]]:
        """The partition's pending table writes as changelog records (progress last), and
        the same writes by table."""
        records, last = [], progress_key(partition).encode()
        pending = {name: table.writes(partition) for name, table in self.tables.items()}
        for name, writes in pending.items():
            topic = changelog_topic(self.settings, name)
            records += [Record(topic, k, v, partition) for k, v in writes.items() if k != last]
        progress = pending["shops"][last]
        records.append(Record(changelog_topic(self.settings, "shops"), last, progress, partition))
        return records, pending

    def _apply(self, partition: int, written: Written) -> None:
        pending = self._pending.pop(partition, {})
        for name, table in self.tables.items():
            tp = TopicPartition(changelog_topic(self.settings, name), partition)
            table.apply(partition, pending.get(name, {}), tp, written.get(tp, -1))

    def _forget_reads(self) -> None:
        """Drop every partition's cached and pending table values and the shop books."""
        for table in self.tables.values():
            for partition in range(self.settings.topic_partitions):
                table.discard(partition)
        self.pipeline.forget_shops()

    def _undo(self, partition: int) -> None:
        self._pending.pop(partition, None)
        for table in self.tables.values():
            table.discard(partition)
        self.pipeline.forget_shops()


def _origin_topic(headers: Any) -> str | None:
    """The topic in a detoured record's origin header (``<topic>/<partition>/<offset>``)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    for name, value in pairs:
        if name == ORIGIN_HEADER and isinstance(value, bytes):
            return value.decode(errors="replace").rsplit("/", 2)[0]
    return None


def _describe(error: BaseException) -> str:
    """An exception in one bounded line, for a dead letter or a stall."""
    return f"{type(error).__name__}: {error}"[:500]


def _failed(outcome: Outcome) -> bool:
    letter = outcome.dead_letter
    return letter is not None and letter.reason == "processing_error"


def _streaks(before: int, outcomes: Sequence[tuple[Outcome, float]]) -> tuple[int, int]:
    """The longest run of failed records, counting ``before`` failed ones ahead of the
    batch, and the run the batch ends with (what the next batch continues)."""
    longest = current = before
    for outcome, _ in outcomes:
        current = current + 1 if _failed(outcome) else 0
        longest = max(longest, current)
    return longest, current


def output_records(settings: Settings, outcome: Outcome) -> list[Record]:
    """The outcome's segment changes (each also as the customer's current membership, in
    the shop's partition of the compacted membership topic), new groups and dead letter,
    as records."""
    changes, members = settings.topic("segment_changes"), settings.topic("segment_membership")
    records = []
    for change in outcome.changes:
        records.append(Record(changes, change.shop_id.encode(), to_bytes(change.to_json())))
        member = change.membership()
        partition = shop_partition(change.shop_id, settings.topic_partitions)
        value = None if member is None else to_bytes(member)
        records.append(Record(members, change.membership_key, value, partition))
    records += [
        Record(changes, formed.shop_id.encode(), to_bytes(formed.to_json()))
        for formed in outcome.formed
    ]
    if outcome.detour is not None:
        detour = outcome.detour
        headers = ((ORIGIN_HEADER, detour.origin()),)
        repartition = settings.topic(REPARTITION_ROLE)
        records.append(Record(repartition, detour.key, detour.value, detour.partition, headers))
    if outcome.dead_letter is not None:
        letter = outcome.dead_letter
        payload = to_bytes(letter.to_json(datetime.now(UTC)))
        key = letter.key if letter.key is None or len(letter.key) <= MAX_LETTER_KEY else None
        records.append(Record(settings.topic("dead_letters"), key, payload))
    return records


def count(outcomes: Sequence[tuple[Outcome, float]]) -> None:
    """Update the Prometheus metrics for a committed batch's records (each counter once
    per label set and batch)."""
    events: Counter[tuple[str, str]] = Counter()
    letters: Counter[str] = Counter()
    late = 0
    for outcome, seconds in outcomes:
        telemetry.PROCESSING_SECONDS.observe(seconds)
        events[(outcome.event_type or "unknown", outcome.status)] += 1
        if outcome.dead_letter is not None:
            letters[outcome.dead_letter.reason] += 1
        late += int(outcome.too_late)
    for (kind, status), n in events.items():
        telemetry.EVENTS.labels(kind, status).inc(n)
    for reason, n in letters.items():
        telemetry.DEAD_LETTERS.labels(reason).inc(n)
    count_changes([change for outcome, _ in outcomes for change in outcome.changes])
    if late:
        telemetry.LATE_EVENTS.inc(late)


def count_changes(changes: Sequence[SegmentChange]) -> None:
    """Count committed segment changes in Prometheus, once per model and cause."""
    for (model, cause), n in Counter((c.model, c.cause.kind) for c in changes).items():
        telemetry.SEGMENT_CHANGES.labels(model, cause).inc(n)


def to_bytes(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
