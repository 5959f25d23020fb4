"""Features match the lifetimes definitions, whatever order the orders arrive in."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from segstream.domain.customer import CustomerState, Silence, apply
from segstream.domain.events import Order
from segstream.domain.features import snapshot
from tests.oracle import lifetimes_summary
from tests.states import state

START = datetime(2025, 1, 1, tzinfo=UTC)


def random_orders(seed: int, customers: int = 40) -> list[Order]:
    rng = random.Random(seed)
    orders = []
    for c in range(customers):
        for n in range(rng.randint(1, 12)):
            at = START + timedelta(days=rng.randint(0, 300), hours=rng.randint(0, 23))
            amount = round(rng.uniform(3, 80), 2)
            orders.append(
                Order(f"e-{c}-{n}", "shop-1", f"c-{c}", at, f"o-{c}-{n}", amount, "EUR", False)
            )
    return orders


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_features_equal_lifetimes_summary_for_shuffled_orders(seed: int) -> None:
    orders = random_orders(seed)
    random.Random(seed).shuffle(orders)
    now = max(o.occurred_at for o in orders) + timedelta(days=3)
    states: dict[str, CustomerState] = {}
    for order in orders:
        state = states.setdefault(order.customer_id, CustomerState("shop-1", order.customer_id))
        apply(state, order)
    frame = pd.DataFrame(
        [
            {"customer_id": o.customer_id, "occurred_at": o.occurred_at, "amount": o.amount}
            for o in orders
        ]
    )
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    expected = lifetimes_summary(frame, pd.Timestamp(now))
    for customer_id, row in expected.iterrows():
        got = snapshot(states[str(customer_id)], now)
        assert got.frequency == row["frequency"]
        assert got.recency == row["recency"]
        assert row["T"] == got.T
        assert got.monetary_value == pytest.approx(row["monetary_value"])


def test_single_purchase_has_zero_frequency_and_monetary() -> None:
    customer = state("shop-1", "c-1", purchase_days={"2025-03-01": 12.5})
    got = snapshot(customer, datetime(2025, 3, 11, tzinfo=UTC))
    assert (got.frequency, got.recency, got.T, got.monetary_value) == (0, 0.0, 10.0, 0.0)
    assert got.days_since_last_purchase == 10.0
    assert got.cadence_days is None


def test_same_day_orders_count_as_one_purchase_day_with_summed_value() -> None:
    state = CustomerState("shop-1", "c-1")
    day1 = datetime(2025, 3, 1, 9, tzinfo=UTC)
    for n, (at, amount) in enumerate(
        [(day1, 10.0), (day1 + timedelta(days=2), 5.0), (day1 + timedelta(days=2, hours=3), 7.0)]
    ):
        apply(state, Order(f"e{n}", "shop-1", "c-1", at, f"o{n}", amount, "EUR", False))
    got = snapshot(state, day1 + timedelta(days=4))
    assert (got.frequency, got.monetary_value, got.cadence_days) == (1, 12.0, 2.0)


def test_comeback_after_long_gap_is_a_return() -> None:
    customer = state("shop-1", "c-1", purchase_days={"2025-01-01": 9.0, "2025-06-01": 9.0})
    got = snapshot(customer, datetime(2025, 6, 2, tzinfo=UTC), Silence(churned_days=90))
    assert got.returned_at is not None and got.returned_at.isoformat() == "2025-06-01"


def _comeback_by_every_gap(days: list[date], silence: Silence) -> date | None:
    """The latest purchase after a gap over the churn gap the customer had then, found the
    plain way (every gap, the customer's own churn gap each time): the oracle."""
    found = [
        days[n]
        for n in range(1, len(days))
        if (days[n] - days[n - 1]).days
        > silence.churned((days[n - 1] - days[0]).days / (n - 1) if n > 1 else None)
    ]
    return max(found, default=None)


@pytest.mark.parametrize("seed", range(40))
def test_the_latest_comeback_is_the_one_every_gap_finds(seed: int) -> None:
    rng = random.Random(seed)
    silence = Silence(at_risk_days=rng.choice([20.0, 45.0]), churned_days=rng.choice([60.0, 90.0]))
    start = date(2024, 1, 1)
    gaps = [rng.choice([3, 10, 30, 70, 95, 140, 200]) for _ in range(rng.randint(0, 12))]
    days = [start + timedelta(days=sum(gaps[:n])) for n in range(len(gaps) + 1)]
    kept = CustomerState("shop", "c", purchase_days={day: 10.0 for day in days})
    now = datetime.combine(days[-1], datetime.min.time(), UTC) + timedelta(days=1)
    assert snapshot(kept, now, silence).returned_at == _comeback_by_every_gap(days, silence)
