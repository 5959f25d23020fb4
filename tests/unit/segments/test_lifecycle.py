"""Each lifecycle rule, at its threshold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from segstream.domain.customer import RENEWALS, CustomerState, apply
from segstream.domain.events import format_time, from_payload
from segstream.domain.features import snapshot
from segstream.metrics.mrr import customer_mrr
from segstream.segments.lifecycle import LifecycleRules
from segstream.tools.simulation.generator import SimulationConfig, generate
from tests.states import plan, state

DAY0 = datetime(2025, 1, 1, tzinfo=UTC)
RULES = LifecycleRules()


def state_with(purchase_offsets: list[int], **extra: Any) -> CustomerState:
    days = {(DAY0 + timedelta(days=d)).date().isoformat(): 20.0 for d in purchase_offsets}
    return state("shop", "c", first_seen_at=format_time(DAY0), purchase_days=days, **extra)


def stage_at(state: CustomerState, day: int) -> str:
    return RULES.stage(snapshot(state, DAY0 + timedelta(days=day)))


def test_new_until_new_days_then_active() -> None:
    state = state_with([0, 20])
    assert stage_at(state, 29) == "new"
    assert stage_at(state, 30) == "active"


def test_a_one_off_buyer_stays_new_until_at_risk_and_is_never_active() -> None:
    """One purchase, then silence: new until the at-risk day (46), churned after 90;
    three stages where a fixed 30-day new period made four (new, active for two weeks,
    at risk, churned)."""
    state = state_with([0])
    stages = [stage_at(state, day) for day in range(0, 120)]
    assert stages == ["new"] * 46 + ["at_risk"] * 45 + ["churned"] * 29


def test_a_one_off_buyers_reviews_are_the_days_their_stage_moves() -> None:
    state = state_with([0])
    moves = [DAY0 + timedelta(days=day) for day in (46, 91)]
    for day, due in ((10, moves[0]), (45, moves[0]), (46, moves[1]), (90, moves[1])):
        assert RULES.next_change(snapshot(state, DAY0 + timedelta(days=day))) == due


def test_a_second_purchase_day_after_the_new_period_makes_an_active_customer() -> None:
    assert stage_at(state_with([0]), 39) == "new"
    assert stage_at(state_with([0, 40]), 40) == "active"


def test_a_comeback_without_a_purchase_is_not_new_again() -> None:
    """Signed up, cancelled, signed up again (no plan, no purchase): won back, then active."""
    cancelled = (format_time(DAY0 + timedelta(days=5)), format_time(DAY0 + timedelta(days=5)))
    back = [format_time(DAY0), format_time(DAY0 + timedelta(days=20))]
    state = state_with([], signups=back, cancellations=[cancelled])
    assert stage_at(state, 49) == "won_back"
    assert stage_at(state, 50) == "active"


def test_loyal_needs_enough_repeat_days() -> None:
    assert stage_at(state_with([0, 10, 20, 30, 40]), 41) == "loyal"
    assert stage_at(state_with([0, 10, 20, 30]), 41) == "active"


def test_at_risk_after_own_cadence_multiple() -> None:
    weekly = state_with([0, 7, 14, 21, 28, 35])
    assert stage_at(weekly, 35 + 17) == "loyal"
    assert stage_at(weekly, 35 + 18) == "at_risk"


def test_a_slow_buyer_is_judged_by_their_own_cadence() -> None:
    """Every 90 days: at risk after 225 quiet days, churned after 450 (not after 45 and
    90, which would move them every cycle)."""
    quarterly = state_with([0, 90, 180])
    assert stage_at(quarterly, 180 + 225) == "active"
    assert stage_at(quarterly, 180 + 226) == "at_risk"
    assert stage_at(quarterly, 180 + 450) == "at_risk"
    assert stage_at(quarterly, 180 + 451) == "churned"


def test_churned_after_long_silence() -> None:
    assert stage_at(state_with([0]), 90) == "at_risk"
    assert stage_at(state_with([0]), 91) == "churned"


def test_a_frequent_buyer_churns_after_churned_days_at_the_earliest() -> None:
    weekly = state_with([0, 7, 14, 21, 28, 35])
    assert stage_at(weekly, 35 + 90) == "at_risk"
    assert stage_at(weekly, 35 + 91) == "churned"


def test_a_comeback_needs_a_gap_longer_than_the_churn_gap_of_its_time() -> None:
    """Every 60 days, then 200 quiet days: inside the 300-day churn gap, no comeback; a
    buyer without a cadence coming back after 91 days is won back."""
    slow = state_with([0, 60, 120, 320])
    assert stage_at(slow, 325) == "active"
    assert stage_at(state_with([0, 91]), 95) == "won_back"


def test_pending_cancellation_is_at_risk_and_effective_one_churned() -> None:
    cancelled = (format_time(DAY0 + timedelta(days=40)), format_time(DAY0 + timedelta(days=50)))
    state = state_with([0, 30], signups=[format_time(DAY0)], cancellations=[cancelled])
    assert stage_at(state, 45) == "at_risk"
    assert stage_at(state, 50) == "churned"


@pytest.mark.parametrize(
    ("day", "expected"), [(200, "won_back"), (229, "won_back"), (230, "active")]
)
def test_won_back_after_a_comeback(day: int, expected: str) -> None:
    state = state_with([0, 10, 200])
    assert stage_at(state, day) == expected


def subscriber(interval: str, payments: list[int], **extra: object) -> CustomerState:
    """Signed up on DAY0 to a plan of ``interval``, paying on the given days."""
    return state_with(
        payments,
        signups=[format_time(DAY0)],
        plans=[(format_time(DAY0), plan(20.0, interval))],
        **extra,
    )


@pytest.mark.parametrize("interval", sorted(RENEWALS))
def test_a_subscriber_is_at_risk_only_once_a_renewal_is_overdue(interval: str) -> None:
    renewal = RENEWALS[interval]
    last_payment = 400
    state = subscriber(interval, list(range(last_payment % renewal.period, 401, renewal.period)))
    due_by = last_payment + renewal.period + renewal.late
    assert stage_at(state, due_by) in {"active", "loyal"}
    assert stage_at(state, due_by + 1) == "at_risk"
    view = snapshot(state, DAY0 + timedelta(days=due_by - 3))
    assert RULES.next_change(view) == DAY0 + timedelta(days=due_by + 1)


@pytest.mark.parametrize("interval", sorted(RENEWALS))
def test_a_paying_subscriber_never_churns_for_silence(interval: str) -> None:
    period = RENEWALS[interval].period
    state = subscriber(interval, list(range(400 % period, 401, period)))
    assert stage_at(state, 400 + 3 * 366) == "at_risk"


@pytest.mark.parametrize(("interval", "every"), [("week", 7), ("month", 30), ("quarter", 91)])
def test_a_subscriber_renewing_on_time_is_never_at_risk(interval: str, every: int) -> None:
    state = subscriber(interval, list(range(0, 2 * 365, every)))
    stages = {stage_at(state, day) for day in range(0, 2 * 365)}
    assert stages <= {"new", "active", "loyal"}


def test_an_annual_subscriber_who_paid_up_front_stays_active_all_year() -> None:
    state = subscriber("year", [0])
    assert stage_at(state, 200) == "active"
    assert stage_at(state, 366 + 30) == "active"
    assert stage_at(state, 366 + 31) == "at_risk"


def test_a_customer_without_a_plan_keeps_the_quiet_day_rules() -> None:
    signed_up = state_with([0], signups=[format_time(DAY0)])
    assert stage_at(signed_up, 46) == "at_risk"
    assert stage_at(signed_up, 91) == "churned"


def test_an_ended_subscription_churns_whatever_its_plan() -> None:
    ended = (format_time(DAY0 + timedelta(days=10)), format_time(DAY0 + timedelta(days=20)))
    state = subscriber("year", [0], cancellations=[ended])
    assert stage_at(state, 15) == "at_risk"
    assert stage_at(state, 20) == "churned"


def test_stage_and_mrr_ledger_agree_on_who_pays() -> None:
    """On simulated shops of every kind, every 5th day: a customer the MRR ledger counts
    as paying is never churned, and a customer the ledger does not count is never in a
    paid period (their stage follows the quiet-day rules)."""
    simulation = generate(SimulationConfig(seed=3, customers_per_shop=60))
    states: dict[tuple[str, str], CustomerState] = {}
    events = [from_payload(payload) for payload in simulation.events]
    first, last = events[0].occurred_at, max(e.occurred_at for e in events)
    pending = iter(sorted(events, key=lambda e: e.occurred_at))
    upcoming = next(pending, None)
    checked = {"paying": 0, "not paying": 0}
    day = first
    while day <= last:
        while upcoming is not None and upcoming.occurred_at <= day:
            key = (upcoming.shop_id, upcoming.customer_id)
            apply(states.setdefault(key, CustomerState(*key)), upcoming)
            upcoming = next(pending, None)
        for customer in states.values():
            view = snapshot(customer, day)
            paying = customer_mrr(customer, day) > 0
            checked["paying" if paying else "not paying"] += 1
            if paying:
                assert RULES.stage(view) != "churned", (customer.customer_id, day)
            else:
                assert RULES.churn_gap(view) == RULES.silence.churned(view.cadence_days)
        day += timedelta(days=5)
    assert min(checked.values()) > 1000, checked
