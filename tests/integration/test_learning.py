"""Learned models on the real broker: planted groups, planted churners, a crash mid-stream.

One simulated year of two shops (coffee roaster, tea house; 150 customers each, the
default persona mix) goes through a real worker month by month. After August the worker
is SIGKILLed while September is in flight, and a fresh worker on an empty data directory
(same app id) finishes the year. One tick order per shop after the last event makes the
final full re-evaluation cover every customer. Then:

- the ``cluster`` segments recover the planted personas (adjusted Rand index), and the
  holiday gifters are announced as a newly formed group in November-December;
- churn risk separates the planted churners (progressive-validation ROC AUC from
  ``/shops/{id}/models``, and the risk bands carried just before churning);
- the learned models continued after the crash instead of starting from zero;
- each shop's models stay small.

Publishing month by month keeps the three input topics (consumed independently) within a
month of each other, as a live platform's would be, instead of one topic racing a year
ahead of the others.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from service.events import format_time, parse_time
from service.lag import consumer_lag
from service.learning.quality import adjusted_rand_index
from service.publish import ROLES, Record, publish
from service.segments.churn_risk import ChurnRiskModel
from service.settings import Settings
from service.simulation.generator import CustomerTruth, Simulation, SimulationConfig, generate
from service.simulation.shops import KINDS, Shop
from service.topics import changelog_topic, ensure_topics
from tests.integration.kafka_io import consume_all
from tests.integration.worker_process import WorkerProcess, free_port, unique_name

pytestmark = pytest.mark.asyncio(loop_scope="session")

SHOPS = (Shop("coffee-roaster-1", KINDS[0]), Shop("tea-house-1", KINDS[1]))
CUSTOMERS_PER_SHOP = 150
CHECKPOINT_EVERY = 20
RESCORE_HOURS = 72.0
"""Every 3 days of stream time instead of daily: a year of daily re-evaluations of 300
customers costs minutes on a 2-core machine; the cluster model still sees ~120 updates per
customer (measured in-process, seeds 7-8: ARI 0.75-0.96 at 72 h, 0.70-0.92 at 24 h)."""
CRASH_MONTH = 9
"""Killed while September is in flight: the holiday group has to form after the restore."""


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
    restored: ModelsView
    final: ModelsView
    clusters_before_crash: dict[str, str]
    clusters_after_crash: dict[str, str]
    customers: dict[str, Any]
    outputs: list[dict[str, Any]]
    seconds: float


def monthly(outbox: Sequence[Record]) -> list[list[Record]]:
    """The records in send order, cut where the month of ``occurred_at`` changes."""
    chunks: dict[str, list[Record]] = {}
    for record in outbox:
        _, value = record
        assert not isinstance(value, bytes), "the learning stream has no invalid records"
        chunks.setdefault(value["occurred_at"][:7], []).append(record)
    return list(chunks.values())


def tick_orders(outbox: Sequence[Record], after: timedelta) -> list[Record]:
    """One order per shop ``after`` its last event: the shop's re-evaluation then falls due
    and every customer is assigned by the final models (see ticks() in test_recovery)."""
    latest: dict[str, datetime] = {}
    for _, value in outbox:
        assert not isinstance(value, bytes)
        at = parse_time(value["occurred_at"])
        latest[value["shop_id"]] = max(latest.get(value["shop_id"], at), at)
    return [
        (
            "orders",
            {
                "schema_version": 1,
                "type": "order",
                "event_id": f"tick-{shop}",
                "shop_id": shop,
                "customer_id": "tick",
                "occurred_at": format_time(at + after),
                "order_id": "tick",
                "amount": 1.0,
                "currency": "EUR",
                "is_renewal": False,
            },
        )
        for shop, at in sorted(latest.items())
    ]


async def wait_consumed(settings: Settings, worker: WorkerProcess, timeout_s: float = 120) -> None:
    """Until the group committed every input record (Faust commits only what it processed,
    after flushing the changelog writes), so the tables' changelogs are complete."""
    topics = [settings.topic(role) for role in ROLES.values()]
    deadline = time.monotonic() + timeout_s
    while True:
        worker.assert_running()
        lag = await consumer_lag(settings, settings.app_id, topics)
        if lag and sum(lag.values()) == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"lag {lag} after {timeout_s} s\n{worker.log_tail()}")
        await asyncio.sleep(0.5)


async def latest_values(settings: Settings, table: str) -> dict[str, Any]:
    """Last value per key of a table's changelog."""
    latest: dict[str, Any] = {}
    topic = changelog_topic(settings, table)
    for record in await consume_all(settings.kafka_bootstrap, topic, timeout_s=30):
        latest[json.loads(record.key)] = None if record.value is None else json.loads(record.value)
    return {key: value for key, value in latest.items() if value is not None}


async def cluster_segments(settings: Settings) -> dict[str, str]:
    """``"shop/customer"`` -> the cluster segment the customer carries."""
    customers = await latest_values(settings, "customers")
    return {
        key: state["segments"]["cluster"]
        for key, state in customers.items()
        if "cluster" in state["segments"]
    }


def models_view(worker: WorkerProcess) -> ModelsView:
    by_shop = {}
    for shop in SHOPS:
        status, body = worker.get_json(f"/shops/{shop.shop_id}/models")
        assert status == 200, body
        by_shop[shop.shop_id] = body["models"]
    return ModelsView(by_shop)


@pytest.fixture(scope="module")
async def run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> LearningRun:
    started = time.monotonic()
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        app_id=unique_name("segstream-learn"),
        topic_prefix=unique_name("learn") + ".",
        topic_partitions=4,
        model_checkpoint_every=CHECKPOINT_EVERY,
        rescore_interval_hours=RESCORE_HOURS,
    )
    await ensure_topics(settings)
    simulation = generate(simulation_config())
    outbox = simulation.outbox()
    months = monthly(outbox)
    crash = next(i for i, chunk in enumerate(months) if chunk[0][1]["occurred_at"][5:7] == "09")
    ticks = tick_orders(outbox, timedelta(hours=RESCORE_HOURS + 24))
    data = tmp_path_factory.mktemp("learning")

    def worker(name: str) -> WorkerProcess:
        return WorkerProcess(
            kafka_bootstrap,
            settings.app_id,
            settings.topic_prefix,
            free_port(),
            data / name,
            partitions=settings.topic_partitions,
            extra_env={
                "SEGSTREAM_MODEL_CHECKPOINT_EVERY": str(CHECKPOINT_EVERY),
                "SEGSTREAM_RESCORE_INTERVAL_HOURS": str(RESCORE_HOURS),
            },
        )

    first, second = worker("first"), worker("second")
    try:
        first.start()
        first.wait_ready()
        for chunk in months[:crash]:
            await publish(chunk, settings)
            await wait_consumed(settings, first)
        before_crash = models_view(first)
        clusters_before_crash = await cluster_segments(settings)
        await publish(months[crash], settings)
        first.kill()
        second.start()
        second.wait_ready(timeout_s=120)
        restored = models_view(second)
        await wait_consumed(settings, second)
        clusters_after_crash = await cluster_segments(settings)
        for chunk in [*months[crash + 1 :], ticks]:
            await publish(chunk, settings)
            await wait_consumed(settings, second)
        final = models_view(second)
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
        restored=restored,
        final=final,
        clusters_before_crash=clusters_before_crash,
        clusters_after_crash=clusters_after_crash,
        customers=await latest_values(settings, "customers"),
        outputs=outputs,
        seconds=time.monotonic() - started,
    )


def shop_truth(run: LearningRun, shop_id: str) -> list[CustomerTruth]:
    return [truth for truth in run.simulation.truth if truth.shop_id == shop_id]


def final_cluster(run: LearningRun, shop_id: str, customer_id: str) -> str | None:
    segments: dict[str, str] = run.customers[f"{shop_id}/{customer_id}"]["segments"]
    return segments.get("cluster")


async def test_learned_clusters_recover_the_planted_personas(run: LearningRun) -> None:
    """Bound 0.6: the model's author measured ARI 0.84-0.95 in-process on 200-customer
    shops; on these two 150-customer shops, re-evaluated every 3 days, in-process replays
    give 0.75-0.96 (seeds 7-8), with or without a restore from a checkpoint. 0.6 leaves
    room for the worker's topic interleaving and still means the personas are recovered
    (a labelling that ignores one of six equal groups scores ~0.8; random ~0)."""
    scores = {}
    for shop in SHOPS:
        truth = shop_truth(run, shop.shop_id)
        found = [str(final_cluster(run, shop.shop_id, t.customer_id)) for t in truth]
        assert "None" not in found, "every customer is assigned after the final re-evaluation"
        scores[shop.shop_id] = adjusted_rand_index([t.persona for t in truth], found)
    print(f"ARI per shop {scores}; run {run.seconds:.0f} s")
    assert all(score > 0.6 for score in scores.values()), scores


async def test_the_holiday_gifters_are_announced_as_a_new_group_in_season(
    run: LearningRun,
) -> None:
    """Gifters sign up 1 Nov - 20 Dec only; the group they form is announced once, in
    season, and its members at the end are mostly gifters."""
    formed = [
        message
        for message in run.outputs
        if message.get("kind") == "segment_formed" and message["model"] == "cluster"
    ]
    for shop in SHOPS:
        truth = shop_truth(run, shop.shop_id)
        gifters = {t.customer_id for t in truth if t.persona == "holiday_gifter"}
        members: dict[str, list[str]] = defaultdict(list)
        for t in truth:
            members[str(final_cluster(run, shop.shop_id, t.customer_id))].append(t.customer_id)
        in_season = [
            message
            for message in formed
            if message["shop_id"] == shop.shop_id
            and parse_time(message["formed_at"]).month in (11, 12)
        ]
        gifter_groups = [
            message["segment"]
            for message in in_season
            if len(members[message["segment"]]) > 0
            and sum(c in gifters for c in members[message["segment"]])
            > len(members[message["segment"]]) / 2
        ]
        assert gifter_groups, (shop.shop_id, in_season, {k: len(v) for k, v in members.items()})


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


def band_at(changes: Sequence[tuple[datetime, str | None]], at: datetime) -> str | None:
    """The band in effect at ``at``: the last change at or before it."""
    band = None
    for changed_at, current in changes:
        if changed_at > at:
            break
        band = current
    return band


async def test_churn_risk_ranks_planted_churners_above_survivors(run: LearningRun) -> None:
    """Progressive-validation AUC (every prediction scored before its label was learned)
    above 0.65 on at least 1000 labelled snapshots: the model's author measured 0.75-0.90;
    in-process replays of these shops give 0.73-0.77, and a model that learned nothing
    (reset) 0.49-0.57. Then the bands themselves: a day before they churned, planted
    churners are in medium or high risk far more often than survivors on the same days."""
    aucs = {}
    for shop in SHOPS:
        labelled = run.final.quality(shop.shop_id, "churn_risk", "labelled")
        positives = run.final.quality(shop.shop_id, "churn_risk", "positives")
        assert labelled >= 1000 and positives >= 100, (labelled, positives)
        aucs[shop.shop_id] = run.final.quality(shop.shop_id, "churn_risk", "roc_auc")
    print(f"churn risk progressive ROC AUC per shop {aucs}")
    assert all(auc > 0.65 for auc in aucs.values()), aucs

    history = churn_risk_history(run.outputs)
    for shop in SHOPS:
        truth = shop_truth(run, shop.shop_id)
        survivors = [t for t in truth if not t.churned]
        churner_bands: Counter[bool] = Counter()
        survivor_bands: Counter[bool] = Counter()
        for churner in (t for t in truth if t.churned and t.churned_at is not None):
            day_before = parse_time(churner.churned_at) - timedelta(days=1)
            key = f"{shop.shop_id}/{churner.customer_id}"
            churner_bands[band_at(history[key], day_before) in ("medium", "high")] += 1
            for survivor in survivors:
                if parse_time(survivor.signup_at) < day_before:
                    key = f"{shop.shop_id}/{survivor.customer_id}"
                    survivor_bands[band_at(history[key], day_before) in ("medium", "high")] += 1
        churner_share = churner_bands[True] / churner_bands.total()
        survivor_share = survivor_bands[True] / survivor_bands.total()
        print(f"{shop.shop_id}: at risk {churner_share:.2f} of churners, {survivor_share:.2f}")
        assert churner_share > 0.4 and churner_share > 3 * survivor_share


async def test_models_continue_after_a_crash_instead_of_starting_over(run: LearningRun) -> None:
    """The fresh worker restores each shop's last checkpoint: it lost at most the learning
    of one checkpoint interval (each event settles at most ``per_customer`` snapshots of
    its customer), and the cluster ids customers carried before the crash still mean the
    same groups after it (in-process: 72-96 % keep their id a month later; after a
    reset 13-40 %)."""
    per_customer = ChurnRiskModel.from_settings(Settings()).labels.per_customer
    most_lost = CHECKPOINT_EVERY * per_customer
    for shop in SHOPS:
        before = run.before_crash.quality(shop.shop_id, "churn_risk", "labelled")
        restored = run.restored.quality(shop.shop_id, "churn_risk", "labelled")
        final = run.final.quality(shop.shop_id, "churn_risk", "labelled")
        print(
            f"{shop.shop_id}: churn labelled {before:.0f} -> restored {restored:.0f} -> {final:.0f}"
        )
        assert before >= 500
        assert restored >= before - most_lost
        assert final > restored
        members_before = run.before_crash.quality(shop.shop_id, "cluster", "customers")
        members_restored = run.restored.quality(shop.shop_id, "cluster", "customers")
        assert members_restored >= members_before - CHECKPOINT_EVERY

    prefix = tuple(f"{shop.shop_id}/" for shop in SHOPS)
    before = {k: v for k, v in run.clusters_before_crash.items() if k.startswith(prefix)}
    kept = sum(run.clusters_after_crash.get(key) == cluster for key, cluster in before.items())
    print(f"cluster ids kept a month after the crash: {kept} of {len(before)}")
    assert kept > 0.6 * len(before)


async def test_model_size_per_shop_is_bounded(run: LearningRun) -> None:
    """Bounded by construction: ``n_clusters`` centres; at most ``churn_max_pending``
    snapshots. Measured 10-12 kB (cluster) and 120-145 kB (churn risk) in-process."""
    for shop in SHOPS:
        sizes = {name: run.final.size(shop.shop_id, name) for name in ("cluster", "churn_risk")}
        print(f"{shop.shop_id}: model size bytes {sizes}")
        assert sum(sizes.values()) < 2_000_000
