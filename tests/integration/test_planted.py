"""A planted effect is found on a real worker: the read-out over HTTP after a simulated
year that reacts to the experiment's treatment.

The same shop as ``tests/unit/experiments/test_planted.py``: a coffee roaster's year, 320
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
import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from harness.kafka_io import send_events
from harness.workers import WorkerProcess, isolated_settings, wait_consumed, worker_group
from service.core.changes import Source
from service.core.keys import shop_partition
from service.core.pipeline import Pipeline
from service.experiments import Arm
from service.experiments.live import ShopExperiments, experiments_key
from service.settings import Settings
from service.tools.simulation import Simulation, SimulationConfig, Treatment, generate
from service.tools.simulation.personas import TREATMENT_KEEPS, DecliningBigSpender
from service.tools.simulation.shops import shops_per_kind
from tests.feed import feed

SHOP = shops_per_kind(1)[0]
ARMS = (Arm("holdout", 0.5), Arm("treatment", 0.5))
SEGMENT = {
    "segment_id": "premium",
    "name": "Premium subscribers",
    "rule": {"field": "plan.tier", "op": "eq", "value": "premium"},
}
EXPERIMENT = {
    "experiment_id": "thanks",
    "name": "A thank-you gift",
    "model": "defined:premium",
    "segment": "premium",
    "arms": [{"name": arm.name, "share": arm.share} for arm in ARMS],
    "starts_at": "2025-01-01T00:00:00Z",
}


@pytest.fixture(scope="module")
def simulation() -> Simulation:
    return generate(
        SimulationConfig(
            seed=2,
            shops=(SHOP,),
            customers_per_shop=320,
            start=date(2025, 1, 1),
            days=365,
            persona_mix={"declining_big_spender": 0.5, "loyal": 0.3, "occasional": 0.2},
            treatment=Treatment("thanks", ARMS, "treatment"),
        )
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


def in_process(simulation: Simulation) -> dict[str, Any]:
    """The read-out of the same history replayed in send order through one pipeline."""
    pipeline = Pipeline(Settings(), {}, {}, {}, {})
    source = Source("segstream.segment-definitions", shop_partition(SHOP.shop_id, 8), 0)
    for name, body in (("premium", SEGMENT), ("experiment:thanks", EXPERIMENT)):
        payload = {"schema_version": 1, "shop_id": SHOP.shop_id, "version": 1, **body}
        key = f"{SHOP.shop_id}|{name}".encode()
        assert pipeline.define(key, json.dumps(payload).encode(), source).status == "processed"
    feed(pipeline, simulation.outbox())
    return ShopExperiments.load(pipeline.shops[experiments_key(SHOP.shop_id)]).readout("thanks")


def test_the_planted_effect_is_found_on_the_broker(
    settings: Settings, workers: list[WorkerProcess], simulation: Simulation
) -> None:
    worker = workers[0]
    shop = SHOP.shop_id
    status, body = worker.request_json("POST", f"/shops/{shop}/definitions", SEGMENT)
    assert status == 201, body
    status, body = worker.request_json("POST", f"/shops/{shop}/experiments", EXPERIMENT)
    assert status == 201, body
    send_events(settings, simulation.events)
    asyncio.run(wait_consumed(settings, worker, timeout_s=240))
    status, readout = worker.get_json(f"/shops/{shop}/experiments/thanks")
    assert status == 200, readout

    personas = [t.persona for t in simulation.truth]
    members = sum(arm["members"] for arm in readout["arms"].values())
    share = personas.count("declining_big_spender") / members
    planted = -DecliningBigSpender.cancel_probability * TREATMENT_KEEPS * min(share, 1.0)
    churn = readout["comparisons"]["treatment"]["churn"]
    assert churn["high"] < 0, churn  # found, with the right sign
    assert churn["low"] <= planted <= churn["high"], (planted, churn)
    replayed = in_process(simulation)
    assert {name: arm["members"] for name, arm in readout["arms"].items()} == {
        name: arm["members"] for name, arm in replayed["arms"].items()
    }
