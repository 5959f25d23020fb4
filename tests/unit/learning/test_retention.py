"""The churn model's features and the expected orders made of its probability."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from segstream.domain.events import format_time
from segstream.domain.features import CustomerSnapshot, snapshot
from segstream.learning.labels import LapseRule
from segstream.learning.lifetime import BgNbd, LifetimeFit
from segstream.learning.retention import (
    FEATURES,
    HORIZONS,
    PRIOR_MEAN,
    expected_orders,
    features,
    logit,
    off_schedule,
    p_buys_within,
    p_no_order,
)
from tests.states import plan, state

NOW = datetime(2025, 6, 1, tzinfo=UTC)
FIT = LifetimeFit(BgNbd(r=0.24, alpha=4.41, a=0.79, b=2.43), high_value_rate=20.0, day=0)
LAPSE = LapseRule()


def customer(days_ago: list[int], subscriber: bool = False, fit: bool = True) -> CustomerSnapshot:
    """A customer who bought ``days_ago`` days before NOW (a monthly subscriber if asked)."""
    first = NOW - timedelta(days=max(days_ago))
    extra: dict[str, Any] = {}
    if subscriber:
        extra = {
            "signups": [format_time(first)],
            "plans": [(format_time(first), plan(20.0, interval="month"))],
        }
    found = state(
        "shop",
        "c-1",
        first_seen_at=format_time(first),
        purchase_days={(NOW - timedelta(days=n)).date().isoformat(): 20.0 for n in days_ago},
        order_count=len(days_ago),
        total_spend=20.0 * len(days_ago),
        **extra,
    )
    return snapshot(found, NOW, lifetime=FIT if fit else None)


def test_features_name_the_customers_history() -> None:
    view = customer([100, 70, 40, 10], subscriber=True)
    found = dict(zip(FEATURES, features(view, 90.0, LAPSE), strict=True))
    assert found["bias"] == 1.0 and found["no_fit"] == 0.0
    assert found["base"] == pytest.approx(logit(p_no_order(view, 90.0) or 0.0))
    assert found["quiet"] == pytest.approx(math.log1p(10))
    assert found["repeat_days"] == pytest.approx(math.log1p(3))
    assert found["age"] == pytest.approx(math.log1p(100))
    assert found["overdue"] == pytest.approx(math.log1p(10 / 30))
    assert (found["subscribed"], found["cancelled"]) == (1.0, 0.0)
    assert found["renewal_due"] == pytest.approx(math.log1p(10 / 38))


def test_without_a_fit_the_base_is_the_cold_start_guess() -> None:
    view = customer([45], fit=False)
    found = dict(zip(FEATURES, features(view, 90.0, LAPSE), strict=True))
    assert found["no_fit"] == 1.0
    assert found["base"] == pytest.approx(logit(45 / 90))
    assert p_no_order(view, 90.0) is None


def test_the_prior_answers_bg_nbds_probability() -> None:
    view = customer([200, 30])
    z = sum(w * v for w, v in zip(PRIOR_MEAN, features(view, 90.0, LAPSE), strict=True))
    assert 1.0 / (1.0 + math.exp(-z)) == pytest.approx(p_no_order(view, 90.0), rel=1e-3)


def test_expected_orders_are_bg_nbds_when_the_model_agrees_with_it() -> None:
    view = customer([200, 120, 30])
    agrees = p_no_order(view, 90.0)
    assert agrees is not None
    for days in HORIZONS:
        bg = FIT.model.expected_purchases(days, view.frequency, view.recency, view.T)
        assert expected_orders(view, days, agrees, 90.0) == pytest.approx(bg, rel=1e-6)


def test_expected_orders_follow_the_models_chance_of_ordering() -> None:
    view = customer([200, 120, 30])
    base = p_no_order(view, 90.0)
    assert base is not None
    likelier = expected_orders(view, 90, base / 2, 90.0)
    bg = FIT.model.expected_purchases(90, view.frequency, view.recency, view.T)
    buys = FIT.model.p_buys_within(90, view.frequency, view.recency, view.T)
    assert likelier == pytest.approx(bg * (1 - base / 2) / buys, rel=1e-6)  # exact at the horizon
    found = [expected_orders(view, d, base / 2, 90.0) for d in HORIZONS]
    known = [f for f in found if f is not None]
    assert known == found
    assert known == sorted(known)  # more days, more orders
    assert expected_orders(replace(view, lifetime=None), 90, 0.5, 90.0) is None


def test_the_models_level_scales_bg_nbds_orders_alike_at_every_horizon() -> None:
    """BG/NBD keeps the shape over time; the churn model's chance at its horizon sets the
    level (a logit shift carried to 30 days inflated the short horizon: +16 % on CDNOW)."""
    view = customer([200, 120, 30])
    base = p_no_order(view, 90.0)
    assert base is not None
    ratios = []
    for days in HORIZONS:
        bg = FIT.model.expected_purchases(days, view.frequency, view.recency, view.T)
        found = expected_orders(view, days, base / 2, 90.0)
        assert found is not None
        ratios.append(found / bg)
    assert ratios == pytest.approx([ratios[0]] * len(HORIZONS), rel=1e-9)
    assert ratios[0] > 1.0


def test_a_subscriber_whose_renewals_stopped_is_expected_one_comeback_at_most() -> None:
    """Monthly renewals every 5 days for a year, then 60 days quiet: BG/NBD still counts
    them at their old pace; what is left is the chance they come back."""
    on_schedule = customer([*range(425, 60, -5), 25], subscriber=True)
    lapsed = customer([*range(425, 60, -5)], subscriber=True)
    assert not off_schedule(on_schedule) and off_schedule(lapsed)
    risk = 0.3
    x, t_x, big_t = lapsed.frequency, lapsed.recency, lapsed.T
    level = (1.0 - risk) / FIT.model.p_buys_within(90.0, x, t_x, big_t)
    for days in HORIZONS:
        paced = FIT.model.expected_purchases(days, x, t_x, big_t) * level
        found = expected_orders(lapsed, days, risk, 90.0)
        chance = p_buys_within(lapsed, days, risk, 90.0)
        assert found == pytest.approx(min(chance, paced), rel=1e-9)
        assert found is not None and found <= 1.0 < paced
    assert p_buys_within(lapsed, 90.0, risk, 90.0) == pytest.approx(1.0 - risk)
    one_off = customer([*range(425, 60, -5)])  # no plan: BG/NBD's pace stands
    assert not off_schedule(one_off)
    expected = expected_orders(one_off, 90, risk, 90.0)
    assert expected is not None and expected > 1.0
