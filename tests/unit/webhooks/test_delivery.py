"""The delivery process without Kafka: which changes go to which endpoints, what is
committed while one endpoint is stuck, dead letters (retries spent, queue full), malformed
change records, and a partition that moves to another process."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaTimeoutError

from segstream.observability import telemetry
from segstream.settings import Settings
from segstream.webhooks.endpoint import Attempt
from segstream.webhooks.registry import Webhook, record_key
from segstream.webhooks.service import Delivery

SHOP = "shop-1"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Kafka:
    """The consumer's commits and the producer's sends, as the delivery process makes them."""

    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append((topic, json.loads(value)))

    def committed(self, partition: int = 0) -> int | None:
        found = [c[tp] for c in self.commits for tp in c if tp.partition == partition]
        return found[-1] if found else None


class Receivers:
    """Endpoints by URL: ``ok``, ``down`` (503) or ``stuck`` (never answers)."""

    def __init__(self) -> None:
        self.got: dict[str, list[str]] = {}
        self.never = asyncio.Event()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Attempt:
        if "stuck" in url:
            await self.never.wait()
        if "down" in url:
            return Attempt(503, "5xx", "maintenance")
        self.got.setdefault(url, []).append(headers["webhook-id"])
        return Attempt(200, "2xx", "")


def delivery(**changes: Any) -> tuple[Delivery, Kafka, Receivers]:
    config = {
        "webhook_backoff_base_s": 0.001,
        "webhook_backoff_max_s": 0.002,
        "webhook_max_attempts": 3,
        "webhook_rate_per_s": 100_000.0,
        "webhook_burst": 10_000,
    }
    receivers, kafka = Receivers(), Kafka()
    process = Delivery(Settings(**(config | changes)), post=receivers.post)
    process.consumer = kafka
    process.producer = kafka
    return process, kafka, receivers


def register(process: Delivery, name: str, **filters: Any) -> Webhook:
    webhook_id = "wh_" + hashlib.sha256(name.encode()).hexdigest()[:16]
    hook = Webhook(SHOP, webhook_id, f"https://{name}.example/h", SECRET, 1, **filters)
    process.directory.apply(
        record_key(SHOP, hook.webhook_id), json.dumps(hook.to_record()).encode()
    )
    return hook


def record(offset: int, value: Any = None, **changes: Any) -> Any:
    change = {
        "event_id": f"change-{offset}",
        "shop_id": SHOP,
        "customer_id": f"c-{offset % 4}",
        "model": "lifecycle",
        "previous": None,
        "current": "new",
    } | changes
    raw = json.dumps(change).encode() if value is None else value
    return SimpleNamespace(offset=offset, value=raw, timestamp=int(time.time() * 1000))


async def settle(process: Delivery, done: Any, limit_s: float = 5.0) -> None:
    deadline = time.monotonic() + limit_s
    while not done():
        assert time.monotonic() < deadline, "not reached"
        await asyncio.sleep(0.005)
        await process.commit()


async def test_changes_go_to_the_matching_endpoints_and_their_offsets_are_committed() -> None:
    process, kafka, receivers = delivery()
    await process.on_partitions_assigned([TopicPartition(process.topic, 0)])
    register(process, "all")
    register(process, "rfm", models=("rfm",))
    for offset in range(10):
        process.dispatch(0, record(offset, model="rfm" if offset % 2 else "lifecycle"))
    process.dispatch(0, record(10, shop_id="another-shop"))
    await settle(process, lambda: len(receivers.got.get("https://all.example/h", [])) == 10)
    await settle(process, lambda: kafka.committed() == 11)
    assert receivers.got["https://rfm.example/h"] == [f"change-{n}" for n in range(1, 10, 2)]
    assert kafka.sent == []
    await process._close_endpoints()


async def test_a_stuck_endpoint_holds_the_commit_not_the_others() -> None:
    process, kafka, receivers = delivery()
    await process.on_partitions_assigned([TopicPartition(process.topic, 0)])
    register(process, "fine")
    register(process, "stuck")
    for offset in range(20):
        process.dispatch(0, record(offset))
    await settle(process, lambda: len(receivers.got.get("https://fine.example/h", [])) == 20)
    assert kafka.committed() in (None, 0)  # nothing past 0: unfinished for the stuck endpoint
    await process._close_endpoints()


async def test_retries_spent_and_a_full_queue_become_dead_letters_then_the_offset_moves() -> None:
    process, kafka, _ = delivery(webhook_queue_max=2, webhook_concurrency=1)
    await process.on_partitions_assigned([TopicPartition(process.topic, 0)])
    register(process, "down")
    before = telemetry.WEBHOOK_DEAD_LETTERS.labels(reason="queue_full")._value.get()
    for offset in range(5):
        process.dispatch(0, record(offset))
    await settle(process, lambda: len(kafka.sent) == 5)
    await settle(process, lambda: kafka.committed() == 5)
    reasons = sorted(letter["reason"] for _, letter in kafka.sent)
    assert reasons == ["queue_full"] * 3 + ["retries_exhausted"] * 2
    exhausted = next(letter for _, letter in kafka.sent if letter["reason"] == "retries_exhausted")
    assert exhausted["attempts"] == 3 and exhausted["last_status"] == 503
    assert exhausted["last_response"] == "maintenance" and exhausted["change"]["shop_id"] == SHOP
    assert exhausted["url"] == "https://down.example/h"
    assert {topic for topic, _ in kafka.sent} == {process.settings.topic("webhook_dead_letters")}
    after = telemetry.WEBHOOK_DEAD_LETTERS.labels(reason="queue_full")._value.get()
    assert after == before + 3
    await process._close_endpoints()


async def test_a_malformed_change_is_skipped_counted_and_committed_past() -> None:
    process, kafka, _ = delivery()
    await process.on_partitions_assigned([TopicPartition(process.topic, 0)])
    register(process, "all")
    before = telemetry.WEBHOOK_RECORDS_SKIPPED._value.get()
    process.dispatch(0, record(0, value=b"\xff not json"))
    process.dispatch(0, record(1, value=b'{"no": "event id"}'))
    process.dispatch(0, SimpleNamespace(offset=2, value=None, timestamp=0))  # a tombstone
    await settle(process, lambda: kafka.committed() == 3)
    assert telemetry.WEBHOOK_RECORDS_SKIPPED._value.get() == before + 3
    await process._close_endpoints()


async def test_a_revoked_partition_s_jobs_are_dropped_and_commit_nothing() -> None:
    process, kafka, receivers = delivery()
    partition = TopicPartition(process.topic, 0)
    await process.on_partitions_assigned([partition])
    register(process, "stuck")
    process.dispatch(0, record(0))
    await process.on_partitions_revoked([partition])
    receivers.never.set()  # the stuck POST answers after the partition left
    await asyncio.sleep(0.05)
    await process.commit()
    assert kafka.committed() in (None, 0) and process.progress == {}  # never past 0
    await process._close_endpoints()


class Flaky(Kafka):
    """A broker that refuses the first ``refusals`` dead letters and every commit."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        if self.refusals > 0:
            self.refusals -= 1
            raise KafkaTimeoutError()
        await super().send_and_wait(topic, value, key)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        raise CommitFailedError("the group rebalanced")


async def test_a_refused_dead_letter_is_sent_again_before_its_offset_counts() -> None:
    process, _, _ = delivery(webhook_queue_max=1, webhook_concurrency=1)
    flaky = Flaky(refusals=2)
    process.producer = flaky
    await process.on_partitions_assigned([TopicPartition(process.topic, 0)])
    register(process, "down")
    for offset in range(2):
        process.dispatch(0, record(offset))
    deadline = time.monotonic() + 5
    while len(flaky.sent) < 2:
        assert time.monotonic() < deadline, flaky.sent
        await asyncio.sleep(0.005)
    assert process.progress[0].committable() == 2 and flaky.refusals == 0
    await process._close_endpoints()


async def test_a_failed_commit_is_logged_and_the_process_goes_on() -> None:
    process, _, receivers = delivery()
    process.consumer = Flaky(refusals=0)
    await process.on_partitions_assigned([TopicPartition(process.topic, 0)])
    register(process, "fine")
    process.dispatch(0, record(0))
    await settle(process, lambda: len(receivers.got.get("https://fine.example/h", [])) == 1)
    assert process.committed == {} and process.progress[0].committable() == 1
    await process._close_endpoints()
