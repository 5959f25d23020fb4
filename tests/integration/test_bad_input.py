"""Bad input at volume through a real worker: every one of thousands of broken records (37
kinds, up to ~0.9 MB, numbers beyond the contracts' maxima among them) is in the
dead-letter topic with its reason and its bytes (whole, or a bounded prefix with the full
size and SHA-256), every good event between them is processed (events with every field at
its schema bounds among them: longest strings, maximum, minimum, subnormal and -0.0
numbers), and the worker keeps running."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from harness.badinput import bad_records, bound_events
from harness.kafka_io import consume_all
from harness.workers import WorkerProcess, isolated_settings, wait_consumed
from segstream.domain.contracts import role_for, validate_output
from segstream.stream.topics import ensure_topics
from segstream.tools.publish import Record, publish
from segstream.tools.simulation.generator import SimulationConfig, generate

pytestmark = pytest.mark.asyncio(loop_scope="session")

CASES = int(os.environ.get("SEGSTREAM_TEST_BAD_RECORDS", "10000"))
"""How many bad records the test sends (make test: 10,000)."""


def original(letter: dict[str, Any]) -> tuple[int, str, bytes]:
    """Size and SHA-256 of the dead-lettered value, and the bytes the letter kept."""
    kept = base64.b64decode(letter["original_value_b64"])
    return letter["original_value_bytes"], letter["original_value_sha256"], kept


async def test_every_bad_record_is_dead_lettered_and_every_good_one_processed(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, "bad")
    await ensure_topics(settings)
    good = generate(
        SimulationConfig(
            seed=4, shops_per_kind=1, customers_per_shop=10, days=60, start=date(2025, 9, 1)
        )
    ).events
    shop_ids = sorted({event["shop_id"] for event in good})
    bad = bad_records(seed=8, count=CASES, shop_ids=shop_ids)
    step = max(1, len(bad) // len(good))
    good += [event for _, event in bound_events(seed=8, shop_ids=shop_ids)]
    pending = list(good)
    records: list[Record] = []
    for n, item in enumerate(bad):  # a good event after every ``step`` bad ones
        records.append((item.role, item.value))
        if n % step == 0 and pending:
            event = pending.pop(0)
            records.append((role_for(event), event))
    records += [(role_for(event), event) for event in pending]
    worker = WorkerProcess.for_settings(settings, tmp_path / "w")
    worker.start()
    try:
        worker.wait_ready()
        started = time.monotonic()
        await publish(records, settings)
        letters = await consume_all(
            settings.kafka_bootstrap,
            settings.topic("dead_letters"),
            until=lambda got: len(got) >= len(bad) or not worker.running(),
            timeout_s=600,
        )
        worker.assert_running()
        # the last good events follow the last bad one: every dead letter out does not mean
        # every good event folded (CI read 376 of 387), so wait for the group's commits
        await wait_consumed(settings, worker)
        processed = worker.metric("segstream_events_total", outcome="processed")
        print(
            f"{len(bad)} bad records of {len(records)} dead-lettered in "
            f"{time.monotonic() - started:.0f} s"
        )
    finally:
        worker.stop()
    payloads = [json.loads(record.value) for record in letters]
    assert len(payloads) == len(bad)
    for payload in payloads[:: max(1, len(payloads) // 500)]:
        validate_output("dead_letter", payload)
    got = Counter((p["reason"], *original(p)[:2]) for p in payloads)
    wanted = Counter(
        (item.reason, len(item.value), hashlib.sha256(item.value).hexdigest()) for item in bad
    )
    assert got == wanted
    for payload in payloads:
        size, _, kept = original(payload)
        assert len(kept) == min(size, 64 * 1024)
        assert payload["original_value_truncated"] == (size > 64 * 1024)
    unique_good = len({event["event_id"] for event in good})
    assert processed == unique_good
