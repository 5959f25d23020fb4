"""How many segment changes a downstream tool would receive (in-process, no broker).

``python -m bench.change_rates [--customers 200] [--days 730] [--backfill-customers 5000]``
feeds two histories through the worker's pipeline (:class:`harness.stores.InProcessPipeline`)
and counts every segment change per model:

- ``simulator``: every simulated shop kind, ``--customers`` customers each, ``--days``
  of history (all personas, signups spread over the window);
- ``backfill``: the large occasional-buyer shop of ``bench.backfill`` (orders only, as
  a platform's transaction export replays), ``--backfill-customers`` customers over two
  years.

Per model it prints changes per customer per 30 days of stream time (a customer counts
from their first event to the end of the stream), the share caused by time passing
(``timer``) rather than the customer's own events, and the largest share of a shop's
customers one record moved at once (a single event's reviews) once the shop has 50
customers, leaving out a model's first assignments (a model becoming ready names everyone
once).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bench.backfill import write_csv
from bench.common import code_version, say, table
from harness.stores import InProcessPipeline
from segstream.domain.events import BY_TYPE_NAME, parse_time
from segstream.learning.quality import adjusted_rand_index
from segstream.settings import Settings
from segstream.tools.publish import encode
from segstream.tools.replay import read_orders
from segstream.tools.simulation import Simulation, SimulationConfig, generate

BATCH = 500
BURST_MIN_CUSTOMERS = 50
"""Bursts count once a shop has this many customers (two of five is no storm)."""


@dataclass
class Rates:
    """Changes of one history, per model."""

    name: str
    changes: Counter[str] = field(default_factory=Counter)
    timer: Counter[str] = field(default_factory=Counter)
    burst: dict[str, float] = field(default_factory=dict)
    customer_months: float = 0.0
    customers: int = 0
    events: int = 0
    agreement: float | None = None
    """Adjusted Rand index of the final clusters against the simulated personas."""

    def per_customer_month(self, model: str) -> float:
        return self.changes[model] / self.customer_months if self.customer_months else 0.0


def measure(
    name: str,
    events: Iterable[dict[str, Any]],
    settings: Settings,
    personas: Mapping[tuple[str, str], str] | None = None,
) -> Rates:
    """Feed ``events`` (send order) through a pipeline and count its segment changes."""
    worker = InProcessPipeline(settings)
    rates, n = Rates(name), 0
    first_seen: dict[tuple[str, str], datetime] = {}
    shop_size: Counter[str] = Counter()
    last = datetime.min.replace(tzinfo=UTC)
    for n, event in enumerate(events, start=1):
        key = (event["shop_id"], event["customer_id"])
        at = parse_time(event["occurred_at"])
        last = max(last, at)
        if key not in first_seen:
            first_seen[key] = at
            shop_size[key[0]] += 1
        kind = BY_TYPE_NAME[event["type"]]
        outcome = worker.handle(kind, kind.topic_role, encode(event), event["shop_id"])
        _count(rates, outcome.changes, shop_size[event["shop_id"]])
        if n % BATCH == 0:
            worker.commit()
    worker.commit()
    rates.events = n
    rates.customers = len(first_seen)
    rates.customer_months = sum((last - at).total_seconds() for at in first_seen.values()) / (
        30 * 86_400
    )
    if personas:
        rates.agreement = _cluster_agreement(worker, personas)
    return rates


def _cluster_agreement(worker: InProcessPipeline, personas: Mapping[tuple[str, str], str]) -> float:
    """ARI of each customer's final cluster against their persona, over clustered customers."""
    truth, found = [], []
    for (shop_id, customer_id), persona in sorted(personas.items()):
        segment = worker.pipeline.load(shop_id, customer_id).segments.get("cluster")
        if segment is not None:
            truth.append(f"{shop_id}/{persona}")
            found.append(f"{shop_id}/{segment}")
    return adjusted_rand_index(truth, found)


def _count(rates: Rates, changes: Sequence[Any], shop_customers: int) -> None:
    moved: dict[str, set[str]] = defaultdict(set)
    for change in changes:
        rates.changes[change.model] += 1
        if change.cause.kind == "timer":
            rates.timer[change.model] += 1
        if change.previous is not None:
            moved[change.model].add(change.customer_id)
    if shop_customers < BURST_MIN_CUSTOMERS:
        return
    for model, customers in moved.items():
        share = len(customers) / shop_customers
        rates.burst[model] = max(rates.burst.get(model, 0.0), share)


def simulation(customers: int, days: int, seed: int) -> Simulation:
    config = SimulationConfig(
        seed=seed, customers_per_shop=customers, start=date(2024, 1, 1), days=days
    )
    return generate(config)


def backfill_events(customers: int, seed: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "orders.csv"
        shop_id, _ = write_csv(path, customers, 730, seed)
        with path.open() as lines:
            return read_orders(lines, shop_id=shop_id)


def report(results: Sequence[Rates]) -> str:
    models = sorted({model for r in results for model in r.changes})
    rows = []
    for r in results:
        for model in models:
            total = r.changes[model]
            rows.append(
                [
                    r.name,
                    model,
                    f"{total:,}",
                    f"{r.per_customer_month(model):.2f}",
                    f"{r.timer[model] / total:.0%}" if total else "",
                    f"{r.burst.get(model, 0.0):.0%}",
                ]
            )
    headers = ["history", "model", "changes", "per customer / 30 d", "by timer", "largest burst"]
    return table(headers, rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.change_rates", description=__doc__)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--backfill-customers", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    settings = Settings()
    started = time.monotonic()
    say(f"simulator: every shop kind, {args.customers} customers, {args.days} days")
    simulated = simulation(args.customers, args.days, args.seed)
    personas = {(t.shop_id, t.customer_id): t.persona for t in simulated.truth}
    results = [measure("simulator", simulated.events, settings, personas)]
    say(f"backfill: {args.backfill_customers:,} customers, two years of orders")
    backfill = backfill_events(args.backfill_customers, args.seed)
    results.append(measure("backfill", backfill, settings))
    print(
        f"change_rates {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: code "
        f"{code_version()}, {time.monotonic() - started:,.0f} s; simulator "
        f"{results[0].customers:,} customers, backfill {results[1].customers:,}"
    )
    print(report(results))
    print(f"cluster agreement with the simulated personas (ARI): {results[0].agreement:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
