"""Input records that never reached the agent: found, and fetched again.

Around rebalances Faust can drop a record it already fetched (upstream faust-streaming
#216, #221: prefetched records and the seek back to committed offsets race; the chaos
run caught a batch that went from offset 199 to 201 after a rebalance), and a batch that
then commits offsets past it loses the record for good. A gap in a
partition's offsets is not always a loss, though: a transactional producer's commit
markers and aborted records occupy offsets that a ``read_committed`` consumer never
sees. So a gap is checked against the log itself: a small probe consumer reads the
first visible record at the expected offset. If it lies inside the gap, the records
were skipped: the partition's records from the gap on are held back, the consumer is
sought back, and the stale records still buffered from before the seek are dropped until
the expected offset arrives again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from segstream.observability.logs import get_logger

log = get_logger(__name__)

Seek = Callable[[str, int, int], Awaitable[None]]
"""Seek the worker's consumer: topic, partition, offset."""
REWIND_PATIENCE_S = 30.0
"""How long to wait for a sought offset to arrive before checking the log again."""


async def first_visible(probe: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> int | None:
    """Offset of the first record ``probe`` (a read_committed consumer of no group, used by
    one caller at a time: it is assigned ``tp``) sees at or after ``offset`` (None: none up
    to the partition's end: what lies there are transaction markers or aborted records)."""
    probe.assign([tp])
    probe.seek(tp, offset)
    end = (await probe.end_offsets([tp]))[tp]
    while await probe.position(tp) < end:
        batches = await probe.getmany(tp, timeout_ms=1000, max_records=1)
        for records in batches.values():
            if records:
                return int(records[0].offset)
    return None


class GapGuard:
    """Admits a partition's records in offset order, without holes that the log has not."""

    def __init__(self, connection: Mapping[str, Any], seek: Seek) -> None:
        self._connection = dict(connection)
        self._seek = seek
        self._probe: AIOKafkaConsumer | None = None
        self._probing = asyncio.Lock()
        """One question to the probe at a time (admits and restarts of different
        partitions run concurrently)."""
        self._rewinding: dict[tuple[str, int], tuple[int, float]] = {}
        self.skipped_found = 0

    async def admit(
        self, partition: int, events: Sequence[Any], expected: Mapping[str, int]
    ) -> list[Any]:
        """The ``events`` (one partition's, in arrival order) that may be processed, given
        the next expected offset per topic; may seek the consumer back."""
        following = dict(expected)
        held: set[str] = set()
        admitted = []
        for event in events:
            topic, offset = event.message.topic, event.message.offset
            if topic in held or self._stale(topic, partition, offset):
                continue
            wanted = following.get(topic, 0)  # nothing committed yet: from the start
            if offset > wanted:
                visible = await self.first_visible(TopicPartition(topic, partition), wanted)
                if visible is not None and visible < offset:
                    await self._rewind(topic, partition, visible, offset)
                    held.add(topic)
                    continue
            admitted.append(event)
            if offset >= wanted:
                following[topic] = offset + 1
        return admitted

    def _stale(self, topic: str, partition: int, offset: int) -> bool:
        """Whether a record arrived from before a seek (drop it; the refetch brings it)."""
        rewinding = self._rewinding.get((topic, partition))
        if rewinding is None:
            return False
        target, since = rewinding
        if offset == target or time.monotonic() - since > REWIND_PATIENCE_S:
            del self._rewinding[(topic, partition)]
            return False
        return True

    async def _rewind(self, topic: str, partition: int, target: int, got: int) -> None:
        log.warning(
            "input_records_skipped", topic=topic, partition=partition, expected=target, got=got
        )
        self.skipped_found += 1
        self._rewinding[(topic, partition)] = (target, time.monotonic())
        await self._seek(topic, partition, target)

    async def restart(
        self, partition: int, topics: Sequence[str], committed: Mapping[str, int]
    ) -> None:
        """Seek the consumer to where ``partition``'s tables end: each topic's committed
        next offset, or the start of its log if none was ever committed (Faust's seek
        after recovery leaves those where the consumer happened to be).

        The starts of all never-committed topics come in one request: an input topic a
        platform does not use stays empty, and a read per topic and partition held each
        partition's processing for half a second per empty topic after every rebalance."""
        fresh = [TopicPartition(t, partition) for t in topics if committed.get(t) is None]
        starts = await self.log_starts(fresh) if fresh else {}
        for topic in topics:
            self._rewinding.pop((topic, partition), None)
            offset = committed.get(topic)
            if offset is None:
                offset = starts[TopicPartition(topic, partition)]
            await self._seek(topic, partition, offset)

    async def log_starts(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The first offset still in each partition's log (one request for all)."""
        async with self._probing:
            probe = await self._consumer()
            return dict(await probe.beginning_offsets(list(tps)))

    async def first_visible(self, tp: TopicPartition, offset: int) -> int | None:
        """Offset of the first record a read_committed reader sees at or after ``offset``
        (None: none up to the partition's end)."""
        async with self._probing:
            return await first_visible(await self._consumer(), tp, offset)

    async def _consumer(self) -> AIOKafkaConsumer:
        if self._probe is None:
            probe = AIOKafkaConsumer(
                **self._connection,
                isolation_level="read_committed",
                enable_auto_commit=False,
                group_id=None,
            )
            await probe.start()
            self._probe = probe
        return self._probe

    async def close(self) -> None:
        """Stop the probe consumer."""
        if self._probe is not None:
            probe, self._probe = self._probe, None
            await probe.stop()
