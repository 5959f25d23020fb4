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

import pytest

from segstream.experiments import Arm
from segstream.experiments.live import ShopExperiments
from tests.planted import ARMS, EXPERIMENT, planted_difference, replay

AA = [f"aa-{n}" for n in range(19)]


@pytest.fixture(scope="module")
def replayed() -> ShopExperiments:
    """The shop's experiments after the year: "thanks" and the 19 A/A splits."""
    return replay({EXPERIMENT: ARMS, **{e: (Arm("a", 0.5), Arm("b", 0.5)) for e in AA}})


def test_the_planted_effect_is_found_with_the_right_sign_and_covered(
    replayed: ShopExperiments,
) -> None:
    readout = replayed.readout(EXPERIMENT)
    planted = planted_difference(sum(arm["members"] for arm in readout["arms"].values()))
    churn = readout["comparisons"]["treatment"]["churn"]
    assert churn["high"] < 0, churn  # found, with the right sign
    assert churn["low"] <= planted <= churn["high"], (planted, churn)
    assert readout["comparisons"]["treatment"]["detectable"]["churn"] < abs(planted)


def test_a_a_splits_find_nothing_more_often_than_the_confidence_level_allows(
    replayed: ShopExperiments,
) -> None:
    """19 independent A/A splits at 95 %: 4 or more false findings has probability 0.013."""
    found = 0
    for experiment_id in AA:
        churn = replayed.readout(experiment_id)["comparisons"]["b"]["churn"]
        found += churn["low"] > 0 or churn["high"] < 0
    assert found <= 3, found
