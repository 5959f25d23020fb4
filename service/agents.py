"""Stream wiring: topics, tables, the agent and the web views. Logic lives in
:mod:`service.pipeline`; this module only moves records between it and Kafka."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
from prometheus_client import generate_latest

from service import telemetry
from service.changes import Source
from service.contracts import EventType
from service.pipeline import Outcome, Pipeline
from service.settings import Settings, TopicRole

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"
"""Prometheus text format (aiohttp sets the charset itself)."""

INPUT_ROLES: dict[TopicRole, EventType] = {
    "signups": EventType.SIGNUP,
    "orders": EventType.ORDER,
    "cancellations": EventType.CANCELLATION,
}


@dataclass(frozen=True, slots=True)
class Wiring:
    """Handles on what :func:`wire` declared (the API and tests use them)."""

    app: faust.App
    pipeline: Pipeline
    customers: Any
    shops: Any


def wire(app: faust.App, settings: Settings) -> Wiring:
    """Declare topics, tables, the agent and ``/metrics`` on ``app``."""
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
           "value_serializer": "raw", "partitions": settings.topic_partitions}
    expected = {settings.topic(role): kind for role, kind in INPUT_ROLES.items()}
    inputs = app.topic(*expected, **raw)
    segment_changes = app.topic(settings.topic("segment_changes"), **raw)
    dead_letters = app.topic(settings.topic("dead_letters"), **raw)
    table_options = {"default": None, "partitions": settings.topic_partitions,
                     "schema": faust.Schema(key_serializer="json", value_serializer="json")}
    customers = app.Table("customers", **table_options)
    shops = app.Table("shops", **table_options)
    pipeline = Pipeline(settings, customers, shops)

    @app.agent(inputs)
    async def process(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            message = event.message
            source = Source(message.topic, message.partition, message.offset)
            outcome = pipeline.handle(event.value, expected[message.topic], source, event.key)
            await _emit(outcome, segment_changes, dead_letters)
            _count(outcome, time.perf_counter() - started)

    @app.on_partitions_assigned.connect
    async def forget_derived_state(app: faust.App, assigned: Any, **kwargs: Any) -> None:
        pipeline.forget_shops()

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(telemetry.REGISTRY), content_type=METRICS_CONTENT_TYPE)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "alive"})

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        state = readiness(app)
        return web.json(state, status=200 if state["ready"] else 503)

    return Wiring(app, pipeline, customers, shops)


def readiness(app: faust.App) -> dict[str, Any]:
    """Ready means: partitions assigned, not rebalancing, tables recovered from changelogs."""
    recovered = app.tables.recovery.completed.is_set()
    rebalancing = bool(app.rebalancing)
    in_recovery = bool(app.in_recovery)
    assigned = len(app.assignor.assigned_actives())
    return {
        "ready": recovered and not rebalancing and not in_recovery,
        "rebalancing": rebalancing,
        "recovering": in_recovery,
        "assigned_partitions": assigned,
    }


async def _emit(outcome: Outcome, segment_changes: Any, dead_letters: Any) -> None:
    for change in outcome.changes:
        await segment_changes.send(key=change.shop_id.encode(), value=_json(change.to_json()))
    if outcome.dead_letter is not None:
        letter = outcome.dead_letter
        payload = letter.to_json(datetime.now(UTC))
        await dead_letters.send(key=letter.key, value=_json(payload))


def _count(outcome: Outcome, seconds: float) -> None:
    telemetry.PROCESSING_SECONDS.observe(seconds)
    telemetry.EVENTS.labels(outcome.event_type or "unknown", outcome.status).inc()
    if outcome.dead_letter is not None:
        telemetry.DEAD_LETTERS.labels(outcome.dead_letter.reason).inc()
    for change in outcome.changes:
        telemetry.SEGMENT_CHANGES.labels(change.model, change.cause.kind).inc()


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
