"""Small async helpers on aiokafka for integration tests against the real broker.

Each helper opens its own client and closes it before returning, so tests can call them
from any event loop.

- ``create_topics``: create topics (idempotent) and wait until every partition has a leader.
- ``produce_json``: produce keyed records, values JSON-encoded (dict) or raw (bytes).
- ``consume_all``: read a topic from the earliest offset with a fresh, unique group id
  (``read_committed`` unless told otherwise: segstream writes transactionally).
- ``settled``: a topic's records once nothing was added to it for a while.
- ``end_offsets``: how many offsets each topic has (to show nothing was written).
- ``read_table``: the committed contents of one of the worker's tables, from its changelog.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import RecordMetadata

from segstream.domain.contracts import role_for
from segstream.domain.encoding import compact_json
from segstream.settings import Settings
from segstream.stream.tables import CODECS
from segstream.stream.topics import changelog_topic
from segstream.tools.publish import publish

JsonValue = Mapping[str, Any] | bytes

# Kafka error code for CreateTopics when the topic is there already.
_TOPIC_ALREADY_EXISTS = 36


def encode_value(value: JsonValue | None) -> bytes | None:
    """Encode a record value: dicts as compact UTF-8 JSON (:func:`compact_json`), bytes as
    they are."""
    if value is None or isinstance(value, bytes):
        return value
    return compact_json(value)


def decode_json(record: ConsumerRecord) -> Any:
    """Decode a consumed record's value as JSON."""
    return json.loads(record.value)


async def create_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int = 8,
    *,
    replication_factor: int = 1,
    config: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
) -> None:
    """Create ``names`` with ``partitions`` partitions; existing topics are left alone.

    Returns once the broker reports a leader for every partition of every topic, so producers
    and consumers started right after do not race topic creation.
    """
    names = list(dict.fromkeys(names))
    if not names:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        response = await admin.create_topics(
            [
                NewTopic(n, partitions, replication_factor, topic_configs=dict(config or {}))
                for n in names
            ]
        )
        errors = [
            f"{t['topic']}: error {t['error_code']} {t['error_message'] or ''}".strip()
            for t in response.to_object()["topic_errors"]
            if t["error_code"] not in (0, _TOPIC_ALREADY_EXISTS)
        ]
        if errors:
            raise RuntimeError("could not create topics: " + "; ".join(errors))

        deadline = time.monotonic() + timeout_s
        while True:
            described = await admin.describe_topics(names)
            pending = [
                t["topic"]
                for t in described
                if t["error_code"] != 0
                or not t["partitions"]
                or any(p["leader"] < 0 for p in t["partitions"])
            ]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics without leaders after {timeout_s} s: {pending}")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


BOOTSTRAP_WAIT_S = 90.0
"""How long a test's client keeps trying to reach a broker that is down (the chaos run
restarts it at random moments): as a platform's client would, not failing at once."""


async def started(make: Callable[[], AIOKafkaProducer]) -> AIOKafkaProducer:
    """A started producer from ``make``, retrying for :data:`BOOTSTRAP_WAIT_S` while no
    broker can be reached (aiokafka's bootstrap fails at once; a failed one is closed)."""
    deadline = time.monotonic() + BOOTSTRAP_WAIT_S
    while True:
        producer = make()
        try:
            await producer.start()
            return producer
        except KafkaConnectionError:
            await producer.stop()
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1.0)


async def produce_json(
    bootstrap: str,
    topic: str,
    records: Sequence[tuple[str | None, JsonValue | None]],
    *,
    partition: int | None = None,
    headers: Sequence[tuple[str, bytes]] | None = None,
    **producer_kwargs: Any,
) -> list[RecordMetadata]:
    """Produce ``(key, value)`` records in order and wait until all are acknowledged.

    Keys are UTF-8 encoded (Kafka's default partitioner hashes them, so one key always lands
    in one partition, in order); dict values become JSON, bytes go as they are, ``None`` is a
    tombstone. ``acks="all"`` and idempotence are on by default; ``producer_kwargs`` go to
    ``AIOKafkaProducer``. Returns the record metadata (partition, offset) in input order.
    """
    options: dict[str, Any] = {"acks": "all", "enable_idempotence": True, "linger_ms": 5}
    options.update(producer_kwargs)
    producer = await started(lambda: AIOKafkaProducer(bootstrap_servers=bootstrap, **options))
    try:
        futures = [
            await producer.send(
                topic,
                value=encode_value(value),
                key=None if key is None else key.encode(),
                partition=partition,
                headers=list(headers) if headers else None,
            )
            for key, value in records
        ]
        return list(await asyncio.gather(*futures))
    finally:
        await producer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str, deadline: float) -> set[int]:
    """The partitions of ``topic`` (none if the broker names none by ``deadline``)."""
    # Without a subscription the consumer tracks no topic metadata; ask for this topic's
    # (aiokafka has no public call for that: consumer.topics() does not update the cache).
    client = consumer._client
    client.add_topic(topic)
    partitions = consumer.partitions_for_topic(topic)
    while not partitions:
        if time.monotonic() > deadline:
            return set()
        await client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await asyncio.sleep(0.1)
    return set(partitions)


async def consume_all(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[ConsumerRecord]], bool] | None = None,
    timeout_s: float = 10.0,
    isolation_level: str = "read_committed",
    complete: bool = False,
    **consumer_kwargs: Any,
) -> list[ConsumerRecord]:
    """Read ``topic`` from the earliest offset of every partition.

    Uses a fresh, unique group id (no committed offsets, nothing committed back) and
    assigns all partitions directly, so no group rebalance is waited for.

    Stops when ``until(records_so_far)`` returns true; without ``until``, when every partition
    has been read up to the end offset seen at the start (the last stable offset with
    ``isolation_level="read_committed"``). Returns what was read by ``timeout_s`` otherwise
    (the caller asserts on the result), or raises :class:`TimeoutError` when ``complete``
    asks for every record. Records are in per-partition offset order.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"segstream-test-{uuid.uuid4().hex}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=isolation_level,
        **consumer_kwargs,
    )
    await consumer.start()
    deadline = time.monotonic() + timeout_s
    records: list[ConsumerRecord] = []
    try:
        partitions = await _partitions(consumer, topic, deadline)
        if not partitions:
            return records
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end_offsets: dict[TopicPartition, int] = (
            await consumer.end_offsets(tps) if until is None else {}
        )

        async def done() -> bool:
            if until is not None:
                return until(records)
            for tp, end in end_offsets.items():
                if await consumer.position(tp) < end:
                    return False
            return True

        while not await done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if complete:
                    raise TimeoutError(f"{topic}: {len(records)} records read in {timeout_s} s")
                break
            batches = await consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000))
            for tp in sorted(batches, key=lambda tp: tp.partition):
                records.extend(batches[tp])
        return records
    finally:
        await consumer.stop()


async def settled(
    bootstrap: str, topic: str, *, quiet_s: float = 3.0, within_s: float = 60.0
) -> list[ConsumerRecord]:
    """Every record of ``topic`` once nothing was added to it for ``quiet_s`` (a worker may
    go on writing after its last input, e.g. a model's pass moving customers); fails if
    records are still coming after ``within_s``."""
    deadline = time.monotonic() + within_s
    records = await consume_all(bootstrap, topic, timeout_s=30)
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet_s)
        again = await consume_all(bootstrap, topic, timeout_s=30)
        if len(again) == len(records):
            return again
        records = again
    raise AssertionError(f"{topic}: records still coming after {within_s:g} s ({len(records)})")


async def end_offsets(
    bootstrap: str, topics: Iterable[str], timeout_s: float = 10.0
) -> dict[str, int]:
    """Each topic's end offsets summed over its partitions: how many offsets were ever
    written to it (0 for a topic the broker does not name by ``timeout_s``)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    deadline = time.monotonic() + timeout_s
    try:
        found: dict[str, int] = {}
        for topic in topics:
            partitions = await _partitions(consumer, topic, deadline)
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
            found[topic] = sum(ends.values())
        return found
    finally:
        await consumer.stop()


async def read_table(
    settings: Settings, table: str, timeout_s: float = 30, readable: bool = True
) -> dict[str, Any]:
    """Latest committed value per key of a worker table (read back from its changelog);
    customers in their readable form (:meth:`CustomerState.to_json`), or as states."""
    latest: dict[str, bytes | None] = {}
    topic = changelog_topic(settings, table)
    for record in await consume_all(settings.kafka_bootstrap, topic, timeout_s=timeout_s):
        latest[record.key.decode()] = record.value
    codec = CODECS[table]
    decoded = {key: codec.decode(key, raw) for key, raw in latest.items() if raw is not None}
    if table == "customers" and readable:
        return {key: state.to_json() for key, state in decoded.items()}
    return decoded


def send_events(settings: Settings, events: Sequence[Mapping[str, Any]]) -> None:
    """Publish input events, each to its type's topic, from synchronous test code."""
    asyncio.run(publish([(role_for(event), event) for event in events], settings))
