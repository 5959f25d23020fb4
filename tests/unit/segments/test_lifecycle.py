"""Each lifecycle rule, at its threshold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.core.customer import CustomerState
from service.core.events import format_time
from service.core.features import snapshot
from service.segments.lifecycle import LifecycleRules
from tests.states import state

DAY0 = datetime(2025, 1, 1, tzinfo=UTC)
RULES = LifecycleRules()


def state_with(purchase_offsets: list[int], **extra: object) -> CustomerState:
    days = {(DAY0 + timedelta(days=d)).date().isoformat(): 20.0 for d in purchase_offsets}
    return state("shop", "c", first_seen_at=format_time(DAY0), purchase_days=days, **extra)


def stage_at(state: CustomerState, day: int) -> str:
    return RULES.stage(snapshot(state, DAY0 + timedelta(days=day), RULES.churned_days))


def test_new_until_new_days_then_active() -> None:
    state = state_with([0, 20])
    assert stage_at(state, 29) == "new"
    assert stage_at(state, 30) == "active"


def test_loyal_needs_enough_repeat_days() -> None:
    assert stage_at(state_with([0, 10, 20, 30, 40]), 41) == "loyal"
    assert stage_at(state_with([0, 10, 20, 30]), 41) == "active"


def test_at_risk_after_own_cadence_multiple() -> None:
    weekly = state_with([0, 7, 14, 21, 28, 35])
    assert stage_at(weekly, 35 + 17) == "loyal"
    assert stage_at(weekly, 35 + 18) == "at_risk"


def test_at_risk_gap_capped_for_slow_cadence() -> None:
    quarterly = state_with([0, 90, 180])
    assert stage_at(quarterly, 180 + 45) == "active"
    assert stage_at(quarterly, 180 + 46) == "at_risk"


def test_churned_after_long_silence() -> None:
    assert stage_at(state_with([0]), 90) == "at_risk"
    assert stage_at(state_with([0]), 91) == "churned"


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
