"""The transactional checkpoint on the real broker: atomic commits, fencing of a previous
owner, and the recovery patch that finds a transactional changelog's last visible record."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.types import TP

from harness.kafka_io import consume_all, create_topics
from harness.workers import isolated_settings
from segstream.stream import faust_patches
from segstream.stream.checkpoint import Checkpoint, FencedError, ProducerRecord, Work
from segstream.stream.kafka import connection_options

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def never(offsets: Mapping[TopicPartition, int]) -> None:
    raise AssertionError("exactly_once commits offsets in the transaction")


async def group_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in found.items()}


async def test_outputs_writes_and_offsets_commit_together_and_a_new_owner_fences_the_old(
    kafka_bootstrap: str,
) -> None:
    settings = isolated_settings(kafka_bootstrap, "ckpt")
    outputs, changelog, source = (f"{settings.topic_prefix}{n}" for n in ("out", "log", "in"))
    await create_topics(kafka_bootstrap, [outputs, changelog, source], partitions=4)
    old, new = Checkpoint(settings, never), Checkpoint(settings, never)

    def work(tag: bytes, offset: int) -> Work:
        return Work(
            1,
            outputs=[ProducerRecord(outputs, b"shop", tag)],
            writes=[ProducerRecord(changelog, b"k", tag, 1)],
            offsets={source: offset},
        )

    try:
        await old.assign({1})
        written = await old.commit(work(b"first", 10))
        assert written == {TopicPartition(changelog, 1): 0}
        await new.assign({1})  # takes partition 1 over: the old owner is fenced
        with pytest.raises(FencedError):
            await old.commit(work(b"zombie", 20))
        await new.commit(work(b"second", 15))
    finally:
        await old.close()
        await new.close()
    seen = [r.value for r in await consume_all(kafka_bootstrap, outputs, timeout_s=20)]
    assert seen == [b"first", b"second"]
    logged = [r.value for r in await consume_all(kafka_bootstrap, changelog, timeout_s=20)]
    assert logged == [b"first", b"second"]
    offsets = await group_offsets(kafka_bootstrap, settings.app_id)
    assert offsets == {TopicPartition(source, 1): 15}


async def test_an_owner_whose_transaction_failed_never_takes_the_partition_back(
    kafka_bootstrap: str,
) -> None:
    """A failed transaction parks the partition until the next assignment: the old owner
    starts no new producer, which would fence the new owner (chaos seed 13896: a worker
    cut off past its session timeout did, and committed from its stale tables)."""
    settings = isolated_settings(kafka_bootstrap, "park")
    # its abort on the stopped producer never answers: parked once the bound is over
    settings = settings.model_copy(
        update={"broker_request_timeout_s": 3.0, "broker_session_timeout_s": 3.0}
    )
    outputs, source = (f"{settings.topic_prefix}{n}" for n in ("out", "in"))
    await create_topics(kafka_bootstrap, [outputs, source], partitions=2)
    asked: list[int] = []
    old, new = Checkpoint(settings, never, asked.append), Checkpoint(settings, never)

    def work(tag: bytes, offset: int) -> Work:
        return Work(1, outputs=[ProducerRecord(outputs, b"shop", tag)], offsets={source: offset})

    try:
        await old.assign({1})
        await old.commit(work(b"first", 10))
        await old._producers[1].stop()  # its next transaction fails, and so does the abort
        with pytest.raises(FencedError):
            await old.commit(work(b"failed", 20))
        assert asked == [1] and old.partitions == set()
        await new.assign({1})
        await new.commit(work(b"second", 15))
        with pytest.raises(FencedError):
            await old.commit(work(b"zombie", 20))
        await new.commit(work(b"third", 18))  # still the owner: nobody took the id back
    finally:
        await old.close()
        await new.close()
    seen = [r.value for r in await consume_all(kafka_bootstrap, outputs, timeout_s=20)]
    assert seen == [b"first", b"second", b"third"]
    assert await group_offsets(kafka_bootstrap, settings.app_id) == {TopicPartition(source, 1): 18}


async def test_recovery_target_is_the_last_record_a_read_committed_reader_sees(
    kafka_bootstrap: str,
) -> None:
    settings = isolated_settings(kafka_bootstrap, "tail")
    topic = f"{settings.topic_prefix}changelog"
    await create_topics(kafka_bootstrap, [topic], partitions=3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=topic)
    await producer.start()
    try:
        async with producer.transaction():  # partition 0: 3 committed, then 2 aborted
            for _ in range(3):
                await producer.send_and_wait(topic, b"v", key=b"k", partition=0)
        await producer.begin_transaction()
        for _ in range(2):
            await producer.send_and_wait(topic, b"x", key=b"k", partition=0)
            await producer.send_and_wait(topic, b"x", key=b"k", partition=1)
        await producer.abort_transaction()  # partition 1: nothing but aborted records
    finally:
        await producer.stop()
    faust_patches.apply(connection_options(settings))
    ends = {TP(topic, 0): 7, TP(topic, 1): 3, TP(topic, 2): 0}
    visible = await faust_patches.last_visible_offsets({tp: e for tp, e in ends.items() if e})
    # partition 0: records 0-2, commit marker 3, aborted 4-5, abort marker 6
    assert visible == {TP(topic, 0): 2, TP(topic, 1): -1}
