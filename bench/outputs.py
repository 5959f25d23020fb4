"""Every outcome of a simulated shop and the stores it leaves, hashed (in-process, no broker).

``python -m bench.outputs [--customers 3000] [--days 90] [--kind coffee]`` feeds one
simulated shop through the worker's pipeline and tables (:class:`harness.stores.
InProcessPipeline`, batches of ``--batch`` records committed as the worker does) and prints
the events, the segment changes, µs per event and one digest of every outcome (status,
changes, groups formed, lateness) and every stored record at the end.

A speed change that claims to leave behaviour unchanged shows the same digest before and
after (run it in both checkouts); two runs of one checkout always do, since the pipeline
folds the same records to the same outputs (a test checks that on a small shop).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench.common import ShopEvent, code_version, one_shop_events, say
from harness.stores import InProcessPipeline
from segstream.settings import Settings
from segstream.tools.simulation import KINDS_BY_NAME


@dataclass(frozen=True)
class Digest:
    """What one run fed and produced."""

    events: int
    changes: int
    seconds: float
    digest: str

    @property
    def micros_per_event(self) -> float:
        return self.seconds / self.events * 1e6


def run(
    customers: int,
    days: int,
    kind: str = "coffee",
    batch: int = 100,
    seed: int = 1,
    settings: Settings | None = None,
) -> Digest:
    """Simulate one shop and hash what the pipeline makes of it (``settings``: the
    defaults)."""
    return digest(one_shop_events(customers, days, kind, seed), batch, settings)


def digest(raw: list[ShopEvent], batch: int = 100, settings: Settings | None = None) -> Digest:
    """Hash what the pipeline makes of ``raw`` records (of any shops), fed in batches."""
    worker = InProcessPipeline(settings or Settings())
    hashed, changes, seconds = hashlib.sha256(), 0, 0.0
    for start in range(0, len(raw), batch):
        began = time.perf_counter()
        outcomes = [worker.handle(*record) for record in raw[start : start + batch]]
        worker.commit()
        seconds += time.perf_counter() - began
        for outcome in outcomes:
            changes += len(outcome.changes)
            seen = (outcome.status, outcome.changes, outcome.formed, outcome.too_late)
            hashed.update(repr(seen).encode())
    for name in sorted(worker.stores):
        for _, data in sorted(worker.stores[name].data.items()):
            for key in sorted(data):
                hashed.update(key)
                hashed.update(data[key] or b"")
    return Digest(len(raw), changes, seconds, hashed.hexdigest()[:16])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.outputs", description=__doc__)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--kind", choices=sorted(KINDS_BY_NAME), default="coffee")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument(
        "--review-schedule-entries", type=int, default=None, help="a shop's reviews in memory"
    )
    args = parser.parse_args(argv)
    chosen = (
        {}
        if args.review_schedule_entries is None
        else {"review_schedule_entries": args.review_schedule_entries}
    )
    say(f"{args.customers:,} {args.kind} customers over {args.days} days at {code_version()}")
    found = run(args.customers, args.days, args.kind, args.batch, settings=Settings(**chosen))
    print(
        f"events {found.events:,}  changes {found.changes:,}  "
        f"µs/event {found.micros_per_event:,.0f}  digest {found.digest}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
