"""Stream wiring: topics, tables and the agent. Logic lives in :mod:`service.core.pipeline`;
this module only moves records between it and Kafka."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust

from service.core.changes import DeadLetter, SegmentChange, SegmentFormed, Source
from service.core.contracts import EVENT_TYPES, EventType
from service.core.pipeline import Outcome, Pipeline
from service.observability import telemetry
from service.observability.logs import get_logger
from service.settings import Settings
from service.stream.topics import TABLES

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Wiring:
    """Handles on what :func:`wire` declared (the API and tests use them)."""

    app: faust.App
    pipeline: Pipeline
    tables: dict[str, faust.types.TableT[str, Any]]
    segment_changes: faust.TopicT
    metrics: faust.TopicT


def raw_topic(app: faust.App, settings: Settings, *names: str) -> faust.TopicT:
    """A topic of undecoded bytes: validation is ours, against ``schemas/``."""
    return app.topic(
        *names,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
    )


def json_table(app: faust.App, settings: Settings, name: str) -> faust.types.TableT[str, Any]:
    """A changelog-backed table of JSON values, co-partitioned with the input topics."""
    return app.Table(
        name,
        default=None,
        partitions=settings.topic_partitions,
        schema=faust.Schema(key_serializer="json", value_serializer="json"),
    )


def wire(app: faust.App, settings: Settings) -> Wiring:
    """Declare topics, tables and the agent on ``app``."""
    expected = {settings.topic(role): kind for role, kind in EVENT_TYPES.items()}
    inputs = raw_topic(app, settings, *expected)
    segment_changes = raw_topic(app, settings, settings.topic("segment_changes"))
    dead_letters = raw_topic(app, settings, settings.topic("dead_letters"))
    tables = {name: json_table(app, settings, name) for name in TABLES}
    pipeline = Pipeline(settings, *(tables[name] for name in TABLES))

    @app.agent(inputs)
    async def process(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            started = time.perf_counter()
            message = event.message
            source = Source(message.topic, message.partition, message.offset)
            outcome = handle_safely(
                pipeline, event.value, expected[message.topic], source, event.key
            )
            await emit(outcome, segment_changes, dead_letters)
            count(outcome, time.perf_counter() - started)

    async def forget_derived_state(sender: Any, *args: Any, **kwargs: Any) -> None:
        """Partitions moved: derived per-shop caches are rebuilt from the tables."""
        pipeline.forget_shops()
        telemetry.REBALANCES.inc()

    app.on_partitions_assigned.connect(forget_derived_state)  # type: ignore[arg-type]
    metrics = raw_topic(app, settings, settings.topic("metrics"))
    return Wiring(app, pipeline, tables, segment_changes, metrics)


def handle_safely(
    pipeline: Pipeline, value: bytes | None, kind: EventType, source: Source, key: bytes | None
) -> Outcome:
    """A bug on one record must not stop the stream: dead-letter it with the error."""
    try:
        return pipeline.handle(value, kind, source, key)
    except Exception as error:
        log.exception(
            "processing_error",
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
        )
        detail = f"{type(error).__name__}: {error}"[:500]
        letter = DeadLetter("processing_error", detail, source, key, value)
        return Outcome("dead_lettered", dead_letter=letter)


async def emit(outcome: Outcome, segment_changes: faust.TopicT, dead_letters: faust.TopicT) -> None:
    """Send the outcome's segment changes, new groups and dead letter."""
    announcements: list[SegmentChange | SegmentFormed] = [*outcome.changes, *outcome.formed]
    for message in announcements:
        await segment_changes.send(key=message.shop_id.encode(), value=to_bytes(message.to_json()))
    if outcome.dead_letter is not None:
        letter = outcome.dead_letter
        payload = letter.to_json(datetime.now(UTC))
        await dead_letters.send(key=letter.key, value=to_bytes(payload))


def count(outcome: Outcome, seconds: float) -> None:
    """Update the Prometheus counters for one handled record."""
    telemetry.PROCESSING_SECONDS.observe(seconds)
    telemetry.EVENTS.labels(outcome.event_type or "unknown", outcome.status).inc()
    if outcome.dead_letter is not None:
        telemetry.DEAD_LETTERS.labels(outcome.dead_letter.reason).inc()
    for change in outcome.changes:
        telemetry.SEGMENT_CHANGES.labels(change.model, change.cause.kind).inc()
    if outcome.too_late:
        telemetry.LATE_EVENTS.inc()


def to_bytes(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
