"""A live shop that goes quiet still sees its time-driven moves, on a real worker.

A subscriber cancels with effect a few seconds from now and the shop sends nothing more:
the move to ``churned`` arrives anyway, from the shop's clock following the wall clock,
committed like any change (read_committed). A shop replaying last year's history keeps
its event time: its customers do not move with the wall clock.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from harness.kafka_io import consume_all
from harness.workers import WorkerProcess, isolated_settings
from segstream.domain.events import parse_time
from segstream.settings import Settings
from segstream.tools.publish import publish
from tests import factories
from tests.factories import plan

pytestmark = pytest.mark.asyncio(loop_scope="session")
TICK_S = 1.0


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str) -> Settings:
    return isolated_settings(kafka_bootstrap, "clock")


@pytest.fixture(scope="module")
def worker_env() -> dict[str, str]:
    """A wall-clock tick every :data:`TICK_S` seconds."""
    return {"SEGSTREAM_WALL_CLOCK_INTERVAL_S": str(TICK_S)}


def subscriber_who_cancels(shop: str, signed_up: datetime, ends: datetime) -> list[Any]:
    cancelled = signed_up + timedelta(seconds=1)
    signup = factories.signup("c-1", signed_up, f"{shop}-signup-0", shop=shop, to_plan=plan(12.0))
    order = factories.order("c-1", signed_up, f"{shop}-order-1", 12.0, shop=shop, order_id="o-1")
    cancel = factories.cancellation(
        "c-1", cancelled, f"{shop}-cancellation-2", shop=shop, effective_at=ends
    )
    return [("signups", signup), ("orders", order), ("cancellations", cancel)]


async def lifecycle_changes(settings: Settings, shop: str, until: str) -> list[dict[str, Any]]:
    def done(records: list[Any]) -> bool:
        return any(
            until in record.value.decode()
            for record in records
            if record.value and record.key == shop.encode()
        )

    records = await consume_all(
        settings.kafka_bootstrap, settings.topic("segment_changes"), until=done, timeout_s=45
    )
    changes = [json.loads(r.value) for r in records if r.key == shop.encode()]
    return [c for c in changes if c.get("model") == "lifecycle"]


async def test_a_quiet_live_shop_moves_with_the_wall_clock(
    worker: WorkerProcess, settings: Settings
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    ends = now + timedelta(seconds=5)
    await publish(subscriber_who_cancels("live-shop", now - timedelta(minutes=2), ends), settings)
    changes = await lifecycle_changes(settings, "live-shop", '"current":"churned"')
    assert [(c["current"], c["cause"]["kind"]) for c in changes] == [
        ("new", "event"),
        ("at_risk", "event"),
        ("churned", "timer"),
    ], worker.log_tail()
    moved_at = parse_time(changes[-1]["changed_at"])
    assert ends <= moved_at <= ends + timedelta(seconds=TICK_S + 15)


async def test_a_replayed_shop_keeps_its_event_time(
    worker: WorkerProcess, settings: Settings
) -> None:
    year_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(days=365)
    ends = year_ago + timedelta(days=1)
    await publish(subscriber_who_cancels("old-shop", year_ago, ends), settings)
    changes = await lifecycle_changes(settings, "old-shop", '"current":"at_risk"')
    await asyncio.sleep(4 * TICK_S)  # ticks pass; a year-old shop is not live
    changes = await lifecycle_changes(settings, "old-shop", '"current":"at_risk"')
    assert [c["current"] for c in changes] == ["new", "at_risk"], worker.log_tail()
