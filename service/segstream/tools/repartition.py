"""``segstream repartition --to-prefix P --partitions N``: copy the input and
segment-definition topics to new topics with another partition count (step 1 of the
re-partitioning procedure in ``deploy/README.md``).

A shop's partition is Kafka's default partitioner over its id modulo the partition count,
for input topics and tables alike, so a new partition count needs new topics and a new
app that rebuilds its tables from them. This copies every record of the current topics
(``SEGSTREAM_TOPIC_PREFIX``) to the topics of ``--to-prefix``, which it creates with
``--partitions`` partitions, each record to the partition its shop hashes to there (a
definition record's key is ``<shop>|<segment>``: the shop decides). A shop's records keep
their order: they come from one source partition and go to one target partition. Records
are read ``read_committed`` up to the end offsets seen at the start, which are then
committed for the group :func:`progress_group`: run it again and it copies only what
arrived meanwhile.
"""

from __future__ import annotations

import asyncio
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from segstream.domain.contracts import INPUT_ROLES
from segstream.settings import DEFINITIONS_ROLE, ConfigError, Settings, load_settings
from segstream.state.keyspace import shop_of, shop_partition
from segstream.stream.kafka import connection_options
from segstream.stream.topics import ensure_topics
from segstream.tools.command import parser_for

ROLES = (*INPUT_ROLES, DEFINITIONS_ROLE)


def progress_group(target: Settings) -> str:
    """The consumer group whose committed offsets say how far the copy to ``target``'s
    topics got (a second run continues from there: nothing is copied twice)."""
    return f"repartition-{target.topic_prefix}"


async def copy_topics(source: Settings, target: Settings) -> dict[str, int]:
    """Create the target's topics and copy every role's records; records copied per topic."""
    await ensure_topics(target)
    producer = AIOKafkaProducer(**connection_options(target), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        copied = {}
        for role in ROLES:
            into = target.topic(role)
            copied[into] = await _copy(source, source.topic(role), target, into, producer)
        return copied
    finally:
        await producer.stop()


async def _copy(
    source: Settings, topic: str, target: Settings, into: str, producer: AIOKafkaProducer
) -> int:
    consumer = AIOKafkaConsumer(
        **connection_options(source),
        group_id=progress_group(target),
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            return 0
        # every topic has the app's partition count (the workers refuse to start otherwise)
        partitions = [TopicPartition(topic, p) for p in range(source.topic_partitions)]
        consumer.assign(partitions)
        for tp in partitions:  # where the last copy to this target ended, else the start
            done = await consumer.committed(tp)
            if done is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, done)
        ends = await consumer.end_offsets(partitions)
        copied = 0
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= ends[tp] or record.key is None:
                        continue  # past the snapshot, or unkeyed (invalid, dead-lettered)
                    shop = shop_of(record.key.decode())
                    partition = shop_partition(shop, target.topic_partitions)
                    await producer.send(into, record.value, key=record.key, partition=partition)
                    copied += 1
        await producer.flush()
        await consumer.commit({tp: ends[tp] for tp in partitions})
        return copied
    finally:
        await consumer.stop()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = parser_for("repartition", __doc__)
    parser.add_argument("--to-prefix", required=True, help="topic prefix of the new topics")
    parser.add_argument("--partitions", type=int, required=True, help="their partition count")
    args = parser.parse_args(argv)
    try:
        source = load_settings()
        target = source.model_copy(
            update={"topic_prefix": args.to_prefix, "topic_partitions": args.partitions}
        )
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    if args.to_prefix == source.topic_prefix or args.partitions < 1:
        print(
            "repartition: --to-prefix must differ from the current prefix, --partitions >= 1",
            file=sys.stderr,
        )
        return 2
    counts = asyncio.run(copy_topics(source, target))
    for topic, count in counts.items():
        print(f"repartition: {count} records -> {topic}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
