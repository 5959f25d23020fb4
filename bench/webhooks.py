"""Webhook delivery benchmark: p99 from a change on the change topic to its endpoint's
receipt, at a steady rate, through a real ``segstream webhooks`` process and a real broker.

Variants, each on fresh topics and a fresh consumer group (8 partitions), run one after
the other in one run:

- ``healthy``: ``--shops`` shops, each with one endpoint on a local aiohttp receiver;
- ``beside a dead endpoint``: the same, and every shop has a second endpoint that answers
  503 to everything (its lanes retry, then dead-letter): the healthy endpoints' latency
  should not move (a failing endpoint never delays the others).

Changes (``segment_changed`` records as the worker writes them, ``--customers`` per shop)
are produced at ``--rate`` per second in 50 ms slices (what the worker's batch commits look
like), each with its record timestamp; latency = the receiver's clock at the first 2xx'd
receipt minus that timestamp (one machine, one clock). The first ``--warmup`` seconds are
left out of the percentiles. Endpoints are registered by writing their records to the
webhooks topic, as the API does.

Run: ``.venv/bin/python -m bench.webhooks [--rate 200] [--seconds 30] [--port 29892]``
(``--bootstrap HOST:PORT`` uses a running broker instead of starting one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiokafka import AIOKafkaProducer

from bench.common import RUNS_DIR, code_version, percentile, say, table
from harness.broker import fresh_broker
from harness.workers import REPO_ROOT, free_port, settings_env
from segstream.settings import Settings
from segstream.stream.topics import ensure_topics
from segstream.webhooks.directory import WebhookWriter
from segstream.webhooks.registry import Webhook
from segstream.webhooks.signing import new_secret

DEFAULT_PORT = 29892
PARTITIONS = 8
SLICE_S = 0.05


@dataclass
class Receiver:
    """Local endpoints: ``/ok/<shop>`` answers 200 and notes when each id first arrived,
    ``/down`` answers 503."""

    port: int = field(default_factory=free_port)
    first: dict[str, float] = field(default_factory=dict)
    posts: int = 0
    runner: web.AppRunner | None = None

    async def ok(self, request: web.Request) -> web.Response:
        await request.read()
        self.posts += 1
        self.first.setdefault(request.headers["webhook-id"], time.time())
        return web.Response(text="ok")

    async def down(self, request: web.Request) -> web.Response:
        await request.read()
        self.posts += 1
        return web.Response(status=503, text="down")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/ok/{shop}", self.ok)
        app.router.add_post("/down", self.down)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def change(shop: str, customer: int, number: int) -> dict[str, object]:
    """A ``segment_changed`` record like the worker's."""
    return {
        "schema_version": 1,
        "kind": "segment_changed",
        "event_id": str(uuid.uuid4()),
        "shop_id": shop,
        "customer_id": f"c-{customer:05d}",
        "model": "lifecycle",
        "previous": "active",
        "current": "at_risk" if number % 2 else "active",
        "changed_at": "2026-12-07T11:00:00Z",
        "cause": {"kind": "event", "event_id": str(uuid.uuid4()), "event_type": "order"},
        "marketing_opt_in": True,
    }


async def register(settings: Settings, receiver: Receiver, shops: list[str], dead: bool) -> None:
    writer = WebhookWriter(settings)
    try:
        for number, shop in enumerate(shops):
            urls = [f"http://127.0.0.1:{receiver.port}/ok/{shop}"]
            if dead:
                urls.append(f"http://127.0.0.1:{receiver.port}/down")
            for index, url in enumerate(urls):
                webhook_id = f"wh_{number:08x}{index:08x}"
                hook = Webhook(shop, webhook_id, url, new_secret(), 1)
                await writer.send(shop, webhook_id, json.dumps(hook.to_record()).encode())
    finally:
        await writer.close()


def delivery_process(settings: Settings, log: Path, metrics_port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGSTREAM_")}
    env |= settings_env(settings)
    env |= {
        "SEGSTREAM_WEBHOOK_METRICS_PORT": str(metrics_port),
        "SEGSTREAM_BROKER_SESSION_TIMEOUT_S": "6",
        "SEGSTREAM_BROKER_REQUEST_TIMEOUT_S": "20",
        "SEGSTREAM_WEBHOOK_TIMEOUT_S": "2",
        "SEGSTREAM_WEBHOOK_MAX_ATTEMPTS": "4",
        "SEGSTREAM_WEBHOOK_BACKOFF_MAX_S": "2",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "segstream", "webhooks"],
        cwd=REPO_ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def until(done: object, limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while not done():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"bench.webhooks: {what} not within {limit_s:g} s")
        await asyncio.sleep(0.05)


async def produce(
    producer: AIOKafkaProducer, topic: str, shops: list[str], args: argparse.Namespace
) -> dict[str, float]:
    """Changes at ``args.rate`` per second for ``args.seconds``: id -> record timestamp."""
    sent: dict[str, float] = {}
    per_slice = args.rate * SLICE_S
    started, owed, number = time.monotonic(), 0.0, 0
    while time.monotonic() - started < args.seconds:
        owed += per_slice
        while owed >= 1:
            shop = shops[number % len(shops)]
            record = change(shop, (number // len(shops)) % args.customers, number)
            stamp = time.time()
            sent[str(record["event_id"])] = stamp
            await producer.send(
                topic,
                json.dumps(record).encode(),
                key=shop.encode(),
                timestamp_ms=int(stamp * 1000),
            )
            owed -= 1
            number += 1
        await producer.flush()
        await asyncio.sleep(max(0.0, started + (number / args.rate) - time.monotonic()))
    await producer.flush()
    return sent


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith((name + "{", name + " "))
    )


async def variant(bootstrap: str, name: str, dead: bool, args: argparse.Namespace) -> list[str]:
    stem = f"bench-webhooks-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        kafka_bootstrap=bootstrap,
        app_id=stem,
        topic_prefix=f"{stem}.",
        topic_partitions=PARTITIONS,
    )
    await ensure_topics(settings)
    shops = [f"shop-{n:03d}" for n in range(args.shops)]
    receiver = Receiver()
    await receiver.start()
    await register(settings, receiver, shops, dead)
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = delivery_process(settings, RUNS_DIR / f"{stem}.log", port)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, enable_idempotence=True)
    await producer.start()
    topic = settings.topic("segment_changes")
    try:
        probe = change(shops[0], 0, 0)
        await producer.send_and_wait(topic, json.dumps(probe).encode(), key=shops[0].encode())
        await until(lambda: probe["event_id"] in receiver.first, 60, "the first delivery")
        say(f"{name}: delivering; {args.rate:g} changes/s for {args.seconds:g} s")
        sent = await produce(producer, topic, shops, args)
        await until(lambda: set(sent) <= set(receiver.first), 60, "every change delivered")
        attempts = metric(port, "segstream_webhook_attempts_total")
        dead_letters = metric(port, "segstream_webhook_dead_letters_total")
    finally:
        await producer.stop()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        await receiver.stop()
    cutoff = min(sent.values()) + args.warmup
    latencies = [receiver.first[i] - t for i, t in sent.items() if t >= cutoff]
    p = [percentile(latencies, q) * 1000 for q in (50, 95, 99)]
    return [
        name,
        f"{len(sent):,}",
        f"{len(sent) - len(set(sent) & set(receiver.first))}",
        *(f"{v:.0f}" for v in p),
        f"{max(latencies) * 1000:.0f}",
        f"{attempts:,.0f}",
        f"{dead_letters:,.0f}",
    ]


async def run(bootstrap: str, args: argparse.Namespace) -> None:
    rows = [await variant(bootstrap, "healthy", False, args)]
    rows.append(await variant(bootstrap, "beside a dead endpoint", True, args))
    headers = ["variant", "changes", "lost", "p50 ms", "p95 ms", "p99 ms", "max ms"]
    print(table([*headers, "POSTs", "dead letters"], rows))
    print(
        f"{args.rate:g} changes/s, {args.seconds:g} s (first {args.warmup:g} s left out), "
        f"{args.shops} shops, {PARTITIONS} partitions, {os.cpu_count()} CPUs, "
        f"code {code_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.webhooks", description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0, help="changes per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to produce")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds left out at first")
    parser.add_argument("--shops", type=int, default=10)
    parser.add_argument("--customers", type=int, default=100, help="customers per shop")
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="bench broker port")
    args = parser.parse_args()
    if args.bootstrap:
        asyncio.run(run(args.bootstrap, args))
        return
    with fresh_broker(args.port, "bench-broker") as broker:
        asyncio.run(run(broker.bootstrap, args))


if __name__ == "__main__":
    main()
