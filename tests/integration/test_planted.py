"""A planted effect is found on a real worker: the read-out over HTTP after a simulated
year that reacts to the experiment's treatment.

The shop of ``tests/planted.py`` (the in-process test's too): a coffee roaster's year, 320
customers, half of them declining big spenders; the segment "premium subscribers" (a rule
defined over HTTP) carries a 50 / 50 experiment started over HTTP before any event; the
simulator makes treated declining big spenders keep spending with probability 0.6. The
worker reads the history from the broker (topics consumed independently, so arrival order
differs from the in-process replay); the read-out must find the effect with the right
sign, cover the planted difference, and agree with the in-process replay on each arm's
members (enrolment on entry to a rule segment does not depend on arrival order).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from harness.kafka_io import send_events
from harness.workers import WorkerProcess, isolated_settings, wait_consumed, worker_group
from segstream.settings import Settings
from tests.planted import (
    ARMS,
    EXPERIMENT,
    SEGMENT,
    SHOP,
    experiment,
    planted_difference,
    replay,
    simulation,
)


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str) -> Settings:
    return isolated_settings(kafka_bootstrap, "planted")


@pytest.fixture(scope="module")
def workers(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[WorkerProcess]]:
    with worker_group(settings, tmp_path_factory.mktemp("planted")) as group:
        yield group


def test_the_planted_effect_is_found_on_the_broker(
    settings: Settings, workers: list[WorkerProcess]
) -> None:
    worker = workers[0]
    shop = SHOP.shop_id
    status, body = worker.request_json("POST", f"/shops/{shop}/definitions", SEGMENT)
    assert status == 201, body
    status, body = worker.request_json("POST", f"/shops/{shop}/experiments", experiment())
    assert status == 201, body
    send_events(settings, simulation().events)
    asyncio.run(wait_consumed(settings, worker, timeout_s=240))
    status, readout = worker.get_json(f"/shops/{shop}/experiments/{EXPERIMENT}")
    assert status == 200, readout

    planted = planted_difference(sum(arm["members"] for arm in readout["arms"].values()))
    churn = readout["comparisons"]["treatment"]["churn"]
    assert churn["high"] < 0, churn  # found, with the right sign
    assert churn["low"] <= planted <= churn["high"], (planted, churn)
    replayed = replay({EXPERIMENT: ARMS}).readout(EXPERIMENT)
    assert {name: arm["members"] for name, arm in readout["arms"].items()} == {
        name: arm["members"] for name, arm in replayed["arms"].items()
    }
