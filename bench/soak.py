"""Memory over time: one worker fed at a steady rate for ten minutes, its RSS sampled.

``python -m bench.soak --seconds 600 --rate 40`` streams a long simulated history (many
shops, years of event time) into one worker at a fixed rate and samples the worker's
resident set size every ``--every`` seconds from ``/proc``. It prints the samples and a
summary (start after warm-up, peak, end, and the growth over the second half, which is
what a leak shows in), and appends the summary to ``bench/results/soak.jsonl``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from harness.broker import fresh_broker
from harness.workers import WorkerProcess, isolated_settings
from segstream.stream.topics import ensure_topics
from segstream.tools.publish import publish
from segstream.tools.simulation.generator import SimulationConfig, generate

RESULTS = Path(__file__).resolve().parent / "results"


def rss_mib(pid: int) -> float:
    """Resident set size of a process in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def sample(worker: WorkerProcess, every: float, until: float) -> list[tuple[float, float]]:
    assert worker.process is not None
    started = time.monotonic()
    samples: list[tuple[float, float]] = []
    while time.monotonic() < until:
        worker.assert_running()
        samples.append((round(time.monotonic() - started), round(rss_mib(worker.process.pid), 1)))
        print(f"soak: {samples[-1][0]:>4} s  RSS {samples[-1][1]:7.1f} MiB", file=sys.stderr)
        await asyncio.sleep(every)
    return samples


async def soak(bootstrap: str, seconds: float, rate: float, every: float) -> dict[str, object]:
    settings = isolated_settings(bootstrap, "soak", topic_partitions=8)
    await ensure_topics(settings, changelogs=True)
    needed = int(seconds * rate * 1.2)
    simulation = generate(
        SimulationConfig(
            seed=9,
            shops_per_kind=3,
            customers_per_shop=max(20, needed // (18 * 22)),
            days=730,
            start=date(2023, 1, 1),
            duplicate_ratio=0.01,
            invalid_ratio=0.005,
        )
    )
    outbox = simulation.outbox()[:needed]
    worker = WorkerProcess.for_settings(settings, Path("var/bench/soak") / str(int(time.time())))
    worker.start()
    try:
        worker.wait_ready(timeout_s=180)
        until = time.monotonic() + seconds
        sampling = asyncio.create_task(sample(worker, every, until))
        await publish(outbox[: int(seconds * rate)], settings, rate=rate)
        samples = await sampling
        handled = worker.metric("segstream_events_total")
    finally:
        worker.stop()
    rss = [value for _, value in samples]
    warm = rss[min(len(rss) - 1, max(1, len(rss) // 10))]
    half = rss[len(rss) // 2]
    return {
        "seconds": seconds,
        "rate": rate,
        "records_handled": handled,
        "customers": len({(e["shop_id"], e["customer_id"]) for e in simulation.events}),
        "rss_start_mib": warm,
        "rss_peak_mib": max(rss),
        "rss_end_mib": rss[-1],
        "second_half_growth_mib": round(rss[-1] - half, 1),
        "samples": samples,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=40.0, help="records per second")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--port", type=int, default=29592)
    args = parser.parse_args(argv)
    with fresh_broker(args.port, "soak-broker") as broker:
        found = asyncio.run(soak(broker.bootstrap, args.seconds, args.rate, args.every))
    summary = {k: v for k, v in found.items() if k != "samples"}
    print(json.dumps(summary))
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / "soak.jsonl").open("a") as out:
        out.write(json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%S"), **found}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
