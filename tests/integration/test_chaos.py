"""A short chaos run inside the test suite (``make chaos`` and ``make chaos-network`` run
the long ones): SIGKILLed workers (one replaced on an empty store), a join and a leave, a
broker restart, and on the network between the workers and the broker a latency spike, a
bandwidth limit, connection resets and one worker cut off past its session timeout; then
nothing lost, nothing twice, every fact and metric as an uninterrupted run has them, and
the cut-off worker past its group session. See tests/chaos.py.

Each run draws a new seed (another history, other faults at other moments) and prints it
with the command that runs it again; ``SEGSTREAM_TEST_CHAOS_SEED`` fixes it."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.chaos import ChaosConfig, chaos_broker, run

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHAOS_PORT = int(os.environ.get("SEGSTREAM_TEST_CHAOS_PORT", "19192"))


def chaos_seed() -> int:
    """The seed of this run: ``SEGSTREAM_TEST_CHAOS_SEED``, else a new one."""
    chosen = os.environ.get("SEGSTREAM_TEST_CHAOS_SEED")
    return int(chosen) if chosen else random.SystemRandom().randrange(1, 1_000_000)


async def test_a_short_chaos_run_loses_and_doubles_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = ChaosConfig(
        seed=chaos_seed(),
        events=3000,
        workers=2,
        kills=3,
        fresh_takeovers=1,
        rebalances=2,
        broker_restarts=1,
        rate=150.0,
        latency_spikes=1,
        bandwidth_limits=1,
        resets=2,
        cutoffs=1,
        port=CHAOS_PORT,
        work_dir=tmp_path,
    )
    named = f"chaos seed {config.seed}; again: {config.command()}"
    with capsys.disabled():  # shown whatever happens next, a hang included
        print(f"\n{named}", flush=True)
    with chaos_broker(config, "chaos-test") as (broker, network):
        report = await run(config, broker, network)
    print(report.line())
    assert report.clean, "\n".join([named, report.line(), *report.details])
    assert report.faults.kills == 3 and report.faults.broker_restarts == 1
    assert report.faults.cutoffs == report.faults.dropped == 1
