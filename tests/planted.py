"""The planted-effect shop, shared by the in-process and the broker read-out tests.

A coffee roaster's year, 320 customers, half of them declining big spenders (premium
plans, then widening gaps, then half of them cancel). An experiment "thanks" on the
shop-defined segment "premium subscribers" splits it 50 / 50; the simulator makes treated
declining big spenders keep spending with probability ``TREATMENT_KEEPS``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import date
from typing import Any

from harness.stores import feed
from segstream.domain.changes import Source
from segstream.engine.pipeline import Pipeline
from segstream.experiments import Arm
from segstream.experiments.live import ShopExperiments
from segstream.settings import Settings
from segstream.state.keyspace import experiments_key, shop_partition
from segstream.tools.simulation import Simulation, SimulationConfig, Treatment, generate
from segstream.tools.simulation.personas import TREATMENT_KEEPS, DecliningBigSpender
from segstream.tools.simulation.shops import shops_per_kind

SHOP = shops_per_kind(1)[0]
EXPERIMENT = "thanks"
ARMS = (Arm("holdout", 0.5), Arm("treatment", 0.5))
SEGMENT = {
    "segment_id": "premium",
    "name": "Premium subscribers",
    "rule": {"field": "plan.tier", "op": "eq", "value": "premium"},
}
"""The segment as a client writes it (the server adds the version)."""


def experiment(experiment_id: str = EXPERIMENT, arms: tuple[Arm, ...] = ARMS) -> dict[str, Any]:
    """An experiment on the segment, from the start of the year, as a client writes it."""
    return {
        "experiment_id": experiment_id,
        "name": experiment_id,
        "model": f"defined:{SEGMENT['segment_id']}",
        "segment": SEGMENT["segment_id"],
        "arms": [{"name": arm.name, "share": arm.share} for arm in arms],
        "starts_at": "2025-01-01T00:00:00Z",
    }


@functools.cache
def simulation() -> Simulation:
    """The year, with the treatment planted in the "thanks" experiment's treatment arm."""
    return generate(
        SimulationConfig(
            seed=2,
            shops=(SHOP,),
            customers_per_shop=320,
            start=date(2025, 1, 1),
            days=365,
            persona_mix={"declining_big_spender": 0.5, "loyal": 0.3, "occasional": 0.2},
            treatment=Treatment(EXPERIMENT, ARMS, "treatment"),
        )
    )


def planted_difference(members: int) -> float:
    """The expected churn difference treatment - holdout: the decliners' share of the
    ``members`` times their churn drop (0.5 x 0.6), the other personas' churn being the
    same in both arms (every decliner signs up premium: all are members)."""
    decliners = sum(1 for t in simulation().truth if t.persona == "declining_big_spender")
    share = min(decliners / members, 1.0)
    return -DecliningBigSpender.cancel_probability * TREATMENT_KEEPS * share


def replay(experiments: Mapping[str, tuple[Arm, ...]]) -> ShopExperiments:
    """The shop's experiments after the year replayed in send order through one pipeline,
    with the segment and ``experiments`` (id -> arms) defined first."""
    pipeline = Pipeline(Settings(), {}, {}, {}, {})
    source = Source("segstream.segment-definitions", shop_partition(SHOP.shop_id, 8), 0)
    records = [(SEGMENT["segment_id"], SEGMENT)]
    records += [(f"experiment:{e}", experiment(e, arms)) for e, arms in experiments.items()]
    for name, body in records:
        payload = {"schema_version": 1, "shop_id": SHOP.shop_id, "version": 1, **body}
        key = f"{SHOP.shop_id}|{name}".encode()
        assert pipeline.define(key, json.dumps(payload).encode(), source).status == "processed"
    feed(pipeline, simulation().outbox())
    return ShopExperiments.load(pipeline.shops[experiments_key(SHOP.shop_id)])
