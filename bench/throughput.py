"""Throughput side by side: segstream and the baselines on the same preloaded input.

``python -m bench.throughput`` (``make bench``) starts its own broker, publishes one
simulated stream (``--events``, default 100,000 records of many small shops) to
segstream's input topics once, and then runs every variant, one after another, on
those same topics and partitions with a consumer group of its own:

- ``faust forward``: a bare Faust agent sending every record on;
- ``faust table``: a bare Faust agent decoding each record, writing one table row per
  customer (RocksDB) and forwarding (the baseline the targets refer to);
- ``aiokafka relay``: the Kafka client alone, consume and produce;
- ``quix alos`` / ``quix eos``: a quix-streams 3 app with one per-customer state update
  (in ``.venv-quix``, which ``make bench`` creates; left out without it, and said so);
- ``segstream``: the full worker, exactly once, every model on;
- ``segstream librdkafka``: the same worker on the same records published again, before
  each of its runs (not timed), to topics of their own with librdkafka's default
  partitioner (CRC32: kcat's, confluent-kafka's), so most records (about 7/8 on 8
  partitions) are outside their shop's partition and take the worker's repartition hop;
  ``÷ segstream`` is the hop's cost.

Throughput = input records consumed / time, from the group's first committed progress
until its committed offsets reach the end of the input (and of segstream's repartition
topic; startup and the first rebalance are not counted; Faust's and quix's periodic
commits blur the ends by up to their commit interval). CPU = the process's user + system
seconds over the same span; peak RSS from ``/proc``. Then the segstream worker, warm and
caught up, gets ``--latency-events`` fresh records at half the throughput it just showed,
and the time from each input record's produce timestamp to its first segment change's
arrival at a ``read_committed`` consumer gives p50/p95/p99 latency.

Results go to stdout as a table and to ``bench/results/throughput.jsonl`` (one line per
variant, with the git revision).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from bench.common import (
    add_worker_env,
    code_version,
    say,
    simulated_records,
    summary,
    table,
)
from harness.broker import fresh_broker
from harness.kafka_io import consume_all
from harness.workers import REPO_ROOT, WorkerProcess, free_port, isolated_settings
from segstream.domain.contracts import INPUT_ROLES
from segstream.settings import REPARTITION_ROLE, Settings
from segstream.state.keyspace import shop_partition
from segstream.stream.lag import LagProbe
from segstream.stream.topics import ensure_topics
from segstream.tools.publish import Record, librdkafka_partitioner, publish

RESULTS = Path(__file__).resolve().parent / "results"
QUIX_PYTHON = REPO_ROOT / ".venv-quix" / "bin" / "python"
SEGSTREAM, HOP = "segstream", "segstream librdkafka"
VARIANTS = (
    "faust forward",
    "faust table",
    "aiokafka relay",
    "quix alos",
    "quix eos",
    HOP,
    SEGSTREAM,
)
BASELINE = "faust table"


@dataclass
class Measured:
    """One variant's run."""

    variant: str
    round: int = 0
    records: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_rss_mib: float = 0.0
    rerouted: int = 0
    """Records the worker took through its repartition topic."""
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def command(variant: str, settings: Settings, group: str, work: Path) -> list[str]:
    """The command line of a baseline process."""
    topics = [settings.topic(role) for role in INPUT_ROLES]
    common = ["--bootstrap", settings.kafka_bootstrap, "--group", group, "--topics", *topics]
    output = ["--output", f"{settings.topic_prefix}out-{group}"]
    if variant.startswith("faust"):
        mode = variant.split()[1]
        return [
            sys.executable,
            "-m",
            "bench.baselines.faust_apps",
            mode,
            *common,
            *output,
            "--partitions",
            str(settings.topic_partitions),
            "--data-dir",
            str(work),
            "--web-port",
            str(free_port()),
        ]
    if variant == "aiokafka relay":
        return [sys.executable, "-m", "bench.baselines.aiokafka_relay", *common, *output]
    guarantee = "exactly-once" if variant.endswith("eos") else "at-least-once"
    return [
        str(QUIX_PYTHON),
        str(REPO_ROOT / "bench" / "baselines" / "quix_app.py"),
        *common,
        *output,
        "--state-dir",
        str(work),
        "--guarantee",
        guarantee,
    ]


async def progress(
    settings: Settings, group: str, pid: int, total: int, detour: Sequence[str] = ()
) -> Measured:
    """Watch the group's committed offsets from its first progress on the input until
    they reach the end of the input and of the ``detour`` topics."""
    topics = [settings.topic(role) for role in INPUT_ROLES]
    probe = LagProbe(dict(_connection(settings)), group, [*topics, *detour])
    measured = Measured("")
    started = cpu = None
    deadline = time.monotonic() + 3600
    try:
        while time.monotonic() < deadline:
            try:
                behind = await probe.measure()
            except KafkaError:  # the group's coordinator is not there yet
                await asyncio.sleep(0.25)
                continue
            now = time.monotonic()
            lag = sum(n for (topic, _), n in behind.items() if topic in topics)
            if started is None and lag < total:
                started, first, cpu = now, total - lag, cpu_seconds(pid)
            if started is not None and not any(behind.values()):
                measured.records = total - first
                measured.seconds = now - started
                measured.cpu_seconds = cpu_seconds(pid) - (cpu or 0.0)
                measured.peak_rss_mib = peak_rss_mib(pid)
                return measured
            await asyncio.sleep(0.25)
    finally:
        await probe.stop()
    raise TimeoutError(f"group {group} did not finish")


def _connection(settings: Settings) -> dict[str, object]:
    from segstream.stream.kafka import connection_options

    return connection_options(settings)


async def run_baseline(variant: str, settings: Settings, total: int, work: Path) -> Measured:
    group = f"bench-{variant.replace(' ', '-')}-{uuid.uuid4().hex[:6]}"
    directory = work / group
    directory.mkdir(parents=True)
    log = (work / f"{group}.log").open("wb")
    process = subprocess.Popen(
        command(variant, settings, group, directory),
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        found = await progress(settings, group, process.pid, total)
    finally:
        process.kill()
        process.wait()
    found.variant = variant
    return found


async def run_segstream(
    settings: Settings,
    total: int,
    work: Path,
    env: dict[str, str],
    fresh: list[Record],
    share: float = 0.5,
    variant: str = SEGSTREAM,
) -> Measured:
    """The worker drains the preloaded input (and its repartition topic); then, warm, it
    gets ``fresh`` records at ``share`` of the throughput it just showed, for the latency
    figures."""
    app = settings.model_copy(update={"app_id": f"bench-segstream-{uuid.uuid4().hex[:6]}"})
    worker = WorkerProcess.for_settings(app, work / app.app_id, env)
    worker.start()
    detour = app.topic(REPARTITION_ROLE)
    try:
        assert worker.process is not None
        found = await progress(app, app.app_id, worker.process.pid, total, [detour])
        found.variant = variant
        found.rerouted = len(await consume_all(app.kafka_bootstrap, detour, timeout_s=120))
        if fresh:
            rate = max(1.0, found.per_second * share)
            say(f"segstream: {found.per_second:,.0f} records/s; latency at {rate:.0f} records/s")
            found.latencies_ms = await latency(app, fresh, rate)
    finally:
        worker.kill()
    return found


async def republished(bootstrap: str, records: list[Record]) -> Settings:
    """``records`` again, on 8 partitions of topics of their own, partitioned as
    librdkafka's default partitioner does."""
    hop = isolated_settings(bootstrap, "bench-librdkafka", topic_partitions=8)
    await ensure_topics(hop, changelogs=False)
    await publish(records, hop, partitioner=librdkafka_partitioner)
    return hop


def outside_home(records: Sequence[Record], partitions: int) -> float:
    """Share of ``records`` librdkafka's default partitioner puts outside their shop's
    partition.

    >>> outside_home([("orders", {"shop_id": "roastery-42"})], 8)
    1.0
    """
    every = list(range(partitions))
    shops = [str(event["shop_id"]) for _, event in records if not isinstance(event, bytes)]
    moved = sum(
        librdkafka_partitioner(shop.encode(), every, every) != shop_partition(shop, partitions)
        for shop in shops
    )
    return moved / len(shops) if shops else 0.0


async def latency(settings: Settings, records: list[Record], rate: float) -> list[float]:
    """Produce -> ``read_committed`` arrival of each record's first segment change, with
    ``records`` sent at ``rate`` to a worker that is already running and caught up."""
    consumer = AIOKafkaConsumer(
        settings.topic("segment_changes"),
        bootstrap_servers=settings.kafka_bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="latest",
        group_id=None,
    )
    arrivals: dict[str, float] = {}
    await consumer.start()
    try:
        await consumer.seek_to_end()
        for partition in consumer.assignment():
            await consumer.position(partition)  # from here on: only the fresh records' changes

        async def tail() -> None:
            while True:
                for batch in (await consumer.getmany(timeout_ms=100)).values():
                    for record in batch:
                        change = json.loads(record.value)
                        cause = change.get("cause", {}).get("event_id")
                        if cause and cause not in arrivals:
                            arrivals[cause] = time.time()

        tailing = asyncio.create_task(tail())
        sent_from = time.time()
        await publish(records, settings, rate=rate)
        await asyncio.sleep(5)
        tailing.cancel()
    finally:
        await consumer.stop()
    produced: dict[str, float] = {}  # each fresh input record's produce (create) time
    for role in INPUT_ROLES:
        for record in await consume_all(
            settings.kafka_bootstrap, settings.topic(role), timeout_s=60
        ):
            if record.timestamp / 1000 < sent_from - 1:
                continue  # preloaded
            try:
                produced[json.loads(record.value)["event_id"]] = record.timestamp / 1000
            except (ValueError, KeyError, TypeError):
                continue
    return [(arrivals[e] - at) * 1000 for e, at in produced.items() if e in arrivals]


def report(results: Sequence[Measured]) -> str:
    """Medians over rounds per variant; the ratios are medians of the ratios within each
    round (variants of one round ran back to back on the same input)."""
    variants = list(dict.fromkeys(r.variant for r in results))
    rows = []
    for variant in variants:
        runs = [r for r in results if r.variant == variant]
        latencies = [ms for r in runs for ms in r.latencies_ms]
        lat = summary(latencies) if latencies else {}
        rows.append(
            [
                variant,
                str(len(runs)),
                f"{statistics.median(r.per_second for r in runs):,.0f}",
                _median_share([r.cpu_seconds / r.seconds for r in runs if r.seconds]),
                f"{max(r.peak_rss_mib for r in runs):.0f}",
                _ratio(results, runs, lambda r: r.variant == BASELINE),
                _ratio(results, runs, lambda r: r.variant == SEGSTREAM),
                _ratio(results, runs, lambda r: r.variant.startswith("quix")),
                *(f"{lat[k]:.0f}" if lat else "" for k in ("p50", "p95", "p99")),
            ]
        )
    headers = [
        "variant",
        "rounds",
        "records/s",
        "CPU",
        "peak RSS MiB",
        f"÷ {BASELINE}",
        f"÷ {SEGSTREAM}",
        "÷ best quix",
        "p50 ms",
        "p95 ms",
        "p99 ms",
    ]
    return table(headers, rows)


def _median_share(shares: Sequence[float]) -> str:
    """A median CPU share, or nothing when no run lasted long enough to measure one."""
    return f"{statistics.median(shares):.0%}" if shares else ""


def _ratio(
    results: Sequence[Measured], runs: Sequence[Measured], peer: Callable[[Measured], bool]
) -> str:
    """Median over rounds of a run's records/s over the best peer's in the same round."""
    ratios = []
    for run in runs:
        peers = [r.per_second for r in results if r.round == run.round and peer(r)]
        if peers and max(peers) > 0:
            ratios.append(run.per_second / max(peers))
    return f"{statistics.median(ratios):.2f}" if ratios else ""


async def run_all(args: argparse.Namespace, bootstrap: str) -> list[Measured]:
    settings = isolated_settings(bootstrap, "bench", topic_partitions=8)
    await ensure_topics(settings, changelogs=False)
    records = simulated_records(args.events + args.latency_events, seed=args.seed)
    preload, fresh = records[: args.events], records[args.events :]
    say(f"publishing {len(preload):,} records once")
    await publish(preload, settings)
    work = Path("var/bench/throughput") / str(int(time.time()))
    results = []
    variants = [v for v in args.variants if not v.startswith("quix") or QUIX_PYTHON.exists()]
    for left_out in sorted(set(args.variants) - set(variants)):
        say(f"{left_out}: left out, {QUIX_PYTHON} does not exist (make bench creates it)")
    if HOP in variants:
        share = outside_home(preload, settings.topic_partitions)
        say(f"{HOP}: {share:.1%} of the records outside their shop's partition")
    # segstream last: its latency phase (last round) adds records to the input topics
    variants.sort(key=lambda v: v == SEGSTREAM)
    for round_ in range(args.rounds):
        for variant in variants:
            say(f"round {round_ + 1}/{args.rounds}: {variant} ...")
            if variant == SEGSTREAM:
                latest = fresh if round_ == args.rounds - 1 else []
                runner = run_segstream(
                    settings, len(preload), work, args.worker_env, latest, args.latency_share
                )
            elif variant == HOP:  # topics of its own each run: a worker reads its repartition
                hop = await republished(bootstrap, preload)  # topic from the start
                runner = run_segstream(hop, len(preload), work, args.worker_env, [], variant=HOP)
            else:
                runner = run_baseline(variant, settings, len(preload), work)
            found = await runner
            found.round = round_
            say(f"{variant}: {found.per_second:,.0f} records/s")
            results.append(found)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--latency-events", type=int, default=3000)
    parser.add_argument(
        "--latency-share", type=float, default=0.5, help="latency rate, share of throughput"
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--rounds", type=int, default=3, help="passes over every variant")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--port", type=int, default=29692)
    add_worker_env(parser, "SEGSTREAM_BATCH_MAX_EVENTS=500")
    args = parser.parse_args(argv)
    args.worker_env = dict(args.worker_env)
    with fresh_broker(args.port, "bench-broker") as broker:
        results = asyncio.run(run_all(args, broker.bootstrap))
    print(report(results))
    RESULTS.mkdir(exist_ok=True)
    revision = code_version()
    with (RESULTS / "throughput.jsonl").open("a") as out:
        for r in results:
            lat = summary(r.latencies_ms) if r.latencies_ms else {}
            out.write(
                json.dumps(
                    {
                        "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                        "revision": revision,
                        "variant": r.variant,
                        "round": r.round,
                        "records": r.records,
                        "seconds": round(r.seconds, 2),
                        "records_per_s": round(r.per_second, 1),
                        "cpu_share": round(r.cpu_seconds / r.seconds, 3) if r.seconds else None,
                        "peak_rss_mib": round(r.peak_rss_mib, 1),
                        "rerouted": r.rerouted,
                        "worker_env": args.worker_env if r.variant.startswith(SEGSTREAM) else {},
                        **lat,
                    }
                )
                + "\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
