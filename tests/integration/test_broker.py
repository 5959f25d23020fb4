"""The test broker itself: real round trips with aiokafka (and kcat when installed).

These pin down what the rest of the suite relies on: keyed records keep their per-key order,
the default partitioner is the Java one, and transactions (needed for exactly-once processing)
work on a single broker.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections import defaultdict

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from harness.kafka_io import (
    consume_all,
    create_topics,
    decode_json,
    encode_value,
    produce_json,
)


def unique_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def test_keyed_json_round_trip(kafka_bootstrap: str) -> None:
    topic = unique_topic("roundtrip")
    await create_topics(kafka_bootstrap, [topic], partitions=4)
    records = [
        (f"customer-{i % 10}", {"seq": i, "customer": f"customer-{i % 10}", "amount": i * 1.5})
        for i in range(100)
    ]

    metadata = await produce_json(kafka_bootstrap, topic, records)
    consumed = await consume_all(kafka_bootstrap, topic, timeout_s=20)

    assert len(consumed) == 100
    # Exactly what was produced, each record where the producer was told it went.
    produced_at = {(m.partition, m.offset): rec for m, rec in zip(metadata, records, strict=True)}
    for record in consumed:
        key, value = produced_at[(record.partition, record.offset)]
        assert record.key == key.encode()
        assert decode_json(record) == value
    # One key, one partition; and per partition, offsets and send order agree.
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    seqs_by_partition: dict[int, list[int]] = defaultdict(list)
    offsets_by_partition: dict[int, list[int]] = defaultdict(list)
    for record in consumed:
        partitions_of_key[record.key].add(record.partition)
        seqs_by_partition[record.partition].append(decode_json(record)["seq"])
        offsets_by_partition[record.partition].append(record.offset)
    assert all(len(p) == 1 for p in partitions_of_key.values()), partitions_of_key
    assert len(partitions_of_key) == 10
    for partition, seqs in seqs_by_partition.items():
        assert seqs == sorted(seqs), f"partition {partition} out of send order"
        assert offsets_by_partition[partition] == list(range(len(seqs)))
    assert len(seqs_by_partition) > 1, "10 keys over 4 partitions should use several"


async def test_transactional_producer_and_read_committed(kafka_bootstrap: str) -> None:
    topic = unique_topic("txn")
    await create_topics(kafka_bootstrap, [topic], partitions=2)

    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        transactional_id=f"segstream-test-{uuid.uuid4().hex}",
        enable_idempotence=True,
        acks="all",
    )
    await producer.start()
    try:
        await producer.begin_transaction()
        for i in range(10):
            await producer.send(topic, key=f"k{i % 3}".encode(), value=encode_value({"n": i}))
        await producer.commit_transaction()

        await producer.begin_transaction()
        for i in range(10, 15):
            await producer.send(topic, key=f"k{i % 3}".encode(), value=encode_value({"n": i}))
        await producer.abort_transaction()

        async with producer.transaction():
            await producer.send_and_wait(topic, key=b"k0", value=encode_value({"n": 99}))
    finally:
        await producer.stop()

    committed = await consume_all(
        kafka_bootstrap, topic, isolation_level="read_committed", timeout_s=20
    )
    assert sorted(decode_json(r)["n"] for r in committed) == [*range(10), 99]

    # The aborted records are in the log; only read_committed hides them.
    everything = await consume_all(
        kafka_bootstrap,
        topic,
        until=lambda rs: len(rs) >= 16,
        timeout_s=20,
        isolation_level="read_uncommitted",
    )
    assert sorted(decode_json(r)["n"] for r in everything) == [*range(15), 99]


async def test_kcat_produce_aiokafka_consume(kafka_bootstrap: str) -> None:
    assert shutil.which("kcat"), "kcat is missing: .ci/run installs it (apt-get install kcat)"
    topic = unique_topic("kcat")
    partitions = 4
    await create_topics(kafka_bootstrap, [topic], partitions=partitions)
    records = [(f"shop-{i % 7}", {"seq": i, "shop": f"shop-{i % 7}"}) for i in range(50)]
    lines = "".join(f"{key}\t{json.dumps(value)}\n" for key, value in records)

    # librdkafka's default partitioner differs from the Java client's; murmur2_random is the
    # Java (and aiokafka, and faust) one, so the same key lands in the same partition.
    # Without idempotence librdkafka may retry a failed first batch (the topic's leader not yet
    # known, just after creation) behind later ones, reordering a key (librdkafka #1092;
    # Kafka's max.in.flight docs): a platform that needs publish order sets it, as here.
    process = await asyncio.create_subprocess_exec(
        "kcat",
        "-P",
        "-b",
        kafka_bootstrap,
        "-t",
        topic,
        "-K",
        "\t",
        "-X",
        "partitioner=murmur2_random",
        "-X",
        "acks=all",
        "-X",
        "enable.idempotence=true",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(lines.encode()), timeout=30)
    assert process.returncode == 0, (stdout + stderr).decode(errors="replace")

    consumed = await consume_all(kafka_bootstrap, topic, timeout_s=20)

    assert len(consumed) == 50
    assert sorted((r.key.decode(), decode_json(r)["seq"]) for r in consumed) == sorted(
        (key, value["seq"]) for key, value in records
    )
    partitioner = DefaultPartitioner()
    all_partitions = list(range(partitions))
    seqs_by_key: dict[str, list[int]] = defaultdict(list)
    for record in consumed:
        assert record.partition == partitioner(record.key, all_partitions, all_partitions)
        seqs_by_key[record.key.decode()].append(decode_json(record)["seq"])
    for key, seqs in seqs_by_key.items():
        assert seqs == sorted(seqs), f"{key} out of order"
