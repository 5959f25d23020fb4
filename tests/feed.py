"""Feeding records to an in-process pipeline, as a worker consuming their topics would."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from segstream.core.changes import Source
from segstream.core.contracts import EVENT_TYPES
from segstream.core.keys import shop_partition
from segstream.core.pipeline import Pipeline
from segstream.tools.publish import encode


def feed(pipeline: Pipeline, records: Iterable[tuple[str, bytes | Mapping[str, Any]]]) -> None:
    """Hand ``(role, event or raw bytes)`` records to ``pipeline`` in order (each in the
    partition its shop hashes to, as Kafka's default partitioner puts them), then write
    the shops' books as the worker does at the end of a batch."""
    partitions = pipeline.settings.topic_partitions
    for offset, (role, value) in enumerate(records):
        raw = value if isinstance(value, bytes) else encode(value)
        partition = 0 if isinstance(value, bytes) else shop_partition(value["shop_id"], partitions)
        pipeline.handle(raw, EVENT_TYPES[role], Source(role, partition, offset), None)
    pipeline.flush()
