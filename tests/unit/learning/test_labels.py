"""Churn labels from the stream: snapshots on each buyer's grid days, labelled only once
their horizon has passed, by the orders that came inside it, and never from anything later."""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from segstream.domain.customer import CustomerState
from segstream.domain.events import format_time
from segstream.domain.features import CustomerSnapshot, snapshot
from segstream.learning import labels
from segstream.learning.labels import Example, Labeller, Pending
from segstream.learning.retention import FEATURES as FEATURES_OF_MODEL
from segstream.segments.churn_risk import ChurnRiskModel
from tests.states import state

START = datetime(2025, 1, 1, tzinfo=UTC)
FEATURES = (1.0, 0.5, 0.25)
MEMORY: dict[str, dict[str, Any]] = {}
"""What the models keep about each customer, shared by every snapshot of them in a test."""


@pytest.fixture(autouse=True)
def _fresh_memory() -> None:
    MEMORY.clear()


def day(n: float) -> datetime:
    return START + timedelta(days=n)


def buyer(purchase_days: list[int], customer_id: str = "c-1") -> CustomerState:
    """A customer who bought on the given days after START (one order a day)."""
    return state(
        "shop",
        customer_id,
        first_seen_at=format_time(START),
        purchase_days={day(n).date().isoformat(): 10.0 for n in purchase_days},
        order_count=len(purchase_days),
        total_spend=10.0 * len(purchase_days),
        memory=MEMORY.setdefault(customer_id, {}),
    )


def view(purchase_days: list[int], at: float, customer_id: str = "c-1") -> CustomerSnapshot:
    """The customer at ``day(at)``, knowing only the purchases up to then."""
    return snapshot(buyer([n for n in purchase_days if n <= at], customer_id), day(at))


def grid_days(labeller: Labeller, customer_id: str, first: date, count: int) -> list[date]:
    """The customer's first ``count`` grid days after a first purchase on ``first``."""
    phase = zlib.crc32(customer_id.encode()) % labeller.every
    found: list[date] = []
    n = (first - date(1970, 1, 1)).days + 1
    while len(found) < count:
        if (n - phase) % labeller.every == 0:
            found.append(date(1970, 1, 1) + timedelta(days=n))
        n += 1
    return found


class Recording(ChurnRiskModel):
    """A churn model that remembers every example it learns, in order."""

    def __init__(self, horizon_days: float = 30.0) -> None:
        super().__init__(horizon_days=horizon_days)
        self.examples: list[Example] = []

    def learn_example(self, example: Example) -> None:
        self.examples.append(example)
        super().learn_example(example)


def test_snapshots_fall_on_the_customers_own_grid_days_from_the_day_after_the_first_order() -> None:
    labeller = Labeller(horizon_days=30, snapshot_every_days=30)
    first, second = grid_days(labeller, "c-1", day(0).date(), 2)
    assert (second - first).days == 30 and 1 <= (first - day(0).date()).days <= 30
    offset = (first - day(0).date()).days
    assert labeller.latest_grid_day(view([0], offset - 1)) is None
    assert labeller.next_grid(view([0], 0)) == day(offset)
    assert labeller.next_grid(view([0], offset)) == day(offset + 30)
    other = grid_days(labeller, "c-2", day(0).date(), 1)[0]
    assert labeller.phase("c-1") != labeller.phase("c-2") or other == first
    assert labeller.latest_grid_day(snapshot(CustomerState("shop", "c-0"), day(40))) is None


def test_a_snapshot_is_labelled_by_the_orders_inside_its_window_and_never_earlier() -> None:
    model = Recording(horizon_days=30)
    first = grid_days(model.labels, "c-1", day(0).date(), 1)[0]
    at = (first - day(0).date()).days
    buys = [0, at + 10, at + 20]
    model.learn(view(buys, at))
    predicted_then = model.pending(view(buys, at))[0].predictions[0]
    for n in range(at + 1, at + 30):
        model.learn(view(buys, n))
    assert model.examples == []  # the window is not over: no label, not even a positive one
    model.learn(view(buys, at + 30))
    (example,) = model.examples
    assert (example.churned, example.orders, example.as_of) == (False, 2, day(at))
    assert example.predictions[0] == predicted_then


def test_silence_through_the_window_is_churn_and_an_order_after_it_does_not_count() -> None:
    model = Recording(horizon_days=30)
    at = (grid_days(model.labels, "c-1", day(0).date(), 1)[0] - day(0).date()).days
    model.learn(view([0], at))
    model.learn(view([0, at + 45], at + 45))  # first seen again with an order past the window
    (example,) = model.examples
    assert example.churned and example.orders == 0


def test_stored_features_are_those_at_snapshot_time() -> None:
    model = Recording(horizon_days=30)
    at = (grid_days(model.labels, "c-1", day(0).date(), 1)[0] - day(0).date()).days
    then = view([0], at)
    model.learn(then)
    row = f"<{len(FEATURES_OF_MODEL)}f"
    expected = struct.unpack(row, struct.pack(row, *model.features(then)))
    model.learn(view([0, at + 5], at + 5))
    model.learn(view([0, at + 5], at + 31))
    assert model.examples[0].features == pytest.approx(expected, rel=1e-6)
    assert model.examples[0].features != model.features(view([0, at + 5], at + 31))


def test_bounds_skip_by_customer_id_never_by_outcome() -> None:
    labeller = Labeller(horizon_days=30, snapshot_every_days=30, per_customer=1, max_pending=2)
    views = [view([0], 31, customer_id=f"c-{n}") for n in range(8)]
    kept: dict[str, list[Pending]] = {}
    for customer in views:
        waiting = kept.setdefault(customer.customer_id, [])
        if labeller.due(waiting, customer):
            waiting.append(labeller.hold(customer, FEATURES, (0.5,)))
    assert labeller.pending_count == 2
    assert labeller.skipped >= 1 and labeller.share < 1.0
    for customer in views:  # the share left is a fixed set of ids: only they are reviewed
        sampled = zlib.crc32(customer.customer_id.encode()) < labeller.share * 2**32
        assert labeller.sampled(customer.customer_id) == sampled
        assert (labeller.next_grid(customer) is not None) == sampled
    holder = next(c for c in views if kept[c.customer_id])
    assert not labeller.due(kept[holder.customer_id], holder)  # its grid day is taken


def test_a_kept_snapshot_survives_the_customers_memory_and_old_rows_do_not_fit() -> None:
    labeller = Labeller(horizon_days=30)
    kept = labeller.hold(view([0, 2], 31), FEATURES, (0.25, 0.5), expected=1.5)
    memory: list[Any] = kept.to_memory()
    assert Pending.from_memory(memory) == kept
    assert Pending.fits(memory, len(FEATURES))
    before_issue_25 = [struct.pack("<I13f", 0, *[0.0] * 13), 0.5]
    assert not Pending.fits(before_issue_25, len(FEATURES))
    assert labeller.next_settlement([memory]) == day(61)


def test_settling_counts_down_the_pending_snapshots() -> None:
    labeller = Labeller(horizon_days=30)
    waiting = [labeller.hold(view([0], n), FEATURES, (0.5,)) for n in (1, 20)]
    settled, waiting = labeller.settle(waiting, view([0], 35))
    assert len(settled) == 1 and len(waiting) == 1 and labeller.pending_count == 1


def test_an_extreme_expected_count_is_kept_saturated_not_raised() -> None:
    # the chaos run (seed 657927) dead-lettered a cancellation: a BG/NBD count beyond the
    # 32-bit range made struct raise OverflowError while its snapshot was kept
    pending = labels.Pending(0, 1, 1e300, (1e300, -1e300, 1.0), (0.5,))
    back = labels.Pending.from_memory(pending.to_memory())
    assert back.expected == labels.F32_MAX
    assert back.row == (labels.F32_MAX, -labels.F32_MAX, 1.0)
