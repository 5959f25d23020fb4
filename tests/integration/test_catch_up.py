"""A worker started behind a backlog says how far behind it is, how fast it folds and when
it is done: in its log at the quiet default level, and in /metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.workers import WorkerProcess, isolated_settings, until, wait_consumed
from segstream.stream.topics import ensure_topics
from segstream.tools.publish import publish
from segstream.tools.simulation.generator import SimulationConfig, generate

pytestmark = pytest.mark.asyncio(loop_scope="session")

THRESHOLD = 300


def logged(worker: WorkerProcess, event: str | None) -> list[dict[str, Any]]:
    """The worker's progress lines named ``event`` (None: all of them), in order."""
    lines = worker.log_path.read_text().splitlines()
    found = (json.loads(line) for line in lines if line.startswith("{"))
    progress = [line for line in found if line.get("logger") == "segstream.progress"]
    return [line for line in progress if event is None or line["event"] == event]


async def test_a_worker_behind_a_backlog_says_how_far_how_fast_and_when_done(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, "catchup")
    await ensure_topics(settings)
    config = SimulationConfig(seed=11, shops_per_kind=1, customers_per_shop=200, days=240)
    sent = await publish(generate(config).outbox(), settings)
    assert sent > 10 * THRESHOLD, "the backlog must outlast several lag measurements"
    worker = WorkerProcess.for_settings(
        settings,
        tmp_path / "w",
        extra_env={
            "SEGSTREAM_LAG_INTERVAL_S": "0.5",
            "SEGSTREAM_CATCH_UP_REPORT_RECORDS": str(THRESHOLD),
            "SEGSTREAM_CATCH_UP_REPORT_EVERY_S": "1",
        },
    )
    worker.start()
    try:
        worker.wait_ready()
        await wait_consumed(settings, worker, timeout_s=300)
        until(
            lambda: worker.metric_or_none("segstream_catch_up_remaining_seconds"),
            lambda left: left == 0.0,
            "the worker's own figures say it caught up",
            limit=60,
        )
        done = until(lambda: logged(worker, "caught_up"), bool, "a caught_up line", limit=30)
    finally:
        worker.stop()
    catching = logged(worker, "catching_up")
    assert catching, worker.log_tail()
    assert all(line["behind"] >= THRESHOLD for line in catching)
    assert all(
        line["level"] == "info" and line["logger"] == "segstream.progress" for line in catching
    )
    # one backlog, one end: the group's committed offsets never move back (an old fetch
    # once moved them back a few hundred records and made a second, short backlog)
    said = [line["event"] for line in logged(worker, None)]
    assert said[-1] == "caught_up" and said.count("caught_up") == 1, said
    (end,) = done
    assert end["took_s"] > 0 and end["rate"] > 0
    behind = [line["behind"] for line in catching]
    assert behind[0] <= sent
    assert len(behind) == 1 or behind[-1] < behind[0], "the backlog shrank as it said"
