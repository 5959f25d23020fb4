"""Do segstream's judgments hold for small shops and any arrival order? (issue 25, item 5)

``python -m bench.quality_variants [--seeds 3]`` measures the churn probability and the
expected orders of ``bench.quality`` on variants of its histories, beside the original:

- ``CDNOW, shops of 50``: the paper split's customers dealt into shops of 50 (by customer
  id), every shop in the same Kafka partition, so each one's churn model leans on the
  partition's prior until it has labels of its own (``churn_prior_weight_examples``);
  the figures pool every customer of every shop;
- ``simulator, topics interleaved (seed s)``: the simulator's history delivered with its
  topics (signups, orders, cancellations, …) interleaved at random within each week, each
  topic's own records in order, as consumers of separate topics see them.

Per variant: the churn probability's AUC for "buys again in the holdout", its log loss and
Brier against an order within its horizon beside that horizon's base rate, the largest
reliability gap of its deciles, the error of the summed expected orders at every horizon,
``/models``' AUC against the holdout's (pooled over shops: the mean gap), and the segment
changes per customer per 30 days of churn_risk. "Within the benchmark's noise" means within
the AUC's 95 % margin (``bench.scores.auc_margin``) of the original's.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from bench.anchors import MissingDependencyError
from bench.common import code_version, table
from bench.quality_figures import (
    BASE_RATE_WITHIN,
    CHURN,
    Result,
    churn_quality,
    measure,
    reliability,
)
from bench.quality_replay import History, cdnow_histories, simulator_history
from segstream.domain.events import BY_TYPE_NAME, parse_time
from segstream.settings import ConfigError, Settings, load_settings
from segstream.state.keyspace import shop_partition
from segstream.tools.simulate import one_line

SMALL_SHOP = 50
"""Customers per shop of the small-shop variant."""
WEEK_DAYS = 7


def small_shops(history: History, partitions: int, size: int = SMALL_SHOP) -> History:
    """``history`` with its customers dealt into shops of ``size`` (sorted ids), every shop
    named so that it lands in the partition of the first."""
    customers = sorted({e["customer_id"] for e in history.events})
    names: list[str] = []
    target: int | None = None
    salt = 0
    while len(names) * size < len(customers):
        name = f"small-{len(names)}-{salt}"
        found = shop_partition(name, partitions)
        if target is None or found == target:
            target = found
            names.append(name)
            salt = 0
        else:
            salt += 1
    shop_of = {c: names[n // size] for n, c in enumerate(customers)}
    events = [dict(e, shop_id=shop_of[e["customer_id"]]) for e in history.events]
    return replace(
        history,
        name=f"{history.name}, shops of {size}",
        events=events,
        description=f"{history.description}; dealt into {len(names)} shops of {size}, "
        f"one partition",
    )


def interleaved(history: History, seed: int) -> History:
    """``history`` with its topics interleaved at random within each week (every topic's
    own records keep their order)."""
    rng = random.Random(seed)
    first = parse_time(history.events[0]["occurred_at"])
    weeks: defaultdict[int, defaultdict[str, list[dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for event in history.events:
        week = (parse_time(event["occurred_at"]) - first).days // WEEK_DAYS
        weeks[week][BY_TYPE_NAME[event["type"]].topic_role].append(event)
    events: list[dict[str, Any]] = []
    for week in sorted(weeks):
        queues = [list(reversed(q)) for _, q in sorted(weeks[week].items())]
        while queues:
            weights = [len(q) for q in queues]
            queue = rng.choices(queues, weights)[0]
            events.append(queue.pop())
            queues = [q for q in queues if q]
    return replace(
        history,
        name=f"{history.name}, topics interleaved (seed {seed})",
        events=events,
        description=f"{history.description}; topics interleaved at random within each week",
    )


def summary(result: Result) -> list[str]:
    """One row of figures of a variant (see the module docstring)."""
    rows = {row.signal: row for row in result.rows}
    churn, base = rows[CHURN], rows.get(BASE_RATE_WITHIN)
    bins = reliability(result)[CHURN]
    worst = max((abs(b.gap) for b in bins), default=math.nan)
    errors = " / ".join(
        f"{row.error:+.1%}" if row.error is not None else "n/a"
        for row in result.forecasts
        if row.signal.startswith("segstream") and row.covered
    )
    gaps = [
        q["models"]["roc_auc"] - q["within_auc"]
        for q in churn_quality(result)
        if q["models"].get("roc_auc") is not None and not math.isnan(q["within_auc"])
    ]
    rates = result.replay.changes_per_customer_month()
    return [
        result.history.name,
        f"{churn.covered:,}",
        f"{churn.auc:.3f} ± {churn.auc_margin:.3f}",
        f"{churn.log_loss:.3f} / {base.log_loss:.3f}" if base and churn.log_loss else "",
        f"{churn.brier:.3f} / {base.brier:.3f}" if base and churn.brier else "",
        f"{worst:.3f}",
        errors,
        f"{sum(gaps) / len(gaps):+.3f} ({len(gaps)} shops)" if gaps else "",
        f"{rates.get('churn_risk', 0.0):.2f}",
    ]


HEADERS = [
    "history",
    "customers",
    "AUC buys again",
    "log loss / base",
    "Brier / base",
    "worst decile gap",
    "expected orders error (30 / 90 / … d)",
    "/models - holdout AUC",
    "churn_risk changes / 30 d",
]


def variants(settings: Settings, seeds: int) -> list[History]:
    """The originals and their variants, in table order."""
    paper = cdnow_histories(quick=False)[0]
    simulator = simulator_history(200, 730, 273, 1)
    return [
        paper,
        small_shops(paper, settings.topic_partitions),
        simulator,
        *(interleaved(simulator, seed) for seed in range(1, seeds + 1)),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.quality_variants", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--seeds", type=int, default=3, help="interleavings of the simulator")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        results = [measure(history, settings) for history in variants(settings, args.seeds)]
    except (ConfigError, MissingDependencyError) as error:
        print(f"bench.quality_variants: {one_line(str(error))}", file=sys.stderr)
        return 2
    print(f"quality_variants: code {code_version()}\n")
    print(table(HEADERS, [summary(result) for result in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
