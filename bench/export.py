"""CSV export of a large segment through a real worker: time and the worker's memory.

``python -m bench.export [--customers 100000] [--days 60]`` backfills one simulated shop's
orders (the :mod:`bench.backfill` shop and CSV) into one worker on a fresh broker, defines
a segment of every customer who ordered (all of them) and, once the worker has put them
in, downloads it as ``members.csv`` over HTTP with the default columns (consent, since,
orders, spend, recency, P(alive), CLV), reading the answer in 64 KiB chunks as a client
would. It reports the members, bytes, seconds, rows/s and the worker's resident memory
before and at its peak during the download (sampled every 20 ms from ``/proc``): an
export streams a page of 500 members at a time, so the peak must not grow with the
segment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.backfill import replayed, shop_arguments, shop_csv, started_worker
from bench.common import code_version, say, table
from bench.throughput import RESULTS
from harness.broker import Broker, fresh_broker
from harness.workers import PLATFORM_TOKEN, WorkerProcess


def rss_mib(pid: int) -> float:
    """The process's resident memory now."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Sampler(threading.Thread):
    """The peak of a process's resident memory while it runs (every 20 ms)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, rss_mib(pid), threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, rss_mib(self.pid))


def download(worker: WorkerProcess, path: str) -> tuple[int, int, float]:
    """Rows (header excluded), bytes and seconds of one CSV download."""
    request = urllib.request.Request(
        worker.url(path), headers={"Authorization": f"Bearer {PLATFORM_TOKEN}"}
    )
    started = time.monotonic()
    size = lines = 0
    with urllib.request.urlopen(request, timeout=600) as response:
        while chunk := response.read(64 * 1024):
            size += len(chunk)
            lines += chunk.count(b"\n")
    return lines - 1, size, time.monotonic() - started


def everyone(worker: WorkerProcess, shop_id: str) -> tuple[str, str, int]:
    """Define a segment of every customer who ordered (all of them, in a backfill of
    orders) and wait until the worker has put them all in: its model, id and size."""
    rule = {"field": "behaviour.order_count", "op": "gte", "value": 1}
    body = {"segment_id": "everyone", "name": "Everyone who ordered", "rule": rule}
    status, answer = worker.request_json("POST", f"/shops/{shop_id}/definitions", body)
    assert status == 201, answer
    while True:
        _, found = worker.get_json(f"/shops/{shop_id}/definitions/everyone")
        if not found["reevaluating"]:
            return "defined:everyone", "everyone", int(found["members"])
        say(f"putting customers in: {found['members']:,} so far")
        time.sleep(5)


async def measure(args: argparse.Namespace, broker: Broker, csv_path: Path) -> dict[str, Any]:
    settings, worker = await started_worker(broker, "export")
    try:
        await replayed(args, settings, worker, csv_path)
        assert worker.process is not None
        model, segment, members = everyone(worker, args.shop_id)
        path = f"/shops/{args.shop_id}/segments/{model}/{segment}/members.csv"
        say(f"exporting {model}/{segment}: {members:,} members")
        sampler = Sampler(worker.process.pid)
        before = sampler.peak
        sampler.start()
        rows, size, seconds = download(worker, path)
        sampler.done.set()
        sampler.join()
        return {
            "segment": f"{model}/{segment}",
            "members": members,
            "rows": rows,
            "bytes": size,
            "seconds": round(seconds, 2),
            "rss_before_mib": round(before, 1),
            "rss_peak_mib": round(sampler.peak, 1),
        }
    finally:
        worker.kill()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__)
    shop_arguments(parser, customers=100_000, days=60, port=29692)
    args = parser.parse_args(argv)
    csv_path = shop_csv(args)
    with fresh_broker(args.port, "bench-broker") as broker:
        found = asyncio.run(measure(args, broker, csv_path))
    headers = ["segment", "members", "rows", "MB", "seconds", "rows/s", "RSS before", "RSS peak"]
    row = [
        found["segment"],
        f"{found['members']:,}",
        f"{found['rows']:,}",
        f"{found['bytes'] / 1e6:,.1f}",
        f"{found['seconds']:,.1f}",
        f"{found['rows'] / found['seconds']:,.0f}",
        f"{found['rss_before_mib']:,.0f} MiB",
        f"{found['rss_peak_mib']:,.0f} MiB",
    ]
    print(table(headers, [row]))
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / "export.jsonl").open("a") as out:
        record: dict[str, Any] = {"at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        record |= {"revision": code_version(), "customers": args.customers, **found}
        out.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
