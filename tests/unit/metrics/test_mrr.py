"""MRR: monthly normalisation of plan prices and a customer's MRR over time."""

from __future__ import annotations

import pytest

from segstream.domain.customer import CustomerState
from segstream.domain.events import Plan
from segstream.metrics.mrr import customer_mrr, monthly_price, plan_mrr
from tests import states
from tests.unit.metrics.builders import at


@pytest.mark.parametrize(
    ("price", "interval", "expected"),
    [
        (12.0, "week", 52.0),  # 12 x 52 / 12
        (10.0, "week", 43.333333),
        (19.9, "month", 19.9),
        (45.0, "quarter", 15.0),
        (139.0, "quarter", 46.333333),
        (120.0, "year", 10.0),
        (0.0, "month", 0.0),
    ],
)
def test_plan_price_is_normalised_to_a_month(price: float, interval: str, expected: float) -> None:
    assert monthly_price(price, interval) == expected
    assert plan_mrr(Plan("p", price, "EUR", interval)) == expected


def test_unknown_interval_is_an_error() -> None:
    with pytest.raises(KeyError):
        monthly_price(10.0, "fortnight")


def test_customer_pays_while_active_or_cancelling_and_nothing_otherwise() -> None:
    state = states.state(
        "s",
        "c",
        signups=["2025-03-01T12:00:00Z"],
        cancellations=[("2025-03-10T12:00:00Z", "2025-03-20T12:00:00Z")],
        plans=[("2025-03-01T12:00:00Z", states.plan(90.0, "quarter"))],
    )
    assert customer_mrr(state, at("2025-02-28")) == 0.0  # before the signup: none
    assert customer_mrr(state, at("2025-03-01")) == 30.0  # active (from the signup instant)
    assert customer_mrr(state, at("2025-03-15")) == 30.0  # cancelling: paid until effective
    assert customer_mrr(state, at("2025-03-20")) == 0.0  # cancelled at effective_at
    assert customer_mrr(CustomerState("s", "c"), at("2025-03-15")) == 0.0
