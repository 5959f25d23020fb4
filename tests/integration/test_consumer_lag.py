"""Consumer lag measured from the real broker: produce, commit with a real consumer, compare."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from harness.kafka_io import create_topics, produce_json
from harness.workers import unique_name
from segstream.observability import telemetry
from segstream.stream import lag as lag_module
from segstream.stream.gaps import first_visible
from segstream.stream.lag import LagProbe, consumer_lag


async def commit(bootstrap: str, group_id: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit ``offsets`` for ``group_id`` the way a consumer that read that far does."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(n, "") for tp, n in offsets.items()})
    finally:
        await consumer.stop()


async def test_lag_is_end_offset_minus_committed(kafka_bootstrap: str) -> None:
    topic, group = unique_name("lag"), unique_name("lag-group")
    await create_topics(kafka_bootstrap, [topic], partitions=2)
    await produce_json(kafka_bootstrap, topic, [("k", {"n": n}) for n in range(10)], partition=0)
    await produce_json(kafka_bootstrap, topic, [("k", {"n": n}) for n in range(4)], partition=1)
    await commit(kafka_bootstrap, group, {TopicPartition(topic, 0): 6})

    lag = await consumer_lag(kafka_bootstrap, group, [topic])

    assert lag == {(topic, 0): 10 - 6, (topic, 1): 4}


async def test_missing_topics_are_skipped_and_not_created(kafka_bootstrap: str) -> None:
    topic, missing = unique_name("lag"), unique_name("lag-missing")
    await create_topics(kafka_bootstrap, [topic], partitions=1)
    await produce_json(kafka_bootstrap, topic, [("k", {"n": 1})])

    lag = await consumer_lag(kafka_bootstrap, unique_name("lag-group"), [topic, missing])

    assert lag == {(topic, 0): 1}
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        assert missing not in await admin.list_topics()
    finally:
        await admin.close()


async def test_probe_publishes_lag_and_follows_new_commits(kafka_bootstrap: str) -> None:
    topic, group = unique_name("lag"), unique_name("lag-group")
    await create_topics(kafka_bootstrap, [topic], partitions=1)
    await produce_json(kafka_bootstrap, topic, [("k", {"n": n}) for n in range(5)])
    probe = LagProbe({"bootstrap_servers": kafka_bootstrap}, group, [topic])
    try:
        await probe.update()
        first = telemetry.REGISTRY.get_sample_value(
            "segstream_consumer_lag_records", {"topic": topic, "partition": "0"}
        )
        await commit(kafka_bootstrap, group, {TopicPartition(topic, 0): 5})
        await probe.update()
        second = telemetry.REGISTRY.get_sample_value(
            "segstream_consumer_lag_records", {"topic": topic, "partition": "0"}
        )
    finally:
        await probe.stop()
    assert (first, second) == (5, 0)


async def test_a_trailing_commit_marker_is_no_lag_and_is_read_once(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic, group = unique_name("lag"), unique_name("lag-group")
    await create_topics(kafka_bootstrap, [topic], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=topic)
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"{}", partition=0)
    finally:
        await producer.stop()
    await commit(kafka_bootstrap, group, {TopicPartition(topic, 0): 1})  # the marker is at 1
    reads: list[int] = []

    async def counted(probe: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> int | None:
        reads.append(offset)
        return await first_visible(probe, tp, offset)

    monkeypatch.setattr(lag_module, "first_visible", counted)
    probe = LagProbe({"bootstrap_servers": kafka_bootstrap}, group, [topic])
    try:
        measured = [await probe.measure(), await probe.measure()]
    finally:
        await probe.stop()
    assert measured == [{(topic, 0): 0}] * 2
    assert reads == [1]


async def test_only_visible_records_past_the_committed_offset_are_waiting(
    kafka_bootstrap: str,
) -> None:
    """A tail of aborted records, longer than the lag check's slack, is a lag but nothing
    waiting (the stuck-input watchdog must not seek for it); a record after it is."""
    topic, group = unique_name("lag"), unique_name("lag-group")
    await create_topics(kafka_bootstrap, [topic], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=topic)
    await producer.start()
    try:
        await producer.begin_transaction()
        for _ in range(100):
            await producer.send(topic, b"{}", partition=0)
        await producer.abort_transaction()
        await commit(kafka_bootstrap, group, {TopicPartition(topic, 0): 0})
        probe = LagProbe({"bootstrap_servers": kafka_bootstrap}, group, [topic])
        try:
            aborted_only = await probe.measure()
            waiting_before = await probe.waiting((topic, 0))
            async with producer.transaction():
                await producer.send_and_wait(topic, b"{}", partition=0)
            await probe.measure()
            waiting_after = await probe.waiting((topic, 0))
        finally:
            await probe.stop()
    finally:
        await producer.stop()
    assert aborted_only[(topic, 0)] > 64
    assert (waiting_before, waiting_after) == (False, True)
