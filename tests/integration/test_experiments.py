"""An experiment on a shop-defined segment, on a real worker, started over HTTP while the
shop's history flows in, with the worker killed in the middle.

The segment is "repeat buyers" (two orders or more, so nobody leaves it); the experiment
splits it 30 / 70 (holdout / treatment). Halfway through the history the experiment starts
and the enrolment pass puts every current member in an arm; the second half arrives in two
parts, and the worker is SIGKILLed with the second part in flight; a successor on an empty
data directory finishes. Expected, from the published events alone (an oracle that shares
no code with the worker but the arm hash, which is the contract):

- every change into the segment after the start, and every member's membership record,
  carries ``experiments: {"thanks": <arm>}`` with the arm the hash gives;
- per arm: the members (everyone with two orders or more at the end), and the orders and
  revenue of each member after their enrolment (orders of the second half for those
  enrolled by the pass; for later entrants, the orders after the one that made them
  enter), summed with pandas; nothing counted twice after the crash;
- the first churn of each member after their enrolment, counted from the change topic.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date
from typing import Any
from urllib.parse import quote

import pandas as pd
import pytest

from harness.kafka_io import consume_all, read_table, send_events
from harness.workers import WorkerProcess, isolated_settings, until, wait_consumed
from segstream.domain.contracts import validate_output
from segstream.experiments import Arm, arm_of
from segstream.settings import Settings
from segstream.tools.simulation.generator import SimulationConfig, generate
from segstream.tools.simulation.shops import shops_per_kind

SEGMENT = "repeat-buyers"
MODEL = f"defined:{SEGMENT}"
EXPERIMENT = "thanks"
ARMS = (Arm("holdout", 0.3), Arm("treatment", 0.7))
ENV = {
    "SEGSTREAM_METRICS_ALLOWED_LATENESS_DAYS": "400",
    "SEGSTREAM_METRICS_RETENTION_DAYS": "800",
    "SEGSTREAM_REEVALUATION_CUSTOMERS": "9",
}
Event = dict[str, Any]


@pytest.fixture(scope="module")
def history() -> list[Event]:
    """A coffee roaster's 300 days, 120 customers, in time order (no invalid records)."""
    simulation = generate(
        SimulationConfig(
            seed=5,
            shops=tuple(shops_per_kind(1)[:1]),
            customers_per_shop=120,
            start=date(2025, 1, 1),
            days=300,
        )
    )
    return sorted(simulation.events, key=lambda e: e["occurred_at"])


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str) -> Settings:
    return isolated_settings(kafka_bootstrap, "exp")


@pytest.fixture(scope="module")
def worker_env() -> dict[str, str]:
    """The workers' settings beyond ``settings``: :data:`ENV`."""
    return ENV


def arm(shop: str, customer: str) -> str:
    return arm_of(shop, EXPERIMENT, customer, ARMS)


def orders_frame(events: list[Event]) -> pd.DataFrame:
    """Distinct orders in send order (a re-sent event id counts once, as the worker
    de-duplicates it), with each one's rank among its customer's orders."""
    rows = [e for e in events if e["type"] == "order"]
    frame = pd.DataFrame(
        [(e["customer_id"], e["event_id"], float(e["amount"])) for e in rows],
        columns=["customer", "event_id", "amount"],
    ).drop_duplicates("event_id")
    frame["rank"] = frame.groupby("customer").cumcount() + 1
    return frame


def expected_figures(shop: str, history: list[Event], half: int) -> pd.DataFrame:
    """Per arm: members, orders and revenue after enrolment (see the module docstring)."""
    frame = orders_frame(history)
    frame["second_half"] = frame["event_id"].isin(
        {e["event_id"] for e in history[half:] if e["type"] == "order"}
    )
    first_half_orders = frame[~frame["second_half"]].groupby("customer").size()
    members = frame.groupby("customer").size()
    members = members[members >= 2].index
    by_pass = set(first_half_orders[first_half_orders >= 2].index)
    counted = frame[frame["customer"].isin(members)]
    after = counted[
        (counted["customer"].isin(by_pass) & counted["second_half"])
        | (~counted["customer"].isin(by_pass) & (counted["rank"] > 2))
    ]
    per_customer = pd.DataFrame({"customer": list(members)})
    per_customer["arm"] = [arm(shop, c) for c in per_customer["customer"]]
    sums = after.groupby("customer").agg(orders=("amount", "size"), revenue=("amount", "sum"))
    per_customer = per_customer.join(sums, on="customer").fillna(0.0)
    return per_customer.groupby("arm").agg(
        members=("customer", "size"), orders=("orders", "sum"), revenue=("revenue", "sum")
    )


def readout(worker: WorkerProcess, shop: str) -> dict[str, Any]:
    status, body = worker.get_json(f"/shops/{shop}/experiments/{EXPERIMENT}")
    return {"status": status, **(body or {})}


def all_changes(settings: Settings) -> list[dict[str, Any]]:
    records = asyncio.run(
        consume_all(settings.kafka_bootstrap, settings.topic("segment_changes"), timeout_s=20)
    )
    found = [json.loads(r.value) for r in records]
    return [c for c in found if c.get("kind") == "segment_changed"]


def test_an_experiment_splits_counts_and_survives_a_crash(
    settings: Settings, workers: list[WorkerProcess], history: list[Event], tmp_path_factory: Any
) -> None:
    first = workers[0]
    shop = history[0]["shop_id"]
    half = len(history) // 2
    rule = {"field": "behaviour.order_count", "op": "gte", "value": 2}
    status, created = first.request_json(
        "POST",
        f"/shops/{shop}/definitions",
        {"segment_id": SEGMENT, "name": "Repeat", "rule": rule},
    )
    assert status == 201, created
    send_events(settings, history[:half])
    first_half = orders_frame(history[:half]).groupby("customer").size()
    enrolled_by_pass = int((first_half >= 2).sum())
    assert enrolled_by_pass >= 10, "the first half should give the segment members"
    orders = len(orders_frame(history[:half]))
    until(
        lambda: asyncio.run(read_table(settings, "customers")),
        lambda states: sum(s["order_count"] for s in states.values()) == orders,
        "every order of the first half applied",
        limit=120,
    )
    until(
        lambda: first.get_json(f"/shops/{shop}/definitions/{SEGMENT}")[1],
        lambda d: d["members"] == enrolled_by_pass and not d["reevaluating"],
        "the segment's first-half members",
        limit=120,
    )

    # 1. The experiment starts; the pass enrols every current member in steps of 9.
    body = {
        "experiment_id": EXPERIMENT,
        "name": "A thank-you gift",
        "model": MODEL,
        "segment": SEGMENT,
        "arms": [{"name": a.name, "share": a.share} for a in ARMS],
        "starts_at": "2025-01-01T00:00:00Z",
    }
    status, started = first.request_json("POST", f"/shops/{shop}/experiments", body)
    assert status == 201 and started["experiment"]["version"] == 1, started
    view = until(
        lambda: readout(first, shop),
        lambda r: (
            r["status"] == 200 and sum(a["members"] for a in r["arms"].values()) == enrolled_by_pass
        ),
        "the enrolment pass",
        limit=120,
    )
    assert {name: a["orders"] for name, a in view["arms"].items()} == {"holdout": 0, "treatment": 0}
    boundary = len(all_changes(settings))

    # 2. The second half, with the worker killed while its second part is in flight.
    quarter = half + (len(history) - half) // 2
    send_events(settings, history[half:quarter])
    send_events(settings, history[quarter:])
    first.kill()
    successor = WorkerProcess.for_settings(settings, tmp_path_factory.mktemp("exp") / "b", ENV)
    workers.append(successor)
    successor.start()
    successor.wait_ready(timeout_s=120)
    expected = expected_figures(shop, history, half)
    view = until(
        lambda: readout(successor, shop),
        lambda r: (
            r["status"] == 200
            and {n: a["orders"] for n, a in r["arms"].items()} == expected["orders"].to_dict()
        ),
        "every order counted",
        limit=120,
    )
    for name, figures in view["arms"].items():
        assert figures["members"] == expected.loc[name, "members"], (name, figures)
        assert figures["revenue"] == pytest.approx(expected.loc[name, "revenue"]), name
    # Each arm is a metrics dimension: its month windows sum to the arm's orders and revenue.
    for name in ("holdout", "treatment"):
        months = [
            successor.get_json(
                f"/shops/{shop}/metrics?grain=month&start=2025-{month:02d}-01"
                f"&dimension={quote(f'experiment:{EXPERIMENT}={name}')}"
            )
            for month in range(1, 11)
        ]
        assert [status for status, _ in months] == [200] * len(months), [
            (status, body) for status, body in months if status != 200
        ]
        assert sum(body["orders"]["count"] for _, body in months) == expected.loc[name, "orders"]
        revenue = sum(body["orders"]["revenue"] for _, body in months)
        assert revenue == pytest.approx(expected.loc[name, "revenue"]), name
    # The API reads the tables as the worker holds them, the topics show what it committed:
    # read the topics once every input record's processing is committed.
    asyncio.run(wait_consumed(settings, successor))

    # 3. Arms on the change and membership topics are the hash's.
    changes = all_changes(settings)
    entries = [c for c in changes[boundary:] if c["model"] == MODEL and c["current"] == SEGMENT]
    assert entries, "customers entered the segment in the second half"
    for change in entries:
        assert change["experiments"] == {EXPERIMENT: arm(shop, change["customer_id"])}, change
        validate_output("segment_changed", change)
    membership = asyncio.run(
        consume_all(settings.kafka_bootstrap, settings.topic("segment_membership"), timeout_s=20)
    )
    latest = {r.key.decode(): r.value for r in membership if r.key.decode().endswith(f"|{MODEL}")}
    tagged = {
        key.split("|")[1]: json.loads(value)["experiments"]
        for key, value in latest.items()
        if value is not None and "experiments" in json.loads(value)
    }
    members = set(orders_frame(history).groupby("customer").size().loc[lambda s: s >= 2].index)
    entered_later = {c["customer_id"] for c in entries}
    assert set(tagged) >= entered_later
    assert all(tagged[c] == {EXPERIMENT: arm(shop, c)} for c in tagged)
    assert set(tagged) <= members

    # 4. Churn: a member's first lifecycle move to churned after their enrolment, once.
    entered_at = {c["customer_id"]: n for n, c in enumerate(changes) if c in entries}
    churned: dict[str, int] = {}
    for n, change in enumerate(changes):
        customer = change["customer_id"]
        if customer not in members or customer in churned:
            continue
        start = entered_at.get(customer, boundary)
        if n >= start and (change["model"], change["current"]) == ("lifecycle", "churned"):
            churned[customer] = n
    per_arm = {name: 0 for name in ("holdout", "treatment")}
    for customer in churned:
        per_arm[arm(shop, customer)] += 1
    assert {name: a["churned"] for name, a in view["arms"].items()} == per_arm
