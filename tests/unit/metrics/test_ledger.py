"""The ledger against hand-computed windows: every edge case of the metric definitions.

Prices are per month unless said otherwise; ``Shop`` (builders.py) stands in for the
pipeline. Each scenario lists its events and the numbers worked out by hand.
"""

from __future__ import annotations

import json
from datetime import date
from itertools import permutations
from typing import Any

import pytest

from segstream.metrics.ledger import MetricsLedger, UnknownShopError
from segstream.metrics.windows import BadWindowError, WindowMetrics
from tests.unit.metrics.builders import (
    SHOP,
    CountingBuckets,
    Shop,
    at,
    cancel,
    change_plan,
    order,
    plan,
    signup,
    tier_and_status,
)
from tests.unit.metrics.invariants import MOVEMENTS


@pytest.fixture
def ledger() -> MetricsLedger:
    return MetricsLedger({})


@pytest.fixture
def shop(ledger: MetricsLedger) -> Shop:
    return Shop(ledger)


def month(ledger: MetricsLedger, first: str, dimension: str = "all") -> WindowMetrics:
    return ledger.window(SHOP, "month", date.fromisoformat(first), dimension)


def test_signup_and_cancel_in_the_same_period(ledger: MetricsLedger, shop: Shop) -> None:
    # c1 (30) and c2 (60 a quarter = 20) subscribe in February; c3 (10 a week = 43.333333)
    # signs up on 5 March and cancels on 20 March.
    shop.send(
        signup("c1", at("2025-02-10")),
        signup("c2", at("2025-02-20"), price=60.0, interval="quarter"),
        signup("c3", at("2025-03-05"), price=10.0, interval="week"),
        cancel("c3", at("2025-03-20")),
        order("c1", at("2025-04-02")),
    )
    march = month(ledger, "2025-03-01")
    assert (march.subscribers_start, march.mrr_start) == (2, 50.0)
    assert (march.new_subscribers, march.new_mrr, march.signups) == (1, 43.333333, 1)
    assert (march.churned_subscribers, march.churned_start_subscribers) == (1, 0)
    assert (march.cancellations, march.churn_mrr) == (1, 43.333333)
    assert (march.subscribers_end, march.mrr_end, march.complete) == (2, 50.0, True)
    assert march.churn_rate == 0.0  # c3 joined and churned in March: not logo churn
    assert march.retention_rate == 0.5  # (2 - 1) / 2: seed 001 counts c3 against March
    assert march.drop_off_rate == 1.0
    assert march.gross_mrr_churn_rate == pytest.approx(43.333333 / 50)
    assert march.net_mrr_churn_rate == pytest.approx(43.333333 / 50)
    assert march.net_revenue_retention == pytest.approx(1 - 43.333333 / 50)
    assert (march.arpu, march.ltv, march.signup_rate) == (25.0, None, 0.5)


def test_reactivation(ledger: MetricsLedger, shop: Shop) -> None:
    # c1 (30) cancels effective 10 February and comes back on 5 March at 40; c2 pays 20.
    shop.send(
        signup("c1", at("2025-01-10")),
        signup("c2", at("2025-01-15"), price=20.0),
        cancel("c1", at("2025-02-01"), effective=at("2025-02-10")),
        signup("c1", at("2025-03-05"), price=40.0),
        order("c2", at("2025-04-01")),
    )
    february = month(ledger, "2025-02-01")
    assert (february.subscribers_start, february.mrr_start) == (2, 50.0)
    assert (february.churned_start_subscribers, february.churn_mrr) == (1, 30.0)
    assert (february.cancellations, february.subscribers_end) == (1, 1)
    assert (february.churn_rate, february.arpu, february.ltv) == (0.5, 20.0, 40.0)
    march = month(ledger, "2025-03-01")
    assert (march.subscribers_start, march.mrr_start) == (1, 20.0)
    assert (march.reactivations, march.reactivation_mrr, march.new_subscribers) == (1, 40.0, 0)
    assert march.signups == 0  # not a first signup
    assert (march.subscribers_end, march.mrr_end) == (2, 60.0)
    assert march.retention_rate == 1.0  # (2 - 1 reactivated) / 1
    assert march.net_mrr_churn_rate == -2.0  # (0 - 40) / 20
    assert march.net_revenue_retention == 3.0  # (20 + 40) / 20
    assert march.gross_mrr_churn_rate == 0.0


def test_downgrade_is_contraction_and_cancel_is_churn(ledger: MetricsLedger, shop: Shop) -> None:
    shop.send(
        signup("c1", at("2025-02-01"), price=50.0, tier="premium"),
        signup("c2", at("2025-02-02"), price=30.0),
        order("c1", at("2025-03-10"), new_plan=plan(30.0)),
        cancel("c2", at("2025-03-12")),
        order("c1", at("2025-04-01")),
    )
    march = month(ledger, "2025-03-01")
    assert (march.subscribers_start, march.mrr_start) == (2, 80.0)
    assert (march.contraction_mrr, march.churn_mrr, march.churned_subscribers) == (20.0, 30.0, 1)
    assert (march.subscribers_end, march.mrr_end) == (1, 30.0)
    assert march.churn_rate == 0.5  # the downgrade is not churn
    assert march.gross_mrr_churn_rate == 0.625  # (30 + 20) / 80
    assert march.net_mrr_churn_rate == 0.625
    assert march.net_revenue_retention == 0.375  # (80 - 20 - 30) / 80
    assert march.retention_rate == 0.5
    assert (march.arpu, march.ltv) == (30.0, 60.0)


def test_upgrade_is_expansion(ledger: MetricsLedger, shop: Shop) -> None:
    shop.send(
        signup("c1", at("2025-02-01"), price=30.0),
        order("c1", at("2025-03-10"), new_plan=plan(50.0, tier="premium")),
        order("c1", at("2025-04-01")),
    )
    march = month(ledger, "2025-03-01")
    assert (march.expansion_mrr, march.mrr_start, march.mrr_end) == (20.0, 30.0, 50.0)
    assert march.net_mrr_churn_rate == pytest.approx(-20 / 30)
    assert march.net_revenue_retention == pytest.approx(50 / 30)
    assert (march.gross_mrr_churn_rate, march.churn_rate, march.ltv) == (0.0, 0.0, None)


def test_cancellation_effective_in_a_later_window(ledger: MetricsLedger, shop: Shop) -> None:
    shop.send(
        signup("c1", at("2025-03-01")),
        signup("c2", at("2025-03-02")),
        cancel("c1", at("2025-03-20"), effective=at("2025-04-05")),
        order("c2", at("2025-03-25")),
    )
    running = month(ledger, "2025-03-01")
    assert (running.complete, running.end) == (False, date(2025, 3, 26))
    assert (running.cancellations, running.churned_subscribers, running.subscribers_end) == (
        0,
        0,
        2,
    )
    with pytest.raises(BadWindowError, match="after the shop's stream day"):
        month(ledger, "2025-04-01")
    shop.send(order("c2", at("2025-04-10")))
    assert month(ledger, "2025-03-01").subscribers_end == 2
    april = month(ledger, "2025-04-01")
    assert (april.subscribers_start, april.mrr_start) == (2, 60.0)
    assert (april.churned_start_subscribers, april.churn_mrr, april.cancellations) == (1, 30.0, 1)
    assert (april.subscribers_end, april.mrr_end, april.churn_rate) == (1, 30.0, 0.5)
    effective_day = ledger.window(SHOP, "day", date(2025, 4, 5))
    assert (effective_day.churned_subscribers, effective_day.subscribers_start) == (1, 2)


def test_only_windows_the_stream_day_has_passed_are_complete(
    ledger: MetricsLedger, shop: Shop
) -> None:
    shop.send(signup("c1", at("2025-03-03")), order("c1", at("2025-03-12")))  # a Wednesday

    def complete(grain: str, day: int) -> tuple[bool, date]:
        window = ledger.window(SHOP, grain, date(2025, 3, day))
        return window.complete, window.end

    assert complete("day", 12) == (False, date(2025, 3, 13))  # the running day
    assert complete("week", 12) == (False, date(2025, 3, 13))
    assert complete("month", 12) == (False, date(2025, 3, 13))
    assert complete("30d", 1) == (False, date(2025, 3, 13))
    assert complete("day", 11) == (True, date(2025, 3, 12))
    assert complete("week", 5) == (True, date(2025, 3, 10))
    assert ledger.window(SHOP, "day", date(2025, 3, 11), as_of=date(2025, 3, 11)).complete is False


def test_late_event_updates_the_older_window_and_every_later_start(
    ledger: MetricsLedger, shop: Shop
) -> None:
    shop.send(
        signup("c1", at("2025-03-01")),
        signup("c2", at("2025-03-02")),
        order("c2", at("2025-04-03")),
    )
    assert month(ledger, "2025-04-01").subscribers_start == 2
    (recorded,) = shop.send(cancel("c1", at("2025-03-30")))  # 4 days late: within 7
    assert recorded is not None
    assert not recorded.too_late and ledger.too_late(SHOP) == 0
    march = month(ledger, "2025-03-01")
    assert (march.churned_start_subscribers, march.cancellations) == (0, 1)  # joined in March
    assert (march.churned_subscribers, march.subscribers_end, march.mrr_end) == (1, 1, 30.0)
    april = month(ledger, "2025-04-01")
    assert (april.subscribers_start, april.mrr_start, april.subscribers_end) == (1, 30.0, 1)
    assert ledger.window(SHOP, "day", date(2025, 3, 30)).churned_subscribers == 1
    last_week = ledger.window(SHOP, "week", date(2025, 3, 31))
    assert (last_week.start, last_week.subscribers_start) == (date(2025, 3, 31), 1)


def test_too_late_event_leaves_closed_windows_alone(ledger: MetricsLedger, shop: Shop) -> None:
    shop.send(
        signup("c1", at("2025-03-01")),
        signup("c2", at("2025-03-02")),
        order("c2", at("2025-04-20")),  # oldest open day: 13 April
    )
    (recorded,) = shop.send(cancel("c1", at("2025-03-30")))  # 21 days late
    assert recorded is not None
    assert recorded.too_late and ledger.too_late(SHOP) == 1
    march = month(ledger, "2025-03-01")
    assert (march.churned_subscribers, march.cancellations, march.subscribers_end) == (0, 0, 2)
    april = month(ledger, "2025-04-01")
    assert (april.subscribers_start, april.churned_subscribers, april.subscribers_end) == (2, 1, 1)
    oldest_open = ledger.window(SHOP, "day", date(2025, 4, 13))
    assert (oldest_open.churned_subscribers, oldest_open.cancellations) == (1, 1)


def movements_of(window: WindowMetrics) -> dict[str, float]:
    """Every movement of a window, in subscribers and MRR."""
    return {name: getattr(window, name) for name in MOVEMENTS}


def test_issue_24_too_late_downgrade_before_a_booked_churn_books_no_negative_churn(
    ledger: MetricsLedger,
) -> None:
    # book-club-1/c-0006 of the issue's replay: 28.9 a month from 5 July, cancelled at once
    # on 3 November; the order of 18 September that downgraded them to 15.9 arrived on
    # 17 December, when the oldest open day was 10 December. It used to take back the
    # closed churn of 28.9 and book a churn of 15.9 and a contraction of 13 on 10 December:
    # December showed churn -13 and its snapshot failed its schema. The customer's MRR
    # before 10 December is 0 either way: nothing to book.
    shop = Shop(ledger, tier_and_status)
    shop.send(
        signup("c-0006", at("2025-07-05"), price=28.9),
        signup("c-0007", at("2025-07-06"), price=15.0),
        cancel("c-0006", at("2025-11-03")),
        order("c-0007", at("2025-12-17")),
    )
    (recorded,) = shop.send(order("c-0006", at("2025-09-18"), new_plan=plan(15.9)))
    assert recorded is not None
    assert recorded.too_late
    for dimension in ledger.dimensions(SHOP):
        december = month(ledger, "2025-12-01", dimension)
        assert set(movements_of(december).values()) == {0}, dimension
    assert month(ledger, "2025-11-01").churn_mrr == 28.9  # closed: unchanged
    assert month(ledger, "2025-09-01").contraction_mrr == 0.0
    assert (month(ledger, "2025-12-01").mrr_end, month(ledger, "2025-12-01").mrr_start) == (
        15.0,
        15.0,
    )


def test_too_late_downgrade_of_a_paying_customer_is_one_contraction_on_the_oldest_open_day(
    ledger: MetricsLedger, shop: Shop
) -> None:
    shop.send(
        signup("c1", at("2025-07-05"), price=28.9),
        cancel("c1", at("2025-11-20"), effective=at("2026-01-05")),
        order("c1", at("2025-12-17")),  # oldest open day: 10 December
    )
    (recorded,) = shop.send(order("c1", at("2025-09-18"), new_plan=plan(15.9)))
    assert recorded is not None
    assert recorded.too_late
    oldest_open = ledger.window(SHOP, "day", date(2025, 12, 10))
    assert {k: v for k, v in movements_of(oldest_open).items() if v} == {"contraction_mrr": 13.0}
    assert month(ledger, "2025-09-01").contraction_mrr == 0.0  # closed: unchanged
    shop.send(order("c1", at("2026-01-10")))
    january = month(ledger, "2026-01-01")  # the pending churn is 15.9 now, on its own day
    assert (january.churn_mrr, january.churned_start_subscribers) == (15.9, 1)


def test_late_downgrade_before_a_churn_books_nothing_in_processing_time_dimensions(
    ledger: MetricsLedger,
) -> None:
    # Within the lateness the all dimension books the contraction and the smaller churn on
    # their own days; a segment or attribute dimension books on the processing day, where
    # the customer's MRR is 0 before and after: it used to book churn -10 there.
    shop = Shop(ledger, tier_and_status)
    shop.send(
        signup("c1", at("2025-03-01"), price=30.0),
        cancel("c1", at("2025-03-10")),
        order("c2", at("2025-03-12")),
    )
    shop.send(order("c1", at("2025-03-08"), new_plan=plan(20.0)))
    march = month(ledger, "2025-03-01")
    assert (march.contraction_mrr, march.churn_mrr, march.mrr_end) == (10.0, 20.0, 0.0)
    for dimension in ledger.dimensions(SHOP):
        today = ledger.window(SHOP, "day", date(2025, 3, 12), dimension)
        assert min(movements_of(today).values()) >= 0, dimension
        assert today.churn_mrr == 0.0, dimension


def test_pause_and_resume_count_the_customer_once_and_not_as_a_starting_subscriber(
    ledger: MetricsLedger, shop: Shop
) -> None:
    # c1 pays 30 from January, pauses (price 0) on 20 February, resumes on 3 March and
    # cancels on 20 March: in March they are reactivated and churned, but they were no
    # subscriber on 1 March, so March's logo churn is not theirs.
    shop.send(
        signup("c1", at("2025-01-10")),
        signup("c2", at("2025-01-12"), price=20.0),
        change_plan("c1", at("2025-02-20"), 0.0, "pause"),
        change_plan("c1", at("2025-03-03"), 30.0, "resume"),
        cancel("c1", at("2025-03-20")),
        order("c2", at("2025-04-02")),
    )
    february = month(ledger, "2025-02-01")
    assert (february.churned_subscribers, february.churn_mrr, february.subscribers_end) == (
        1,
        30.0,
        1,
    )
    march = month(ledger, "2025-03-01")
    assert (march.subscribers_start, march.reactivations, march.new_subscribers) == (1, 1, 0)
    assert (march.churned_subscribers, march.churned_start_subscribers) == (1, 0)
    assert march.churn_rate == 0.0
    (january,) = [row for row in ledger.cohort_table(SHOP, months=4) if row.cohort == "2025-01"]
    assert january.customers == 2  # c1 is new once
    assert [cell.subscribers for cell in january.cells] == [2, 1, 1, 1]


def test_rates_are_undefined_without_subscribers(ledger: MetricsLedger, shop: Shop) -> None:
    shop.send(order("c1", at("2025-03-05"), amount=12.0))
    march = month(ledger, "2025-03-01")
    assert (march.subscribers_start, march.subscribers_end, march.mrr_end) == (0, 0, 0.0)
    for rate in (
        march.churn_rate,
        march.retention_rate,
        march.gross_mrr_churn_rate,
        march.net_mrr_churn_rate,
        march.net_revenue_retention,
        march.arpu,
        march.ltv,
        march.signup_rate,
        march.drop_off_rate,
    ):
        assert rate is None
    assert (march.orders, march.revenue, march.average_orders_per_customer) == (1, 12.0, 1.0)
    assert month(ledger, "2025-03-01").to_json()["rates"]["churn"] is None


def test_orders_revenue_and_distinct_ordering_customers(ledger: MetricsLedger, shop: Shop) -> None:
    shop.send(
        signup("c1", at("2025-02-01")),
        order("c2", at("2025-02-25"), amount=15.0),
        order("c1", at("2025-03-03", 9), amount=20.0),
        order("c1", at("2025-03-03", 15), amount=10.0),
        order("c2", at("2025-03-10"), amount=15.0),
        order("c1", at("2025-03-17"), amount=20.0),
        order("c1", at("2025-03-14"), amount=5.0),  # 3 days late: a purchase day before 17th
        order("c1", at("2025-04-01"), amount=20.0),
    )
    march = month(ledger, "2025-03-01")
    assert (march.orders, march.revenue, march.ordering_customers) == (5, 70.0, 2)
    assert march.average_orders_per_customer == 2.5
    first_week = ledger.window(SHOP, "week", date(2025, 3, 3))
    assert (first_week.orders, first_week.ordering_customers) == (2, 1)
    second_week = ledger.window(SHOP, "week", date(2025, 3, 10))
    assert (second_week.orders, second_week.ordering_customers) == (2, 2)
    third_week = ledger.window(SHOP, "week", date(2025, 3, 17))
    assert (third_week.orders, third_week.ordering_customers) == (1, 1)
    thirty = ledger.window(SHOP, "30d", date(2025, 3, 5))
    assert (thirty.end, thirty.orders, thirty.ordering_customers) == (date(2025, 4, 2), 4, 2)


def test_cohort_table_by_signup_month(ledger: MetricsLedger, shop: Shop) -> None:
    shop.send(
        signup("c1", at("2025-01-10"), price=30.0),
        signup("c2", at("2025-01-20"), price=20.0),
        signup("c3", at("2025-02-05"), price=40.0),
        cancel("c2", at("2025-02-15")),
        order("c1", at("2025-03-10")),
    )
    table = {row.cohort: row for row in ledger.cohort_table(SHOP, months=3)}
    assert list(table) == ["2025-01", "2025-02", "2025-03"]
    january = table["2025-01"]
    assert january.customers == 2
    assert [(c.months_since_signup, c.subscribers, c.mrr, c.retention) for c in january.cells] == [
        (0, 2, 50.0, 1.0),
        (1, 1, 30.0, 0.5),
        (2, 1, 30.0, 0.5),
    ]
    assert [(c.subscribers, c.mrr) for c in table["2025-02"].cells] == [(1, 40.0), (1, 40.0)]
    assert table["2025-03"].customers == 0
    assert [c.retention for c in table["2025-03"].cells] == [None]
    cohort_february = month(ledger, "2025-02-01", "cohort:2025-01")
    assert (cohort_february.subscribers_start, cohort_february.churn_rate) == (2, 0.5)
    with pytest.raises(BadWindowError, match="at least 1"):
        ledger.cohort_table(SHOP, months=0)
    assert len(ledger.cohort_table(SHOP, months=13)) == 13  # 400 days kept by default
    with pytest.raises(BadWindowError, match="oldest kept day"):
        ledger.cohort_table(SHOP, months=15)


def test_late_upgrade_revalues_a_pending_churn(ledger: MetricsLedger, shop: Shop) -> None:
    shop.send(
        signup("c1", at("2025-03-05")),
        cancel("c1", at("2025-03-20"), effective=at("2025-04-05")),
        order("c1", at("2025-03-18"), new_plan=plan(50.0, tier="premium")),  # 2 days late
        signup("c2", at("2025-04-10"), price=10.0),
    )
    march = month(ledger, "2025-03-01")
    assert (march.expansion_mrr, march.subscribers_end, march.mrr_end) == (20.0, 1, 50.0)
    april = month(ledger, "2025-04-01")
    assert (april.churn_mrr, april.mrr_start, april.subscribers_end, april.mrr_end) == (
        50.0,
        50.0,
        1,
        10.0,
    )


STATUS_EVENTS = (  # same plan throughout: the state keeps only the latest plan
    signup("c1", at("2025-03-06")),
    cancel("c1", at("2025-03-08"), effective=at("2025-03-10")),
    signup("c1", at("2025-03-11")),
)


@pytest.mark.parametrize("arrival", list(permutations(range(3))))
def test_arrival_order_within_lateness_does_not_change_any_window(
    arrival: tuple[int, ...],
) -> None:
    ledger = MetricsLedger({})
    Shop(ledger).send(
        signup("c2", at("2025-03-01"), price=5.0),
        *(STATUS_EVENTS[i] for i in arrival),
        order("c2", at("2025-04-02")),
    )
    march = month(ledger, "2025-03-01")
    assert (march.new_mrr, march.churn_mrr, march.reactivation_mrr) == (35.0, 30.0, 30.0)
    assert (march.new_subscribers, march.churned_subscribers, march.reactivations) == (2, 1, 1)
    assert (march.subscribers_end, march.mrr_end, march.signups) == (2, 35.0, 2)
    assert (march.churned_start_subscribers, march.dropped_off) == (0, 1)
    days = [ledger.window(SHOP, "day", date(2025, 3, d)).to_json() for d in range(1, 16)]
    reference = MetricsLedger({})
    Shop(reference).send(
        signup("c2", at("2025-03-01"), price=5.0), *STATUS_EVENTS, order("c2", at("2025-04-02"))
    )
    assert days == [reference.window(SHOP, "day", date(2025, 3, d)).to_json() for d in range(1, 16)]


def test_segments_book_changes_under_the_segment_and_move_customers(ledger: MetricsLedger) -> None:
    shop = Shop(ledger, tier_and_status)
    shop.send(
        signup("c1", at("2025-03-01"), price=30.0, tier="basic"),
        signup("c2", at("2025-03-02"), price=50.0, tier="premium"),
        order("c1", at("2025-03-10"), new_plan=plan(50.0, tier="premium")),
        cancel("c2", at("2025-03-15"), effective=at("2025-04-05")),
        order("c1", at("2025-04-10")),
    )
    shop.rescore()
    basic = month(ledger, "2025-03-01", "segment:tier=basic")
    assert (basic.new_mrr, basic.expansion_mrr, basic.moved_out, basic.moved_out_mrr) == (
        30.0,
        20.0,
        1,
        50.0,
    )
    assert (basic.subscribers_end, basic.mrr_end) == (0, 0.0)
    premium = month(ledger, "2025-03-01", "segment:tier=premium")
    assert (premium.new_mrr, premium.moved_in, premium.subscribers_end, premium.mrr_end) == (
        50.0,
        1,
        2,
        100.0,
    )
    premium_april = month(ledger, "2025-04-01", "segment:tier=premium")
    assert (premium_april.churned_start_subscribers, premium_april.churn_rate) == (1, 0.5)
    active = month(ledger, "2025-03-01", "segment:status=active")
    assert (active.new_subscribers, active.moved_out, active.subscribers_end) == (2, 1, 1)
    cancelling = month(ledger, "2025-03-01", "segment:status=cancelling")
    assert (cancelling.moved_in, cancelling.subscribers_end, cancelling.mrr_end) == (1, 1, 50.0)
    cancelling_april = month(ledger, "2025-04-01", "segment:status=cancelling")
    assert (cancelling_april.subscribers_start, cancelling_april.churn_rate) == (1, 1.0)
    assert cancelling_april.subscribers_end == 0
    for model in ("tier", "status"):
        ends = [
            month(ledger, "2025-04-01", dim).subscribers_end
            for dim in ledger.dimensions(SHOP)
            if dim.startswith(f"segment:{model}=")
        ]
        assert sum(ends) == month(ledger, "2025-04-01").subscribers_end == 1


def test_segments_book_late_events_on_the_processing_day(ledger: MetricsLedger) -> None:
    shop = Shop(ledger, tier_and_status)
    shop.send(signup("c1", at("2025-03-01")), order("c1", at("2025-03-20")))
    shop.send(signup("c2", at("2025-03-15")))  # 5 days late
    assert ledger.window(SHOP, "day", date(2025, 3, 15)).new_subscribers == 1
    segment = "segment:status=active"
    assert ledger.window(SHOP, "day", date(2025, 3, 15), segment).new_subscribers == 0
    assert ledger.window(SHOP, "day", date(2025, 3, 20), segment).new_subscribers == 1


def test_old_buckets_are_deleted_beyond_retention() -> None:
    buckets: dict[str, dict[str, Any]] = {}
    ledger = MetricsLedger(buckets, allowed_lateness_days=7, retention_days=60)
    shop = Shop(ledger)
    shop.send(signup("c1", at("2025-01-05")))
    for day in ("2025-02-05", "2025-03-05", "2025-04-10"):
        shop.send(order("c1", at(day)))
    days = {key.split("|")[2] for key in buckets if "|day|" in key}
    assert min(days) >= "2025-02-09"  # 10 April - 60 days
    with pytest.raises(BadWindowError, match="oldest kept day"):
        month(ledger, "2025-01-01")
    assert month(ledger, "2025-03-01").subscribers_start == 1
    assert month(ledger, "2025-04-01").subscribers_end == 1


def test_buckets_expire_within_one_batch() -> None:
    buckets: dict[str, dict[str, Any]] = {}
    shop = Shop(MetricsLedger(buckets, allowed_lateness_days=7, retention_days=60))
    shop.send(signup("c1", at("2025-01-05")), order("c1", at("2025-04-10")))
    days = {key.split("|")[2] for key in buckets if "|day|" in key}
    assert days == {"2025-04-10"}


def test_bucket_writes_per_event_stay_bounded() -> None:
    buckets = CountingBuckets()
    # all, cohort, channel, plan, interval and 2 models: 7 dimensions (8 with a reason),
    # and a flow bucket per model the event moved (2 on the signup, 1 on the cancel)
    shop = Shop(MetricsLedger(buckets), tier_and_status)
    writes = []
    for event in (
        signup("c1", at("2025-03-01")),
        order("c1", at("2025-03-01", 14)),
        cancel("c1", at("2025-03-01", 16), effective=at("2025-03-20")),
    ):
        before = buckets.writes
        shop.send(event)
        writes.append(buckets.writes - before)
    assert writes == [17, 7, 20]
    assert buckets.writes == sum(writes)


def test_a_batch_writes_each_bucket_once() -> None:
    buckets = CountingBuckets()
    shop = Shop(MetricsLedger(buckets), tier_and_status)
    events = (
        signup("c1", at("2025-03-01")),
        order("c1", at("2025-03-01", 14)),
        order("c1", at("2025-03-01", 15)),
        order("c1", at("2025-03-01", 16)),
    )
    shop.send(*events)
    assert buckets.writes == 17  # the signup's 17 keys; the orders only add to them
    one_by_one = Shop(MetricsLedger({}), tier_and_status)
    for event in events:
        one_by_one.send(event)
    assert buckets.data == one_by_one.ledger.buckets


def test_queries_reject_unknown_shops_and_bad_windows(ledger: MetricsLedger, shop: Shop) -> None:
    with pytest.raises(UnknownShopError):
        ledger.window("nobody", "day", date(2025, 3, 1))
    shop.send(signup("c1", at("2025-03-01")))
    with pytest.raises(BadWindowError, match="unknown grain"):
        ledger.window(SHOP, "fortnight", date(2025, 3, 1))
    assert ledger.dimensions(SHOP) == [
        "all",
        "channel:web",
        "cohort:2025-03",
        "interval:month",
        "plan:basic-month",
    ]
    assert (
        ledger.window(SHOP, "day", date(2025, 3, 1), "segment:rfm=Champions").subscribers_end == 0
    )


def test_buckets_are_small_json_values(ledger: MetricsLedger, shop: Shop) -> None:
    shop.send(
        signup("c1", at("2025-03-01"), price=10.0, interval="week"),
        order("c1", at("2025-03-02"), amount=12.5),
        cancel("c1", at("2025-03-03"), effective=at("2025-03-20")),
    )
    assert json.loads(json.dumps(ledger.buckets)) == ledger.buckets
    assert max(len(json.dumps(value)) for value in ledger.buckets.values()) < 400


def test_retention_must_outlast_lateness_and_a_month() -> None:
    with pytest.raises(ValueError, match="retention_days"):
        MetricsLedger({}, allowed_lateness_days=7, retention_days=38)
    with pytest.raises(ValueError, match="negative"):
        MetricsLedger({}, allowed_lateness_days=-1)
