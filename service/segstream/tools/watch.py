"""``segstream watch``: print segment changes as they happen (what the demo shows).

Reads the segment-change topic with a real Kafka consumer and prints one line per
change, e.g. ``shop coffee-roaster-1 · customer c-0042 · rfm: Promising → Loyal``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

from aiokafka import AIOKafkaConsumer

from segstream.settings import ConfigError, Settings, load_settings
from segstream.stream.kafka import connection_options
from segstream.tools.command import parser_for


def describe(change: dict[str, Any]) -> str:
    """One human line for a segment-change or segment-formed payload.

    >>> describe({"kind": "segment_changed", "shop_id": "tea-1", "customer_id": "c-7",
    ...           "model": "rfm", "previous": "Promising", "current": "Loyal"})
    'shop tea-1 · customer c-7 · rfm: Promising → Loyal'
    """
    if change.get("kind") == "segment_formed":
        return (
            f"shop {change['shop_id']} · new {change['model']} group {change['segment']}: "
            f"{change['description']} ({change['size']} customers)"
        )
    return (
        f"shop {change['shop_id']} · customer {change['customer_id']} · {change['model']}: "
        f"{change['previous'] or '—'} → {change['current'] or '—'}"
    )


FIRST_CHANGE_WAIT_S = 30.0
"""Least quiet time before the first change ends a watch with ``idle_exit`` (a worker
starting up, a publisher not sending yet)."""


async def watch(
    settings: Settings, seconds: float, every: int, from_start: bool, idle_exit: float | None
) -> Counter[str]:
    """Print every ``every``-th change for at most ``seconds`` (or until nothing came for
    ``idle_exit`` seconds; before the first change, for at least
    :data:`FIRST_CHANGE_WAIT_S`: a topic that stays silent, as when the worker counts a
    history it already holds as duplicates, ends the watch as well); return counts per
    model."""
    consumer = AIOKafkaConsumer(
        settings.topic("segment_changes"),
        **connection_options(settings),
        group_id=None,
        auto_offset_reset="earliest" if from_start else "latest",
    )
    await consumer.start()
    counts: Counter[str] = Counter()
    last_seen = time.monotonic()
    deadline, quiet = last_seen + seconds, idle_exit and max(idle_exit, FIRST_CHANGE_WAIT_S)
    try:
        while time.monotonic() < deadline:
            if quiet and time.monotonic() - last_seen > quiet:
                break
            batches = await consumer.getmany(timeout_ms=500)
            if batches:
                last_seen, quiet = time.monotonic(), idle_exit
            for records in batches.values():
                for record in records:
                    change = json.loads(record.value)
                    counts[change["model"]] += 1
                    if sum(counts.values()) % every == 0 or change.get("kind") == "segment_formed":
                        print(describe(change), flush=True)
    finally:
        await consumer.stop()
    return counts


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = parser_for("watch", __doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to watch")
    parser.add_argument("--every", type=int, default=1, help="print every Nth change")
    parser.add_argument("--from-start", action="store_true", help="replay the topic from start")
    parser.add_argument("--idle-exit", type=float, help="stop after this many quiet seconds")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.every < 1:
        parser.error("--seconds must be positive and --every at least 1")
    try:
        settings = load_settings()
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    counts = asyncio.run(watch(settings, args.seconds, args.every, args.from_start, args.idle_exit))
    summary = ", ".join(f"{model}={count}" for model, count in sorted(counts.items()))
    print(f"watch: {sum(counts.values())} segment changes ({summary or 'none'})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
