"""Periodic work on every worker: live shops' clocks following the wall clock, metric
snapshots to Kafka, and Prometheus gauges.

Timers look only at the shops whose partitions this worker owns (the local tables),
so several workers never publish the same shop twice.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from jsonschema import ValidationError

from segstream.api.queries import model_reports
from segstream.domain.contracts import validate_output
from segstream.domain.encoding import compact_json
from segstream.engine.pipeline import Outcome, Pipeline
from segstream.metrics.snapshot import snapshot_payload
from segstream.observability import telemetry
from segstream.observability.heap_trim import HeapTrim
from segstream.observability.logs import get_logger
from segstream.settings import Settings
from segstream.state.keyspace import is_shop_key, shop_partition
from segstream.stream.catchup import CatchUp
from segstream.stream.checkpoint import ProducerRecord
from segstream.stream.lag import LagProbe
from segstream.stream.watchdog import StuckInput, refetch_stuck
from segstream.stream.wiring import Wiring

log = get_logger(__name__)
GAUGE_GRAIN = "30d"


def owned_shops(pipeline: Pipeline) -> Iterator[str]:
    """Shop ids in this worker's local shops table (not the per-partition records, nor a
    shop's other records such as ``<shop>|definitions``)."""
    for key in list(pipeline.shops.keys()):
        name = str(key)
        if is_shop_key(name):
            yield name


def owned_by_partition(wiring: Wiring) -> list[tuple[int, list[str]]]:
    """The owned shops grouped by partition, partitions in order (each partition's work
    is one commit, taken between its batches)."""
    grouped: dict[int, list[str]] = defaultdict(list)
    for shop_id in owned_shops(wiring.pipeline):
        grouped[shop_partition(shop_id, wiring.settings.topic_partitions)].append(shop_id)
    return sorted(grouped.items())


async def publish_snapshots(wiring: Wiring) -> int:
    """Send each owned shop's current metrics to the metrics topic; return how many.
    Each partition's snapshots are one commit, between the partition's batches."""
    pipeline, topic = wiring.pipeline, wiring.settings.topic("metrics")
    if not wiring.runner.ready:
        return 0

    def records(shop_ids: list[str]) -> list[ProducerRecord]:
        made = (snapshot_record(pipeline, topic, shop_id) for shop_id in shop_ids)
        return [record for record in made if record is not None]

    sent = 0
    for partition, shop_ids in owned_by_partition(wiring):
        sent += await wiring.runner.publish(partition, functools.partial(records, shop_ids))
    return sent


def snapshot_record(pipeline: Pipeline, topic: str, shop_id: str) -> ProducerRecord | None:
    """The shop's metrics snapshot as a record of ``topic``; None for a shop without events
    and for a snapshot that cannot be made or breaks its own schema. Either is a bug: it
    is logged with the shop (a schema failure also counted), and the partition's other
    shops still get theirs."""
    now = pipeline.stream_time(shop_id)
    if now is None:
        return None
    try:
        payload = snapshot_payload(shop_id, now, pipeline.ledger)
    except Exception:
        log.exception("metric_snapshot_failed", shop_id=shop_id)
        return None
    try:
        validate_output("metrics_snapshot", payload)
    except ValidationError as error:
        telemetry.count_output_schema_failure("metrics_snapshot")
        where = "/".join(str(part) for part in error.absolute_path)
        log.error(
            "output_schema_failure",
            output="metrics_snapshot",
            shop_id=shop_id,
            path=where,
            error=error.message[:200],
        )
        return None
    return ProducerRecord(topic, shop_id.encode(), compact_json(payload))


async def advance_clocks(wiring: Wiring, now: datetime) -> int:
    """Move every owned live shop's clock to ``now`` (see :meth:`Pipeline.advance_clock`),
    one commit per partition; return how many segment changes that made."""
    pipeline, settings = wiring.pipeline, wiring.settings
    if not wiring.runner.ready:
        return 0

    def moved(shop_ids: list[str]) -> list[Outcome]:
        found = (pipeline.advance_clock(s, now, settings.wall_clock_live_s) for s in shop_ids)
        return [outcome for outcome in found if outcome is not None]

    changed = 0
    for partition, shop_ids in owned_by_partition(wiring):
        changed += await wiring.runner.advance(partition, functools.partial(moved, shop_ids))
    return changed


async def reevaluate_definitions(wiring: Wiring) -> int:
    """One step of every unfinished re-evaluation of shop-defined segments (at most
    ``reevaluation_customers`` customers per shop), one commit per partition; return how
    many segment changes that made."""
    pipeline, settings = wiring.pipeline, wiring.settings
    if not wiring.runner.ready:
        return 0
    grouped: dict[int, list[str]] = defaultdict(list)
    for shop_id in pipeline.reevaluating():
        grouped[shop_partition(shop_id, settings.topic_partitions)].append(shop_id)

    def step(shop_ids: list[str]) -> list[Outcome]:
        found = (pipeline.reevaluate(s, settings.reevaluation_customers) for s in shop_ids)
        return [outcome for outcome in found if outcome is not None]

    changed = 0
    for partition, shop_ids in sorted(grouped.items()):
        changed += await wiring.runner.advance(partition, functools.partial(step, shop_ids))
    return changed


def refresh_gauges(wiring: Wiring, per_shop: bool) -> None:
    """Table sizes, segment sizes, churn/retention, and learned-model quality and size."""
    pipeline = wiring.pipeline
    telemetry.set_table_entries({name: len(table) for name, table in wiring.tables.items()})
    sizes: dict[str, dict[tuple[str, str], int]] = {}
    rates: list[telemetry.WindowRates] = []
    quality: dict[tuple[str, str], list[float]] = {}
    model_bytes: dict[str, int] = {}
    for shop_id in owned_shops(pipeline):
        now = pipeline.stream_time(shop_id)
        if now is None:
            continue
        sizes[shop_id] = {
            (model, segment): count
            for model, counts in pipeline.book(shop_id).sizes.items()
            for segment, count in counts.items()
        }
        window = pipeline.ledger.window(shop_id, GAUGE_GRAIN, now.date())
        rates.append(
            telemetry.WindowRates(
                shop_id,
                GAUGE_GRAIN,
                window.subscribers_start,
                window.churn_rate,
                window.retention_rate,
            )
        )
        _collect_models(pipeline, shop_id, quality, model_bytes)
    telemetry.set_segment_sizes(sizes, per_shop)
    telemetry.set_window_rates(rates, per_shop)
    telemetry.set_model_quality(_mean(quality))
    telemetry.set_model_sizes(model_bytes)


def _collect_models(
    pipeline: Pipeline,
    shop_id: str,
    quality: dict[tuple[str, str], list[float]],
    model_bytes: dict[str, int],
) -> None:
    for name, report in model_reports(pipeline.reader, shop_id).items():
        for metric, value in report["quality"].items():
            if metric not in ("labelled", "positives") and value is not None:
                quality.setdefault((name, metric), []).append(float(value))
        if report["size_bytes"] is not None:
            model_bytes[name] = model_bytes.get(name, 0) + int(report["size_bytes"])


def _mean(values: dict[tuple[str, str], list[float]]) -> dict[tuple[str, str], float]:
    return {key: sum(v) / len(v) for key, v in values.items() if v}


def register_heap_trim(app: Any, settings: Settings, heap: HeapTrim) -> bool:
    """Trim the heap every ``heap_trim_interval_s`` (not when 0, nor off glibc); whether
    a timer was declared."""
    if settings.heap_trim_interval_s <= 0 or not heap.available:
        return False

    async def trim() -> None:
        try:
            await heap.run_in_thread()
        except Exception:  # a timer's exception would end the worker
            log.exception("heap_trim_failed")

    app.timer(settings.heap_trim_interval_s)(trim)
    return True


def register_timers(wiring: Wiring, settings: Settings, input_topics: list[str]) -> None:
    """Declare the clock, snapshot, gauge and lag timers on the app."""
    app = wiring.app
    probe = LagProbe.from_settings(settings, input_topics)
    watch = StuckInput(settings.input_stuck_after_s)
    progress = CatchUp(settings.catch_up_report_records, settings.catch_up_report_every_s)

    async def snapshots() -> None:
        try:
            sent = await publish_snapshots(wiring)
            log.debug("metric_snapshots_published", shops=sent)
        except Exception:
            log.exception("metric_snapshots_failed")

    async def gauges() -> None:
        # a parked partition's rejoin request lost: ask again (after two session timeouts)
        wiring.runner.checkpoint.remind(2 * settings.broker_session_timeout_s)
        if not wiring.runner.ready:  # half-recovered tables would read as wrong figures
            return
        try:
            refresh_gauges(wiring, settings.metrics_per_shop_labels)
        except Exception:
            log.exception("gauge_refresh_failed")

    async def lag() -> None:
        measured = await probe.update()
        if measured is None:
            return
        await refetch_stuck(wiring.runner, watch, measured, probe.committed, probe.waiting)
        if not wiring.runner.ready:
            progress.forget()  # a rebalance: other partitions, other offsets
            return
        now, owned = time.monotonic(), wiring.runner.checkpoint.partitions
        progress.report(progress.measure(measured, probe.committed, owned, now), now)

    async def clocks() -> None:
        try:
            changed = await advance_clocks(wiring, datetime.now(UTC).replace(microsecond=0))
            log.debug("live_shop_clocks_advanced", changes=changed)
        except Exception:
            log.exception("clock_advance_failed")

    async def reevaluations() -> None:
        try:
            changed = await reevaluate_definitions(wiring)
            if changed:
                log.debug("definitions_reevaluated", changes=changed)
        except Exception:
            log.exception("reevaluation_failed")

    app.timer(settings.reevaluation_interval_s)(reevaluations)
    app.timer(settings.metrics_snapshot_interval_s)(snapshots)
    app.timer(settings.gauges_interval_s)(gauges)
    app.timer(settings.wall_clock_interval_s)(clocks)
    app.timer(settings.lag_interval_s)(lag)
    register_heap_trim(app, settings, HeapTrim.from_system())

    async def close_probe(sender: Any, *args: Any, **kwargs: Any) -> None:
        await probe.stop()

    app.on_before_shutdown.connect(close_probe)  # type: ignore[arg-type]
