"""What a shop-defined rule costs to schedule its own reviews (in-process, no broker).

``python -m bench.rule_timing [--customers 2000] [--days 180]`` feeds one simulated shop
through the pipeline, then, for every customer at the shop's stream time, times a plain
evaluation of each rule beside the look ahead that names when its answer can next change
(:mod:`segstream.segments.defined.timing`), and one snapshot for scale. µs per customer,
medians of ``--rounds`` passes. A condition on a prediction is looked at on later days, so
it costs a few snapshots; day counts and windows are arithmetic on what the customer has.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.common import code_version, one_shop_events, say, table
from harness.stores import InProcessPipeline
from segstream.domain.customer import CustomerState
from segstream.domain.features import CustomerSnapshot, later
from segstream.segments.defined import CompiledRule, compile_definition, validate_definition
from segstream.segments.defined.timing import Looks
from segstream.settings import Settings

RULES: dict[str, dict[str, Any]] = {
    "order count (still)": {"field": "behaviour.order_count", "op": "gte", "value": 3},
    "no purchase for 45 days": {
        "field": "behaviour.days_since_last_purchase",
        "op": "gte",
        "value": 45,
    },
    "no order in 30 days (window)": {
        "count": "purchase_days",
        "within_days": 30,
        "op": "eq",
        "value": 0,
    },
    "P(alive) under 0.3": {"field": "predictions.p_alive", "op": "lt", "value": 0.3},
    "CLV under 20": {"field": "predictions.clv_365d", "op": "lt", "value": 20},
}


def _timed(work: Callable[[], object], rounds: int, customers: int) -> float:
    """Median µs per customer of ``work`` (one pass over every customer)."""
    passes = []
    for _ in range(rounds):
        began = time.perf_counter()
        work()
        passes.append((time.perf_counter() - began) / customers * 1e6)
    return statistics.median(passes)


def _rule_costs(
    rule: CompiledRule,
    views: list[tuple[CustomerState, CustomerSnapshot]],
    later_of: Callable[[CustomerState, CustomerSnapshot], Looks],
    rounds: int,
) -> tuple[float, float]:
    """µs per customer of evaluating ``rule`` and of its look ahead."""
    test = _timed(lambda: [rule(s, v) for s, v in views], rounds, len(views))
    ahead = _timed(
        lambda: [rule.next_change(s, v, later_of(s, v)) for s, v in views], rounds, len(views)
    )
    return test, ahead


def run(customers: int, days: int, rounds: int) -> list[list[str]]:
    raw = one_shop_events(customers, days)
    say(f"{len(raw):,} events of {customers:,} customers over {days} days")
    worker = InProcessPipeline(Settings())
    for start in range(0, len(raw), 100):
        for record in raw[start : start + 100]:
            worker.handle(*record)
        worker.commit()
    pipeline, shop_id = worker.pipeline, raw[0][3]
    book, evaluation = pipeline.book(shop_id), pipeline.segments
    now = book.stream_time
    assert now is not None
    people = [s for s in pipeline.shop_customers(shop_id) if not s.is_prospect]
    views = [(s, evaluation.snapshot(book, s, now)) for s in people]

    def later_of(state: CustomerState, view: CustomerSnapshot) -> Looks:
        return Looks(lambda at: later(view, state, at))  # as the engine looks ahead

    count = len(people)
    whole = _timed(lambda: [evaluation.snapshot(book, s, now) for s in people], rounds, count)
    rows = [["one snapshot", f"{whole:.1f}", "", ""]]
    for name, rule in RULES.items():
        payload = {"schema_version": 1, "shop_id": shop_id, "segment_id": "x", "name": name}
        compiled = compile_definition(validate_definition({**payload, "version": 1, "rule": rule}))
        test, ahead = _rule_costs(compiled, views, later_of, rounds)
        named = sum(compiled.next_change(s, v, later_of(s, v)) is not None for s, v in views)
        rows.append([name, f"{test:.1f}", f"{ahead:.1f}", f"{named / count:.0%}"])
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rule_timing", description=__doc__)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    say(f"rule timing at {code_version()}")
    rows = run(args.customers, args.days, args.rounds)
    headers = ["rule", "evaluate µs", "look ahead µs", "customers with a moment"]
    print(table(headers, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
