"""The batch runner: takes input records in batches (:mod:`segstream.stream.batching`),
hands each partition's records to the pipeline (:mod:`segstream.engine.pipeline`), and
commits the partition's table writes, outputs and offsets through the
:class:`~segstream.stream.committer.Committer`. Records the pipeline fails on are
dead-lettered without their half-made writes; a failure that is no record's stalls the
partition loudly and retries it later.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import faust
from aiokafka.errors import KafkaError

from segstream.domain.changes import ORIGIN_HEADER, DeadLetter, SegmentChange, Source
from segstream.domain.contracts import DeadLetterReason, EventType
from segstream.domain.encoding import compact_json
from segstream.engine.pipeline import DEFINITION, Outcome, Pipeline
from segstream.observability import telemetry
from segstream.observability.logs import get_logger
from segstream.settings import DEFINITIONS_ROLE, REPARTITION_ROLE, Settings
from segstream.state.keyspace import shop_partition
from segstream.stream.checkpoint import Checkpoint, FencedError, ProducerRecord, RetryError, Work
from segstream.stream.committer import Committer, Progress
from segstream.stream.gaps import GapGuard
from segstream.stream.poison import MAX_ERROR_STREAK, Poison, describe, failed
from segstream.stream.stalls import Stall, Stalls
from segstream.stream.store_full import StoreCatchUp
from segstream.stream.tables import StoreWriteError, TableState

log = get_logger(__name__)
QUIESCE_S = 10.0
"""Longest a rebalance waits for the work in flight on its partitions."""
MAX_LETTER_KEY = 1024
"""A dead letter is keyed by the original key up to this size (unkeyed beyond: the key
itself, bounded, is inside the letter)."""
MAX_COMMIT_ATTEMPTS = 8
"""Failed commits of one batch in a row (each after a backoff) before its partition stalls:
a record the broker refuses (too large) fails every attempt."""


class _RerunError(Exception):
    """A record failed inside the pipeline: undo the batch, run it again without it."""


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
        rejoin: Callable[[int], None] | None = None,
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
        self.poison = Poison()
        """The records the pipeline failed on, and each partition's failure streak."""
        self.stalling = Stalls(settings.stall_retry_max_s, self._retry)
        """Partitions stopped by a failure that is not one record's (see :meth:`_stall`)."""
        self.commits = Committer(settings, pipeline, tables, checkpoint)
        self.stores = StoreCatchUp(self.commits, self._stall, rejoin, lambda: self.ready)
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
        self.commits.forget_reads()
        self.ready = True
        for partition in self.stores.recovered(self.checkpoint.partitions):
            self.stalling.resume(partition)  # recovered again: no wait for a retry
        if self.guard is None:
            return
        for partition in sorted(self.checkpoint.partitions):
            async with self.locks[partition]:
                if not self.ready or partition not in self.checkpoint.partitions:
                    return  # a new rebalance began: its recovery seeks again
                await self.seek_back(partition)

    async def assign(self, partitions: set[int]) -> None:
        """The worker owns exactly ``partitions`` now (caches are rebuilt from the tables).

        Work in flight (a batch, a timer's commit) ends first: the new assignment stops
        every producer, and one stopped under an open commit never answers it (a
        re-evaluation step kept a partition's lock that way and its batches waited for
        good). The wait is bounded, since a holder may itself wait for the rebalance."""
        held = await quiesce(self.locks, QUIESCE_S)
        try:
            self.commits.forget_reads()
            self._forget_others(partitions)
            await self.checkpoint.assign(partitions)
        finally:
            for lock in held:
                lock.release()
        telemetry.REBALANCES.inc()

    @property
    def stalls(self) -> dict[int, Stall]:
        """The stalled partitions and why (what ``/ready`` lists)."""
        return self.stalling.stalled

    def _forget_others(self, kept: set[int]) -> None:
        """Stalls and held store writes of partitions this worker no longer owns are their
        new owner's now (it restores the writes from the changelog)."""
        self.poison.forget(self.stalling.keep_only(kept))
        self.commits.keep_only(kept)

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

    async def publish(self, partition: int, make: Callable[[], list[ProducerRecord]]) -> int:
        """Commit outputs that no input record caused (metric snapshots), made by ``make``
        from committed state only: between the partition's batches, never during
        recovery. Returns how many were sent."""
        async with self.locks[partition]:
            if not self._current(partition):
                return 0
            outputs = make()
            if outputs:
                await self.commits.publish(partition, outputs)
            return len(outputs)

    async def advance(self, partition: int, make: Callable[[], list[Outcome]]) -> int:
        """Commit what ``make`` changes in the tables and emits although no input record
        caused it (live shops' clocks following the wall clock): between the partition's
        batches, in one transaction with its state, never during recovery. Returns how
        many segment changes were committed."""
        async with self.locks[partition]:
            if not self._current(partition):
                return 0
            outcomes = make()
            if not outcomes:
                return 0
            work = Work(partition)
            for outcome in outcomes:
                work.outputs += output_records(self.settings, outcome)
            self.commits.stage(work)
            try:
                await self.commits.commit(work)
            except (FencedError, RetryError):
                return 0  # undone: the next tick tries again
            except StoreWriteError as error:  # committed, held: the partition stops
                self.stores.refused(error)
            changes = [change for outcome in outcomes for change in outcome.changes]
            count_changes(changes)
            return len(changes)

    def _current(self, partition: int) -> bool:
        """Whether the partition's tables are this worker's and hold every committed
        batch: what a step that no input record caused reads from."""
        owned = self.ready and partition in self.checkpoint.partitions
        return owned and not self.commits.behind(partition)

    async def _run_locked(self, partition: int, events: list[faust.types.EventT[Any]]) -> None:
        async with self.locks[partition]:
            await self._run(partition, events)

    async def _run(self, partition: int, events: list[faust.types.EventT[Any]]) -> None:
        if self.stalling.waiting(partition) or not self.stores.caught_up(partition):
            telemetry.RECORDS_REFETCHED.inc(len(events))  # read again when it retries
            return
        if self.guard is not None and partition in self.checkpoint.partitions:
            committed = Progress.load(self.tables["shops"], partition).offsets
            try:
                events = await self.guard.admit(partition, events, committed)
            except KafkaError as error:  # the log could not be read: a broker restarting
                self._stall(partition, f"checking the input for a gap: {describe(error)}")
                return
        attempts = 0
        while partition in self.checkpoint.partitions:
            try:
                work, outcomes = self._process(partition, events)
            except _RerunError:
                self.commits.undo(partition)
                continue
            except Exception as error:  # after the records: flushing or encoding the batch
                self.commits.undo(partition)
                if self._blame(partition, events, error):
                    continue
                self._stall(partition, describe(error))
                return
            if not work.offsets:
                return
            streak, trailing = self.poison.streaks(partition, outcomes)
            if streak >= MAX_ERROR_STREAK:
                self.commits.undo(partition)
                last = next(o.dead_letter for o, _ in reversed(outcomes) if failed(o))
                detail = last.detail if last is not None else "?"
                self._stall(partition, f"{streak} records in a row failed; the last: {detail}")
                return
            try:
                await self.commits.commit(work)
            except FencedError:
                return  # undone: the partition waits for its next assignment
            except StoreWriteError as error:  # committed, held: the partition stops
                self.poison.committed(partition, trailing)
                count(outcomes)
                self.stores.refused(error)
                return
            except RetryError as error:
                attempts += 1
                if attempts >= MAX_COMMIT_ATTEMPTS:
                    self._stall(partition, f"{attempts} commits in a row failed: {error}")
                    return
                continue
            self.poison.committed(partition, trailing)
            self.stalling.resume(partition)
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
                # already in the tables (an old fetch redelivered): commit their position,
                # never the record's own, which would move the group's offset back
                work.offsets[message.topic] = progress.offsets[message.topic]
                continue
            started = time.perf_counter()
            source = Source(message.topic, partition, message.offset)
            outcome, outputs = self._handle(event, source)
            work.outputs += outputs
            progress.note(message.topic, message.offset, outcome)
            work.offsets[message.topic] = message.offset + 1
            outcomes.append((outcome, time.perf_counter() - started))
        if work.offsets or probe:  # a probe writes even for no record (see _blame)
            self.commits.stage(work, progress)
        return work, outcomes

    def _handle(
        self, event: faust.types.EventT[Any], source: Source
    ) -> tuple[Outcome, list[ProducerRecord]]:
        """The pipeline's outcome and its output records; a record the pipeline fails on
        (a bug, or a value it cannot represent) is dead-lettered, and the batch re-runs
        without it, so none of its half-made writes commit."""
        topic = carried(event, source.topic, self.repartition, [*self.expected, self.definitions])
        poisoned = self.poison.why(source)
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
            self.poison.add(source, error)
            raise _RerunError from error

    def _blame(
        self, partition: int, events: Sequence[faust.types.EventT[Any]], error: Exception
    ) -> bool:
        """Find the record whose effects made the batch fail after its records were
        handled, by probes of its prefixes, each undone (see :meth:`Poison.blame`)."""

        def fails(count: int) -> bool:
            try:
                self._process(partition, events[:count], probe=True)
            except _RerunError:
                return False  # cannot happen: the full batch handled every record
            except Exception:
                return True
            finally:
                self.commits.undo(partition)
            return False

        batch = [(event.message.topic, event.message.offset) for event in events]
        return self.poison.blame(partition, batch, fails, error)

    def _stall(self, partition: int, reason: str) -> None:
        """Stop the partition loudly: nothing of it is committed, ``/ready`` and a gauge
        name it, and it tries again (from its committed offsets) after a growing wait."""
        self.poison.clear(partition)  # the retry tries every record again
        self.stalling.stall(partition, reason)

    async def _retry(self, partition: int) -> None:
        """Read the stalled partition again from its committed offsets (its wait is over)."""
        async with self.locks[partition]:
            if partition not in self.stalls or partition not in self.checkpoint.partitions:
                return
            if self.commits.behind(partition) or partition in self.stores.stalled:
                if not self.stores.caught_up(partition):
                    return
                self.stalling.resume(partition)
            if self.guard is not None:
                await self.seek_back(partition)

    async def seek_back(self, partition: int) -> None:
        """Seek the partition's input to where its tables end (its lock held by the
        caller); a broker that cannot say where (restarting) stalls it, to try again."""
        assert self.guard is not None
        failed = await seek_to_tables(self.guard, self.tables["shops"], partition, self.topics)
        if failed is not None:
            self._stall(partition, failed)


async def quiesce(locks: Mapping[int, asyncio.Lock], within_s: float) -> list[asyncio.Lock]:
    """Take every partition's lock, waiting at most ``within_s`` in all; the ones taken."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    held = []
    for partition in sorted(locks):
        lock = locks[partition]
        try:
            await asyncio.wait_for(lock.acquire(), max(deadline - loop.time(), 0.001))
        except TimeoutError:
            log.warning("partition_busy_at_rebalance", partition=partition)
            continue
        held.append(lock)
    return held


async def seek_to_tables(
    guard: GapGuard, shops: TableState, partition: int, topics: Sequence[str]
) -> str | None:
    """Seek ``partition``'s input to where its tables end; why it could not, if so: the
    broker did not answer the offsets request (it is restarting). That error once went up
    into Faust's recovery and crashed a worker (a chaos run, seed 342001), and a stall's
    retry that died of it would leave the partition unsought, its set-aside records
    never read again (what CI's "lag 164 after 900 s" looks like)."""
    committed = Progress.load(shops, partition).offsets
    try:
        await guard.restart(partition, topics, committed)
    except KafkaError as error:
        return f"seeking to the committed offsets: {describe(error)}"
    return None


def carried(
    event: faust.types.EventT[Any], topic: str, repartition: str, readable: Sequence[str]
) -> str | None:
    """The topic whose kind of record ``event`` (read from ``topic``) is: its own, or for a
    record on the ``repartition`` topic the one it was found on (its origin header); None
    when a record there has no origin among the ``readable`` topics."""
    if topic != repartition:
        return topic
    origin = _origin_topic(event.message.headers)
    return origin if origin in readable else None


def _origin_topic(headers: Any) -> str | None:
    """The topic in a detoured record's origin header (``<topic>/<partition>/<offset>``)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    for name, value in pairs:
        if name == ORIGIN_HEADER and isinstance(value, bytes):
            return value.decode(errors="replace").rsplit("/", 2)[0]
    return None


def output_records(settings: Settings, outcome: Outcome) -> list[ProducerRecord]:
    """The outcome's segment changes (each also as the customer's current membership, in
    the shop's partition of the compacted membership topic), new groups and dead letter,
    as records."""
    changes, members = settings.topic("segment_changes"), settings.topic("segment_membership")
    records = []
    for change in outcome.changes:
        records.append(
            ProducerRecord(changes, change.shop_id.encode(), compact_json(change.to_json()))
        )
        member = change.membership()
        partition = shop_partition(change.shop_id, settings.topic_partitions)
        value = None if member is None else compact_json(member)
        records.append(ProducerRecord(members, change.membership_key, value, partition))
    records += [
        ProducerRecord(changes, formed.shop_id.encode(), compact_json(formed.to_json()))
        for formed in outcome.formed
    ]
    if outcome.detour is not None:
        detour = outcome.detour
        headers = ((ORIGIN_HEADER, detour.origin()),)
        repartition = settings.topic(REPARTITION_ROLE)
        records.append(
            ProducerRecord(repartition, detour.key, detour.value, detour.partition, headers)
        )
    if outcome.dead_letter is not None:
        letter = outcome.dead_letter
        payload = compact_json(letter.to_json(datetime.now(UTC)))
        key = letter.key if letter.key is None or len(letter.key) <= MAX_LETTER_KEY else None
        records.append(ProducerRecord(settings.topic("dead_letters"), key, payload))
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
