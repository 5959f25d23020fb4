"""The registered endpoints, as the compacted webhooks topic holds them.

Every reader (each worker's API, each delivery process) keeps the whole directory in
memory: a few endpoints per shop, read from the topic's beginning and then followed
(:class:`DirectoryFeed`). Records apply in offset order; one whose version is not above
the key's last is stale (a concurrent write that lost) and is ignored; a tombstone deletes.
A record that cannot be read is skipped with a log line and counted, never a crash.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from segstream.observability import telemetry
from segstream.observability.logs import get_logger
from segstream.settings import WEBHOOKS_ROLE, Settings
from segstream.state.keyspace import shop_partition
from segstream.stream.kafka import connection_options
from segstream.webhooks.registry import Webhook, from_record, record_key

log = get_logger(__name__)


class WebhookDirectory:
    """Live endpoints by shop, and the last version each key ever had."""

    def __init__(self) -> None:
        self.shops: dict[str, dict[str, Webhook]] = {}
        self.versions: dict[tuple[str, str], int] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> Webhook | None:
        """One record of the topic, in offset order; the endpoint it makes live, if any."""
        try:
            shop_id, webhook_id = (key or b"").decode().split("|", 1)
            webhook = None if value is None else from_record(_json(value))
        except (ValueError, UnicodeDecodeError) as error:
            telemetry.WEBHOOK_RECORDS_SKIPPED.inc()
            log.warning("webhook_record_skipped", reason=str(error)[:200])
            return None
        if webhook is None:
            self.shops.get(shop_id, {}).pop(webhook_id, None)
            return None
        if webhook.key != (shop_id, webhook_id):
            telemetry.WEBHOOK_RECORDS_SKIPPED.inc()
            log.warning("webhook_record_skipped", reason="key and value name other endpoints")
            return None
        if webhook.version <= self.versions.get(webhook.key, 0):
            return None
        self.versions[webhook.key] = webhook.version
        self.shops.setdefault(shop_id, {})[webhook_id] = webhook
        return webhook

    def of_shop(self, shop_id: str) -> list[Webhook]:
        """The shop's live endpoints, by id."""
        return sorted(self.shops.get(shop_id, {}).values(), key=lambda w: w.webhook_id)

    def get(self, shop_id: str, webhook_id: str) -> Webhook | None:
        """One live endpoint, or None."""
        return self.shops.get(shop_id, {}).get(webhook_id)

    def matching(self, change: Mapping[str, Any]) -> list[Webhook]:
        """The live endpoints ``change`` goes to."""
        shop = self.shops.get(str(change.get("shop_id")), {})
        return [webhook for webhook in shop.values() if webhook.matches(change)]

    def endpoints(self) -> int:
        """How many endpoints are live."""
        return sum(map(len, self.shops.values()))


def _json(value: bytes) -> dict[str, Any]:
    parsed = json.loads(value)
    if not isinstance(parsed, dict):
        raise ValueError("not a JSON object")
    return parsed


class DirectoryFeed:
    """Keeps a :class:`WebhookDirectory` current: reads the topic from its beginning
    (no consumer group: every reader needs every record), then follows it."""

    def __init__(self, settings: Settings, directory: WebhookDirectory) -> None:
        self.settings = settings
        self.directory = directory
        self.topic = settings.topic(WEBHOOKS_ROLE)
        self.caught_up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start following (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="webhook-directory")

    async def ready(self, timeout_s: float) -> bool:
        """Start, and wait until everything on the topic at start was read."""
        self.start()
        try:
            await asyncio.wait_for(self.caught_up.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def _follow(self) -> None:
        while True:
            try:
                await self._read()
            except KafkaError as error:
                log.warning("webhook_directory_retry", error=type(error).__name__)
                await asyncio.sleep(1.0)

    async def _read(self) -> None:
        consumer = AIOKafkaConsumer(
            **connection_options(self.settings), group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        try:
            partitions = [
                TopicPartition(self.topic, p) for p in range(self.settings.topic_partitions)
            ]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            while True:
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        self.directory.apply(record.key, record.value)
                if not self.caught_up.is_set() and await _reached(consumer, ends):
                    self.caught_up.set()
        finally:
            await consumer.stop()

    async def stop(self) -> None:
        """Stop following."""
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def _reached(consumer: AIOKafkaConsumer, ends: Mapping[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


class WebhookWriter:
    """Writes endpoint records to the webhooks topic in the shop's partition (one
    idempotent producer, started on first use)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topic(WEBHOOKS_ROLE)
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def send(self, shop_id: str, webhook_id: str, value: bytes | None) -> None:
        """Write one record and wait until the broker has it."""
        async with self._starting:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    **connection_options(self.settings), enable_idempotence=True, acks="all"
                )
                await producer.start()
                self._producer = producer
        partition = shop_partition(shop_id, self.settings.topic_partitions)
        key = record_key(shop_id, webhook_id)
        await self._producer.send_and_wait(self.topic, value, key=key, partition=partition)

    async def close(self) -> None:
        """Stop the producer."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()
