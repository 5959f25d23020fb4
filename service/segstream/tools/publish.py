"""Publishing input events to Kafka for demos, replays and load tests.

Events go to the topic of their role with the shop id as the record key (the
contract: one shop lives in one partition). Raw bytes (deliberately invalid
records) are sent unkeyed, since there is no trustworthy shop id to read.
"""

from __future__ import annotations

import asyncio
import random
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from segstream.domain.encoding import compact_json
from segstream.settings import Settings
from segstream.stream.kafka import connection_options

Record = tuple[str, bytes | Mapping[str, Any]]
"""A topic role (``Settings.topic``) and an event, or raw bytes to send as they are."""

LINGER_MS = 20
MAX_IN_FLIGHT = 2000

Partitioner = Callable[[bytes | None, list[int], list[int]], int]
"""aiokafka's partitioner signature: key bytes, all partitions, available ones -> one."""


def librdkafka_partitioner(key: bytes | None, partitions: list[int], available: list[int]) -> int:
    """librdkafka's default (``consistent_random``, what kcat and confluent-kafka use): CRC32
    of the key modulo the partition count; an unkeyed record goes to a random partition.

    >>> librdkafka_partitioner(b"roastery-42", list(range(8)), list(range(8)))
    3
    """
    if key is None:
        return random.choice(available or partitions)
    return partitions[zlib.crc32(key) % len(partitions)]


encode = compact_json
"""An event as a platform would send it: the encoder of segstream's own outputs."""


class _Pacer:
    """Sleeps just enough that no more than ``rate`` records per second go out."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._started = time.monotonic()

    async def wait(self, sent: int) -> None:
        """Pause until the ``sent``-th record is due."""
        ahead = self._started + sent * self._interval - time.monotonic()
        if ahead > 0.005:
            await asyncio.sleep(ahead)


async def publish(
    events: Iterable[Record],
    settings: Settings,
    *,
    rate: float | None = None,
    progress: Callable[[int], None] | None = None,
    partitioner: Partitioner | None = None,
    receipts: list[RecordMetadata] | None = None,
) -> int:
    """Send ``(role, event)`` records in order; return how many were sent and acknowledged.

    Dicts are keyed by ``shop_id`` and JSON-encoded; bytes are sent as they are,
    unkeyed. ``rate`` caps records per second (None: as fast as the broker takes
    them); ``progress`` is called with the running count after each record;
    ``partitioner`` replaces Kafka's default (murmur2), e.g. with
    :func:`librdkafka_partitioner`: segstream takes such records to their shop's partition.
    ``receipts`` (if given) gets each record's metadata (topic, partition, offset) in order.
    """
    if rate is not None and rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    chosen = {} if partitioner is None else {"partitioner": partitioner}
    producer = AIOKafkaProducer(
        **connection_options(settings),
        acks="all",
        linger_ms=LINGER_MS,
        enable_idempotence=True,
        **chosen,
    )
    await producer.start()
    try:
        return await _send_all(producer, events, settings, rate, progress, receipts)
    finally:
        await producer.stop()


async def _send_all(
    producer: AIOKafkaProducer,
    events: Iterable[Record],
    settings: Settings,
    rate: float | None,
    progress: Callable[[int], None] | None,
    receipts: list[RecordMetadata] | None = None,
) -> int:
    """The send loop: paced, with a bounded number of unacknowledged records."""
    pacer, sent = _Pacer(rate), 0
    pending: list[asyncio.Future[Any]] = []
    for role, value in events:
        key, payload = _record(value)
        pending.append(await producer.send(settings.topic(role), payload, key=key))
        sent += 1
        if len(pending) >= MAX_IN_FLIGHT:
            _receive(await asyncio.gather(*pending), receipts)
            pending.clear()
        if progress is not None:
            progress(sent)
        await pacer.wait(sent)
    _receive(await asyncio.gather(*pending), receipts)
    return sent


def _receive(acknowledged: list[Any], receipts: list[RecordMetadata] | None) -> None:
    if receipts is not None:
        receipts.extend(acknowledged)


def _record(value: bytes | Mapping[str, Any]) -> tuple[bytes | None, bytes]:
    """Record key and value of one event."""
    if isinstance(value, bytes):
        return None, value
    return str(value["shop_id"]).encode(), encode(value)
