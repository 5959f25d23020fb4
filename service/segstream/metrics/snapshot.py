"""The metrics snapshot: what segstream publishes on the metrics topic, per shop.

One message per shop and publication (schema ``schemas/v1/metrics_snapshot.json``): the
running day, ISO week and calendar month containing ``as_of`` for the whole shop, and
the running month's churn and retention of every segment of every model and of every arm
of every experiment (with the arm's orders and revenue), and the running month's segment
flows of every model (:mod:`~segstream.metrics.flows`). ``snapshot_id``
is derived from the shop and ``as_of``, so a re-publication after a crash carries the
same id and consumers can de-duplicate.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from segstream.domain.events import format_time
from segstream.metrics.ledger import MetricsLedger
from segstream.metrics.windows import WindowMetrics

SNAPSHOT_GRAINS = ("day", "week", "month")
SEGMENT_PREFIX = "segment:"
EXPERIMENT_PREFIX = "experiment:"


def snapshot_payload(shop_id: str, as_of: datetime, ledger: MetricsLedger) -> dict[str, Any]:
    """The metrics-snapshot message of ``shop_id`` as of ``as_of`` (its stream time).

    Raises :class:`~segstream.metrics.ledger.UnknownShopError` for a shop the ledger never saw.
    """
    day = as_of.astimezone(UTC).date()
    stamp = format_time(as_of)
    payload: dict[str, Any] = {
        "schema_version": 1,
        "snapshot_id": f"{shop_id}@{stamp}",
        "shop_id": shop_id,
        "as_of": stamp,
        "windows": [
            ledger.window(shop_id, grain, day, as_of=day).to_json() for grain in SNAPSHOT_GRAINS
        ],
        "segments": [
            _segment_churn(ledger.window(shop_id, "month", day, dimension, as_of=day))
            for dimension in ledger.dimensions(shop_id)
            if dimension.startswith(SEGMENT_PREFIX)
        ],
        "late_events": ledger.too_late(shop_id),
    }
    arms = [
        _arm_metrics(ledger.window(shop_id, "month", day, dimension, as_of=day))
        for dimension in ledger.dimensions(shop_id)
        if dimension.startswith(EXPERIMENT_PREFIX)
    ]
    if arms:
        payload["arms"] = arms
    flows = [
        ledger.flows(shop_id, model, "month", day, as_of=day)
        for model in ledger.flow_models(shop_id)
    ]
    if flows:
        payload["flows"] = [found.to_json() for found in flows]
    return payload


def _segment_churn(metrics: WindowMetrics) -> dict[str, Any]:
    """A segment's churn and retention over the running month."""
    model, _, segment = metrics.dimension.removeprefix(SEGMENT_PREFIX).partition("=")
    return {"model": model, "segment": segment, **_churn(metrics)}


def _arm_metrics(metrics: WindowMetrics) -> dict[str, Any]:
    """An experiment arm's churn, retention, orders and revenue over the running month."""
    experiment_id, _, arm = metrics.dimension.removeprefix(EXPERIMENT_PREFIX).partition("=")
    return {
        "experiment_id": experiment_id,
        "arm": arm,
        **_churn(metrics),
        "orders": metrics.orders,
        "revenue": metrics.revenue,
    }


def _churn(metrics: WindowMetrics) -> dict[str, Any]:
    """Churn and retention of one dimension's window."""
    return {
        "start": metrics.start.isoformat(),
        "end": metrics.end.isoformat(),
        "subscribers_start": metrics.subscribers_start,
        "subscribers_end": metrics.subscribers_end,
        "churned_from_start": metrics.churned_start_subscribers,
        "mrr_end": metrics.mrr_end,
        "churn_rate": metrics.churn_rate,
        "retention_rate": metrics.retention_rate,
    }
