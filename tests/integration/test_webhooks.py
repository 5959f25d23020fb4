"""Webhooks end to end: an endpoint registered over a real worker's API, a real local HTTP
receiver that answers 500s, then times out, then recovers, while the worker and the
delivery process (``segstream webhooks``) are SIGKILLed and restarted. Every change on the
change topic reaches the receiver (a 2xx), none is lost, a repeat carries the same
``webhook-id`` and body, a customer's changes first arrive in topic order, and every
request's signature verifies with the reference implementation (``standardwebhooks``).

The receiver's faults are counted in requests, not timed: the run is the same every time.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from standardwebhooks import Webhook as ReferenceWebhook

from harness.kafka_io import consume_all
from harness.workers import WorkerProcess, free_port, isolated_settings, wait_consumed
from segstream.settings import Settings
from segstream.stream.lag import consumer_lag
from segstream.stream.topics import ensure_topics
from segstream.tools.publish import publish
from segstream.tools.simulation.generator import SimulationConfig, generate
from segstream.tools.simulation.shops import shops_per_kind
from segstream.webhooks.directory import WebhookWriter
from segstream.webhooks.registry import Webhook
from segstream.webhooks.signing import new_secret

pytestmark = pytest.mark.asyncio(loop_scope="session")

FAILING = 25
"""The receiver's first requests answered 500."""
HANGING = 8
"""The requests after those answered only after the delivery timeout (1 s)."""
DELIVERY_ENV = {
    "SEGSTREAM_WEBHOOK_TIMEOUT_S": "1",
    "SEGSTREAM_WEBHOOK_BACKOFF_BASE_S": "0.05",
    "SEGSTREAM_WEBHOOK_BACKOFF_MAX_S": "0.5",
    "SEGSTREAM_WEBHOOK_MAX_ATTEMPTS": "100",
    "SEGSTREAM_WEBHOOK_COMMIT_INTERVAL_S": "0.2",
    "SEGSTREAM_WEBHOOK_ALLOW_PRIVATE": "true",
    "SEGSTREAM_LOG_LEVEL": "warning",
}


@dataclass
class Received:
    """One request the receiver got, and what it answered."""

    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """A real aiohttp server on its own thread and loop (the test's calls to the worker
    block): 500 for the first FAILING requests, a hang past the timeout for the next
    HANGING, then 200."""

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self.lock:
            number = len(self.received)
            status = 500 if number < FAILING else 599 if number < FAILING + HANGING else 200
            self.received.append(Received(dict(request.headers), body, status))
        if status == 599:
            await asyncio.sleep(1.5)
            return web.Response(status=200, text="too late")
        return web.Response(status=status, text="ok" if status == 200 else "broken")

    async def fail(self, request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=500, text="always broken")

    def delivered(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.status == 200]

    def all(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    @classmethod
    def running(cls) -> Iterator[Receiver]:
        receiver = cls()
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/hook", receiver.handle)
        app.router.add_post("/fail", receiver.fail)
        runner = web.AppRunner(app, access_log=None)
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", receiver.port)
            loop.run_until_complete(site.start())
            started.set()
            loop.run_forever()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        started.wait(10)
        try:
            yield receiver
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from Receiver.running()


def delivery_process(settings: Settings, data_dir: Path) -> WorkerProcess:
    """``segstream webhooks`` for ``settings``, run like a worker (its log beside)."""
    process = WorkerProcess.for_settings(settings, data_dir, dict(DELIVERY_ENV))
    process.extra_env["SEGSTREAM_WEBHOOK_METRICS_PORT"] = str(process.web_port)  # metric()
    process.command = (*process.command[:-1], "webhooks")
    return process


def coffee_shop_outbox() -> tuple[str, list[Any]]:
    """Four months of one small coffee roaster: its id, and its events to publish."""
    simulation = generate(
        SimulationConfig(
            seed=5,
            shops=tuple(shops_per_kind(1)[:1]),
            customers_per_shop=30,
            start=date(2025, 8, 1),
            days=120,
        )
    )
    return simulation.events[0]["shop_id"], simulation.outbox()


async def wait_for(done: Any, what: str, *processes: WorkerProcess, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not done():
        for process in processes:
            process.assert_running()
        assert time.monotonic() < deadline, f"not reached in {limit} s: {what}"
        await asyncio.sleep(0.2)


async def test_every_change_reaches_a_flaky_receiver_through_kills_signed(
    kafka_bootstrap: str, tmp_path: Path, receiver: Receiver
) -> None:
    started = time.monotonic()
    settings = isolated_settings(kafka_bootstrap, "webhooks")
    await ensure_topics(settings)
    shop_id, outbox = coffee_shop_outbox()
    allow = {"SEGSTREAM_WEBHOOK_ALLOW_PRIVATE": "true"}
    first = WorkerProcess.for_settings(settings, tmp_path / "worker-1", allow)
    second = WorkerProcess.for_settings(settings, tmp_path / "worker-2", allow)
    sender = delivery_process(settings, tmp_path / "delivery-1")
    successor = delivery_process(settings, tmp_path / "delivery-2")
    try:
        first.start()
        first.wait_ready(timeout_s=60)
        path = f"/shops/{shop_id}/webhooks"
        status, created = await asyncio.to_thread(
            first.request_json, "POST", path, {"url": receiver.url}
        )
        assert status == 201, created
        secret = created["secret"]
        assert secret.startswith("whsec_")
        status, listed = await asyncio.to_thread(first.request_json, "GET", path)
        assert status == 200 and "secret" not in json.dumps(listed), listed
        await produce_malformed_webhook_records(settings)
        sender.start()

        half = len(outbox) // 2
        await publish(outbox[:half], settings)
        await wait_for(lambda: len(receiver.delivered()) >= 20, "20 deliveries", first, sender)
        sender.kill()  # mid-stream, offsets of delivered changes maybe uncommitted
        first.kill()  # mid-stream too: its open transactions are aborted
        successor.start()
        second.start()
        await publish(outbox[half:], settings)
        second.wait_ready(timeout_s=60)
        await wait_consumed(settings, second, timeout_s=60)

        changes = [
            json.loads(r.value)
            for r in await consume_all(kafka_bootstrap, settings.topic("segment_changes"))
            if r.value and json.loads(r.value).get("shop_id") == shop_id
        ]
        expected = {change["event_id"] for change in changes}
        assert len(expected) > 100, len(expected)

        def ids() -> set[str]:
            return {r.headers["webhook-id"] for r in receiver.delivered()}

        await wait_for(lambda: expected <= ids(), "every change delivered", second, successor)
        assert successor.metric("segstream_webhook_records_skipped_total") == 2
        assert successor.metric("segstream_webhook_deliveries_total", outcome="delivered") > 0
        dead = settings.topic("webhook_dead_letters")
        assert await consume_all(kafka_bootstrap, dead) == []
        await survives_the_worker_and_is_deleted(second, path, created)
    finally:
        for process in (first, second, sender, successor):
            process.kill()
    assert len(receiver.all()) >= FAILING + HANGING + len(expected), "the faults were served"
    verify_every_request(receiver.all(), secret, changes)
    print(
        f"webhook chaos: changes {len(expected)}, requests {len(receiver.all())}, "
        f"delivered {len(receiver.delivered())}, distinct {len(ids())}, duplicates by id "
        f"{len(receiver.delivered()) - len(ids())}, lost "
        f"{len(expected - ids())}, {time.monotonic() - started:.1f} s"
    )


async def survives_the_worker_and_is_deleted(
    worker: WorkerProcess, path: str, created: dict[str, Any]
) -> None:
    """The worker that replaced the killed one reads the endpoint back from the compacted
    topic (no secret shown), replaces and deletes it."""
    one = f"{path}/{created['webhook_id']}"
    status, listed = await asyncio.to_thread(worker.request_json, "GET", path)
    assert status == 200 and [w["webhook_id"] for w in listed["webhooks"]] == [
        created["webhook_id"]
    ]
    assert created["secret"] not in json.dumps(listed)
    body = {"url": created["url"], "models": ["lifecycle"]}
    status, replaced = await asyncio.to_thread(worker.request_json, "PUT", one, body)
    assert status == 200 and replaced["version"] == 2, replaced
    status, deleted = await asyncio.to_thread(worker.request_json, "DELETE", one)
    assert status == 200 and deleted["status"] == "deleted", deleted
    status, gone = await asyncio.to_thread(worker.request_json, "GET", one)
    assert status == 404, gone


async def produce_malformed_webhook_records(settings: Settings) -> None:
    """Two records on the webhooks topic that are no endpoint: skipped, counted, no crash
    (the broker refuses a record without key on a compacted topic: that cannot happen)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        topic = settings.topic("webhooks")
        await producer.send_and_wait(topic, b"not json", key=b"shop|wh_0000000000000000")
        await producer.send_and_wait(topic, b'{"kind": "webhook"}', key=b"shop|wh_1")
    finally:
        await producer.stop()


def verify_every_request(requests: list[Received], secret: str, changes: list[Any]) -> None:
    """Every request signed (the reference implementation verifies it), its id the change's
    event id, a repeated id with the same body, and each customer's first deliveries in
    the order of the change topic."""
    reference = ReferenceWebhook(secret)
    bodies: dict[str, bytes] = {}
    for request in requests:
        payload = reference.verify(request.body, request.headers)
        message_id = request.headers["webhook-id"]
        assert payload["event_id"] == message_id
        assert bodies.setdefault(message_id, request.body) == request.body
    first_seen: dict[str, int] = {}
    for number, request in enumerate(r for r in requests if r.status == 200):
        first_seen.setdefault(request.headers["webhook-id"], number)
    by_customer: dict[str, list[int]] = {}
    for change in changes:
        if "customer_id" in change:  # segment_formed has none: its lane is the segment's
            by_customer.setdefault(change["customer_id"], []).append(first_seen[change["event_id"]])
    for customer, order in by_customer.items():
        assert order == sorted(order), f"{customer}: delivered out of order {order}"


async def test_an_endpoint_that_always_fails_gets_dead_letters_and_the_offsets_move(
    kafka_bootstrap: str, tmp_path: Path, receiver: Receiver
) -> None:
    """Through real Kafka: every change for an endpoint answering 500 ends on the webhook
    dead-letter topic with the change, the endpoint, the attempts and the last answer, and
    the group's committed offsets reach the end of the change topic."""
    settings = isolated_settings(kafka_bootstrap, "webhooks-dead")
    await ensure_topics(settings)
    hook = Webhook(
        "shop-1", "wh_00000000000000aa", receiver.url.replace("/hook", "/fail"), new_secret(), 1
    )
    writer = WebhookWriter(settings)
    await writer.send("shop-1", hook.webhook_id, json.dumps(hook.to_record()).encode())
    await writer.close()
    changes = [
        {"event_id": f"change-{n}", "shop_id": "shop-1", "customer_id": f"c-{n % 3}"}
        for n in range(12)
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for change in changes:
            value = json.dumps(change).encode()
            await producer.send_and_wait(settings.topic("segment_changes"), value, key=b"shop-1")
    finally:
        await producer.stop()
    sender = delivery_process(settings, tmp_path / "delivery")
    sender.extra_env["SEGSTREAM_WEBHOOK_MAX_ATTEMPTS"] = "2"
    topic = settings.topic("webhook_dead_letters")
    try:
        sender.start()
        letters: list[Any] = []

        async def read() -> None:
            letters[:] = [json.loads(r.value) for r in await consume_all(kafka_bootstrap, topic)]

        deadline = time.monotonic() + 60
        while len(letters) < len(changes):
            sender.assert_running()
            assert time.monotonic() < deadline, letters
            await read()
            await asyncio.sleep(0.5)
        group = f"{settings.app_id}-webhooks"
        lag: dict[Any, int] = {}
        while not lag or any(lag.values()):
            assert time.monotonic() < deadline, lag
            lag = await consumer_lag(kafka_bootstrap, group, [settings.topic("segment_changes")])
            await asyncio.sleep(0.5)
    finally:
        sender.kill()
    assert sorted(letter["change_id"] for letter in letters) == sorted(
        change["event_id"] for change in changes
    )
    letter = letters[0]
    assert letter["reason"] == "retries_exhausted" and letter["attempts"] == 2
    assert letter["webhook_id"] == hook.webhook_id and letter["last_status"] == 500
    assert letter["last_response"] == "always broken" and letter["change"]["shop_id"] == "shop-1"
