"""A short chaos run inside the test suite (``make chaos`` runs the long one): SIGKILLed
workers (one replaced on an empty store), a join and a leave, a broker restart, and
then nothing lost, nothing twice, every fact and metric as an uninterrupted run has
them. See tests/chaos.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.broker import fresh_broker
from tests.chaos import ChaosConfig, run

pytestmark = pytest.mark.asyncio(loop_scope="session")

CHAOS_PORT = int(os.environ.get("SEGSTREAM_TEST_CHAOS_PORT", "19192"))


async def test_a_short_chaos_run_loses_and_doubles_nothing(tmp_path: Path) -> None:
    config = ChaosConfig(
        seed=3,
        events=3000,
        workers=2,
        kills=3,
        fresh_takeovers=1,
        rebalances=2,
        broker_restarts=1,
        rate=150.0,
        port=CHAOS_PORT,
        work_dir=tmp_path,
    )
    with fresh_broker(CHAOS_PORT, "chaos-test-broker") as broker:
        report = await run(config, broker)
    print(report.line())
    assert report.clean, "\n".join([report.line(), *report.details])
    assert report.faults.kills == 3 and report.faults.broker_restarts == 1
