"""Platforms' producers as they are: events keyed by ``shop_id`` with librdkafka's default
partitioner (kcat's, confluent-kafka's: CRC32, not Java's murmur2) land in other partitions
than the shop's, and records framed for a schema registry carry 5 bytes before their JSON;
both are processed all the same.

One worker on four partitions. Three shops' histories are published four ways: kcat with
its defaults (and a third of them again through kcat with each compression codec: a snappy
batch once ended the worker, aiokafka having no codec library; aio-libs/aiokafka #922),
confluent-kafka's ``Producer`` with its defaults, the same with every value
framed by Confluent's ``JSONSerializer`` (against the schemas as ``segstream.tools.registry``
registers them; the registry is the library's in-memory one), and segstream's own
publisher (murmur2, as a control). Every customer's facts must equal the in-process
pipeline's over the same events, nothing is dead-lettered, and the records that landed
outside their shop's partition are the ones counted ``rerouted``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import zlib
from datetime import date
from typing import Any

import pytest

from harness.kafka_io import consume_all, read_table
from harness.workers import WorkerProcess, isolated_settings, wait_consumed
from segstream.domain.contracts import role_for, schema_path
from segstream.settings import Settings
from segstream.state.keyspace import shop_partition
from segstream.tools.publish import publish
from segstream.tools.registry import ENVELOPE_SUBJECT, register
from segstream.tools.simulation.generator import SimulationConfig, generate
from segstream.tools.simulation.shops import shops_per_kind
from tests.chaos import facts, reference

Event = dict[str, Any]


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str) -> Settings:
    return isolated_settings(kafka_bootstrap, "producers")


def history(seed: int) -> list[Event]:
    simulation = generate(
        SimulationConfig(
            seed=seed,
            shops=tuple(shops_per_kind(1)[:3]),
            customers_per_shop=15,
            start=date(2025, 5, 1),
            days=90,
        )
    )
    return sorted(simulation.events, key=lambda event: event["occurred_at"])


def with_prefix(events: list[Event], prefix: str) -> list[Event]:
    """The same history for other shops (``<prefix>-<shop>``), so each producer has its own."""
    return [{**event, "shop_id": f"{prefix}-{event['shop_id']}"} for event in events]


def crc32_partition(key: str, partitions: int) -> int:
    """librdkafka's default partitioner (consistent_random) for a keyed record."""
    return zlib.crc32(key.encode()) % partitions


CODECS = ("gzip", "snappy", "lz4", "zstd")
"""Every compression a producer may use (Kafka's record batch codecs)."""


def with_kcat(settings: Settings, events: list[Event], codec: str = "none") -> None:
    """Each event through ``kcat -P -K '|'`` with kcat's default partitioner, its record
    batches compressed with ``codec``."""
    kcat = shutil.which("kcat")
    assert kcat is not None, "kcat not found: apt-get install kcat (.ci/run does)"
    for role in sorted({role_for(event) for event in events}):
        lines = "".join(
            f"{event['shop_id']}|{json.dumps(event, separators=(',', ':'))}\n"
            for event in events
            if role_for(event) == role
        )
        topic = settings.topic(role)
        command = [kcat, "-P", "-b", settings.kafka_bootstrap, "-t", topic, "-K|", "-z", codec]
        subprocess.run(command, input=lines.encode(), check=True, timeout=60)


def with_confluent_kafka(settings: Settings, events: list[Event]) -> None:
    """Each event through confluent-kafka's ``Producer`` with its defaults."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for event in events:
        producer.produce(settings.topic(role_for(event)), json.dumps(event), key=event["shop_id"])
        producer.poll(0)
    assert producer.flush(30) == 0


def with_registry_framing(settings: Settings, events: list[Event]) -> None:
    """Each event framed by Confluent's ``JSONSerializer`` (magic byte, schema id, JSON)
    against the schemas as ``segstream.tools.registry`` registers them, sent by
    confluent-kafka's ``Producer`` with its defaults."""
    from confluent_kafka import Producer
    from confluent_kafka.schema_registry import Schema, SchemaReference
    from confluent_kafka.schema_registry._sync.mock_schema_registry_client import (
        MockSchemaRegistryClient,
    )
    from confluent_kafka.schema_registry.json_schema import JSONSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    client = MockSchemaRegistryClient({"url": "mock://platform"})
    register(client, settings)
    reference = SchemaReference("envelope.json", ENVELOPE_SUBJECT, 1)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for event in events:
        text = schema_path(event["type"]).read_text(encoding="utf-8")
        serializer = JSONSerializer(Schema(text, "JSON", [reference]), client)
        topic = settings.topic(role_for(event))
        value = serializer(event, SerializationContext(topic, MessageField.VALUE))
        producer.produce(topic, value, key=event["shop_id"])
        producer.poll(0)
    assert producer.flush(30) == 0


def test_librdkafka_producers_default_partitioners_are_processed(
    settings: Settings, worker: WorkerProcess
) -> None:
    base = history(seed=21)
    by_kcat, by_librdkafka = with_prefix(base, "kcat"), with_prefix(base, "ck")
    by_murmur2, framed = with_prefix(base, "java"), with_prefix(base, "sr")
    compressed = {codec: with_prefix(base[::3], codec) for codec in CODECS}
    with_kcat(settings, by_kcat)
    for codec, events in compressed.items():  # a snappy batch once ended the worker
        with_kcat(settings, events, codec)
    with_confluent_kafka(settings, by_librdkafka)
    with_registry_framing(settings, framed)
    asyncio.run(publish([(role_for(event), event) for event in by_murmur2], settings))
    asyncio.run(wait_consumed(settings, worker))

    everything = by_kcat + by_librdkafka + by_murmur2 + framed
    everything += [event for events in compressed.values() for event in events]
    expected = reference(settings, [(role_for(event), event) for event in everything])
    customers = asyncio.run(read_table(settings, "customers"))
    assert set(customers) == set(expected), "every customer, of every producer"
    for key, state in expected.items():
        assert facts(customers[key]) == facts(state), key
    letters = asyncio.run(consume_all(settings.kafka_bootstrap, settings.topic("dead_letters")))
    assert letters == []
    partitions = settings.topic_partitions
    by_librdkafka_partitioner = by_kcat + by_librdkafka + framed
    by_librdkafka_partitioner += [event for events in compressed.values() for event in events]
    misplaced = sum(
        1
        for event in by_librdkafka_partitioner
        if crc32_partition(event["shop_id"], partitions)
        != shop_partition(event["shop_id"], partitions)
    )
    assert misplaced > 0, "the test needs shops that librdkafka places elsewhere"
    assert worker.metric("segstream_events_total", outcome="rerouted") == misplaced
