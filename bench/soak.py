"""Memory over time: one worker fed at a steady rate, its RSS sampled; does it level off?

Two ways to size a run:

``python -m bench.soak --seconds 600 --rate 40`` streams ``seconds * rate`` records of a
long simulated history (18 shops, two years of event time) into one worker at that rate.

``python -m bench.soak --customers 100000 --seconds 1800`` simulates that many customers
(``--days`` of history, 90 by default, spread over ``--shops-per-kind`` times 6 shops) and
streams every one of their events, evenly over ``--seconds`` (or at ``--rate`` if given,
however long that takes). New customers keep arriving until the end, so a plateau means
memory does not grow with the customers a worker has seen.

The worker's resident set size is sampled from ``/proc`` every ``--every`` seconds, its
consumer group's lag (records not yet consumed) and its ``segstream_events_total`` every
``--lag-every`` seconds; after the feed ends sampling goes on until the lag is 0 and then
``--settle`` seconds more. The summary gives RSS at the start (after the first tenth of
the feed: warm-up), its peak, at the end of the feed and after settling, where it levels
off (the first sample after which RSS never rises more than 5 % above it, and the median
from there), and the growth over the last third of the feed as a least-squares slope in
MiB per 10 minutes: a leak shows there. Everything goes to stdout as JSON and is appended,
with the samples, to ``bench/results/soak.jsonl``; a progress line goes to stderr every
minute.

``--probe`` makes the worker write what its heap holds every ``--probe-every`` seconds
(objects by type, the largest containers; with ``--tracemalloc`` also the allocation
sites that grew) next to its log: see :mod:`segstream.observability.memory_probe`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from bench.common import add_worker_env, code_version, say
from harness.broker import fresh_broker
from harness.workers import WorkerProcess, isolated_settings, metric_sum
from segstream.domain.contracts import INPUT_ROLES
from segstream.settings import REPARTITION_ROLE, Settings
from segstream.stream.lag import consumer_lag
from segstream.stream.topics import ensure_topics
from segstream.tools.publish import Record, publish
from segstream.tools.simulation.generator import SimulationConfig, generate

RESULTS = Path(__file__).resolve().parent / "results"
SHOP_KINDS = 6
LEVEL_TOLERANCE = 0.05
"""RSS has levelled off at a sample when no later sample is more than 5 % above it."""


def rss_mib(pid: int) -> float:
    """Resident set size of a process in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass
class Readings:
    """What the sampler saw: ``rss`` as (seconds, MiB), ``lag`` as (seconds, records
    behind, events handled or None when the scrape was slow)."""

    rss: list[tuple[int, float]] = field(default_factory=list)
    lag: list[tuple[int, int, float | None]] = field(default_factory=list)
    feed_end_s: float | None = None
    drained_s: float | None = None


def slope_per_10_min(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) points, in MiB per 10 minutes (0 for < 2)."""
    if len(points) < 2:
        return 0.0
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    return slope * 600


def levels_off(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(seconds, MiB): the first sample after which RSS never rises more than
    :data:`LEVEL_TOLERANCE` above it, and the median RSS from there on."""
    if not points:
        raise ValueError("no samples")
    highest_after = points[-1][1]
    found = len(points) - 1
    for index in range(len(points) - 1, -1, -1):
        highest_after = max(highest_after, points[index][1])
        if highest_after <= points[index][1] * (1 + LEVEL_TOLERANCE):
            found = index
    return points[found][0], statistics.median(value for _, value in points[found:])


def analyse(readings: Readings) -> dict[str, Any]:
    """The summary of one run's samples (see the module's docstring)."""
    feed_end = readings.feed_end_s if readings.feed_end_s is not None else readings.rss[-1][0]
    feed = [(t, v) for t, v in readings.rss if t <= feed_end] or readings.rss
    warm = [(t, v) for t, v in feed if t >= feed_end / 10] or feed
    level_at, level = levels_off(warm)
    last_third = [(t, v) for t, v in feed if t >= feed_end * 2 / 3]
    lags = [behind for _, behind, _ in readings.lag]
    handled = [(t, n) for t, _, n in readings.lag if n is not None and t <= feed_end]
    return {
        "rss_start_mib": warm[0][1],
        "rss_peak_mib": max(v for _, v in readings.rss),
        "rss_end_mib": feed[-1][1],
        "rss_settled_mib": readings.rss[-1][1],
        "levels_off_at_s": level_at,
        "plateau_mib": round(level, 1),
        "last_third_growth_mib_per_10min": round(slope_per_10_min(last_third), 1),
        "lag_max": max(lags, default=None),
        "lag_median": statistics.median(lags) if lags else None,
        "lag_at_feed_end": next((b for t, b, _ in readings.lag if t >= feed_end), None),
        "drained_after_feed_s": (
            None if readings.drained_s is None else round(readings.drained_s - feed_end)
        ),
        "handled_per_s": (
            round((handled[-1][1] - handled[0][1]) / (handled[-1][0] - handled[0][0]), 1)
            if len(handled) >= 2 and handled[-1][0] > handled[0][0]
            else None
        ),
    }


async def sample(
    worker: WorkerProcess,
    settings: Settings,
    readings: Readings,
    every: float,
    lag_every: float,
    feeding: asyncio.Task[int],
    settle: float,
    drain_limit: float,
) -> None:
    """Sample until the feed is done, the group has caught up (at most ``drain_limit``
    seconds after the feed), and ``settle`` seconds more."""
    assert worker.process is not None
    topics = [settings.topic(role) for role in (*INPUT_ROLES, REPARTITION_ROLE)]
    started = time.monotonic()
    next_lag = next_line = 0.0
    settle_until: float | None = None
    while settle_until is None or time.monotonic() < settle_until:
        worker.assert_running()
        now = time.monotonic() - started
        readings.rss.append((round(now), round(rss_mib(worker.process.pid), 1)))
        if feeding.done() and readings.feed_end_s is None:
            readings.feed_end_s = now
        if now >= next_lag:
            next_lag = now + lag_every
            lag = await consumer_lag(settings, settings.app_id, topics)
            behind = sum(lag.values())
            readings.lag.append((round(now), behind, worker.events_handled()))
            late = readings.feed_end_s is not None and now > readings.feed_end_s + drain_limit
            if late and settle_until is None:
                say(f"soak: still {behind} records behind {drain_limit:.0f} s after the feed")
                settle_until = time.monotonic()
            if readings.feed_end_s is not None and behind == 0 and settle_until is None:
                readings.drained_s = now
                settle_until = time.monotonic() + settle
        if now >= next_line:
            next_line = now + 60
            last = readings.lag[-1]
            say(
                f"soak: {now:5.0f} s  RSS {readings.rss[-1][1]:7.1f} MiB  lag {last[1]}"
                f"  handled {last[2] if last[2] is not None else '?'}"
            )
        await asyncio.sleep(every)


@dataclass(frozen=True)
class Plan:
    """What to stream: the records, how fast, and how many customers they are."""

    records: list[Record]
    rate: float
    customers: int


def plan(args: argparse.Namespace) -> Plan:
    """The records of the run (see the module's docstring for the two ways)."""
    if args.customers is None:
        rate = args.rate if args.rate is not None else 40.0
        needed = int(args.seconds * rate)
        shops, per_shop, days, start = 3, max(20, int(needed * 1.2) // (18 * 22)), 730, 2023
    else:
        shops, days, start = args.shops_per_kind, args.days, 2024
        per_shop = -(-args.customers // (SHOP_KINDS * shops))
    simulation = generate(
        SimulationConfig(
            seed=9,
            shops_per_kind=shops,
            customers_per_shop=per_shop,
            days=days,
            start=date(start, 1, 1),
            duplicate_ratio=0.01,
            invalid_ratio=0.005,
        )
    )
    records = simulation.outbox()
    if args.customers is None:
        records = records[:needed]
    else:
        rate = args.rate if args.rate is not None else len(records) / args.seconds
    customers = len(
        {
            (value["shop_id"], value["customer_id"])
            for _, value in records
            if isinstance(value, dict)
        }
    )
    return Plan(records, rate, customers)


async def soak(bootstrap: str, args: argparse.Namespace, work: Plan) -> dict[str, Any]:
    revision = code_version()  # the code the worker runs: read before the run, not after
    settings = isolated_settings(bootstrap, "soak", topic_partitions=8)
    await ensure_topics(settings, changelogs=True)
    data_dir = Path("var/bench/soak") / str(int(time.time()))
    extra_env: dict[str, str] = dict(args.worker_env)
    worker = WorkerProcess.for_settings(settings, data_dir, extra_env)
    if args.probe:
        extra_env["SEGSTREAM_TEST_MEMORY_PROBE"] = str(data_dir.with_suffix(".heap.jsonl"))
        extra_env["SEGSTREAM_TEST_MEMORY_PROBE_EVERY_S"] = str(args.probe_every)
        worker.extra_env.update(extra_env)
    if args.tracemalloc:
        worker.command = (sys.executable, "-X", "tracemalloc=1", "-m", "segstream", "worker")
    say(
        f"soak: {len(work.records)} records, {work.customers} customers at {work.rate:.1f}/s "
        f"(~{len(work.records) / work.rate / 60:.0f} min); worker log {worker.log_path}"
    )
    worker.start()
    readings = Readings()
    try:
        worker.wait_ready(timeout_s=180)
        feeding = asyncio.create_task(publish(work.records, settings, rate=work.rate))
        await sample(
            worker,
            settings,
            readings,
            args.every,
            args.lag_every,
            feeding,
            args.settle,
            args.drain_limit,
        )
        sent = await feeding
        exposed = worker.get_text("/metrics")  # one scrape for both
        handled = metric_sum(exposed, "segstream_events_total")
        returned = metric_sum(exposed, "segstream_heap_returned_bytes_total")
    finally:
        worker.stop()
    return {
        "revision": revision,
        "seconds": round(readings.feed_end_s or 0),
        "rate": round(work.rate, 1),
        "records_sent": sent,
        "records_handled": handled,
        "heap_returned_mib": round(returned / 2**20, 1),
        "customers": work.customers,
        **analyse(readings),
        "worker_env": dict(args.worker_env),
        "probe": extra_env.get("SEGSTREAM_TEST_MEMORY_PROBE"),
        "samples": readings.rss,
        "lag_samples": readings.lag,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the feed")
    parser.add_argument(
        "--rate", type=float, default=None, help="records per second (40 without --customers)"
    )
    parser.add_argument("--customers", type=int, default=None, help="stream this many whole")
    parser.add_argument("--days", type=int, default=90, help="history per customer run")
    parser.add_argument("--shops-per-kind", type=int, default=3, help="6 kinds of shop")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--lag-every", type=float, default=15.0, help="seconds between lags")
    parser.add_argument("--settle", type=float, default=60.0, help="sampling after catch-up")
    parser.add_argument("--drain-limit", type=float, default=900.0, help="most catch-up wait")
    parser.add_argument("--probe", action="store_true", help="worker writes its heap's contents")
    parser.add_argument("--probe-every", type=float, default=300.0)
    parser.add_argument("--tracemalloc", action="store_true", help="with --probe: alloc sites")
    parser.add_argument("--port", type=int, default=29592)
    add_worker_env(parser, "SEGSTREAM_REVIEW_SCHEDULE_ENTRIES=1000")
    args = parser.parse_args(argv)
    # a run started in the background ignores SIGINT: SIGTERM stops the worker and broker too
    signal.signal(signal.SIGTERM, _exit)
    say("soak: simulating")
    work = plan(args)
    with fresh_broker(args.port, "soak-broker") as broker:
        found = asyncio.run(soak(broker.bootstrap, args, work))
    summary = {k: v for k, v in found.items() if k not in ("samples", "lag_samples")}
    print(json.dumps(summary))
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / "soak.jsonl").open("a") as out:
        out.write(json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%S"), **found}) + "\n")
    return 0


def _exit(number: int, frame: object) -> None:
    raise SystemExit(128 + number)


if __name__ == "__main__":
    sys.exit(main())
