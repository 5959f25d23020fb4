"""The read-out finds a planted effect and finds nothing in A/A splits more often than its
confidence level allows, on a simulated shop replayed through the pipeline.

A coffee roaster's year, 320 customers, half of them declining big spenders (premium
plans, then widening gaps, then half of them cancel). An experiment on the shop-defined
segment "premium subscribers" splits it 50 / 50; the simulator plants the effect: a
treated declining big spender keeps spending with probability 0.6 (``TREATMENT_KEEPS``),
so their churn falls from 0.5 to 0.2. Nineteen more experiments on the same segment split
it A/A (both arms untreated by construction: the simulator treats only the first one's
"treatment" arm).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from service.core.changes import Source
from service.core.keys import shop_partition
from service.core.pipeline import Pipeline
from service.experiments import Arm
from service.experiments.live import ShopExperiments, experiments_key
from service.settings import Settings
from service.tools.simulation import SimulationConfig, Treatment, generate
from service.tools.simulation.personas import TREATMENT_KEEPS, DecliningBigSpender
from service.tools.simulation.shops import shops_per_kind
from tests.feed import feed

SHOP = shops_per_kind(1)[0]
ARMS = (Arm("holdout", 0.5), Arm("treatment", 0.5))
AA = [f"aa-{n}" for n in range(19)]
SEGMENT = "premium"


def record(name: str, payload: dict[str, Any]) -> tuple[bytes, bytes]:
    return f"{SHOP.shop_id}|{name}".encode(), json.dumps(payload).encode()


def experiment(experiment_id: str, arms: tuple[Arm, ...]) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "shop_id": SHOP.shop_id,
        "experiment_id": experiment_id,
        "name": experiment_id,
        "version": 1,
        "model": f"defined:{SEGMENT}",
        "segment": SEGMENT,
        "arms": [{"name": arm.name, "share": arm.share} for arm in arms],
        "starts_at": "2025-01-01T00:00:00Z",
    }


@pytest.fixture(scope="module")
def replayed() -> tuple[ShopExperiments, dict[str, str]]:
    """The shop's experiments after the year, and each customer's persona."""
    config = SimulationConfig(
        seed=2,
        shops=(SHOP,),
        customers_per_shop=320,
        start=date(2025, 1, 1),
        days=365,
        persona_mix={"declining_big_spender": 0.5, "loyal": 0.3, "occasional": 0.2},
        treatment=Treatment("thanks", ARMS, "treatment"),
    )
    simulation = generate(config)
    pipeline = Pipeline(Settings(), {}, {}, {}, {})
    source = Source("segstream.segment-definitions", shop_partition(SHOP.shop_id, 8), 0)
    rule = {"field": "plan.tier", "op": "eq", "value": "premium"}
    segment = {
        "schema_version": 1,
        "shop_id": SHOP.shop_id,
        "segment_id": SEGMENT,
        "name": "Premium subscribers",
        "version": 1,
        "rule": rule,
    }
    for name, payload in [
        (SEGMENT, segment),
        ("experiment:thanks", experiment("thanks", ARMS)),
        *((f"experiment:{e}", experiment(e, (Arm("a", 0.5), Arm("b", 0.5)))) for e in AA),
    ]:
        assert pipeline.define(*record(name, payload), source).status == "processed"
    feed(pipeline, simulation.outbox())
    personas = {t.customer_id: t.persona for t in simulation.truth}
    return ShopExperiments.load(pipeline.shops[experiments_key(SHOP.shop_id)]), personas


def test_the_planted_effect_is_found_with_the_right_sign_and_covered(
    replayed: tuple[ShopExperiments, dict[str, str]],
) -> None:
    """Expected difference: the decliners' share of the members times their churn drop
    (0.5 x 0.6 = 0.3), the other personas' churn being the same in both arms."""
    experiments, personas = replayed
    readout = experiments.readout("thanks")
    members = sum(arm["members"] for arm in readout["arms"].values())
    decliners = sum(1 for persona in personas.values() if persona == "declining_big_spender")
    share = decliners / members  # every decliner signs up premium: all are members
    planted = -DecliningBigSpender.cancel_probability * TREATMENT_KEEPS * min(share, 1.0)
    churn = readout["comparisons"]["treatment"]["churn"]
    assert churn["high"] < 0, churn  # found, with the right sign
    assert churn["low"] <= planted <= churn["high"], (planted, churn)
    assert readout["comparisons"]["treatment"]["detectable"]["churn"] < abs(planted)


def test_a_a_splits_find_nothing_more_often_than_the_confidence_level_allows(
    replayed: tuple[ShopExperiments, dict[str, str]],
) -> None:
    """19 independent A/A splits at 95 %: 4 or more false findings has probability 0.013."""
    experiments, _ = replayed
    found = 0
    for experiment_id in AA:
        churn = experiments.readout(experiment_id)["comparisons"]["b"]["churn"]
        found += churn["low"] > 0 or churn["high"] < 0
    assert found <= 3, found
