"""Customer-state codec: bytes per customer and encode/decode time per state (in-process).

``python -m bench.state_codec [--customers 2000] [--days 120] [--against FILE]`` simulates
one coffee shop, feeds it through the worker's pipeline on in-memory stores
(:class:`~harness.stores.InProcessPipeline`) and takes the customer states it left. It
reports their encoded size (median, p99, max) and the encode and decode time per state:
the least thread CPU time of 40 passes over all states, so other work on a shared machine
moves it little. ``--against`` names another codec module's source (e.g. an earlier
release's: ``git show <commit>:service/segstream/state/codec.py > /tmp/codec_old.py``),
measured in the same run, passes alternating.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from datetime import date
from pathlib import Path
from types import ModuleType

from bench.common import percentile, say, table
from harness.stores import InProcessPipeline
from segstream.domain.contracts import EVENT_TYPES
from segstream.domain.customer import CustomerState
from segstream.settings import Settings
from segstream.state import codec
from segstream.tools.publish import encode
from segstream.tools.simulation import KINDS_BY_NAME, SimulationConfig, generate, shops_per_kind

PASSES = 40


def states(customers: int, days: int) -> list[CustomerState]:
    """The customer states a simulated coffee shop leaves in the worker's tables."""
    shop = shops_per_kind(1, (KINDS_BY_NAME["coffee"],))[0]
    config = SimulationConfig(
        seed=7, shops=(shop,), customers_per_shop=customers, start=date(2025, 1, 1), days=days
    )
    worker = InProcessPipeline(Settings())
    for n, (role, value) in enumerate(generate(config).outbox()):
        if not isinstance(value, bytes):
            worker.handle(EVENT_TYPES[role], role, encode(value), value["shop_id"])
        if n % 500 == 499:
            worker.commit()
    worker.commit()
    table = worker.tables["customers"]
    return [table[key] for key in table]


def load(path: Path) -> ModuleType:
    """A codec module from its source file."""
    spec = importlib.util.spec_from_file_location(f"codec_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(codecs: dict[str, ModuleType], found: list[CustomerState]) -> list[list[str]]:
    """One row per codec: sizes and µs per state."""
    blobs = {name: [c.encode_state(s) for s in found] for name, c in codecs.items()}
    best = {name: [float("inf"), float("inf")] for name in codecs}
    for _ in range(PASSES):
        for name, module in codecs.items():
            began = time.thread_time()
            for state in found:
                module.encode_state(state)
            encoded = time.thread_time()
            for state, raw in zip(found, blobs[name], strict=True):
                module.decode_state(state.shop_id, state.customer_id, raw)
            done = time.thread_time()
            best[name] = [min(best[name][0], encoded - began), min(best[name][1], done - encoded)]
    rows = []
    for name, module in codecs.items():
        pairs = zip(found, blobs[name], strict=True)
        if any(module.decode_state(s.shop_id, s.customer_id, b) != s for s, b in pairs):
            raise SystemExit(f"{name}: a state does not survive its codec")
        sizes = [len(raw) for raw in blobs[name]]
        encode_us, decode_us = (seconds / len(found) * 1e6 for seconds in best[name])
        rows.append(
            [
                name,
                f"{statistics.median(sizes):,.0f}",
                f"{percentile(sizes, 99):,.0f}",
                f"{max(sizes):,}",
                f"{encode_us:.1f}",
                f"{decode_us:.1f}",
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Run the bench and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--against", type=Path, help="another codec module's source file")
    args = parser.parse_args(argv)
    say(f"simulating {args.customers:,} customers over {args.days} days")
    found = states(args.customers, args.days)
    codecs = {"this checkout": codec}
    if args.against is not None:
        codecs = {str(args.against): load(args.against)} | codecs
    say(f"{len(found):,} states: encoding and decoding, {PASSES} passes")
    headers = ["codec", "B p50", "B p99", "B max", "encode µs", "decode µs"]
    print(table(headers, measure(codecs, found)))


if __name__ == "__main__":
    main()
