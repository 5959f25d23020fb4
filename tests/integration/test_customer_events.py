"""The newer input events on a real worker: customer updates, plan changes, campaign
responses and feedback arrive on their own topics, fold into the customer's state, and a
consent withdrawn by a customer update reaches the next segment change (the cancellation's
move to at risk); a feedback's free text is stored nowhere."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from harness.kafka_io import consume_all, read_table
from harness.workers import WorkerProcess, isolated_settings
from segstream.domain.events import BY_TYPE_NAME
from segstream.settings import Settings
from segstream.state.keyspace import customer_key
from segstream.stream.topics import changelog_topic
from segstream.tools.publish import publish

pytestmark = pytest.mark.asyncio(loop_scope="session")
SHOP = "events-shop"
SECRET = "my neighbour reads this box"


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str) -> Settings:
    return isolated_settings(kafka_bootstrap, "ev")


def event(kind: str, n: int, day: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    payload = {
        "schema_version": 1,
        "type": kind,
        "event_id": f"ev-{n}",
        "shop_id": SHOP,
        "customer_id": "c-1",
        "occurred_at": f"2025-03-{day}T10:00:00Z",
        **fields,
    }
    return BY_TYPE_NAME[kind].topic_role, payload


def history() -> list[tuple[str, dict[str, Any]]]:
    plan = {"plan_id": "small", "price": 12.0, "currency": "EUR", "interval": "month"}
    bigger = plan | {"plan_id": "large", "price": 20.0}
    order = {"currency": "EUR", "is_renewal": False}
    return [
        event("signup", 0, "01", plan=plan, acquisition_channel="web", marketing_opt_in=True),
        event("order", 1, "01", order_id="o-1", amount=12.0, **order),
        event("campaign_response", 2, "05", campaign_id="spring", channel="email", action="opened"),
        event("feedback", 3, "06", score=2, text=SECRET, order_id="o-1"),
        event("plan_changed", 4, "07", plan=bigger, change="upgrade"),
        event("customer_updated", 5, "08", marketing_opt_in=False, attributes={"age": 41}),
        event("cancellation", 6, "20", reason="price", effective_at="2025-04-07T10:00:00Z"),
    ]


async def customer_once(settings: Settings, done: Callable[[dict[str, Any]], bool]) -> Any:
    """The customer's committed state (from the changelog) once ``done`` holds for it."""
    key = customer_key(SHOP, "c-1")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = (await read_table(settings, "customers")).get(key)
        if state is not None and done(state):
            return state
        await asyncio.sleep(0.5)
    return None


async def changes_caused_by(settings: Settings, event_id: str) -> list[dict[str, Any]]:
    """The committed segment changes of ``event_id``, once there is one."""
    marker = f'"{event_id}"'.encode()

    def arrived(records: list[Any]) -> bool:
        return any(r.value and marker in r.value for r in records)

    records = await consume_all(
        settings.kafka_bootstrap, settings.topic("segment_changes"), until=arrived, timeout_s=60
    )
    changes = [json.loads(r.value) for r in records if r.value]
    return [c for c in changes if c.get("cause", {}).get("event_id") == event_id]


async def test_new_events_fold_into_state_and_consent_reaches_the_changes(
    worker: WorkerProcess, settings: Settings
) -> None:
    """The input topics are consumed independently, so each step is sent once the one
    before is committed: the signup (consent given), then the other events (consent
    withdrawn), then a cancellation, whose change carries the new consent."""
    signup, *middle, cancellation = history()
    await publish([signup], settings)
    first = await changes_caused_by(settings, "ev-0")
    assert first and {c["marketing_opt_in"] for c in first} == {True}, worker.log_tail()

    await publish(middle, settings)
    state = await customer_once(
        settings,
        lambda s: (
            bool(s["feedback_scores"])
            and s["marketing_opt_in"] is False
            and s["plan"]["plan_id"] == "large"
        ),
    )
    assert state is not None, worker.log_tail()
    assert state["attributes"] == {"age": 41}
    assert [t["action"] for t in state["campaign_responses"]] == ["opened"]
    assert [f["score"] for f in state["feedback_scores"]] == [2]

    await publish([cancellation], settings)
    latest = await changes_caused_by(settings, "ev-6")
    assert latest and {c["marketing_opt_in"] for c in latest} == {False}, worker.log_tail()

    changelog = await consume_all(
        settings.kafka_bootstrap, changelog_topic(settings, "customers"), timeout_s=30
    )
    assert changelog and not any(SECRET.encode() in (r.value or b"") for r in changelog)
