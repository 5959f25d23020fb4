"""Failover time: SIGKILL one of two workers and time until every shop answers again.

``python -m bench.failover`` loads a simulated history into two workers, waits until it is
committed, kills one worker and polls the survivor's query API for every shop until each
answers 200 (the survivor then owns the killed worker's partitions and has their tables).
It does so without standby replicas and with ``table_standby_replicas=1`` (the survivor
keeps warm copies of the other's tables), and prints both. The wait includes the broker
noticing the dead member (the workers run with a 6 s session timeout, as in the tests).
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
from segstream.settings import Settings
from segstream.stream.lag import LagProbe
from segstream.stream.topics import ensure_topics, input_topics
from segstream.tools.publish import publish
from segstream.tools.simulation.generator import SimulationConfig, generate

RESULTS = Path(__file__).resolve().parent / "results"


async def drained(settings: Settings, timeout_s: float = 600) -> None:
    probe = LagProbe.from_settings(settings, input_topics(settings))
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            lag = await probe.measure()
            if lag and sum(lag.values()) == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the workers did not catch up")
            await asyncio.sleep(0.5)
    finally:
        await probe.stop()


def all_answer(worker: WorkerProcess, shops: Sequence[str]) -> bool:
    for shop in shops:
        try:
            status, _ = worker.get_json(f"/shops/{shop}/segments")
        except (OSError, ValueError):  # not up, or not a JSON answer
            return False
        if status != 200:
            return False
    return True


async def failover(bootstrap: str, standby: int, customers: int, work: Path) -> dict[str, float]:
    """Seconds from SIGKILL until every shop answers on the survivor."""
    settings = isolated_settings(bootstrap, f"failover{standby}", topic_partitions=8)
    await ensure_topics(settings, changelogs=True)
    simulation = generate(
        SimulationConfig(
            seed=3,
            shops_per_kind=2,
            customers_per_shop=customers,
            days=365,
            start=date(2025, 1, 1),
        )
    )
    shops = sorted({event["shop_id"] for event in simulation.events})
    env = {"SEGSTREAM_TABLE_STANDBY_REPLICAS": str(standby)}
    workers = [WorkerProcess.for_settings(settings, work / f"s{standby}-{n}", env) for n in (1, 2)]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            worker.wait_ready(timeout_s=180)
        await publish(simulation.outbox(), settings)
        await drained(settings)
        await asyncio.sleep(5)  # standbys catch up with the last changelog writes
        victim, survivor = workers
        killed = time.monotonic()
        victim.kill()
        while not all_answer(survivor, shops):
            survivor.assert_running()
            if time.monotonic() - killed > 300:
                raise TimeoutError("the survivor never answered for every shop")
            await asyncio.sleep(0.1)
        seconds = time.monotonic() - killed
    finally:
        for worker in workers:
            worker.stop()
    return {
        "standby_replicas": standby,
        "failover_s": round(seconds, 2),
        "events": len(simulation.events),
        "shops": len(shops),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__)
    parser.add_argument("--customers", type=int, default=300, help="customers per shop (12)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--port", type=int, default=29492)
    args = parser.parse_args(argv)
    work = Path("var/bench/failover") / str(int(time.time()))
    results = []
    with fresh_broker(args.port, "bench-broker") as broker:
        for _ in range(args.rounds):
            for standby in (0, 1):
                found = asyncio.run(failover(broker.bootstrap, standby, args.customers, work))
                print(json.dumps(found), flush=True)
                results.append(found)
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / "failover.jsonl").open("a") as out:
        for found in results:
            out.write(json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%S"), **found}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
