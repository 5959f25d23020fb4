"""Upgrades lose nothing: a worker of the first release (git tag ``v0.1.0``, its ``service/``
tree taken from this clone's history) folds the first half of a history and is SIGKILLed
while it folds more; a worker of this checkout takes over the same app id, data directory
(the old release's RocksDB files) and topics, and folds the rest. What it ends with must
equal one run of today's code over every record:

- every customer's facts and lifecycle segment (the committed customers table, and the
  lifecycle sizes the API answers), as :mod:`tests.integration.test_recovery` compares them;
- the change topic: per customer and model one unbroken chain across both releases,
  nothing twice, ending at the table's segment (:func:`tests.chaos.check_changes`);
- the month windows of every shop (the metrics table, read by today's ledger);
- the learned models: the checkpoints the old release wrote load with today's code and
  report what the old worker reported (so the new worker resumes them instead of
  starting afresh), and the new worker logs no unreadable checkpoint.

What differs on purpose: segment flows (``/shops/{id}/flows``) began with the release
after 0.1.0, so the months the old worker folded have none (:func:`check_flows` says so);
the windows compared hold no flows. A missing tag fails the test (:mod:`harness.releases`).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from harness.kafka_io import consume_all, read_table
from harness.releases import FIRST_RELEASE, ReleaseError, extract_release
from harness.stores import feed
from harness.workers import WorkerProcess, isolated_settings, wait_consumed
from segstream.engine.pipeline import Pipeline
from segstream.metrics.ledger import MetricsLedger
from segstream.metrics.windows import BadWindowError
from segstream.settings import Settings
from segstream.state.keyspace import definitions_key
from segstream.state.model_store import Checkpoints
from segstream.stream.topics import ensure_topics
from segstream.tools.publish import publish
from segstream.tools.simulation.generator import SimulationConfig, generate
from tests.chaos import Faults, Report, check_changes
from tests.integration.test_recovery import wait_until_equal
from tests.integration.ticks import tick_orders

pytestmark = pytest.mark.asyncio(loop_scope="session")

METRICS_ENV = {
    # Three topics consumed independently deliver months of event time in seconds: allow
    # the whole span as lateness (as the chaos run does), so windows do not depend on it.
    "SEGSTREAM_METRICS_ALLOWED_LATENESS_DAYS": "400",
    "SEGSTREAM_METRICS_RETENTION_DAYS": "800",
}
START = date(2025, 3, 1)
CRASH_AFTER = 150
"""Records of some shops published before the old worker is SIGKILLed, as soon as the
broker acknowledged them: it is usually still folding them (nothing waits for it), so the
new worker takes over a batch the old one left uncommitted, or, when the old one was
quicker, only its committed state (measured: the group had committed none of the 150 when
the kill came, in 3 runs of 3)."""


def old_release(tmp_path: Path) -> Path:
    """The first release's ``service/`` folder; fails (never skips) without the tag."""
    try:
        return extract_release(FIRST_RELEASE, tmp_path / "release")
    except ReleaseError as error:
        pytest.fail(str(error), pytrace=False)


def reference(records: list[Any], settings: Settings) -> dict[str, dict[str, Any]]:
    """Every table of one uninterrupted in-process run of today's code over ``records``."""
    tables: dict[str, dict[str, Any]] = {n: {} for n in ("customers", "shops", "models", "metrics")}
    feed(Pipeline(settings, *tables.values()), records)
    tables["customers"] = {k: s.to_json() for k, s in tables["customers"].items()}
    return tables


def no_nan(figures: dict[str, Any]) -> dict[str, Any]:
    """Quality figures as the API answers them (NaN: null)."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in figures.items()}


def model_figures(worker: WorkerProcess, shops: list[str]) -> dict[str, Any]:
    """Each shop's learned models' quality figures, as the worker reports them."""
    answers = {shop: worker.get_json(f"/shops/{shop}/models") for shop in shops}
    assert all(status == 200 for status, _ in answers.values()), answers
    return {
        shop: {m: r["quality"] for m, r in a["models"].items()} for shop, (_, a) in answers.items()
    }


def checkpoint_figures(models: dict[str, bytes], shops: list[str]) -> dict[str, Any]:
    """Each shop's checkpointed models loaded by today's code, with their quality figures
    (the models that report none left out, as the API leaves them)."""
    checkpoints = Checkpoints(models)
    loaded = {shop: checkpoints.load(shop) for shop in shops}
    return {
        shop: {name: no_nan(m.quality()) for name, m in found.items() if m.quality()}
        for shop, found in loaded.items()
    }


def month_windows(buckets: dict[str, Any], shops: list[str]) -> dict[tuple[str, str], Any]:
    """Every shop's month windows of the whole shop, read by today's ledger."""
    ledger = MetricsLedger(buckets, allowed_lateness_days=400, retention_days=800)
    months = [date(2025, month, 1) for month in range(3, 8)]
    return {
        (shop, month.isoformat()): asdict(ledger.window(shop, "month", month))
        for shop in shops
        for month in months
    }


async def settled(settings: Settings, worker: WorkerProcess, shops: list[str]) -> None:
    """Until the worker committed every input record and no shop has a pass under way: a
    learned model that retires a segment queues a pass over the shop's customers (with the
    shop's definitions, ``pending``), which a timer runs after the input is consumed and
    which moves customers and the model. Committed together, so then the tables, the
    change topic and the worker's memory agree."""
    await wait_consumed(settings, worker, timeout_s=60)
    deadline = time.monotonic() + 60
    while True:
        table = await read_table(settings, "shops")
        busy = [s for s in shops if (table.get(definitions_key(s)) or {}).get("pending")]
        if not busy:
            return
        assert time.monotonic() < deadline, f"passes still under way after 60 s: {busy}"
        await asyncio.sleep(0.5)


def lifecycle_flows(buckets: dict[str, Any], shops: list[str], month: date) -> dict[str, int]:
    """Customers who moved between lifecycle segments in ``month``, per shop."""
    ledger = MetricsLedger(buckets, allowed_lateness_days=400, retention_days=800)
    flows = {shop: ledger.flows(shop, "lifecycle", "month", month) for shop in shops}
    return {shop: sum(flow.customers for flow in found.flows) for shop, found in flows.items()}


def check_flows(buckets: dict[str, Any], expected: dict[str, Any], shops: list[str]) -> None:
    """The one difference on purpose: flows are counted from the release after 0.1.0 on,
    so a month the old worker folded is refused as not counted (not shown as nobody
    moving) where today's code alone counted some, and a month the new worker folded has
    them."""
    march, july = date(2025, 3, 1), date(2025, 7, 1)
    ledger = MetricsLedger(buckets, allowed_lateness_days=400, retention_days=800)
    for shop in shops:
        with pytest.raises(BadWindowError, match="segment flows are counted from"):
            ledger.flows(shop, "lifecycle", "month", march)
    assert 0 not in lifecycle_flows(expected, shops, march).values()
    assert 0 not in lifecycle_flows(buckets, shops, july).values()


def lifecycle_sizes(worker: WorkerProcess, shops: list[str]) -> dict[str, dict[str, int]]:
    """The lifecycle segment sizes the worker's API answers, per shop."""
    sizes = {}
    for shop in shops:
        status, answer = worker.get_json(f"/shops/{shop}/segments")
        assert status == 200, answer
        sizes[shop] = {s: n for s, n in answer["models"].get("lifecycle", {}).items() if n}
    return sizes


@dataclass(frozen=True)
class History:
    """The simulated records in the order they are sent: the first half and its ticks
    (old release), a crash chunk of some shops' next records (the old release dies
    folding it), then the rest and the last ticks (new code)."""

    shops: list[str]
    first_phase: list[Any]
    chunk: list[Any]
    rest: list[Any]
    last_ticks: list[Any]

    @property
    def crashing(self) -> set[str]:
        """The shops with records in the crash chunk."""
        return {value["shop_id"] for _, value in self.chunk}

    @property
    def everything(self) -> list[Any]:
        return self.first_phase + self.chunk + self.rest + self.last_ticks


def _shop_of(value: bytes | Mapping[str, Any]) -> str | None:
    return None if isinstance(value, bytes) else str(value["shop_id"])


def history() -> History:
    """Six shops' 150 days; the crash chunk holds every other shop's next
    :data:`CRASH_AFTER` records (each shop's records stay in their order), so the other
    shops' models are untouched between the old worker's last commit and the new worker's
    first answer."""
    simulation = generate(
        SimulationConfig(
            seed=30,
            shops_per_kind=1,
            customers_per_shop=12,
            start=START,
            days=150,
            duplicate_ratio=0.02,
            touchpoints=True,
        )
    )
    outbox = simulation.outbox()
    shops = sorted({e["shop_id"] for e in simulation.events})
    half = len(outbox) // 2
    first_ticks = tick_orders(outbox[:half], timedelta(days=2), "first")
    crashing = set(shops[::2])
    later = list(enumerate(outbox[half:]))
    chunk = {n for n, (_, value) in later if _shop_of(value) in crashing}
    chunk = set(sorted(chunk)[:CRASH_AFTER])
    return History(
        shops,
        outbox[:half] + first_ticks,
        [record for n, record in later if n in chunk],
        [record for n, record in later if n not in chunk],
        tick_orders(outbox, timedelta(days=2), "last"),
    )


async def run_old_release(settings: Settings, old: WorkerProcess, sent: History) -> dict[str, Any]:
    """The old worker folds the first phase (checked against today's code) and the crash
    chunk, and is SIGKILLed while it does; the model figures it reported before the
    chunk."""
    old.start()
    old.wait_ready(timeout_s=60)
    ticks = len(sent.shops)
    await publish(sent.first_phase[:-ticks], settings)
    await wait_consumed(settings, old, timeout_s=60)
    assert old.get_json(f"/shops/{sent.shops[0]}/flows")[0] == 404, "not the old release's code"
    await publish(sent.first_phase[-ticks:], settings)
    expected = reference(sent.first_phase, settings)["customers"]
    await wait_until_equal(settings, expected, old, timeout_s=60)
    await settled(settings, old, sent.shops)
    written_by_old = model_figures(old, sent.shops)
    models = await read_table(settings, "models")
    assert checkpoint_figures(models, sent.shops) == written_by_old
    checkpoints = Checkpoints(models)
    assert all(set(checkpoints.load(k)) == set(checkpoints.sizes(k)) for k in models), models
    await publish(sent.chunk, settings)
    old.kill()
    return written_by_old


async def run_new_code(
    settings: Settings, new: WorkerProcess, sent: History, written_by_old: dict[str, Any]
) -> dict[str, Any]:
    """The new worker takes over, answers the untouched shops' models as the old worker
    left them, and folds the rest; the committed customers table at the end."""
    new.start()
    new.wait_ready(timeout_s=60)
    untouched = [shop for shop in sent.shops if shop not in sent.crashing]
    assert untouched and model_figures(new, untouched) == {
        shop: written_by_old[shop] for shop in untouched
    }
    await publish(sent.rest, settings)
    await wait_consumed(settings, new, timeout_s=60)
    await publish(sent.last_ticks, settings)
    expected = reference(sent.everything, settings)["customers"]
    await wait_until_equal(settings, expected, new, timeout_s=60)
    await settled(settings, new, sent.shops)
    return await read_table(settings, "customers")


async def check_chains(settings: Settings, table: dict[str, Any]) -> None:
    """The change topic holds one unbroken chain per customer and model, across both
    releases, each change once, ending at the table's segment."""
    report = Report(0, Faults())
    changes = await consume_all(
        settings.kafka_bootstrap, settings.topic("segment_changes"), timeout_s=60
    )
    check_changes(report, [json.loads(r.value) for r in changes], table)
    assert (report.lost, report.duplicated) == (0, 0), report.details
    assert changes, "no segment changed"


async def test_state_of_the_first_release_is_read_by_todays_code(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    service = old_release(tmp_path)
    settings = isolated_settings(kafka_bootstrap, "upgrade").model_copy(
        update={"metrics_allowed_lateness_days": 400, "metrics_retention_days": 800}
    )
    await ensure_topics(settings, changelogs=True)
    sent = history()
    data = tmp_path / "data"
    old = WorkerProcess.for_settings(settings, data, {**METRICS_ENV, "PYTHONPATH": str(service)})
    new = WorkerProcess.for_settings(settings, data, METRICS_ENV)
    try:
        written_by_old = await run_old_release(settings, old, sent)
        table = await run_new_code(settings, new, sent, written_by_old)
        sizes = lifecycle_sizes(new, sent.shops)
    finally:
        old.kill()
        new.stop()
    assert "checkpoint_unreadable" not in new.log_path.read_text(errors="replace")
    await check_chains(settings, table)
    expected = reference(sent.everything, settings)
    assert sizes == {
        shop: {s: n for s, n in expected["shops"][shop]["sizes"].get("lifecycle", {}).items() if n}
        for shop in sent.shops
    }
    buckets = await read_table(settings, "metrics")
    assert month_windows(buckets, sent.shops) == month_windows(expected["metrics"], sent.shops)
    check_flows(buckets, expected["metrics"], sent.shops)
