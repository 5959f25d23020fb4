"""Learned models on the real broker: planted groups, planted churners, a crash mid-stream.

One simulated year of two shops (coffee roaster, tea house; 150 customers each, the
default persona mix) goes through a real worker week by week. After August the worker
is SIGKILLed while the first week of September is in flight, and a fresh worker on an
empty data directory (same app id) finishes the year. One tick order per shop after the
last event makes the final full re-evaluation cover every customer. Then:

- the ``cluster`` segments recover the planted personas (adjusted Rand index), and the
  holiday gifters are announced as a newly formed group in November-December;
- churn risk separates the planted churners (progressive-validation ROC AUC from
  ``/shops/{id}/models``, and the risk bands carried just before churning);
- the learned models continued after the crash instead of starting from zero;
- each shop's models stay small.

Publishing week by week keeps the input topics (consumed independently) within a
week of each other, closer to a live platform's, instead of one topic racing months ahead
of the others. The skew matters: a shop's stream time is the latest event seen on any
topic, so a renewal still queued on the orders topic makes its customer look lapsed. In
in-process replays, topics a month apart labelled 60-90 % more snapshots churned than
the same events in time order; a week apart, no more.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from harness.kafka_io import consume_all, read_table
from harness.workers import WorkerProcess, isolated_settings, until, wait_consumed
from segstream.domain.contracts import validate_output
from segstream.domain.events import parse_time
from segstream.learning.quality import adjusted_rand_index
from segstream.settings import Settings
from segstream.stream.topics import ensure_topics
from segstream.tools.publish import Record, publish
from segstream.tools.simulation.generator import (
    CustomerTruth,
    Simulation,
    SimulationConfig,
    generate,
)
from segstream.tools.simulation.shops import KINDS, Shop
from tests.integration.ticks import tick_orders

pytestmark = pytest.mark.asyncio(loop_scope="session")

SHOPS = (Shop("coffee-roaster-1", KINDS[0]), Shop("tea-house-1", KINDS[1]))
CUSTOMERS_PER_SHOP = 150
CRASH_AT = datetime(2025, 9, 1, tzinfo=UTC)
"""Killed while the first week of September is in flight: the holiday group has to form
after the restore."""


def simulation_config() -> SimulationConfig:
    return SimulationConfig(
        seed=7, shops=SHOPS, customers_per_shop=CUSTOMERS_PER_SHOP, start=date(2025, 1, 1)
    )


@dataclass(frozen=True)
class ModelsView:
    """``/shops/{id}/models`` of every shop at one moment."""

    by_shop: dict[str, dict[str, Any]]

    def quality(self, shop_id: str, model: str, figure: str) -> float:
        return float(self.by_shop[shop_id][model]["quality"][figure])

    def size(self, shop_id: str, model: str) -> int:
        return int(self.by_shop[shop_id][model]["size_bytes"])


@dataclass(frozen=True)
class LearningRun:
    """Everything observed over the run; the tests only judge it."""

    simulation: Simulation
    before_crash: ModelsView
    after_restart: ModelsView
    final: ModelsView
    clusters_before_crash: dict[str, str]
    clusters_after_crash: dict[str, str]
    customers: dict[str, Any]
    outputs: list[dict[str, Any]]
    seconds: float


def weekly(outbox: Sequence[Record], start: date) -> list[list[Record]]:
    """The records in send order, cut into the weeks of ``occurred_at`` from ``start``."""
    chunks: dict[int, list[Record]] = defaultdict(list)
    for record in outbox:
        _, value = record
        assert not isinstance(value, bytes), "the learning stream has no invalid records"
        chunks[(parse_time(value["occurred_at"]).date() - start).days // 7].append(record)
    return [chunks[week] for week in sorted(chunks)]


def split_at(outbox: Sequence[Record], at: datetime) -> tuple[list[Record], list[Record]]:
    """The records that occurred before ``at`` and the others, each in send order."""
    earlier: list[Record] = []
    later: list[Record] = []
    for record in outbox:
        _, value = record
        assert not isinstance(value, bytes)
        (earlier if parse_time(value["occurred_at"]) < at else later).append(record)
    return earlier, later


async def wait_handled(worker: WorkerProcess, expected: float, timeout_s: float = 120) -> None:
    """Until the worker handled ``expected`` records since it started."""
    deadline = time.monotonic() + timeout_s
    while (handled := worker.events_handled()) is None or handled < expected:
        worker.assert_running()
        if time.monotonic() > deadline:
            raise AssertionError(f"handled {handled} of {expected}\n{worker.log_tail()}")
        await asyncio.sleep(0.2)


async def cluster_segments(settings: Settings) -> dict[str, str]:
    """``"shop/customer"`` -> the cluster segment the customer carries."""
    customers = await read_table(settings, "customers")
    return {
        key: state["segments"]["cluster"]
        for key, state in customers.items()
        if "cluster" in state["segments"]
    }


async def models_view(worker: WorkerProcess, timeout_s: float = 30) -> ModelsView:
    """Every shop's models as the worker reports them (a just-started worker may answer
    404 until its partitions are assigned)."""
    deadline = time.monotonic() + timeout_s
    by_shop = {}
    for shop in SHOPS:
        while True:
            status, body = worker.get_json(f"/shops/{shop.shop_id}/models")
            if status == 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert status == 200, body
        by_shop[shop.shop_id] = body["models"]
    return ModelsView(by_shop)


@pytest.fixture(scope="module")
async def run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> LearningRun:
    started = time.monotonic()
    settings = isolated_settings(kafka_bootstrap, "learn")
    await ensure_topics(settings)
    config = simulation_config()
    simulation = generate(config)
    outbox = simulation.outbox()
    before, rest = split_at(outbox, CRASH_AT)
    in_flight, after = split_at(rest, CRASH_AT + timedelta(days=7))
    ticks = tick_orders(outbox, timedelta(days=1), "final")
    data = tmp_path_factory.mktemp("learning")

    def worker(name: str) -> WorkerProcess:
        return WorkerProcess.for_settings(settings, data / name)

    first, second = worker("first"), worker("second")
    try:
        first.start()
        first.wait_ready()
        sent = 0
        for week in weekly(before, config.start):
            sent += await publish(week, settings)
            await wait_handled(first, sent)
        await wait_consumed(settings, first)
        before_crash = await models_view(first)
        clusters_before_crash = await cluster_segments(settings)
        await publish(in_flight, settings)
        first.kill()
        second.start()
        second.wait_ready(timeout_s=120)
        after_restart = await models_view(second)
        await wait_consumed(settings, second)
        clusters_after_crash = await cluster_segments(settings)
        # caught up, so the count stands still; a scrape answered too slowly is read again
        handled = until(second.events_handled, lambda n: n is not None, "events handled")
        assert handled is not None
        sent = 0
        for week in [*weekly(after, config.start), ticks]:
            sent += await publish(week, settings)
            await wait_handled(second, handled + sent)
        await wait_consumed(settings, second)
        final = await models_view(second)
    finally:
        first.kill()
        second.stop()
    outputs = [
        json.loads(record.value)
        for record in await consume_all(
            kafka_bootstrap, settings.topic("segment_changes"), timeout_s=60
        )
    ]
    return LearningRun(
        simulation=simulation,
        before_crash=before_crash,
        after_restart=after_restart,
        final=final,
        clusters_before_crash=clusters_before_crash,
        clusters_after_crash=clusters_after_crash,
        customers=await read_table(settings, "customers"),
        outputs=outputs,
        seconds=time.monotonic() - started,
    )


def shop_truth(run: LearningRun, shop_id: str) -> list[CustomerTruth]:
    return [truth for truth in run.simulation.truth if truth.shop_id == shop_id]


def final_cluster(run: LearningRun, shop_id: str, customer_id: str) -> str | None:
    segments: dict[str, str] = run.customers[f"{shop_id}/{customer_id}"]["segments"]
    return segments.get("cluster")


async def test_learned_clusters_recover_the_planted_personas(run: LearningRun) -> None:
    """Bound 0.5. The model's author measured ARI 0.84-0.95 in-process (200 customers, daily
    re-evaluation). Here, in-process replays with the topics interleaved at random within
    each week (8 orderings) gave 0.58-0.94 (coffee) and 0.63-0.96 (tea). The low values all
    come from one confusion: the occasional buyers merged with (part of) the loyal
    subscribers, both long-standing repeat buyers. Merging three of the six
    personas into one scores 0.50 (computed on these group sizes), random labels ~0: above
    0.5, at least four personas stand apart."""
    scores = {}
    for shop in SHOPS:
        truth = shop_truth(run, shop.shop_id)
        found = [str(final_cluster(run, shop.shop_id, t.customer_id)) for t in truth]
        assert "None" not in found, "every customer is assigned after the final re-evaluation"
        scores[shop.shop_id] = adjusted_rand_index([t.persona for t in truth], found)
    print(f"ARI per shop {scores}; run {run.seconds:.0f} s")
    assert all(score > 0.5 for score in scores.values()), scores


async def test_the_holiday_gifters_are_announced_as_a_new_group_in_season(
    run: LearningRun,
) -> None:
    """Gifters sign up from 1 November to 20 December only: a cluster formed in that season
    is announced on the segment-change topic, and at the end its members are mostly
    gifters."""
    formed = [message for message in run.outputs if message.get("kind") == "segment_formed"]
    for message in formed:
        validate_output("segment_formed", message)
    for shop in SHOPS:
        truth = shop_truth(run, shop.shop_id)
        gifters = {t.customer_id for t in truth if t.persona == "holiday_gifter"}
        members: dict[str, list[str]] = defaultdict(list)
        for t in truth:
            members[str(final_cluster(run, shop.shop_id, t.customer_id))].append(t.customer_id)
        in_season = [
            message["segment"]
            for message in formed
            if message["shop_id"] == shop.shop_id
            and message["model"] == "cluster"
            and parse_time(message["formed_at"]).month in (11, 12)
        ]
        gifter_groups = [
            segment
            for segment in in_season
            if sum(c in gifters for c in members[segment]) > len(members[segment]) / 2
        ]
        print(f"{shop.shop_id}: formed in season {in_season}, mostly gifters {gifter_groups}")
        assert gifter_groups, (in_season, {segment: len(ids) for segment, ids in members.items()})


def churn_risk_history(
    outputs: Sequence[Mapping[str, Any]],
) -> dict[str, list[tuple[datetime, str | None]]]:
    """``"shop/customer"`` -> (changed_at, band) of every churn_risk change, in time order."""
    history: dict[str, list[tuple[datetime, str | None]]] = defaultdict(list)
    for message in outputs:
        if message.get("kind") == "segment_changed" and message["model"] == "churn_risk":
            key = f"{message['shop_id']}/{message['customer_id']}"
            history[key].append((parse_time(message["changed_at"]), message["current"]))
    for changes in history.values():
        changes.sort(key=lambda change: change[0])
    return history


def at_risk(changes: Sequence[tuple[datetime, str | None]], at: datetime) -> bool:
    """Whether the band in effect at ``at`` (the last change at or before it) is medium or
    high; never assigned or out of scope counts as not at risk."""
    band = None
    for changed_at, current in changes:
        if changed_at > at:
            break
        band = current
    return band in ("medium", "high")


async def test_churn_risk_separates_planted_churners(run: LearningRun) -> None:
    """Progressive-validation ROC AUC (each prediction scored with the probability published
    when it was made, before its label was learned) above 0.65 on at least 1000 labelled
    snapshots. The model's author measured 0.75-0.90; in-process replays of these shops with
    week-long topic skew gave 0.70-0.73 (coffee) and 0.76-0.79 (tea); the model that started
    over at a simulated crash, 0.49-0.57."""
    aucs = {}
    for shop in SHOPS:
        labelled = run.final.quality(shop.shop_id, "churn_risk", "labelled")
        positives = run.final.quality(shop.shop_id, "churn_risk", "positives")
        assert labelled >= 1000 and positives >= 100, (labelled, positives)
        aucs[shop.shop_id] = run.final.quality(shop.shop_id, "churn_risk", "roc_auc")
    print(f"churn risk progressive ROC AUC per shop {aucs}")
    assert all(auc > 0.65 for auc in aucs.values()), aucs


async def test_planted_churners_carry_a_risk_band_before_they_churn(run: LearningRun) -> None:
    """A day before they cancel or lapse, planted churners are in the medium or high band
    at least four times as often as the survivors signed up by then, on the same days, and
    more than 15 % of them are.

    The band is a calibrated P(leaving within 90 days) learned from the shop's own labels,
    which come 90 days late: churners of the first months (before any label) and the
    declining big spenders, who all leave in September before any of them was seen
    leaving, are mostly low. In-process, six orderings of the topics within each week:
    coffee 0.26-0.40 of churners against 0.01-0.04 of survivors, tea 0.38-0.43 against
    0.01-0.03; on the broker 0.43 against 0.05 and 0.40 against 0.01. The model before
    issue 25 (a likelihood of cancelling or lapsing, not
    calibrated: log loss 2.02 on a real shop) flagged 0.58-0.64 of churners but 0.24-0.29
    of survivors: a shop acting on its bands would have contacted a quarter of the
    customers who stay. This test asked for more than 40 % of churners and twice the
    survivors' rate before; the rate is now asked four times over and the share lower."""
    history = churn_risk_history(run.outputs)
    for shop in SHOPS:
        truth = shop_truth(run, shop.shop_id)
        survivors = [t for t in truth if not t.churned]
        churners: Counter[bool] = Counter()
        matched_survivors: Counter[bool] = Counter()
        for churner in truth:
            if churner.churned_at is None:
                continue
            day_before = parse_time(churner.churned_at) - timedelta(days=1)
            churners[at_risk(history[f"{shop.shop_id}/{churner.customer_id}"], day_before)] += 1
            for survivor in survivors:
                if parse_time(survivor.signup_at) < day_before:
                    key = f"{shop.shop_id}/{survivor.customer_id}"
                    matched_survivors[at_risk(history[key], day_before)] += 1
        churner_share = churners[True] / churners.total()
        survivor_share = matched_survivors[True] / matched_survivors.total()
        print(f"{shop.shop_id}: at risk {churner_share:.2f} of churners, {survivor_share:.2f}")
        assert churner_share > 0.15 and churner_share >= 4 * survivor_share


async def test_models_continue_after_a_crash_instead_of_starting_over(run: LearningRun) -> None:
    """The fresh worker restores each shop's models as the last committed batch left them
    (they are checkpointed with every batch): nothing learned before the crash is lost,
    and the cluster ids customers carried before the crash still name their groups after
    it (in-process, seeds 7-9: 93-100 % keep their id a week later; a model that starts
    over keeps 6-24 %)."""
    for shop in SHOPS:
        before = run.before_crash.quality(shop.shop_id, "churn_risk", "labelled")
        restarted = run.after_restart.quality(shop.shop_id, "churn_risk", "labelled")
        final = run.final.quality(shop.shop_id, "churn_risk", "labelled")
        print(f"{shop.shop_id}: churn labelled {before:.0f} -> {restarted:.0f} -> {final:.0f}")
        assert before >= 500
        assert restarted >= before
        assert final > restarted
        members_before = run.before_crash.quality(shop.shop_id, "cluster", "customers")
        members_restarted = run.after_restart.quality(shop.shop_id, "cluster", "customers")
        assert members_restarted >= members_before

    assigned = run.clusters_before_crash
    kept = sum(run.clusters_after_crash.get(key) == cluster for key, cluster in assigned.items())
    print(f"cluster ids kept a week after the crash: {kept} of {len(assigned)}")
    assert kept > 0.6 * len(assigned)


async def test_model_size_per_shop_is_bounded(run: LearningRun) -> None:
    """Bounded by construction (``n_clusters`` centres, a fixed feature vector; what a model
    keeps per customer lives in the customer's state): the checkpoint of a shop's learned
    models stays well below the 64 KiB every per-shop record is held to."""
    for shop in SHOPS:
        sizes = {name: run.final.size(shop.shop_id, name) for name in ("cluster", "churn_risk")}
        print(f"{shop.shop_id}: model size bytes {sizes}")
        assert sum(sizes.values()) < 64 * 1024
