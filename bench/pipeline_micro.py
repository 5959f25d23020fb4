"""In-process micro-benchmark: where an event's time goes inside the Pipeline (no broker).

Every variant handles the same records of a simulated stream, with fresh state each round:

- ``parse``: :func:`segstream.domain.contracts.parse_event` alone (JSON decode + schema validation);
- ``parse+apply``: plus :func:`segstream.domain.customer.apply` on in-memory customer states;
- ``handle, no models``: :meth:`Pipeline.handle` with every segment model taken out
  (stream time, state load/save, snapshots, the reviews of quiet customers);
- ``handle, <model> only``: the same with just that one segment model;
- ``handle (full)``: :meth:`Pipeline.handle` as the worker runs it, every model.

Variants run interleaved in rounds (A B C, then B C A, ...) so that noise from other work on
the machine falls on all of them alike; each statistic is the median over rounds, and the
ratios to the full pipeline are medians of the ratios within each round.

Run: ``.venv/bin/python -m bench.pipeline_micro [--rounds 5] [--shops 1]``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiokafka.partitioner import murmur2

from bench.common import Progress, code_version, median_of, paired, rotated, say, summary, table
from segstream.domain.changes import Source
from segstream.domain.contracts import EventType, Rejection, parse_event, role_for
from segstream.domain.customer import CustomerState, DedupPolicy, apply
from segstream.domain.events import BY_TYPE_NAME, from_payload
from segstream.engine.pipeline import Pipeline, ShopBook
from segstream.segments import available_models
from segstream.settings import Settings
from segstream.tools.publish import encode
from segstream.tools.simulation.generator import SimulationConfig, generate

STREAM = SimulationConfig(seed=1, shops_per_kind=2, customers_per_shop=100, days=365)
FULL = "handle (full)"
PROGRESS_EVERY = 256
"""Events between checks whether a progress line is due (kept out of the timings)."""


@dataclass(frozen=True, slots=True)
class Input:
    """One record as the worker's agent hands it to the pipeline."""

    raw: bytes
    kind: EventType
    source: Source
    key: bytes


Step = Callable[[Input], object]


@dataclass(frozen=True)
class Variant:
    """A named way to handle records; ``fresh`` gives a step with empty state."""

    name: str
    fresh: Callable[[], Step]


@dataclass(frozen=True)
class RoundResult:
    """One variant's pass over every input in one round."""

    per_event_us: dict[str, float]
    seconds: float
    events: int

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds


class ModelSubsetPipeline(Pipeline):
    """The service's :class:`Pipeline` whose shop books hold only the models in ``keep``."""

    def __init__(self, settings: Settings, keep: frozenset[str]) -> None:
        super().__init__(settings, {}, {}, {})
        self.keep = keep

    def book(self, shop_id: str, partition: int | None = None) -> ShopBook:
        """The shop's book, cut down to the kept models the first time it is built."""
        book = super().book(shop_id, partition)
        if not book.models.keys() <= self.keep:
            book.models = {name: m for name, m in book.models.items() if name in self.keep}
        return book


def inputs(shops: int, settings: Settings) -> list[Input]:
    """The records of the stream's first ``shops`` shops (one of every kind before a second
    of any), in send order, with the partitions Kafka's default partitioner gives them."""
    events = generate(STREAM).events
    chosen = set(spread_shops(sorted({event["shop_id"] for event in events}))[:shops])
    records = []
    for offset, event in enumerate(e for e in events if e["shop_id"] in chosen):
        key = str(event["shop_id"]).encode()
        partition = (murmur2(key) & 0x7FFFFFFF) % settings.topic_partitions
        source = Source(settings.topic(role_for(event)), partition, offset)
        records.append(Input(encode(event), BY_TYPE_NAME[event["type"]], source, key))
    return records


def spread_shops(shop_ids: Sequence[str]) -> list[str]:
    """Shop ids ordered by their number first, so a prefix covers the kinds evenly.

    >>> spread_shops(["a-1", "a-2", "b-1", "b-2"])
    ['a-1', 'b-1', 'a-2', 'b-2']
    """
    return sorted(shop_ids, key=lambda shop: (int(shop.rpartition("-")[2]), shop))


def parse_only(item: Input) -> object:
    return parse_event(item.raw, item.kind)


def parse_and_apply(settings: Settings) -> Step:
    """parse_event, from_payload and apply on customer states kept as objects."""
    states: dict[tuple[str, str], CustomerState] = {}

    def step(item: Input) -> object:
        parsed = parse_event(item.raw, item.kind)
        if isinstance(parsed, Rejection):
            return parsed
        event = from_payload(parsed)
        state = states.get((event.shop_id, event.customer_id))
        if state is None:
            state = states[(event.shop_id, event.customer_id)] = CustomerState(
                event.shop_id, event.customer_id
            )
        return apply(state, event, DedupPolicy(settings.dedup_window))

    return step


def handling(settings: Settings, keep: frozenset[str] | None) -> Step:
    """Pipeline.handle over dict tables; ``keep`` limits the models (None: all of them)."""
    pipeline = (
        Pipeline(settings, {}, {}, {}) if keep is None else ModelSubsetPipeline(settings, keep)
    )

    def step(item: Input) -> object:
        return pipeline.handle(item.raw, item.kind, item.source, item.key)

    return step


def variants(settings: Settings) -> list[Variant]:
    """Every variant, cheapest first; one ``<model> only`` per discovered segment model."""
    found = [
        Variant("parse", lambda: parse_only),
        Variant("parse+apply", lambda: parse_and_apply(settings)),
        Variant("handle, no models", lambda: handling(settings, frozenset())),
    ]
    for name in available_models():
        keep = frozenset({name})
        found.append(Variant(f"handle, {name} only", functools.partial(handling, settings, keep)))
    found.append(Variant(FULL, lambda: handling(settings, None)))
    return found


def run_round(step: Step, items: Sequence[Input], progress: Progress) -> RoundResult:
    """Time ``step`` on every item, one by one, after a full garbage collection."""
    clock = time.perf_counter_ns
    durations = [0] * len(items)
    gc.collect()
    for index, item in enumerate(items):
        started = clock()
        step(item)
        durations[index] = clock() - started
        if index % PROGRESS_EVERY == 0:
            progress.update(index)
    total_s = sum(durations) / 1e9
    return RoundResult(summary([d / 1000 for d in durations]), total_s, len(items))


def warm_up(all_variants: Sequence[Variant], items: Sequence[Input]) -> None:
    """Load schemas and model modules once, outside any timing."""
    for variant in all_variants:
        step = variant.fresh()
        for item in items[:50]:
            step(item)


def run(rounds: int, items: Sequence[Input], settings: Settings) -> dict[str, list[RoundResult]]:
    """Every variant over ``items`` in each of ``rounds`` rounds, interleaved."""
    all_variants = variants(settings)
    warm_up(all_variants, items)
    results: dict[str, list[RoundResult]] = {v.name: [] for v in all_variants}
    for number in range(rounds):
        for variant in rotated(all_variants, number):
            label = f"round {number + 1}/{rounds} {variant.name}"
            progress = Progress(label, len(items))
            results[variant.name].append(run_round(variant.fresh(), items, progress))
        say(f"round {number + 1}/{rounds} done")
    return results


def report(results: dict[str, list[RoundResult]]) -> str:
    """The side-by-side table: medians over rounds, paired ratios to the full pipeline."""
    full = results[FULL]
    headers = ["variant", "events/s", "p50 µs", "p95 µs", "p99 µs", "max µs"]
    headers += ["time ÷ full", "p99 ÷ full"]
    rows = []
    for name, rounds in results.items():
        stats = median_of([r.per_event_us for r in rounds])
        rate = statistics.median(r.events_per_s for r in rounds)
        time_share = paired([r.seconds for r in rounds], [r.seconds for r in full])
        p99_share = paired(
            [r.per_event_us["p99"] for r in rounds], [r.per_event_us["p99"] for r in full]
        )
        cells = [f"{stats[k]:,.1f}" for k in ("p50", "p95", "p99", "max")]
        rows.append([name, f"{rate:,.0f}", *cells, f"{time_share:.3f}", f"{p99_share:.3f}"])
    return table(headers, rows)


def describe_run(items: Sequence[Input], shops: int, rounds: int) -> str:
    """The conditions of the run, for the record next to its table."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"pipeline_micro {time.strftime('%Y-%m-%d %H:%M %Z')}: {len(items)} events of "
        f"{shops} shops (seed {STREAM.seed}, {STREAM.customers_per_shop} customers/shop, "
        f"{STREAM.days} days), {rounds} rounds, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, load average {load}, code {code_version()}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run every variant interleaved in rounds, print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline_micro", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--shops", type=int, default=1, help="shops of the stream to replay")
    args = parser.parse_args(argv)
    settings = Settings()
    items = inputs(args.shops, settings)
    say(f"{len(items)} events of {args.shops} shops, {args.rounds} rounds")
    results = run(args.rounds, items, settings)
    print(describe_run(items, args.shops, args.rounds))
    print()
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
