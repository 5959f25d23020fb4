"""Backfill: one large shop's transaction history replayed end to end through Kafka.

``python -m bench.backfill [--customers 25000] [--days 730]`` writes a transaction CSV
(``customer_id,date,amount``, the shape ``segstream.tools.replay`` reads) from the
simulator: one soap shop whose customers are mostly occasional buyers and gifters, as in
a retailer's order log. It then starts a broker and one worker (every model on, exactly
once), replays the CSV with ``python -m segstream.tools.replay`` as a user would, and
reports the wall time from the replay's start until the worker's committed offsets reach
the end of the orders topic, the events/s over that span, the worker's CPU share and
peak RSS, and the bytes of customer state it committed (the customers changelog).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from bench.common import code_version, say, table
from bench.throughput import RESULTS, cpu_seconds, peak_rss_mib
from harness.broker import Broker, fresh_broker
from harness.workers import REPO_ROOT, WorkerProcess, isolated_settings
from segstream.settings import Settings
from segstream.stream.kafka import connection_options
from segstream.stream.lag import LagProbe
from segstream.stream.topics import changelog_topic, ensure_topics
from segstream.tools.simulation import (
    KINDS_BY_NAME,
    PersonaName,
    SimulationConfig,
    generate,
    shops_per_kind,
)

MIX: dict[PersonaName, float] = {"occasional": 0.4, "holiday_gifter": 0.4, "quick_canceller": 0.2}
"""Mostly one-off and seasonal buyers: about four orders per customer over two years."""


def write_csv(path: Path, customers: int, days: int, seed: int) -> tuple[str, int]:
    """The simulated shop's orders as a transaction CSV; its shop id and row count."""
    shop = shops_per_kind(1, (KINDS_BY_NAME["soap"],))[0]
    config = SimulationConfig(
        seed=seed,
        shops=(shop,),
        customers_per_shop=customers,
        start=date(2024, 1, 1),
        days=days,
        persona_mix=MIX,
    )
    orders = [e for e in generate(config).events if e["type"] == "order"]
    orders.sort(key=lambda e: e["occurred_at"])
    with path.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["customer_id", "date", "amount"])
        for order in orders:
            writer.writerow([order["customer_id"], order["occurred_at"], order["amount"]])
    return shop.shop_id, len(orders)


async def drained(
    settings: Settings, pid: int, total: int, tool: subprocess.Popen[bytes]
) -> tuple[float, float]:
    """Seconds until ``tool`` has sent everything and the worker's group has committed it
    all, and the worker's CPU share over that time."""
    probe = LagProbe(
        dict(connection_options(settings)), settings.app_id, [settings.topic("orders")]
    )
    started, cpu = time.monotonic(), cpu_seconds(pid)
    last_said = started
    try:
        while True:
            try:
                lag = sum((await probe.measure()).values())
            except Exception:  # the group is not there yet
                lag = total
            now = time.monotonic()
            if now - last_said > 15:
                say(f"{total - lag:,} of {total:,} processed")
                last_said = now
            if lag == 0 and tool.poll() is not None:
                seconds = now - started
                return seconds, (cpu_seconds(pid) - cpu) / seconds
            await asyncio.sleep(0.5)
    finally:
        await probe.stop()


def changelog_bytes(data_dir: Path, topic: str) -> int:
    """Bytes of a topic's log segments in the broker's data directory, all partitions."""
    return sum(
        file.stat().st_size
        for folder in data_dir.rglob(f"{topic}-*")
        if folder.is_dir() and folder.name.rpartition("-")[2].isdigit()
        for file in folder.glob("*.log")
    )


async def started_worker(broker: Broker, name: str) -> tuple[Settings, WorkerProcess]:
    """A worker (every model on, exactly once, 8 partitions) on fresh topics of its own,
    started (the caller kills it)."""
    settings = isolated_settings(broker.bootstrap, name, topic_partitions=8)
    settings = settings.model_copy(update={"app_id": f"{name}-{uuid.uuid4().hex[:6]}"})
    await ensure_topics(settings, changelogs=True)
    worker = WorkerProcess.for_settings(
        settings, REPO_ROOT / "var" / "bench" / name / settings.app_id
    )
    worker.start()
    return settings, worker


async def replayed(
    args: argparse.Namespace, settings: Settings, worker: WorkerProcess, csv_path: Path
) -> tuple[float, float, int]:
    """Replay the CSV with ``segstream replay`` as a user would, once the worker is ready:
    seconds until the worker committed it all, its CPU share, the replay's exit status."""
    worker.wait_ready(timeout_s=180)
    assert worker.process is not None
    replay = [sys.executable, "-m", "segstream.tools.replay", str(csv_path)]
    replay += ["--shop-id", args.shop_id, "--progress-every", "25000"]
    say(f"replaying {args.rows:,} orders of {args.customers:,} customers")
    tool = subprocess.Popen(replay, cwd=REPO_ROOT, env=worker.env())
    seconds, cpu = await drained(settings, worker.process.pid, args.rows, tool)
    return seconds, cpu, tool.wait() or 0


async def measure(args: argparse.Namespace, broker: Broker, csv_path: Path) -> dict[str, Any]:
    settings, worker = await started_worker(broker, "backfill")
    try:
        sent = time.monotonic()
        seconds, cpu, status = await replayed(args, settings, worker, csv_path)
        assert worker.process is not None
        return {
            "seconds": round(seconds, 1),
            "events_per_s": round(args.rows / seconds, 1),
            "replay_exit": status,
            "started_to_drained_s": round(time.monotonic() - sent, 1),
            "cpu_share": round(cpu, 3),
            "peak_rss_mib": round(peak_rss_mib(worker.process.pid), 1),
            "customers_changelog_bytes": changelog_bytes(
                broker.data_dir, changelog_topic(settings, "customers")
            ),
        }
    finally:
        worker.kill()


def shop_arguments(parser: argparse.ArgumentParser, customers: int, days: int, port: int) -> None:
    """The simulated shop's size and history, and the bench broker's port."""
    parser.add_argument("--customers", type=int, default=customers)
    parser.add_argument("--days", type=int, default=days)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--port", type=int, default=port)


def shop_csv(args: argparse.Namespace) -> Path:
    """The shop's transaction CSV under ``var/bench``; sets ``args.shop_id`` and ``args.rows``."""
    csv_path = REPO_ROOT / "var" / "bench" / f"backfill-{args.customers}-{args.days}.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    say(f"writing {csv_path.name} from the simulator")
    args.shop_id, args.rows = write_csv(csv_path, args.customers, args.days, args.seed)
    return csv_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backfill", description=__doc__)
    shop_arguments(parser, customers=25_000, days=730, port=29792)
    args = parser.parse_args(argv)
    csv_path = shop_csv(args)
    with fresh_broker(args.port, "bench-broker") as broker:
        found = asyncio.run(measure(args, broker, csv_path))
    headers = ["orders", "customers", "wall s", "events/s", "CPU", "peak RSS MiB", "state MB"]
    row = [
        f"{args.rows:,}",
        f"{args.customers:,}",
        f"{found['seconds']:,.0f}",
        f"{found['events_per_s']:,.0f}",
        f"{found['cpu_share']:.0%}",
        f"{found['peak_rss_mib']:,.0f}",
        f"{found['customers_changelog_bytes'] / 1e6:,.1f}",
    ]
    print(table(headers, [row]))
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / "backfill.jsonl").open("a") as out:
        record: dict[str, Any] = {"at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        record |= {"revision": code_version(), "orders": args.rows, "customers": args.customers}
        record |= {"days": args.days, **found}
        out.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
