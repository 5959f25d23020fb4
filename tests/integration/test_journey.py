"""The journey funnel on a real worker: touchpoints, prospects and a crash.

A coffee roaster's eight months with touchpoints (site visits, trials, sample requests
before the signup) and prospects who never buy, sent out of order and with duplicates;
the worker is SIGKILLed with the last part in flight and a successor on an empty data
directory finishes. Expected, from the published events alone (an oracle in pandas that
shares no code with the worker):

- the shop's funnel (per awareness month and channel, customers who reached each stage)
  equals the oracle's, and so do the API's per-month and per-channel funnels;
- prospects get no segment change and no segment, and the customer route shows their
  journey.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date
from typing import Any

import pandas as pd
import pytest

from harness.kafka_io import consume_all, read_table, send_events
from harness.workers import WorkerProcess, isolated_settings, until, wait_consumed
from segstream.settings import Settings
from segstream.tools.simulation.generator import SimulationConfig, generate
from segstream.tools.simulation.shops import shops_per_kind

STAGES = ("awareness", "consideration", "purchase", "retention")
Event = dict[str, Any]


@pytest.fixture(scope="module")
def history() -> list[Event]:
    """80 customers and 40 prospects over 240 days, in send order (late and re-sent
    events included)."""
    simulation = generate(
        SimulationConfig(
            seed=6,
            shops=tuple(shops_per_kind(1)[:1]),
            customers_per_shop=80,
            start=date(2025, 1, 1),
            days=240,
            touchpoints=True,
            out_of_order_ratio=0.15,
            duplicate_ratio=0.03,
        )
    )
    return simulation.events


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str) -> Settings:
    return isolated_settings(kafka_bootstrap, "journey")


def oracle(events: list[Event]) -> dict[tuple[str, str], list[int]]:
    """(awareness month, channel) -> customers who reached each stage, from the events."""
    frame = pd.DataFrame(events).drop_duplicates("event_id")
    frame["at"] = pd.to_datetime(frame["occurred_at"], utc=True, format="ISO8601")
    funnel: dict[tuple[str, str], list[int]] = {}
    for _, rows in frame.groupby("customer_id"):
        month, channel, depth = journey(rows)
        counts = funnel.setdefault((month, channel), [0, 0, 0, 0])
        for stage in range(depth):
            counts[stage] += 1
    return funnel


def journey(rows: pd.DataFrame) -> tuple[str, str, int]:
    """One customer's awareness month, channel and number of stages reached."""
    touches = rows[rows["type"] == "touchpoint"].sort_values(["at", "channel"])
    others = rows[rows["type"] != "touchpoint"]
    signups = others[others["type"] == "signup"].sort_values("at")
    days = sorted(others.loc[others["type"] == "order", "at"].dt.floor("D").unique())
    bought = [*days[:1], *signups["at"][:1]]
    purchase = min(bought) if bought else None
    tried = touches[touches["touchpoint"].isin(["trial", "sample_request"])]["at"]
    consideration = min(
        [*tried[:1].tolist(), *([purchase] if purchase is not None else [])], default=None
    )
    aware = [
        *touches["at"][:1],
        *others["at"].nsmallest(1),
        *([consideration] if consideration is not None else []),
    ]
    depth = 1 + (consideration is not None) + (purchase is not None) + (len(days) > 1)
    if len(touches) and (purchase is None or touches["at"].iloc[0] <= purchase):
        channel = touches["channel"].iloc[0]
    elif len(signups):
        channel = signups["acquisition_channel"].iloc[-1]
    else:
        channel = "unknown"
    return min(aware).strftime("%Y-%m"), str(channel), depth


def summed(funnel: dict[tuple[str, str], list[int]], by: int) -> dict[str, list[int]]:
    """The funnel summed per month (``by=0``) or per channel (``by=1``)."""
    sums: dict[str, list[int]] = {}
    for key, counts in funnel.items():
        row = sums.setdefault(key[by], [0, 0, 0, 0])
        for stage, n in enumerate(counts):
            row[stage] += n
    return sums


def counts(funnel: dict[str, Any]) -> list[int]:
    return [stage["customers"] for stage in funnel["stages"]]


def test_the_funnel_counts_every_visitor_through_a_crash(
    settings: Settings, workers: list[WorkerProcess], history: list[Event], tmp_path_factory: Any
) -> None:
    first = workers[0]
    shop = history[0]["shop_id"]
    cut = len(history) * 3 // 5
    send_events(settings, history[:cut])
    asyncio.run(wait_consumed(settings, first))
    send_events(settings, history[cut:])
    first.kill()
    successor = WorkerProcess.for_settings(settings, tmp_path_factory.mktemp("journey") / "b")
    workers.append(successor)
    successor.start()
    successor.wait_ready(timeout_s=120)
    asyncio.run(wait_consumed(settings, successor))

    expected = oracle(history)
    assert len(expected) > 5 and all(n > 0 for n in summed(expected, 1)["social"])
    shops = asyncio.run(read_table(settings, "shops"))
    booked = {
        (month, channel): n
        for month, rows in shops[f"{shop}|journey"]["months"].items()
        for channel, n in rows.items()
    }
    assert booked == expected

    status, answer = successor.get_json(f"/shops/{shop}/journey?months=36")
    assert status == 200, answer
    by_month = summed(expected, 0)
    assert {
        row["cohort"]: counts(row["funnel"])
        for row in answer["cohorts"]
        if row["cohort"] in by_month
    } == by_month
    assert {row["channel"]: counts(row["funnel"]) for row in answer["channels"]} == summed(
        expected, 1
    )
    visitors = {event["customer_id"] for event in history}
    assert counts(answer["funnel"])[0] == len(visitors) == 120

    changes = asyncio.run(
        consume_all(settings.kafka_bootstrap, settings.topic("segment_changes"), timeout_s=20)
    )
    changed = {json.loads(r.value).get("customer_id") for r in changes}
    prospects = {v for v in visitors if v.startswith("v-")}
    assert changed and not changed & prospects
    status, prospect = successor.get_json(f"/shops/{shop}/customers/{min(prospects)}")
    assert status == 200 and prospect["segments"] == {}, prospect
    assert prospect["journey"]["stage"] in STAGES[:2]
    until(
        lambda: successor.get_json(f"/shops/{shop}/segments")[1],
        lambda sizes: sum(sizes["models"]["lifecycle"].values()) == len(visitors - prospects),
        "lifecycle places every customer and no prospect",
        limit=30,
    )
