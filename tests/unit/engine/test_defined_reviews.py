"""A defined segment over time takes a quiet customer in at the first event of the shop at
or after the moment its rule turns: the rule schedules its own review, so it never waits
for a learned model's."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from segstream.domain.changes import SegmentChange, Source
from segstream.domain.events import Order
from segstream.engine.pipeline import Pipeline
from segstream.settings import Settings
from segstream.state.keyspace import shop_partition
from tests.factories import encoded, order

T0 = datetime(2025, 3, 1, 9, tzinfo=UTC)
PARTITION = shop_partition("tea-1", 8)
ORDERS = Source("segstream.orders", PARTITION, 0)
DEFINITIONS = Source("segstream.segment-definitions", PARTITION, 0)
TICK = timedelta(hours=5)
"""How often the shop's one busy customer orders: the shop's stream time moves by it."""
RULES = {
    "quiet-45": {"field": "behaviour.days_since_last_purchase", "op": "gte", "value": 45},
    "quiet-21": {"field": "behaviour.days_since_last_purchase", "op": "gt", "value": 20},
    "no-order-in-30": {"count": "purchase_days", "within_days": 30, "op": "eq", "value": 0},
}


def define(pipeline: Pipeline, segment: str, rule: Mapping[str, object]) -> None:
    payload = {
        "schema_version": 1,
        "shop_id": "tea-1",
        "segment_id": segment,
        "name": segment,
        "version": 1,
        "rule": rule,
    }
    raw = json.dumps(payload).encode()
    assert pipeline.define(f"tea-1|{segment}".encode(), raw, DEFINITIONS).status == "processed"
    while pipeline.reevaluate("tea-1", 100) is not None:
        pass


def midnight(moment: datetime) -> datetime:
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


def test_quiet_customers_enter_at_the_first_event_after_their_rule_turns() -> None:
    pipeline = Pipeline(Settings(rfm_min_customers=1), {}, {}, {}, {})
    purchases = {f"c-{i}": [T0 + timedelta(days=2 * i, hours=i)] for i in range(12)}
    purchases["c-0"].append(T0 + timedelta(days=33, hours=2))  # a second order moves c-0 on
    feed = [(at, customer) for customer, times in purchases.items() for at in times]
    ticks = int(timedelta(days=140) / TICK)
    feed += [(T0 + k * TICK + timedelta(minutes=7), "busy") for k in range(ticks)]
    feed.sort()
    changes: list[SegmentChange] = []
    for n, (at, customer) in enumerate(feed):
        if n == 1:
            for segment, rule in RULES.items():
                define(pipeline, segment, rule)
        outcome = pipeline.handle(encoded(order(customer, at, f"e-{n}")), Order, ORDERS, b"tea-1")
        assert outcome.status == "processed"
        changes += [c for c in outcome.changes if c.model.startswith("defined:")]
    times = [at for at, _ in feed]

    def first_event_from(moment: datetime) -> datetime:
        return min(at for at in times if at >= moment)

    turns = {"quiet-45": 45, "quiet-21": 21, "no-order-in-30": 30}
    expected = set()
    for segment, days in turns.items():
        for customer, bought in purchases.items():
            for at, following in zip(bought, [*bought[1:], None], strict=True):
                turned = first_event_from(midnight(at) + timedelta(days))
                if following is None or turned < following:  # quiet long enough
                    expected.add((f"defined:{segment}", customer, turned))
    entered = {(c.model, c.customer_id, c.changed_at) for c in changes if c.current is not None}
    assert entered == expected
    late = [c for c in changes if c.current is not None and c.cause.kind != "timer"]
    assert late == []  # every entry came from the customer's own review


def test_rules_too_costly_to_look_ahead_are_looked_at_again_the_next_day() -> None:
    """100 rules of 60 conditions on predictions would look ahead ~66,000 times per event
    (as many windows over a long history: seconds); past the budget the customer is simply
    reviewed at the next midnight (without it: the moment the looks found, four days on)."""
    pipeline = Pipeline(Settings(rfm_min_customers=1), {}, {}, {}, {})
    handled = pipeline.handle(encoded(order("c-0", T0, "e-0")), Order, ORDERS, b"tea-1")
    assert handled.status == "processed"
    drifting = {"field": "predictions.expected_days_to_next_order", "op": "between"}
    half = [[{**drifting, "value": [n, n + 1]} for n in range(k, k + 30)] for k in (0, 30)]
    many = {"any": [{"any": part} for part in half]}  # 63 nodes
    for n in range(100):
        define(pipeline, f"costly-{n}", many)
    at = T0 + timedelta(hours=3)
    assert pipeline.handle(encoded(order("c-0", at, "e-1")), Order, ORDERS, b"tea-1").status == (
        "processed"
    )
    state = next(iter(pipeline.shop_customers("tea-1")))
    assert state.due_at == midnight(at) + timedelta(days=1)


def test_a_refit_re_evaluates_the_rules_that_read_predictions() -> None:
    pipeline = Pipeline(Settings(rfm_min_customers=1), {}, {}, {}, {})
    pipeline.handle(encoded(order("c-0", T0, "e-0")), Order, ORDERS, b"tea-1")
    define(pipeline, "slipping", {"field": "predictions.p_alive", "op": "lt", "value": 0.5})
    define(pipeline, "quiet", RULES["quiet-45"])
    book = pipeline.book("tea-1")
    fits, queued = [], []
    for n in range(1, 120):
        at = T0 + timedelta(days=n, hours=n % 7)
        raw = encoded(order(f"c-{n % 12}", at, f"e-{n}"))
        before = book.lifetime.fit
        pipeline.handle(raw, Order, ORDERS, b"tea-1")
        if book.lifetime.fit is not before:
            fits.append(n)
            pending = [item.segment_id for item in book.definitions.pending]
            queued.append([name for name in pending if not name.startswith("model:")])
            while pipeline.reevaluate("tea-1", 100) is not None:
                pass
    assert fits, "the shop's lifetime model was never fitted"
    assert queued == [["slipping"]] * len(fits)
