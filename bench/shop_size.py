"""Per-event cost against shop size, and state bytes per customer (in-process, no broker).

``python -m bench.shop_size [--sizes 1000 100000] [--days 60]`` simulates one coffee shop
of each size over the same ``--days`` (signups spread over the window, then orders and
cancellations as the personas make them) and feeds its records, in send order, through
:class:`~segstream.engine.pipeline.Pipeline` over the worker's own tables
(:class:`~segstream.stream.tables.TableState` with the worker's codecs) on an in-memory
store. Every ``--batch`` records it flushes and commits the batch's writes as the worker
does (encoded, then applied to the store), so encoding and the batch-coalesced metric
writes are in the figures; Kafka and Faust are not.

Per-event cost = handling + flush + encode time of the stream's second half (both shops
then hold most of their customers and the review schedule is in steady state), divided
by its events. Time-driven moves come from each shop's review schedule, so a shop 100
times larger sends about 100 times the events per day of stream time and the cost per
event should not grow with the shop: the ``÷ smallest`` column says whether it does.
State bytes = the encoded customer records in the store at the end (key excluded).

Then the shop defines a segment ("urban customers with at least 2 orders") and the
pipeline puts its existing customers in, step by step as the worker's re-evaluation timer
does (``reevaluation_customers`` per step, each step flushed and committed): the total
time per customer, the longest step (what one commit holds the partition for) and the
size of the shop's definitions record (which must not grow with the shop).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench.common import code_version, one_shop_events, percentile, say, table
from harness.stores import InProcessPipeline
from segstream.domain.changes import Source
from segstream.settings import DEFINITIONS_ROLE, Settings
from segstream.state.keyspace import definitions_key, shop_partition


@dataclass
class Reevaluated:
    """A new definition's re-evaluation of the whole shop."""

    seconds: float
    longest_step_s: float
    steps: int
    entered: int
    record_bytes: int


DEFINITION = {
    "schema_version": 1,
    "segment_id": "urban-repeat",
    "name": "Urban repeat buyers",
    "version": 1,
    "rule": {
        "all": [
            {"field": "attributes.location_type", "op": "eq", "value": "urban"},
            {"field": "behaviour.order_count", "op": "gte", "value": 2},
        ]
    },
}


def reevaluate(worker: InProcessPipeline, shop_id: str) -> Reevaluated:
    """Define a segment and put the shop's existing customers in, step by step."""
    pipeline, settings = worker.pipeline, worker.settings
    partition = shop_partition(shop_id, settings.topic_partitions)
    value = json.dumps({**DEFINITION, "shop_id": shop_id}).encode()
    source = Source(settings.topic(DEFINITIONS_ROLE), partition, 0)
    pipeline.define(f"{shop_id}|urban-repeat".encode(), value, source)
    worker.commit(partition)
    longest, total, steps, entered = 0.0, 0.0, 0, 0
    while True:
        began = time.perf_counter()
        outcome = pipeline.reevaluate(shop_id, settings.reevaluation_customers)
        if outcome is None:
            break
        worker.commit(partition)
        took = time.perf_counter() - began
        longest, total, steps = max(longest, took), total + took, steps + 1
        entered += len(outcome.changes)
    record = worker.stores["shops"].data[partition][definitions_key(shop_id).encode()]
    return Reevaluated(total, longest, steps, entered, len(record))


@dataclass
class Result:
    """One shop size's figures."""

    customers: int
    events: int
    measured_events: int
    seconds: float
    timer_changes: int
    state_bytes: list[int]
    reevaluation: Reevaluated

    @property
    def micros_per_event(self) -> float:
        return self.seconds / self.measured_events * 1e6


def run(customers: int, days: int, batch: int, seed: int) -> Result:
    """Simulate one shop of ``customers`` over ``days`` and feed it through a pipeline."""
    say(f"{customers:,} customers: simulating {days} days")
    raw = one_shop_events(customers, days, seed=seed)
    worker = InProcessPipeline(Settings())
    half = len(raw) // 2
    say(f"{customers:,} customers: {len(raw):,} events")
    seconds, timer_changes = 0.0, 0
    gc.collect()
    gc.freeze()  # the bench's own input is not the worker's: keep the collector off it
    for start in range(0, len(raw), batch):
        began = time.perf_counter()
        for kind, role, value, shop_id in raw[start : start + batch]:
            outcome = worker.handle(kind, role, value, shop_id)
            if start >= half:
                timer_changes += sum(1 for c in outcome.changes if c.cause.kind == "timer")
        worker.commit()
        if start >= half:
            seconds += time.perf_counter() - began
    gc.unfreeze()
    sizes = [len(v) for part in worker.stores["customers"].data.values() for v in part.values()]
    say(f"{customers:,} customers: re-evaluating a new definition")
    reevaluated = reevaluate(worker, raw[0][3])
    return Result(customers, len(raw), len(raw) - half, seconds, timer_changes, sizes, reevaluated)


def report(results: Sequence[Result]) -> str:
    smallest = results[0].micros_per_event
    rows = [
        [
            f"{r.customers:,}",
            f"{r.events:,}",
            f"{r.micros_per_event:,.0f}",
            f"{r.micros_per_event / smallest:.2f}",
            f"{r.timer_changes / r.measured_events:.2f}",
            f"{statistics.median(r.state_bytes):,.0f}",
            f"{percentile(r.state_bytes, 99):,.0f}",
            f"{max(r.state_bytes):,}",
        ]
        for r in results
    ]
    headers = [
        "customers",
        "events",
        "µs/event",
        "÷ smallest",
        "timer changes/event",
        "state B p50",
        "state B p99",
        "state B max",
    ]
    return table(headers, rows)


def report_reevaluations(results: Sequence[Result]) -> str:
    rows = [
        [
            f"{r.customers:,}",
            f"{r.reevaluation.entered:,}",
            f"{r.reevaluation.steps}",
            f"{r.reevaluation.seconds / r.customers * 1e6:,.0f}",
            f"{r.reevaluation.seconds:,.2f}",
            f"{r.reevaluation.longest_step_s:,.3f}",
            f"{r.reevaluation.record_bytes:,}",
        ]
        for r in results
    ]
    headers = [
        "customers",
        "entered",
        "steps",
        "µs/customer",
        "total s",
        "longest step s",
        "definitions record B",
    ]
    return table(headers, rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shop_size", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    results = [run(size, args.days, args.batch, args.seed) for size in args.sizes]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"shop_size {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: coffee shop, "
        f"{args.days} days, batches of {args.batch}, code {code_version()}, "
        f"peak RSS {rss:,.0f} MiB (in-memory store)"
    )
    print(report(results))
    print()
    print(report_reevaluations(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
