"""Raw aiokafka consume-and-produce (``python -m bench.baselines.aiokafka_relay``): what
the Python Kafka client alone does per record, with offsets committed after every fetch
batch's sends are acknowledged (at least once)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.baselines import baseline_parser


async def relay(args: argparse.Namespace) -> None:
    consumer = AIOKafkaConsumer(
        *args.topics,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            sends = [
                await producer.send(args.output, record.value, key=record.key)
                for records in batches.values()
                for record in records
            ]
            if sends:
                await asyncio.gather(*sends)
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = baseline_parser("python -m bench.baselines.aiokafka_relay").parse_args(argv)
    asyncio.run(relay(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
