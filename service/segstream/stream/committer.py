"""The one commit path of a partition: a batch of input records and a timer's step (a
live shop's clock, a re-evaluation step) alike are staged and committed here, and metric
snapshots (outputs only) are published through it.

A partition's progress record (``__progress__/<p>`` in the ``shops`` table, committed in the
same transaction) holds the next input offset per topic and the outcome counts: a record
below those offsets is already in the tables and is skipped, whatever Kafka or Faust
redelivers after a crash, a rebalance or a failed commit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiokafka import TopicPartition

from segstream.engine.pipeline import Outcome, Pipeline
from segstream.observability import telemetry
from segstream.settings import Settings
from segstream.state.keyspace import progress_key
from segstream.stream.checkpoint import (
    Checkpoint,
    FencedError,
    ProducerRecord,
    RetryError,
    Work,
    Written,
)
from segstream.stream.tables import Pending, StoreWriteError, TableState
from segstream.stream.topics import changelog_topic


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


class Committer:
    """The one commit path of a partition's work, for a batch of input records and for a
    timer's step alike: :meth:`stage` flushes the shop books, writes the partition's
    progress record and takes every pending table write into the work (progress last);
    :meth:`commit` commits outputs, writes and offsets through the checkpoint, then
    applies the writes to the tables, or undoes them when the commit failed."""

    def __init__(
        self,
        settings: Settings,
        pipeline: Pipeline,
        tables: dict[str, TableState],
        checkpoint: Checkpoint,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.tables = tables
        self.checkpoint = checkpoint
        self._pending: dict[int, dict[str, Pending]] = {}
        """Each partition's table writes between their staging and the commit."""

    def stage(self, work: Work, progress: Progress | None = None) -> None:
        """Flush the books and save ``progress`` (None: the committed one, unchanged: a
        timer's step consumes no input), then put the partition's pending table writes
        into ``work`` as changelog records."""
        partition, shops = work.partition, self.tables["shops"]
        self.pipeline.flush()
        (Progress.load(shops, partition) if progress is None else progress).save(shops, partition)
        work.writes, self._pending[partition] = self._writes(partition)

    async def commit(self, work: Work) -> Written:
        """Commit staged ``work`` and apply its writes; when the commit fails, undo them
        and raise its :class:`FencedError` or :class:`RetryError` again. When a local
        store refuses the committed writes, :class:`StoreWriteError` (they are held)."""
        started = time.perf_counter()
        try:
            written = await self.checkpoint.commit(work)
        except (FencedError, RetryError):
            self.undo(work.partition)
            raise
        telemetry.COMMIT_SECONDS.observe(time.perf_counter() - started)
        self._apply(work.partition, written)
        return written

    async def publish(self, partition: int, outputs: list[ProducerRecord]) -> None:
        """Commit outputs that change no table and consume no input (metric snapshots):
        nothing to stage, apply or undo."""
        await self.checkpoint.publish(partition, outputs)

    def undo(self, partition: int) -> None:
        """Drop the partition's staged and pending writes and every book read meanwhile."""
        self._pending.pop(partition, None)
        for table in self.tables.values():
            table.discard(partition)
        self.pipeline.forget_shops()

    def forget_reads(self) -> None:
        """Drop every partition's cached and pending table values and the shop books."""
        for table in self.tables.values():
            for partition in range(self.settings.topic_partitions):
                table.discard(partition)
        self.pipeline.forget_shops()

    def _writes(self, partition: int) -> tuple[list[ProducerRecord], dict[str, Pending]]:
        """The partition's pending table writes as changelog records (progress last), and
        the same writes by table."""
        records, last = [], progress_key(partition).encode()
        pending = {name: table.writes(partition) for name, table in self.tables.items()}
        for name, writes in pending.items():
            topic = changelog_topic(self.settings, name)
            records += [
                ProducerRecord(topic, k, v, partition) for k, v in writes.items() if k != last
            ]
        progress = pending["shops"][last]
        records.append(
            ProducerRecord(changelog_topic(self.settings, "shops"), last, progress, partition)
        )
        return records, pending

    def behind(self, partition: int) -> bool:
        """Whether a committed batch of ``partition`` is not in its local stores yet: it
        must not process, advance or publish until :meth:`catch_up` wrote it."""
        return any(table.behind(partition) for table in self.tables.values())

    def incomplete(self, partition: int) -> bool:
        """Whether a local store of ``partition`` misses changelog records its recovery
        refused (a full disk): its tables must not be read until it is recovered again."""
        return any(table.incomplete(partition) for table in self.tables.values())

    def catch_up(self, partition: int) -> bool:
        """Write the partition's held batches to the local stores; True when there were
        any (all written now). Raises :class:`StoreWriteError` while a store refuses."""
        caught = False
        try:
            for table in self.tables.values():
                caught = table.catch_up(partition) or caught
        finally:
            self.show_behind()
        return caught

    def keep_only(self, kept: set[int]) -> None:
        """Forget the held batches of partitions this worker no longer owns."""
        for table in self.tables.values():
            table.forget_held(kept)
        self.show_behind()

    def _apply(self, partition: int, written: Written) -> None:
        """The commit succeeded: write the partition's pending writes to the tables. A
        store that refuses holds its batch (see :meth:`TableState.apply`); the others are
        written, and the first refusal is raised once all were tried."""
        pending = self._pending.pop(partition, {})
        refused: StoreWriteError | None = None
        for name, table in self.tables.items():
            tp = TopicPartition(changelog_topic(self.settings, name), partition)
            try:
                table.apply(partition, pending.get(name, {}), tp, written.get(tp, -1))
            except StoreWriteError as error:
                telemetry.STATE_STORE_WRITE_FAILURES.labels(name, error.kind).inc()
                refused = refused or error
        if refused is not None:
            self.show_behind()
            raise refused

    def show_behind(self) -> None:
        """Set the gauge of partitions whose local store is behind."""
        partitions = range(self.settings.topic_partitions)
        telemetry.STATE_STORE_BEHIND.set(sum(1 for p in partitions if self.behind(p)))
