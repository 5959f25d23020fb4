"""Read-out formulas against published values, scipy and hand computation."""

from __future__ import annotations

import math
import random

import pytest
from scipy.stats import binomtest, ttest_ind

from segstream.experiments.readout import (
    ArmFigures,
    compare,
    detectable_difference,
    newcombe,
    welch,
    wilson,
)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 40), (20, 40), (39, 40), (81, 263)])
def test_wilson_matches_scipy(k: int, n: int) -> None:
    expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    found = wilson(k, n)
    assert found.low == pytest.approx(expected.low, abs=1e-9)
    assert found.high == pytest.approx(expected.high, abs=1e-9)


def test_newcombe_matches_the_published_example() -> None:
    """Newcombe (1998), Statistics in Medicine 17, 873-890, table II, example (a):
    56/70 - 48/80, method 10: 0.0524 to 0.3339."""
    found = newcombe(56, 70, 48, 80)
    assert found.estimate == pytest.approx(0.2)
    assert (round(found.low, 4), round(found.high, 4)) == (0.0524, 0.3339)


def test_welch_matches_scipy() -> None:
    rng = random.Random(3)
    a = [rng.expovariate(1 / 30) for _ in range(37)]
    b = [rng.expovariate(1 / 22) for _ in range(55)]
    expected = ttest_ind(a, b, equal_var=False).confidence_interval(0.95)

    def moments(xs: list[float]) -> tuple[float, float]:
        mean = sum(xs) / len(xs)
        return mean, sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)

    found = welch(*moments(a), len(a), *moments(b), len(b))
    assert found.low == pytest.approx(expected.low, rel=1e-9)
    assert found.high == pytest.approx(expected.high, rel=1e-9)


def test_detectable_difference_by_hand() -> None:
    """(z 0.975 + z 0.8) x sd x sqrt(1/n1 + 1/n2) = (1.959964 + 0.841621) x 0.3 x sqrt(1/40
    + 1/160)."""
    expected = (1.959964 + 0.841621) * 0.3 * math.sqrt(1 / 40 + 1 / 160)
    assert detectable_difference(0.3, 40, 160) == pytest.approx(expected, rel=1e-6)


def test_compare_reads_arm_figures() -> None:
    revenue = [10.0, 0.0, 30.0, 20.0]
    treatment = ArmFigures(4, 1, 3, sum(revenue), sum(x * x for x in revenue))
    control = ArmFigures(5, 3, 2, 25.0, 325.0)
    result = compare(treatment, control)
    assert result["members"] == {"treatment": 4, "control": 5}
    assert result["churn"]["estimate"] == pytest.approx(1 / 4 - 3 / 5)
    assert result["revenue_per_member"]["estimate"] == pytest.approx(15.0 - 5.0)
    assert treatment.revenue_variance == pytest.approx(500 / 3)
    assert result["detectable"]["churn"] > abs(result["churn"]["estimate"])


def test_compare_waits_for_members() -> None:
    assert compare(ArmFigures(), ArmFigures(3, 1))["churn"] is None
    assert compare(ArmFigures(1, 0, 1, 5.0, 25.0), ArmFigures(3, 1))["revenue_per_member"] is None


def test_a_read_out_without_enough_data_says_so_instead_of_zero_width_figures() -> None:
    """No churn in either arm and the same revenue from every member: the churn interval
    is still Wilson's (it is honest at 0), but nothing says how big a difference these
    arms could detect, and revenue has no spread to build an interval on."""
    flat = compare(ArmFigures(5, 0, 5, 50.0, 500.0), ArmFigures(4, 0, 4, 40.0, 400.0))
    assert flat["status"] == "insufficient_data"
    assert flat["revenue_per_member"] is None
    assert flat["detectable"] == {"churn": None, "revenue_per_member": None}
    assert flat["churn"]["low"] < 0 < flat["churn"]["high"]
    empty = compare(ArmFigures(), ArmFigures())
    assert empty["status"] == "insufficient_data" and empty["detectable"] is None
    revenue = [10.0, 0.0, 30.0, 20.0]
    varied = compare(
        ArmFigures(4, 1, 3, sum(revenue), sum(x * x for x in revenue)),
        ArmFigures(5, 3, 2, 25.0, 325.0),
    )
    assert varied["status"] == "ok"
    assert varied["detectable"]["churn"] > 0 and varied["detectable"]["revenue_per_member"] > 0
    assert varied["revenue_per_member"]["low"] < varied["revenue_per_member"]["high"]
