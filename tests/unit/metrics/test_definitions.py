"""Every metric formula against hand-computed values, including undefined (0 / 0) cases."""

from __future__ import annotations

import pytest

from segstream.metrics import definitions as d


def test_churn_rate_counts_only_subscribers_at_the_start() -> None:
    # 100 at the start, 11 cancellations of which 1 joined in the period: 10 / 100.
    assert d.churn_rate(churned_start_subscribers=10, subscribers_start=100) == 0.1
    assert d.churn_rate(0, 0) is None


def test_retention_rate_subtracts_everyone_who_joined() -> None:
    # start 100, 10 churned, 12 new and 3 reactivated: end 105, retained (105 - 15) / 100.
    assert d.retention_rate(subscribers_end=105, joined=15, subscribers_start=100) == 0.9
    assert d.retention_rate(5, 5, 0) is None


def test_gross_and_net_mrr_churn_follow_chartmogul_example() -> None:
    # ChartMogul's example: 100 MRR, 10 churned, 10 contracted, 10 expanded.
    assert d.gross_mrr_churn_rate(churn_mrr=10.0, contraction_mrr=10.0, mrr_start=100.0) == 0.2
    assert (
        d.net_mrr_churn_rate(10.0, 10.0, expansion_mrr=10.0, reactivation_mrr=0.0, mrr_start=100.0)
        == 0.1
    )
    assert d.gross_mrr_churn_rate(1.0, 0.0, 0.0) is None
    assert d.net_mrr_churn_rate(1.0, 0.0, 0.0, 0.0, 0.0) is None


def test_net_mrr_churn_is_negative_when_expansion_outgrows_losses() -> None:
    assert d.net_mrr_churn_rate(5.0, 0.0, 20.0, 5.0, 100.0) == pytest.approx(-0.2)


def test_net_revenue_retention_is_one_minus_net_mrr_churn() -> None:
    assert d.net_revenue_retention(100.0, 10.0, 0.0, 10.0, 10.0) == pytest.approx(0.9)
    assert d.net_revenue_retention(200.0, 30.0, 10.0, 5.0, 15.0) == pytest.approx(1.1)
    args = (40.0, 7.5, 2.5, 5.0, 12.5)
    net = d.net_mrr_churn_rate(12.5, 5.0, 7.5, 2.5, 40.0)
    assert net is not None
    assert d.net_revenue_retention(*args) == pytest.approx(1 - net)
    assert d.net_revenue_retention(0.0, 1.0, 0.0, 0.0, 0.0) is None


def test_arpu_is_mrr_per_paying_subscriber() -> None:
    assert d.arpu(mrr=130.0, subscribers=4) == 32.5
    assert d.arpu(0.0, 0) is None


def test_ltv_is_arpu_over_monthly_churn() -> None:
    assert d.ltv(32.5, 0.25) == 130.0
    # A weekly churn of 1 % is 1 % x 30.4375 / 7 a month.
    weekly = 7 / d.DAYS_PER_MONTH
    assert d.ltv(100.0, 0.01, period_months=weekly) == pytest.approx(100.0 * 7 / 30.4375 / 0.01)


@pytest.mark.parametrize(("arpu", "churn"), [(10.0, 0.0), (10.0, None), (None, 0.1)])
def test_ltv_is_undefined_without_churn_or_subscribers(
    arpu: float | None, churn: float | None
) -> None:
    assert d.ltv(arpu, churn) is None


def test_average_orders_per_customer_uses_distinct_ordering_customers() -> None:
    assert d.average_orders_per_customer(orders=7, ordering_customers=4) == 1.75
    assert d.average_orders_per_customer(0, 0) is None


def test_signup_and_drop_off_rates() -> None:
    assert d.signup_rate(signups=3, subscribers_start=12) == 0.25
    assert d.signup_rate(3, 0) is None
    assert d.drop_off_rate(dropped_off=1, joined=3) == pytest.approx(1 / 3)
    assert d.drop_off_rate(0, 0) is None
