"""An experiment's read-out: per-arm figures, differences with confidence intervals, and
the smallest effect the arms' current sizes could detect.

Churn is a proportion of the arm's members: its interval is Wilson's score interval, and
the difference between two arms Newcombe's hybrid score interval (method 10 of Newcombe
1998), which stays inside [-1, 1] and behaves with the few members and the rates near 0
a tiny shop's arms have. Revenue per member is a mean: Welch's interval (no equal
variances assumed). The minimum detectable effect is the difference a two-sided test at
the same level would find with 80 % power at the arms' sizes, from the pooled rate or
variance: the honest answer to "what can 40 customers show".
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any

stats: Any = importlib.import_module("scipy.stats")  # scipy ships no type hints

CONFIDENCE = 0.95
POWER = 0.80


@dataclass(frozen=True, slots=True)
class ArmFigures:
    """What an arm accumulated since the experiment started: members enrolled, of them
    churned, their orders, and the sum and sum of squares of revenue per member."""

    members: int = 0
    churned: int = 0
    orders: int = 0
    revenue: float = 0.0
    revenue_squares: float = 0.0

    @property
    def churn_rate(self) -> float | None:
        return None if self.members == 0 else self.churned / self.members

    @property
    def revenue_per_member(self) -> float | None:
        return None if self.members == 0 else self.revenue / self.members

    @property
    def revenue_variance(self) -> float | None:
        """Sample variance of revenue per member (None below two members)."""
        if self.members < 2:
            return None
        mean = self.revenue / self.members
        return max(0.0, (self.revenue_squares - self.members * mean * mean) / (self.members - 1))


@dataclass(frozen=True, slots=True)
class Interval:
    """An estimate with its confidence interval."""

    estimate: float
    low: float
    high: float

    def to_json(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}


def _z(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2))


def wilson(successes: int, trials: int, confidence: float = CONFIDENCE) -> Interval:
    """Wilson's score interval for a proportion.

    >>> interval = wilson(3, 40)
    >>> round(interval.low, 4), round(interval.high, 4)
    (0.0258, 0.1986)
    """
    if trials <= 0:
        raise ValueError("a proportion needs at least one trial")
    z, p = _z(confidence), successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def newcombe(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int, confidence: float = CONFIDENCE
) -> Interval:
    """Newcombe's hybrid score interval for the difference of proportions ``a - b``."""
    a, b = wilson(successes_a, trials_a, confidence), wilson(successes_b, trials_b, confidence)
    difference = a.estimate - b.estimate
    low = difference - math.hypot(a.estimate - a.low, b.high - b.estimate)
    high = difference + math.hypot(a.high - a.estimate, b.estimate - b.low)
    return Interval(difference, low, high)


def welch(
    mean_a: float,
    variance_a: float,
    n_a: int,
    mean_b: float,
    variance_b: float,
    n_b: int,
    confidence: float = CONFIDENCE,
) -> Interval:
    """Welch's interval for the difference of means ``a - b`` (sample variances)."""
    if n_a < 2 or n_b < 2:
        raise ValueError("a mean's interval needs at least two members per arm")
    se_a, se_b = variance_a / n_a, variance_b / n_b
    se = math.sqrt(se_a + se_b)
    difference = mean_a - mean_b
    if se == 0:
        return Interval(difference, difference, difference)
    df = (se_a + se_b) ** 2 / (se_a**2 / (n_a - 1) + se_b**2 / (n_b - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    return Interval(difference, difference - half, difference + half)


def detectable_difference(
    spread: float, n_a: int, n_b: int, confidence: float = CONFIDENCE, power: float = POWER
) -> float:
    """The smallest true difference a two-sided test at ``confidence`` finds with
    ``power`` at these sizes, for a per-member standard deviation ``spread``.

    >>> round(detectable_difference(0.5, 100, 100), 3)  # a 50 % rate, 100 per arm
    0.198
    """
    return (_z(confidence) + float(stats.norm.ppf(power))) * spread * math.sqrt(1 / n_a + 1 / n_b)


OK = "ok"
INSUFFICIENT = "insufficient_data"
"""A comparison's ``status``: every figure is there, or some cannot be estimated yet."""


def compare(treatment: ArmFigures, control: ArmFigures) -> dict[str, Any]:
    """Treatment minus control: churn and revenue per member with intervals, and the
    smallest differences these sizes could detect; ``status`` says whether all of them
    can be estimated yet (:data:`INSUFFICIENT` otherwise).

    A figure the data cannot support is None, never a zero-width stand-in: intervals and
    detectable differences need a member in each arm; a detectable churn difference needs
    churn to vary (a pooled rate of 0 or 1 says nothing about spread: it would read 0.0);
    revenue needs two members per arm and revenue that varies (otherwise Welch's interval
    is [d, d] and the detectable difference 0)."""
    n_t, n_c = treatment.members, control.members
    result: dict[str, Any] = {"members": {"treatment": n_t, "control": n_c}}
    if n_t == 0 or n_c == 0:
        return {
            **result,
            "status": INSUFFICIENT,
            "churn": None,
            "revenue_per_member": None,
            "detectable": None,
        }
    churn = newcombe(treatment.churned, n_t, control.churned, n_c)
    pooled = (treatment.churned + control.churned) / (n_t + n_c)
    detectable: dict[str, float | None] = {"churn": None, "revenue_per_member": None}
    if 0.0 < pooled < 1.0:
        detectable["churn"] = detectable_difference(math.sqrt(pooled * (1 - pooled)), n_t, n_c)
    revenue = None
    var_t, var_c = treatment.revenue_variance, control.revenue_variance
    if var_t is not None and var_c is not None and var_t + var_c > 0:
        revenue = welch(
            treatment.revenue / n_t, var_t, n_t, control.revenue / n_c, var_c, n_c
        ).to_json()
        pooled_var = ((n_t - 1) * var_t + (n_c - 1) * var_c) / (n_t + n_c - 2)
        detectable["revenue_per_member"] = detectable_difference(math.sqrt(pooled_var), n_t, n_c)
    complete = revenue is not None and None not in detectable.values()
    return {
        **result,
        "status": OK if complete else INSUFFICIENT,
        "churn": churn.to_json(),
        "revenue_per_member": revenue,
        "detectable": detectable,
    }
