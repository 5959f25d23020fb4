"""End-to-end benchmark: the real broker, real worker processes, side by side in one run.

Variants (every run of one on fresh topics, a fresh consumer group and data dir, 8
partitions):

- ``memory, 1 worker``  (the baseline the ratios refer to);
- ``rocksdb, 1 worker`` (the production table store);
- ``memory, 2 workers`` (same app id: Kafka splits the partitions between them).

In each of ``--rounds`` rounds every variant runs once (each round in another order): the
worker(s) start and report ``/ready`` with a stable consumer group, then the first
``--events`` records of a simulated stream are published as fast as the broker takes them
(``--rate`` paces them instead).

- throughput = events / (first send -> the group's committed offsets reach the input
  topics' end offsets). Faust commits every ~2.8 s and the lag is polled every 0.25 s, so
  the interval includes up to ~3 s of commit delay; nothing is subtracted.
- latency, per segment change caused by an event = the change record's Kafka timestamp
  minus the causing input record's Kafka timestamp (both read back from the topics). When
  publishing outruns processing this is mostly time spent queued behind earlier records.
- processing mean = ``segstream_processing_seconds`` sum / count from each worker's
  ``/metrics``: wall time of one record inside the agent, emits included.

The table shows medians over rounds; ratios are medians of the within-round ratios.

Run: ``.venv/bin/python -m bench.end_to_end [--events 2500] [--rounds 2]`` (``--bootstrap
HOST:PORT`` uses a running broker instead of starting the bench broker).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Literal

from aiokafka import ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient

from bench.common import (
    RUNS_DIR,
    Progress,
    code_version,
    median_of,
    paired,
    rotated,
    say,
    simulated_records,
    summary,
    table,
    times,
)
from harness.broker import fresh_broker
from harness.kafka_io import consume_all
from harness.workers import WorkerProcess, metric_sum, stop_all
from segstream.settings import Settings
from segstream.stream.kafka import connection_options
from segstream.stream.lag import LagProbe
from segstream.stream.topics import ensure_topics, input_topics
from segstream.tools.publish import Record, publish

DEFAULT_PORT = 29192
PARTITIONS = 8
POLL_S = 0.25
READY_TIMEOUT_S = 120.0
READ_TIMEOUT_S = 60.0
SCRAPE_TIMEOUT_S = 10.0


class BenchError(RuntimeError):
    """Workers did not get ready or did not drain the input; the message carries their
    log tails."""


@dataclass(frozen=True)
class Variant:
    """One configuration to measure."""

    name: str
    store: Literal["memory", "rocksdb"]
    workers: int

    @property
    def slug(self) -> str:
        return f"{self.store}-{self.workers}w"


VARIANTS = (
    Variant("memory, 1 worker", "memory", 1),
    Variant("rocksdb, 1 worker", "rocksdb", 1),
    Variant("memory, 2 workers", "memory", 2),
)


@dataclass(frozen=True)
class Load:
    """What every variant is given: how many records, how fast, and how long to wait."""

    events: int
    rate: float | None
    timeout_s: float
    rounds: int


@dataclass(frozen=True)
class Measured:
    """What one variant's run gave."""

    variant: Variant
    events: int
    publish_s: float
    drain_s: float
    handled: float
    dead_lettered: float
    rebalances: float
    latencies_ms: list[float]
    timer_changes: int
    processing_means_ms: list[float]
    stages_ms: dict[str, float]
    """Mean ms per record in each stage over all workers (:data:`STAGES`)."""

    @property
    def events_per_s(self) -> float:
        return self.events / self.drain_s


async def run_variant(
    variant: Variant,
    records: Sequence[Record],
    bootstrap: str,
    run_dir: Path,
    load: Load,
) -> Measured:
    """Start the variant's workers, publish, wait for the commits, read the results back."""
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_bootstrap=bootstrap,
        app_id=f"bench-{variant.slug}-{tag}",
        topic_prefix=f"bench-{variant.slug}-{tag}.",
        topic_partitions=PARTITIONS,
        store=variant.store,
    )
    await ensure_topics(settings)
    folder = run_dir / f"{variant.slug}-{tag}"
    store: dict[str, str] = {"SEGSTREAM_STORE": variant.store}
    workers = [
        WorkerProcess.for_settings(settings, folder / f"w{n}", store, SCRAPE_TIMEOUT_S)
        for n in range(variant.workers)
    ]
    try:
        for worker in workers:
            worker.start()
        await wait_ready(workers, settings)
        publish_s, drain_s = await publish_and_drain(records, settings, load, workers)
        metrics = [worker.get_text("/metrics") for worker in workers]
    finally:
        stop_all(workers)
    latencies, timer_changes = await change_latencies(settings)
    return Measured(
        variant,
        len(records),
        publish_s,
        drain_s,
        summed(metrics, "segstream_events_total"),
        summed(metrics, "segstream_events_total", outcome="dead_lettered"),
        summed(metrics, "segstream_rebalances_total"),
        latencies,
        timer_changes,
        [processing_mean_ms(text) for text in metrics],
        stage_means_ms(metrics),
    )


async def wait_ready(workers: Sequence[WorkerProcess], settings: Settings) -> None:
    """Until every worker says ``/ready`` and the group is stable with all of them in it."""
    progress = Progress(f"waiting for {len(workers)} worker(s)")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        ready = [worker.ready() for worker in workers]
        if all(ready) and await group_is_stable(settings, len(workers)):
            return
        progress.update(sum(ready), "ready")
        await asyncio.sleep(0.5)
    tails = "\n".join(worker.log_tail() for worker in workers)
    raise BenchError(f"workers not ready after {READY_TIMEOUT_S:.0f} s\n{tails}")


async def group_is_stable(settings: Settings, members: int) -> bool:
    """The app's consumer group is ``Stable`` with exactly ``members`` members."""
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        responses = await admin.describe_consumer_groups([settings.app_id])
    finally:
        await admin.close()
    groups = [group for response in responses for group in response.to_object()["groups"]]
    return any(g["state"] == "Stable" and len(g["members"]) == members for g in groups)


async def publish_and_drain(
    records: Sequence[Record],
    settings: Settings,
    load: Load,
    workers: Sequence[WorkerProcess],
) -> tuple[float, float]:
    """Publish ``records``; seconds from the first send until published, and until the
    group has committed everything."""
    progress = Progress("publishing", len(records))
    first_send: list[float] = []

    def sent(count: int) -> None:
        if not first_send:
            first_send.append(time.monotonic())
        progress.update(count)

    await publish(records, settings, rate=load.rate, progress=sent)
    published = time.monotonic()
    await wait_until_committed(settings, workers, load.timeout_s)
    drained = time.monotonic()
    return published - first_send[0], drained - first_send[0]


async def wait_until_committed(
    settings: Settings, workers: Sequence[WorkerProcess], timeout_s: float
) -> None:
    """Poll the group's lag on the input topics until it is zero everywhere."""
    probe = LagProbe.from_settings(settings, input_topics(settings))
    progress = Progress("processing")
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            lag = sum((await probe.measure()).values())
            if lag == 0:
                return
            for worker in workers:
                worker.assert_running()
            progress.update(lag, "records behind")
            await asyncio.sleep(POLL_S)
    finally:
        await probe.stop()
    tails = "\n".join(worker.log_tail() for worker in workers)
    raise BenchError(f"input not committed after {timeout_s:.0f} s\n{tails}")


async def read_topics(settings: Settings, topics: Sequence[str]) -> list[ConsumerRecord]:
    """Every record of ``topics`` from the beginning to the end offsets at call time."""
    bootstrap = settings.kafka_bootstrap
    return [
        record
        for topic in topics
        for record in await consume_all(bootstrap, topic, timeout_s=READ_TIMEOUT_S, complete=True)
    ]


async def change_latencies(settings: Settings) -> tuple[list[float], int]:
    """Milliseconds from each causing input record to its segment-change record, and how
    many changes a timer caused (they have no input record)."""
    inputs = await read_topics(settings, input_topics(settings))
    produced = {json.loads(r.value)["event_id"]: r.timestamp for r in inputs}
    latencies, timer = [], 0
    for record in await read_topics(settings, [settings.topic("segment_changes")]):
        change = json.loads(record.value)
        if change["kind"] != "segment_changed":
            continue
        if change["cause"]["kind"] != "event":
            timer += 1
            continue
        latencies.append(float(record.timestamp - produced[change["cause"]["event_id"]]))
    if not latencies:
        raise RuntimeError(f"no segment change caused by an event on {settings.topic_prefix}*")
    return latencies, timer


def summed(texts: Sequence[str], name: str, **labels: str) -> float:
    """A metric's sum over several workers' ``/metrics`` texts."""
    return sum(metric_sum(text, name, **labels) for text in texts)


def processing_mean_ms(metrics: str) -> float:
    """Mean of the worker's ``segstream_processing_seconds`` histogram, in ms."""
    count = metric_sum(metrics, "segstream_processing_seconds_count")
    total = metric_sum(metrics, "segstream_processing_seconds_sum")
    return 1000 * total / count if count else float("nan")


STAGES = {
    "fetched": ("segstream_record_stage_seconds", {"stage": "fetched"}),
    "queued": ("segstream_record_stage_seconds", {"stage": "queued"}),
    "batch": ("segstream_record_stage_seconds", {"stage": "batch"}),
    "commit": ("segstream_commit_seconds", {}),
}
"""A record's stages as the workers time them: producer timestamp to the batch buffer,
waiting there, its batch's start to the commit of all its partitions; and one partition's
transaction (part of ``batch``)."""


def stage_means_ms(texts: Sequence[str]) -> dict[str, float]:
    """Each of :data:`STAGES`' mean in ms over the workers' ``/metrics`` texts."""
    means = {}
    for stage, (name, labels) in STAGES.items():
        count = summed(texts, f"{name}_count", **labels)
        means[stage] = 1000 * summed(texts, f"{name}_sum", **labels) / count if count else math.nan
    return means


def stages_report(results: Mapping[str, Sequence[Measured]]) -> str:
    """Where a record's time goes in each variant: medians over rounds of the means."""
    rows = [
        [name, *(f"{statistics.median(r.stages_ms[s] for r in rounds):,.1f}" for s in STAGES)]
        for name, rounds in results.items()
    ]
    headers = ["variant", "fetched ms", "queued ms", "batch ms", "commit ms (one partition)"]
    return table(headers, rows)


def report(results: Mapping[str, Sequence[Measured]]) -> str:
    """Side-by-side table: medians over rounds; ratios are medians of the ratios to the
    baseline (the first variant) within each round."""
    baseline = results[VARIANTS[0].name]
    headers = ["variant", "events/s", "÷ base", "drain s", "publish s", "p50 ms", "p95 ms"]
    headers += ["p99 ms", "p50 ÷ base", "p99 ÷ base", "changes", "proc. mean ms"]
    headers += ["handled", "dead letters", "rebalances"]
    rows = []
    for name, rounds in results.items():
        latency = median_of([summary(r.latencies_ms) for r in rounds])
        rows.append(
            [
                name,
                f"{statistics.median(r.events_per_s for r in rounds):,.0f}",
                versus(rounds, baseline, lambda r: r.events_per_s),
                f"{statistics.median(r.drain_s for r in rounds):.1f}",
                f"{statistics.median(r.publish_s for r in rounds):.1f}",
                *(f"{latency[k]:,.0f}" for k in ("p50", "p95", "p99")),
                versus(rounds, baseline, lambda r: summary(r.latencies_ms)["p50"]),
                versus(rounds, baseline, lambda r: summary(r.latencies_ms)["p99"]),
                f"{statistics.median(len(r.latencies_ms) for r in rounds):,.0f} "
                f"(+{statistics.median(r.timer_changes for r in rounds):,.0f} timer)",
                " / ".join(f"{m:.2f}" for m in median_processing(rounds)),
                f"{sum(r.handled for r in rounds):,.0f}",
                f"{sum(r.dead_lettered for r in rounds):,.0f}",
                f"{sum(r.rebalances for r in rounds):,.0f}",
            ]
        )
    return table(headers, rows)


def versus(
    rounds: Sequence[Measured], baseline: Sequence[Measured], value: Callable[[Measured], float]
) -> str:
    """Median over rounds of ``value`` here / ``value`` of the baseline in the same round."""
    return times(paired([value(r) for r in rounds], [value(b) for b in baseline]))


def median_processing(rounds: Sequence[Measured]) -> list[float]:
    """Per worker, the median over rounds of its mean processing time."""
    per_worker = zip(*(r.processing_means_ms for r in rounds), strict=True)
    return [statistics.median(means) for means in per_worker]


def describe_run(load: Load, bootstrap: str) -> str:
    """The conditions of the run, for the record next to its table."""
    average = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    pace = f"{load.rate:g}/s" if load.rate else "as fast as possible"
    return (
        f"end_to_end {time.strftime('%Y-%m-%d %H:%M %Z')}: {load.events} events ({pace}), "
        f"{load.rounds} round(s), "
        f"{PARTITIONS} partitions, broker {bootstrap}, {os.cpu_count()} CPUs, "
        f"load average {average}, code {code_version()}"
    )


async def run_all(load: Load, bootstrap: str) -> dict[str, list[Measured]]:
    """Every variant on the same records, once per round (each round in another order).
    Worker data and logs stay in ``var/bench`` when something fails."""
    records = simulated_records(load.events)
    run_dir = RUNS_DIR / f"e2e-{time.strftime('%Y%m%d-%H%M%S')}"
    results: dict[str, list[Measured]] = {variant.name: [] for variant in VARIANTS}
    try:
        for number in range(load.rounds):
            for variant in rotated(VARIANTS, number):
                say(f"round {number + 1}/{load.rounds} {variant.name}: {len(records)} events")
                result = await run_variant(variant, records, bootstrap, run_dir, load)
                say(
                    f"round {number + 1}/{load.rounds} {variant.name}: "
                    f"{result.events_per_s:,.0f} events/s, drained in {result.drain_s:.1f} s"
                )
                results[variant.name].append(result)
    except BaseException:
        say(f"failed; worker logs are in {run_dir}")
        raise
    shutil.rmtree(run_dir, ignore_errors=True)
    return results


def exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM becomes SystemExit, so the ``finally`` blocks stop workers and broker."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, bring up the broker if needed, run every variant, print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.end_to_end", description=__doc__)
    parser.add_argument("--events", type=int, default=2500, help="records per variant run")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all variants (median)")
    parser.add_argument("--rate", type=float, default=None, help="records/s (default: max)")
    parser.add_argument("--bootstrap", help="use this broker instead of the bench broker")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="bench broker port")
    parser.add_argument("--timeout", type=float, default=240, help="seconds per variant")
    args = parser.parse_args(argv)
    load = Load(args.events, args.rate, args.timeout, args.rounds)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    if args.bootstrap:
        bootstrap = args.bootstrap
        results = asyncio.run(run_all(load, bootstrap))
    else:
        with fresh_broker(args.port, "bench-broker") as broker:
            bootstrap = broker.bootstrap
            results = asyncio.run(run_all(load, bootstrap))
    print(describe_run(load, bootstrap))
    print()
    print(report(results))
    print()
    print(stages_report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
