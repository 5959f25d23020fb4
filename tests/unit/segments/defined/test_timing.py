"""A defined segment names the moment its answer can next change with no event of the
customer's: never after the first day a day-by-day look finds it changed, and exactly that
day for a single condition on a day count, a window or a prediction."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segstream.domain.customer import CustomerState, day_number
from segstream.domain.features import CustomerSnapshot, later, snapshot
from segstream.learning.lifetime import BgNbd, LifetimeFit
from segstream.segments.defined import compile_definition, validate_definition
from segstream.segments.defined.rules import CompiledRule
from segstream.segments.defined.timing import (
    HORIZON_DAYS,
    Looks,
    OutOfLooksError,
    midnight,
    soonest,
)
from tests.unit.segments.defined.test_properties import (
    NOW,
    aggregates,
    conditions,
    customers,
    definition,
    rules,
)

LOOK_DAYS = 800
"""Far enough for every generated rule: bounds up to 250, windows up to 365 days over
items up to 400 days old."""
FIT = LifetimeFit(BgNbd(r=0.24, alpha=4.41, a=0.79, b=2.43), high_value_rate=20.0, day=0)
PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def compiled(rule: dict[str, Any]) -> CompiledRule:
    return compile_definition(validate_definition(definition(rule)))


def later_of(kept: CustomerState, fit: LifetimeFit | None = None) -> Looks:
    """Whole snapshots on later days, as many as asked for (the engine's budget is its own
    test's)."""
    return Looks(lambda at: snapshot(kept, at, lifetime=fit, review=True), budget=10**9)


def first_turn(
    rule: CompiledRule, kept: CustomerState, view: CustomerSnapshot, days: int, fit: Any = None
) -> datetime | None:
    """The first UTC midnight at which the rule's answer differs, looked at day by day."""
    now, today = rule(kept, view), day_number(view.as_of)
    for step in range(1, days + 1):
        at = midnight(today + step)
        if rule(kept, snapshot(kept, at, lifetime=fit, review=True)) != now:
            return at
    return None


def named_and_turn(
    rule: dict[str, Any], person: tuple[CustomerState, CustomerSnapshot]
) -> tuple[datetime | None, datetime | None]:
    """The moment the compiled rule names, and the day a day-by-day look finds."""
    kept, view = person
    found = compiled(rule)
    return found.next_change(kept, view, later_of(kept)), first_turn(found, kept, view, LOOK_DAYS)


@PROPERTY
@given(rules(), customers())
def test_a_rule_is_never_looked_at_after_its_answer_changed(
    rule: dict[str, Any], person: tuple[CustomerState, CustomerSnapshot]
) -> None:
    view = person[1]
    named, turn = named_and_turn(rule, person)
    if turn is not None:
        assert named is not None and view.as_of < named <= turn
    if named is not None:
        assert named > view.as_of


def _is_status(rule: dict[str, Any]) -> bool:
    return rule.get("field") == "subscription.status"


@PROPERTY
@given(st.one_of(conditions(), aggregates()), customers())
def test_a_single_condition_names_the_very_day_its_answer_changes(
    rule: dict[str, Any], person: tuple[CustomerState, CustomerSnapshot]
) -> None:
    named, turn = named_and_turn(rule, person)
    if _is_status(rule):  # a cancellation takes effect at its own moment, not at midnight
        assert turn is None or (named is not None and named <= turn)
    else:
        assert named == turn


def bought(days_ago: list[int]) -> tuple[CustomerState, CustomerSnapshot]:
    kept = CustomerState(
        "shop",
        "c",
        purchase_days={NOW.date() - timedelta(days=d): 20.0 for d in days_ago},
        first_seen_at=NOW - timedelta(days=max(days_ago)),
        order_count=len(days_ago),
        total_spend=20.0 * len(days_ago),
    )
    return kept, snapshot(kept, NOW, lifetime=FIT)


ONE_WAY_BOUNDS = {
    "predictions.p_alive": [0.05, 0.2, 0.5, 0.8, 0.95],
    "predictions.clv_365d": [1.0, 5.0, 20.0, 50.0, 200.0],
}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 300), min_size=1, max_size=6, unique=True),
    st.sampled_from(sorted(ONE_WAY_BOUNDS)),
    st.sampled_from(["lt", "lte", "gt", "gte"]),
    st.integers(0, 4),
)
def test_a_prediction_that_falls_with_silence_is_looked_at_on_the_day_it_crosses(
    days_ago: list[int], field: str, op: str, bound: int
) -> None:
    kept, view = bought(days_ago)
    found = compiled({"field": field, "op": op, "value": ONE_WAY_BOUNDS[field][bound]})
    looks: list[datetime] = []

    def make(at: datetime) -> CustomerSnapshot:
        looks.append(at)
        return snapshot(kept, at, lifetime=FIT, review=True)

    named = found.next_change(kept, view, Looks(make))
    turn = first_turn(found, kept, view, HORIZON_DAYS, FIT)
    horizon = midnight(day_number(NOW) + HORIZON_DAYS)
    assert named == (horizon if turn is None else turn)
    assert len(looks) == 1 if turn is None else len(looks) <= 11  # the horizon, then halving


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(0, 300), min_size=1, max_size=6, unique=True),
    st.sampled_from(["eq", "between", "ne", "exists"]),
)
def test_a_drifting_prediction_is_never_looked_at_after_its_answer_changed(
    days_ago: list[int], op: str
) -> None:
    kept, view = bought(days_ago)
    values = {"eq": 0.5, "ne": 0.5, "between": [0.3, 0.6], "exists": None}
    rule: dict[str, Any] = {"field": "predictions.p_alive", "op": op}
    if values[op] is not None:
        rule["value"] = values[op]
    found = compiled(rule)
    named = found.next_change(kept, view, later_of(kept, FIT))
    turn = first_turn(found, kept, view, HORIZON_DAYS, FIT)
    assert named is not None and (turn is None or named <= turn)


def test_rules_of_events_alone_name_no_moment() -> None:
    kept, view = bought([3, 40])
    for rule in (
        {"field": "behaviour.order_count", "op": "gte", "value": 3},
        {"field": "behaviour.days_since_last_purchase", "op": "exists"},
        {"field": "attributes.region", "op": "eq", "value": "north"},
        {"count": "purchase_days", "op": "gte", "value": 2},
    ):
        assert compiled(rule).next_change(kept, view, later_of(kept)) is None


def test_no_purchase_for_45_days_turns_at_the_midnight_45_days_after_the_last() -> None:
    kept, view = bought([3, 40])
    rule = compiled({"field": "behaviour.days_since_last_purchase", "op": "gte", "value": 45})
    last = NOW.date() - timedelta(days=3)
    assert rule.next_change(kept, view, later_of(kept)) == datetime(
        last.year, last.month, last.day, tzinfo=UTC
    ) + timedelta(days=45)


@PROPERTY
@given(customers(), st.integers(1, LOOK_DAYS), st.integers(-3, 3))
def test_a_look_ahead_reads_what_a_review_then_would(
    person: tuple[CustomerState, CustomerSnapshot], days: int, cancelled_days_ago: int
) -> None:
    kept, _ = person
    if kept.signups and cancelled_days_ago:  # a cancellation asked before or after now
        asked = NOW - timedelta(days=cancelled_days_ago)
        kept.cancellations = [(asked, asked + timedelta(days=30))]
    view = snapshot(kept, NOW, lifetime=FIT)
    at = midnight(day_number(NOW) + days)
    assert later(view, kept, at) == snapshot(kept, at, lifetime=FIT, review=True)


def test_out_of_looks_the_soonest_moment_is_the_next_midnight_or_a_cancellation() -> None:
    view = bought([3])[1]
    assert soonest(view) == midnight(day_number(NOW) + 1)
    ends = NOW + timedelta(hours=2)
    assert soonest(replace(view, subscription="cancelling", subscription_ends_at=ends)) == ends
    looks = Looks(lambda at: view, budget=2)
    looks(NOW)
    looks.spend()
    with pytest.raises(OutOfLooksError):
        looks(NOW)


def test_counts_written_as_integral_floats_evaluate_and_look_ahead_as_integers() -> None:
    """JSON Schema's integers include 8.0 (the API fuzzer sent one; it was a 500 and, in
    the stream, an evaluation error on every event of the shop)."""
    kept, view = bought([3, 40])
    kept.feedback_scores = [(day_number(NOW) - 2, 2), (day_number(NOW) - 50, 5)]
    for whole, written in (
        ({"last": 8, "of": "feedback", "some": {"score": 2}}, 8.0),
        ({"count": "feedback", "within_days": 30, "op": "gte", "value": 1}, 30.0),
    ):
        key = "last" if "last" in whole else "within_days"
        floated = {**whole, key: written}
        for rule in (whole, floated):
            assert compiled(rule)(kept, view) is compiled(whole)(kept, view)
        ahead = [compiled(r).next_change(kept, view, later_of(kept)) for r in (whole, floated)]
        assert ahead[0] == ahead[1]
