"""Consumer lag of the app's consumer group, measured from Kafka itself.

Lag per partition = records the group has not committed yet: the partition's end offset
(the last stable one) minus the group's committed offset. A partition the group never
committed is read from its earliest retained offset (the worker's ``auto_offset_reset``),
so its lag is all of its retained records; a committed offset below the earliest retained
one counts from there too. A topic written in transactions (the repartition topic, or a
platform's transactional producer) ends each transaction with a marker no consumer ever
sees, so a small lag is checked against the log: with no visible record from the committed
offset on, it is 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import ConsumerStoppedError, KafkaError, for_code

from segstream.observability import telemetry
from segstream.observability.logs import get_logger
from segstream.settings import Settings
from segstream.stream.gaps import first_visible
from segstream.stream.kafka import connection_options

log = get_logger(__name__)

MARKER_SLACK = 64
"""Lags up to this many offsets are checked for visible records (transaction markers and
aborted records occupy offsets but are never read)."""

Partition = tuple[str, int]
"""``(topic, partition)``."""


def lag_by_partition(
    end_offsets: Mapping[Partition, int],
    beginning_offsets: Mapping[Partition, int],
    committed: Mapping[Partition, int],
) -> dict[Partition, int]:
    """Records behind per partition of ``end_offsets`` (negative committed = none).

    >>> lag_by_partition({("t", 0): 10, ("t", 1): 5}, {("t", 0): 0, ("t", 1): 2}, {("t", 0): 7})
    {('t', 0): 3, ('t', 1): 3}
    """
    lag = {}
    for partition, end in end_offsets.items():
        earliest = beginning_offsets.get(partition, 0)
        position = max(committed.get(partition, -1), earliest)
        lag[partition] = max(end - position, 0)
    return lag


class LagProbe:
    """Measures a group's lag on some topics over long-lived admin and consumer clients.

    The clients are created by :meth:`start` (aiokafka binds them to the running loop), so a
    probe can be built before the worker's loop runs.
    """

    def __init__(self, connection: Mapping[str, Any], group_id: str, topics: Sequence[str]) -> None:
        self.group_id = group_id
        self.topics = list(topics)
        self._connection = dict(connection)
        self._clients: tuple[AIOKafkaAdminClient, AIOKafkaConsumer] | None = None
        self._markers_only: dict[Partition, tuple[int, int]] = {}
        """Per partition, the last range found to hold no visible record."""
        self.committed: dict[Partition, int] = {}
        """The group's committed offsets the last measurement read (-1: none)."""
        self.ends: dict[Partition, int] = {}
        """The last stable offsets the last measurement read."""

    @classmethod
    def from_settings(cls, settings: Settings, topics: Sequence[str]) -> LagProbe:
        """A probe for the worker's consumer group (the app id) on ``topics``."""
        return cls(connection_options(settings), settings.app_id, topics)

    async def start(self) -> None:
        """Connect both clients (idempotent)."""
        await self._connected()

    async def _connected(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._clients is not None:
            return self._clients
        admin = AIOKafkaAdminClient(**self._connection)
        offsets = AIOKafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            **self._connection,
        )
        await admin.start()
        try:
            await offsets.start()
        except BaseException:
            await admin.close()
            raise
        self._clients = admin, offsets
        return self._clients

    async def stop(self) -> None:
        """Close both clients (idempotent)."""
        if self._clients is None:
            return
        admin, offsets = self._clients
        self._clients = None
        try:
            await offsets.stop()
        finally:
            await admin.close()

    async def measure(self) -> dict[Partition, int]:
        """Lag per partition of the probe's topics that exist (starts the clients if needed)."""
        admin, offsets = await self._connected()
        partitions = await _partitions(admin, self.topics)
        if not partitions:
            return {}
        end = await offsets.end_offsets(partitions)
        beginning = await offsets.beginning_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(self.group_id, partitions=partitions)
        positions = {(tp.topic, tp.partition): meta.offset for tp, meta in committed.items()}
        self.committed = positions
        ends = self.ends = _by_pair(end)
        lag = lag_by_partition(ends, _by_pair(beginning), positions)
        for pair, behind in lag.items():
            start = positions.get(pair, -1)
            maybe_markers = 0 < behind <= MARKER_SLACK and start >= 0
            if maybe_markers and await self._invisible(offsets, pair, start, ends[pair]):
                lag[pair] = 0
        return lag

    async def waiting(self, pair: Partition) -> bool:
        """Whether a record a reader sees lies between the group's committed offset and
        the end, as the last measurement found them (a lag of aborted records and markers
        only, however long, is nothing waiting)."""
        start, end = self.committed.get(pair, -1), self.ends.get(pair, 0)
        if start < 0 or start >= end:
            return start < end
        _, offsets = await self._connected()
        return not await self._invisible(offsets, pair, start, end)

    async def _invisible(
        self, offsets: AIOKafkaConsumer, pair: Partition, start: int, end: int
    ) -> bool:
        """Whether no record between ``start`` and ``end`` (the last stable offset) is
        visible. Below the last stable offset every transaction is decided, so the answer
        for a range never changes and is asked once: each question costs a fetch's wait
        (half a second), and a quiet worker's ten transactional partitions, each ending in
        a commit marker, made every measurement take 5 s, longer than its period."""
        if self._markers_only.get(pair) == (start, end):
            return True
        if await first_visible(offsets, TopicPartition(*pair), start) is not None:
            return False
        self._markers_only[pair] = (start, end)
        return True

    async def update(self) -> dict[Partition, int] | None:
        """Measure, publish the result as ``segstream_consumer_lag_records`` and return it
        (None when Kafka could not be asked).

        When Kafka cannot be asked, the lag series are removed (a gap on the dashboard, not
        stale numbers), the clients are closed to reconnect next time, and a warning is
        logged: a monitoring timer must not take the worker down. That includes its own
        clients stopped under it: a worker shutting down closes them while a measurement
        runs, and the ``ConsumerStoppedError`` (not a ``KafkaError``) crashed the app.
        """
        try:
            lag = await self.measure()
        except (KafkaError, ConsumerStoppedError) as error:
            log.warning("consumer_lag_unavailable", group=self.group_id, error=repr(error))
            telemetry.set_consumer_lag({})
            await self.stop()
            return None
        telemetry.set_consumer_lag(lag)
        return lag


async def consumer_lag(
    bootstrap_or_settings: str | Settings, group_id: str, topics: Sequence[str]
) -> dict[Partition, int]:
    """One measurement of ``group_id``'s lag on ``topics`` (clients opened and closed here)."""
    connection = (
        {"bootstrap_servers": bootstrap_or_settings}
        if isinstance(bootstrap_or_settings, str)
        else connection_options(bootstrap_or_settings)
    )
    probe = LagProbe(connection, group_id, topics)
    try:
        return await probe.measure()
    finally:
        await probe.stop()


async def _partitions(admin: AIOKafkaAdminClient, topics: Sequence[str]) -> list[TopicPartition]:
    """Every partition of the ``topics`` that exist.

    Only existing topics are described: a metadata request naming a missing topic would
    make a broker with ``auto.create.topics.enable`` create it, with default partitions.
    """
    existing = set(await admin.list_topics())
    wanted = [topic for topic in topics if topic in existing]
    if not wanted:
        return []
    partitions = []
    for topic in await admin.describe_topics(wanted):
        if topic["error_code"]:
            raise for_code(topic["error_code"])(f"cannot describe topic {topic['topic']}")
        partitions += [TopicPartition(topic["topic"], p["partition"]) for p in topic["partitions"]]
    return partitions


def _by_pair(offsets: Mapping[TopicPartition, int]) -> dict[Partition, int]:
    return {(tp.topic, tp.partition): offset for tp, offset in offsets.items()}
