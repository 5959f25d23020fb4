"""Churn labels from the stream: no label may use information from after its prediction."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from segstream.core.customer import CustomerState
from segstream.core.events import format_time
from segstream.core.features import CustomerSnapshot, snapshot
from segstream.learning.labels import Example, Labeller, LapseRule, Pending
from segstream.learning.vectors import Vector, behaviour_vector
from segstream.segments.churn_risk import ChurnRiskModel
from tests.states import plan, state

START = datetime(2025, 1, 1, tzinfo=UTC)


def day(n: float) -> datetime:
    return START + timedelta(days=n)


class Recording(ChurnRiskModel):
    """A churn model that remembers every example it learns, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.examples: list[Example] = []

    def learn_example(self, example: Example) -> None:
        self.examples.append(example)
        super().learn_example(example)


MEMORY: dict[str, Any] = {}
"""What the models keep about the customer, shared by every snapshot of this module (each
test starts with it empty)."""


@pytest.fixture(autouse=True)
def _fresh_memory() -> None:
    MEMORY.clear()


def subscriber(purchase_days: list[int], cancelled_on: int | None = None) -> CustomerState:
    customer = state(
        "shop",
        "c-1",
        first_seen_at=format_time(START),
        signups=[format_time(START)],
        plans=[(format_time(START), plan(10.0, tier="basic"))],
        memory=MEMORY,
    )
    for n in purchase_days:
        customer.purchase_days[day(n).date()] = 10.0 + n
        customer.order_count += 1
        customer.total_spend += 10.0 + n
    if cancelled_on is not None:
        customer.cancellations.append((day(cancelled_on), day(cancelled_on)))
    return customer


def view(purchase_days: list[int], at: float, cancelled_on: int | None = None) -> CustomerSnapshot:
    return snapshot(subscriber([n for n in purchase_days if n <= at], cancelled_on), day(at))


def same(found: Vector, expected: Vector) -> bool:
    """Equal to the 32-bit precision snapshots are kept in."""
    return found == pytest.approx(expected, rel=1e-6)


def test_stored_features_and_prediction_are_those_at_snapshot_time() -> None:
    buys = [0, 3, 6, 9, 12, 15, 18, 21, 24]
    model = Recording()
    first = view(buys, 0)
    predicted_then = model.risk(first)
    model.learn(first)
    for n in range(1, 30):
        model.learn(view(buys, n))
    model.learn(view(buys, 30, cancelled_on=30))
    settled = {example.as_of: example for example in model.examples}
    assert set(settled) == {day(0), day(7), day(14), day(21), day(28)}
    assert all(example.churned for example in settled.values())
    assert same(settled[day(0)].features, behaviour_vector(first))
    assert not same(settled[day(0)].features, behaviour_vector(view(buys, 30)))
    assert settled[day(0)].predictions == (predicted_then,)
    assert same(settled[day(14)].features, behaviour_vector(view(buys, 14)))


def test_a_snapshot_younger_than_the_horizon_is_never_labelled_negative() -> None:
    buys = list(range(0, 120, 5))
    model = Recording()
    for n in range(60):
        model.learn(view(buys, n))
    assert model.examples == []
    model.learn(view(buys, 60))
    assert [(e.as_of, e.churned) for e in model.examples] == [(day(0), False)]


def test_churn_just_past_the_horizon_labels_only_the_younger_snapshots() -> None:
    buys = list(range(0, 70, 5))
    model = Recording()
    model.learn(view(buys, 0))
    model.learn(view(buys, 7))
    model.learn(view(buys, 65, cancelled_on=65))
    assert [(e.as_of, e.churned) for e in model.examples] == [(day(0), False), (day(7), True)]


def test_progressive_validation_scores_the_prediction_made_before_learning() -> None:
    buys = list(range(0, 120, 5))
    model = Recording()
    first = view(buys, 0)
    predicted_then = model.risk(first)
    assert predicted_then is not None
    for n in range(61):
        model.learn(view(buys, n))
    assert model.quality()["log_loss"] == pytest.approx(-math.log(1 - predicted_then))


def test_lapse_is_dated_when_the_silence_passed_the_gap() -> None:
    rule = LapseRule(lapse_multiple=3.0, lapse_days=90.0)
    regular = view([0, 10, 20], 49)
    assert rule.gap_days(regular) == 30.0
    assert rule.churned_at(regular) is None
    assert rule.churned_at(view([0, 10, 20], 55)) == day(50)
    assert rule.churned_at(view([0], 91)) == day(90)
    assert rule.churned_at(view([0], 80, cancelled_on=70)) == day(80)


def test_labeller_keeps_one_snapshot_per_interval_and_respects_its_bounds() -> None:
    labeller = Labeller(horizon_days=60, snapshot_every_days=7, per_customer=2, max_pending=3)
    features = behaviour_vector(view([0], 0))
    waiting: dict[str, list[Pending]] = {"a": [], "b": [], "c": []}
    for customer_id, n in (("a", 0), ("a", 7), ("b", 0)):
        assert labeller.due(waiting[customer_id], day(n))
        waiting[customer_id].append(labeller.hold(day(n), features, (0.5,)))
    assert not labeller.due(waiting["a"], day(10))  # too soon after the last snapshot
    assert labeller.skipped == 0
    assert not labeller.due(waiting["a"], day(14))  # per-customer bound
    assert not labeller.due(waiting["c"], day(14))  # overall bound
    assert labeller.skipped == 2
    settled, waiting["b"] = labeller.settle(waiting["b"], day(60), None)
    assert settled[0].churned is False
    assert labeller.due(waiting["c"], day(60))


def test_settled_snapshots_leave_and_later_ones_stay() -> None:
    labeller = Labeller(horizon_days=60)
    features = behaviour_vector(view([0], 0))
    waiting = [labeller.hold(day(n), features, (0.1,)) for n in (0, 7, 14)]
    settled, waiting = labeller.settle(waiting, day(67), None)
    assert [e.as_of for e in settled] == [day(0), day(7)]
    assert [p.as_of for p in waiting] == [int(day(14).timestamp())]
    assert labeller.pending_count == 1
    assert labeller.next_settlement([p.to_memory() for p in waiting]) == day(74)
    settled, waiting = labeller.settle(waiting, day(20), churned_at=day(20))
    assert settled[0].churned is True
    assert waiting == [] and labeller.pending_count == 0


def test_a_kept_snapshot_survives_the_customers_memory_format() -> None:
    labeller = Labeller()
    kept = labeller.hold(day(3), behaviour_vector(view([0, 2], 3)), (0.25, 0.5))
    assert Pending.from_memory(kept.to_memory()) == kept
