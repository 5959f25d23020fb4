"""The metrics ledger's day follows the shop's clock, also when an event books nothing.

A chaos run's workers logged ``metric_snapshot_failed`` (BadWindowError: "window starts
2025-03-12 after the shop's stream day 2025-03-11") for shops whose latest event was a
prospect's touchpoint: the event moved the shop's stream time, which the snapshot asks
for, but not the ledger's day, so that shop's snapshot was skipped until its next booked
event; a shop with touchpoints only had none at all (UnknownShopError)."""

from __future__ import annotations

from datetime import date

from harness.stores import feed
from segstream.engine.pipeline import Pipeline
from segstream.metrics.snapshot import snapshot_payload
from segstream.settings import Settings
from tests.factories import SHOP, order, touchpoint


def day_windows(pipeline: Pipeline, shop_id: str) -> list[str]:
    now = pipeline.stream_time(shop_id)
    assert now is not None
    payload = snapshot_payload(shop_id, now, pipeline.ledger)
    return [w["start"] for w in payload["windows"] if w["grain"] == "day"]


def test_a_touchpoint_on_a_new_day_moves_the_ledgers_day() -> None:
    pipeline = Pipeline(Settings(), {}, {}, {}, {})
    feed(pipeline, [("orders", order("c1", "2025-03-11T10:00:00Z", "o1"))])
    feed(pipeline, [("touchpoints", touchpoint("p1", "2025-03-12T09:00:00Z", "t1"))])
    assert day_windows(pipeline, SHOP) == [date(2025, 3, 12).isoformat()]


def test_a_duplicate_on_a_new_day_moves_it_too() -> None:
    pipeline = Pipeline(Settings(), {}, {}, {}, {})
    feed(pipeline, [("orders", order("c1", "2025-03-11T10:00:00Z", "o1"))])
    feed(pipeline, [("touchpoints", touchpoint("p1", "2025-03-13T09:00:00Z", "t1"))])
    feed(pipeline, [("touchpoints", touchpoint("p1", "2025-03-13T09:00:00Z", "t1"))])
    assert day_windows(pipeline, SHOP) == [date(2025, 3, 13).isoformat()]


def test_a_shop_with_touchpoints_only_has_a_snapshot_of_nothing() -> None:
    pipeline = Pipeline(Settings(), {}, {}, {}, {})
    feed(pipeline, [("touchpoints", touchpoint("p1", "2025-03-12T09:00:00Z", "t1", shop="soap-1"))])
    now = pipeline.stream_time("soap-1")
    assert now is not None
    payload = snapshot_payload("soap-1", now, pipeline.ledger)
    day = next(w for w in payload["windows"] if w["grain"] == "day")
    assert day["start"] == "2025-03-12" and day["orders"]["count"] == 0
