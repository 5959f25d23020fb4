"""Prometheus metrics the worker exports on ``/metrics``.

Names and labels follow Prometheus conventions (``_total`` counters, base units,
bounded label values: event type, outcome, reason, model — never a customer).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS = Counter(
    "segstream_events_total",
    "Input records handled, by event type and outcome (processed, duplicate, dead_lettered).",
    ["type", "outcome"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "segstream_dead_letters_total",
    "Records sent to the dead-letter topic, by reason.",
    ["reason"],
    registry=REGISTRY,
)
SEGMENT_CHANGES = Counter(
    "segstream_segment_changes_total",
    "Segment-change events emitted, by model and cause (event or timer).",
    ["model", "cause"],
    registry=REGISTRY,
)
PROCESSING_SECONDS = Histogram(
    "segstream_processing_seconds",
    "Wall time to handle one input record, emits included.",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY,
)
