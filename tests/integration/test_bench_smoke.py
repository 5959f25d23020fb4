"""The throughput benchmark (``make bench``) runs end to end on a small input, so its
harness cannot rot. Not a timed test: its figures are printed, never judged here."""

from __future__ import annotations

import argparse
import asyncio

import pytest

from bench.common import simulated_records
from bench.throughput import HOP, outside_home, report, run_all

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_the_throughput_bench_runs_every_variant_and_measures_latency(
    kafka_bootstrap: str,
) -> None:
    variants = ["faust forward", "faust table", "aiokafka relay", HOP, "segstream"]
    args = argparse.Namespace(
        events=2000,
        latency_events=100,
        latency_share=0.5,
        variants=variants,
        seed=1,
        rounds=1,
        worker_env={},
    )
    results = await asyncio.wait_for(run_all(args, kafka_bootstrap), timeout=600)
    print(report(results))
    assert [found.variant for found in results] == variants  # each drained its group
    moved = round(outside_home(simulated_records(2000, seed=1), 8) * 2000)
    assert moved > 1000, "most records are outside their shop's partition"
    assert (results[-2].rerouted, results[-1].rerouted) == (moved, 0), "each took the hop once"
    assert results[-1].latencies_ms, "segstream's changes reached a read_committed reader"
    assert all(0 < ms < 60_000 for ms in results[-1].latencies_ms)
