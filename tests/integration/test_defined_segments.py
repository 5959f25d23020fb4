"""Shop-defined segments on a real worker, managed over HTTP while events flow.

A shop defines "urban regulars" (urban customers with at least 3 orders) halfway through
its history; the rest of the history arrives meanwhile. Existing customers enter at once
(by re-evaluation steps of 7 customers), later events keep membership current, a customer
who moves to the countryside leaves, a replaced definition (5 orders) moves exactly the
customers it changes, an invalid definition gets a 422 and changes nothing, a killed
worker's successor keeps the definition and every membership, and a deletion takes
everyone out. Every expectation comes from the published events themselves (an oracle
that shares no code with the worker), and the change topic, replayed per customer, must
agree with the committed membership.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from datetime import date
from typing import Any

import pytest

from harness.kafka_io import consume_all, read_table, send_events
from harness.workers import WorkerProcess, isolated_settings, until
from segstream.domain.contracts import validate_output
from segstream.settings import Settings
from segstream.tools.simulation.generator import SimulationConfig, generate
from segstream.tools.simulation.shops import shops_per_kind

SEGMENT = "urban-regulars"
MODEL = f"defined:{SEGMENT}"
ENV = {
    # A replay delivers months of event time in seconds, and the input topics are consumed
    # independently: allow the whole span as lateness, as a backfill should.
    "SEGSTREAM_METRICS_ALLOWED_LATENESS_DAYS": "400",
    "SEGSTREAM_METRICS_RETENTION_DAYS": "800",
    "SEGSTREAM_REEVALUATION_CUSTOMERS": "7",
}
Event = dict[str, Any]


def rule(orders: int) -> dict[str, Any]:
    return {
        "all": [
            {"field": "attributes.location_type", "op": "eq", "value": "urban"},
            {"field": "behaviour.order_count", "op": "gte", "value": orders},
        ]
    }


def oracle(events: list[Event], orders: int) -> set[str]:
    """Who the rule holds for after ``events``, computed from the events alone: the
    latest stated location type (in event time) and the number of distinct orders."""
    stated: dict[str, tuple[str, str]] = {}
    bought: defaultdict[str, set[str]] = defaultdict(set)
    for event in events:
        customer, attributes = event["customer_id"], event.get("attributes") or {}
        if "location_type" in attributes:
            at = event["occurred_at"]
            if customer not in stated or stated[customer][0] <= at:
                stated[customer] = (at, attributes["location_type"])
        if event["type"] == "order":
            bought[customer].add(event["event_id"])
    return {c for c, (_, kind) in stated.items() if kind == "urban" and len(bought[c]) >= orders}


@pytest.fixture(scope="module")
def history() -> list[Event]:
    simulation = generate(
        SimulationConfig(
            seed=11,
            shops=tuple(shops_per_kind(1)[:1]),
            customers_per_shop=40,
            start=date(2025, 3, 1),
            days=240,
        )
    )
    return sorted(simulation.events, key=lambda e: e["occurred_at"])


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str) -> Settings:
    return isolated_settings(kafka_bootstrap, "def")


@pytest.fixture(scope="module")
def worker_env() -> dict[str, str]:
    """The workers' settings beyond ``settings``: :data:`ENV`."""
    return ENV


def customers(settings: Settings) -> dict[str, Any]:
    return asyncio.run(read_table(settings, "customers"))


def settled(settings: Settings, events: list[Event]) -> dict[str, Any]:
    """The committed customer states once they hold every order of ``events``."""
    orders = sum(1 for e in events if e["type"] == "order")
    people = {e["customer_id"] for e in events}
    return until(
        lambda: customers(settings),
        lambda states: (
            len(states) == len(people) and sum(s["order_count"] for s in states.values()) == orders
        ),
        "every event applied",
    )


def members(states: dict[str, Any]) -> set[str]:
    return {key.partition("/")[2] for key, s in states.items() if MODEL in s["segments"]}


def definition_state(worker: WorkerProcess, shop: str) -> dict[str, Any]:
    status, body = worker.get_json(f"/shops/{shop}/definitions/{SEGMENT}")
    return {"status": status, **(body or {})}


def reevaluated(worker: WorkerProcess, shop: str, version: int) -> dict[str, Any]:
    """The definition's view once ``version`` is live and its re-evaluation done."""
    return until(
        lambda: definition_state(worker, shop),
        lambda d: (
            d["status"] == 200 and d["definition"]["version"] == version and not d["reevaluating"]
        ),
        f"version {version} re-evaluated",
    )


def changes(settings: Settings) -> list[dict[str, Any]]:
    """The defined segment's changes on the change topic, in order (one shop: one
    partition)."""
    records = asyncio.run(
        consume_all(settings.kafka_bootstrap, settings.topic("segment_changes"), timeout_s=20)
    )
    found = [json.loads(r.value) for r in records]
    return [c for c in found if c.get("kind") == "segment_changed" and c["model"] == MODEL]


def replayed(found: list[dict[str, Any]]) -> set[str]:
    """Membership from the changes alone; each change starts where the last one ended."""
    current: dict[str, str | None] = {}
    for change in found:
        assert change["previous"] == current.get(change["customer_id"]), change
        current[change["customer_id"]] = change["current"]
    return {customer for customer, segment in current.items() if segment == SEGMENT}


def test_a_defined_segment_follows_its_definition_through_its_whole_life(
    settings: Settings, workers: list[WorkerProcess], history: list[Event], tmp_path_factory: Any
) -> None:
    first = workers[0]
    shop = history[0]["shop_id"]
    half = len(history) // 2
    send_events(settings, history[:half])
    settled(settings, history[:half])

    # 1. Defined while the second half of the history flows in.
    body = {"segment_id": SEGMENT, "name": "Urban regulars", "rule": rule(3)}
    status, created = first.request_json("POST", f"/shops/{shop}/definitions", body)
    assert status == 201 and created["definition"]["version"] == 1, created
    send_events(settings, history[half:])
    expected = oracle(history, orders=3)
    assert len(expected) >= 5, "the simulation should give the segment some members"
    view = reevaluated(first, shop, 1)
    states = settled(settings, history)
    assert members(states) == expected
    assert view["members"] == len(expected)
    found = changes(settings)
    assert replayed(found) == expected
    assert {c["definition_version"] for c in found} == {1}
    assert {c["cause"]["kind"] for c in found} <= {"definition", "event", "timer"}
    for change in found[:5]:
        validate_output("segment_changed", change)

    # 2. A later event moves one customer out.
    leaver = sorted(expected)[0]
    moved = {
        "schema_version": 1,
        "type": "customer_updated",
        "event_id": "moved-out",
        "shop_id": shop,
        "customer_id": leaver,
        "occurred_at": history[-1]["occurred_at"],
        "attributes": {"location_type": "rural"},
    }
    send_events(settings, [moved])
    history = [*history, moved]
    exit_ = until(lambda: changes(settings)[len(found) :], bool, "the leaver's exit", limit=60)
    assert [(c["customer_id"], c["current"], c["cause"]["kind"]) for c in exit_] == [
        (leaver, None, "event")
    ]

    # 3. Replaced: exactly the customers the new rule changes move, each once.
    before = oracle(history, orders=3)
    status, replaced = first.request_json(
        "PUT", f"/shops/{shop}/definitions/{SEGMENT}", {"name": "Urban regulars", "rule": rule(5)}
    )
    assert status == 200 and replaced["definition"]["version"] == 2, replaced
    reevaluated(first, shop, 2)
    after = oracle(history, orders=5)
    assert members(customers(settings)) == after
    found = changes(settings)
    second = [c for c in found if c["definition_version"] == 2]
    assert sorted(c["customer_id"] for c in second) == sorted(before ^ after)
    assert replayed(found) == after

    # 4. An invalid definition is refused and changes nothing.
    topic = settings.topic("segment_definitions")
    written = len(asyncio.run(consume_all(settings.kafka_bootstrap, topic)))
    bad = {
        "segment_id": "bad",
        "name": "Bad",
        "rule": {"field": "behaviour.order_count", "op": "matches", "value": 1},
    }
    status, refused = first.request_json("POST", f"/shops/{shop}/definitions", bad)
    assert status == 422 and refused["path"] == "rule/op", refused
    assert len(asyncio.run(consume_all(settings.kafka_bootstrap, topic))) == written
    status, listed = first.get_json(f"/shops/{shop}/definitions")
    assert [d["definition"]["segment_id"] for d in listed["definitions"]] == [SEGMENT]

    # 5. A killed worker's successor keeps the definition and every membership.
    first.kill()
    successor = WorkerProcess.for_settings(settings, tmp_path_factory.mktemp("def") / "b", ENV)
    workers.append(successor)
    successor.start()
    successor.wait_ready(timeout_s=120)
    kept = reevaluated(successor, shop, 2)
    assert kept["definition"]["rule"] == rule(5) and kept["members"] == len(after)
    assert members(customers(settings)) == after

    # 6. Deleted: everyone leaves, and the membership topic forgets them.
    status, deleted = successor.request_json("DELETE", f"/shops/{shop}/definitions/{SEGMENT}")
    assert status == 200 and deleted["version"] == 2, deleted
    until(lambda: definition_state(successor, shop)["status"], lambda s: s == 404, "deleted")
    until(lambda: members(customers(settings)), lambda m: m == set(), "everyone out")
    found = changes(settings)
    assert replayed(found) == set()
    exits = found[-len(after) :]
    assert {(c["current"], c["definition_version"], c["cause"]["kind"]) for c in exits} == {
        (None, 2, "definition")
    }
    membership = asyncio.run(
        consume_all(settings.kafka_bootstrap, settings.topic("segment_membership"), timeout_s=20)
    )
    latest = {r.key: r.value for r in membership if r.key.decode().endswith(f"|{MODEL}")}
    assert latest and all(value is None for value in latest.values())
