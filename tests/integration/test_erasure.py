"""A customer's erasure on a real worker, read back from every topic; and no personal data
in change events, Prometheus or the worker's log.

A coffee roaster's five months; three customers state personal data (a postal code, a
region and a birth date as attributes, a feedback's free text), each value a marker that
occurs nowhere else. One customer then asks to be forgotten, and an order of theirs from
before the request arrives after it. Expected, read from the broker:

- the customers changelog ends the customer's key with a tombstone, no other changelog's
  latest value (shops, models, metrics) names them, and every membership key of theirs
  ends with a tombstone; the change topic carries their exits with cause ``erased``;
- the late order brings nothing back;
- no marker appears in any change or membership record, in ``/metrics``, or in the
  worker's log at the default level.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta
from typing import Any

import pytest

from harness.kafka_io import consume_all, read_table, send_events
from harness.workers import WorkerProcess, isolated_settings, until, wait_consumed
from segstream.domain.events import format_time, parse_time
from segstream.settings import Settings
from segstream.stream.topics import TABLES, changelog_topic
from segstream.tools.simulation.generator import SimulationConfig, generate
from segstream.tools.simulation.shops import shops_per_kind

MARKERS = ("PII-ZIP-40123", "PII-REGION-Vorderwald", "1987-04-09", "PII-TEXT-crushed box")
Event = dict[str, Any]


@pytest.fixture(scope="module")
def history() -> list[Event]:
    simulation = generate(
        SimulationConfig(
            seed=9,
            shops=tuple(shops_per_kind(1)[:1]),
            customers_per_shop=30,
            start=date(2025, 3, 1),
            days=150,
        )
    )
    return sorted(simulation.events, key=lambda e: e["occurred_at"])


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str) -> Settings:
    return isolated_settings(kafka_bootstrap, "erase")


def personal(shop: str, customers: list[str], at: str) -> list[Event]:
    """Attributes and a feedback text carrying the markers, for ``customers``."""
    events = []
    for n, customer in enumerate(customers):
        envelope = {"schema_version": 1, "shop_id": shop, "customer_id": customer}
        envelope["occurred_at"] = at
        attributes = {"postal_code": MARKERS[0], "region": MARKERS[1], "birth_date": MARKERS[2]}
        update = {"type": "customer_updated", "event_id": f"pii-u-{n}", "attributes": attributes}
        feedback = {"type": "feedback", "event_id": f"pii-f-{n}", "score": 2, "text": MARKERS[3]}
        events += [{**envelope, **update}, {**envelope, **feedback}]
    return events


def latest(records: list[Any]) -> dict[bytes, bytes | None]:
    """The last value per key (what compaction keeps)."""
    return {record.key: record.value for record in records}


def read(settings: Settings, topic: str) -> list[Any]:
    return asyncio.run(consume_all(settings.kafka_bootstrap, topic, timeout_s=20))


def test_an_erased_customer_is_gone_from_every_topic_and_no_personal_data_leaks(
    settings: Settings, workers: list[WorkerProcess], history: list[Event]
) -> None:
    worker = workers[0]
    shop = history[0]["shop_id"]
    referred = {e.get("referred_by") for e in history if e["type"] == "signup"}
    customers = sorted({e["customer_id"] for e in history} - referred)
    end = history[-1]["occurred_at"]
    send_events(settings, history + personal(shop, customers[:3], end))
    asyncio.run(wait_consumed(settings, worker))
    gone = customers[0]
    status, before = worker.get_json(f"/shops/{shop}/customers/{gone}")
    assert status == 200 and before["segments"], before
    assert before["state"]["attributes"]["postal_code"] == MARKERS[0]

    erase_at = format_time(parse_time(end) + timedelta(hours=1))
    erase = {
        "schema_version": 1,
        "type": "customer_erased",
        "event_id": "erase-1",
        "shop_id": shop,
        "customer_id": gone,
        "occurred_at": erase_at,
    }
    late = next(e for e in reversed(history) if e["customer_id"] == gone)
    send_events(settings, [erase])
    asyncio.run(wait_consumed(settings, worker))
    send_events(settings, [{**late, "event_id": "late-copy"}])
    asyncio.run(wait_consumed(settings, worker))
    assert worker.get_json(f"/shops/{shop}/customers/{gone}")[0] == 404

    name = f"{shop}/{gone}".encode()
    customers_log = latest(read(settings, changelog_topic(settings, "customers")))
    assert name in customers_log and customers_log[name] is None, "a tombstone ends the key"
    for table in TABLES:
        for key, value in latest(read(settings, changelog_topic(settings, table))).items():
            assert gone.encode() not in (value or b""), (table, key)
    memberships = latest(read(settings, settings.topic("segment_membership")))
    theirs = {key: value for key, value in memberships.items() if f"|{gone}|".encode() in key}
    assert theirs and all(value is None for value in theirs.values()), theirs
    changes = [json.loads(r.value) for r in read(settings, settings.topic("segment_changes"))]
    exits = [c for c in changes if c.get("customer_id") == gone and c["cause"]["kind"] == "erased"]
    assert {c["model"] for c in exits} == set(before["segments"])
    assert all(c["current"] is None for c in exits)
    shops = asyncio.run(read_table(settings, "shops"))
    assert not any(gone in json.dumps(value) for value in shops.values())

    published = [r.value or b"" for r in read(settings, settings.topic("segment_changes"))]
    published += [value or b"" for value in memberships.values()]
    metrics = until(
        lambda: worker.get_text("/metrics"),
        lambda text: "segstream_events_total" in text,
        "Prometheus exposition",
    )
    log = worker.log_path.read_text()
    for marker in MARKERS:
        assert not any(marker.encode() in value for value in published), marker
        assert marker not in metrics and marker not in log, marker
