"""The behavioural feature vector and its online scaling."""

from __future__ import annotations

import math
import random
import statistics
from datetime import UTC, datetime

import pytest

from segstream.domain.customer import CustomerState
from segstream.domain.features import snapshot
from segstream.learning.vectors import (
    FEATURES,
    FadingScaler,
    as_row,
    behaviour_vector,
    from_row,
    original_value,
)
from tests.states import plan, state

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def _vector_in_units(state: CustomerState) -> dict[str, float]:
    vector = behaviour_vector(snapshot(state, NOW))
    return {name: round(original_value(name, value), 6) for name, value in vector.items()}


def test_vector_of_a_repeat_subscriber() -> None:
    customer = state(
        "shop",
        "c-1",
        first_seen_at="2025-01-01T00:00:00Z",
        signups=["2025-01-01T00:00:00Z"],
        plans=[("2025-01-01T00:00:00Z", plan(10.0, tier="basic"))],
        purchase_days={"2025-03-02": 20.0, "2025-04-01": 20.0, "2025-05-01": 50.0},
        order_count=4,
        total_spend=90.0,
        renewal_count=3,
        discount_order_count=1,
    )
    assert _vector_in_units(customer) == {
        "quiet_days": 31.0,
        "repeat_days": 2.0,
        "mean_order_value": 22.5,
        "spend_per_month": round(90.0 / 151 * 30, 6),
        "tenure_days": 151.0,
        "cadence_days": 30.0,
        "overdue": round(31 / 30, 6),
        "orders_per_month": round(4 / 151 * 30, 6),
        "discount_share": 0.25,
        "renewal_share": 0.75,
        "subscribed": 1.0,
        "cancelled": 0.0,
        "gift_plan": 0.0,
    }


def test_without_purchases_quiet_and_cadence_count_from_signup() -> None:
    customer = state(
        "shop",
        "c-2",
        first_seen_at="2025-05-02T00:00:00Z",
        signups=["2025-05-02T00:00:00Z"],
        plans=[("2025-05-02T00:00:00Z", plan(0.0, tier="gift"))],
    )
    units = _vector_in_units(customer)
    assert (units["quiet_days"], units["cadence_days"], units["overdue"]) == (30.0, 30.0, 1.0)
    assert (units["mean_order_value"], units["gift_plan"]) == (0.0, 1.0)


def test_cancelled_subscribers_are_flagged() -> None:
    customer = state(
        "shop",
        "c-3",
        first_seen_at="2025-01-01T00:00:00Z",
        signups=["2025-01-01T00:00:00Z"],
        cancellations=[("2025-04-01T00:00:00Z", "2025-04-30T00:00:00Z")],
    )
    assert _vector_in_units(customer)["cancelled"] == 1.0
    assert _vector_in_units(customer)["subscribed"] == 0.0


def test_vector_has_every_feature_in_order_and_rows_round_trip() -> None:
    vector = behaviour_vector(snapshot(CustomerState("shop", "c-4"), NOW))
    assert tuple(vector) == FEATURES
    assert from_row(as_row(vector)) == vector


def test_scaler_is_exact_while_young() -> None:
    values = [3.0, 7.0, 1.0, 9.0]
    scaler = FadingScaler(fading=0.01)
    for value in values:
        scaler.learn_one({"x": value})
    spread = statistics.pstdev(values)
    assert scaler.means["x"] == pytest.approx(statistics.fmean(values))
    assert scaler.transform_one({"x": 9.0})["x"] == pytest.approx((9.0 - 5.0) / spread)


def test_scaler_follows_a_shifted_population() -> None:
    rng = random.Random(1)
    scaler = FadingScaler(fading=0.01)
    for _ in range(2000):
        scaler.learn_one({"x": rng.gauss(0, 1)})
    for _ in range(2000):
        scaler.learn_one({"x": rng.gauss(100, 5)})
    assert scaler.means["x"] == pytest.approx(100, abs=2)
    assert math.sqrt(scaler.variances["x"]) == pytest.approx(5, rel=0.3)


def test_constant_feature_scales_to_zero_and_inverse_undoes_z() -> None:
    scaler = FadingScaler()
    for value in (2.0, 2.0, 4.0):
        scaler.learn_one({"flat": 1.0, "x": value})
    assert scaler.transform_one({"flat": 1.0})["flat"] == 0.0
    assert scaler.inverse("x", scaler.z("x", 3.5)) == pytest.approx(3.5)
