"""What the benchmarks share: the simulated stream, statistics, tables and progress lines
(brokers and worker processes are :mod:`harness`'s, as for the tests and the chaos run).

Statistics are plain nearest-rank percentiles; ratios compare variants measured in the same
run, since absolute numbers on shared machines move with whatever else runs.
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import TypeVar

from segstream.domain.contracts import EVENT_TYPES
from segstream.domain.events import Event
from segstream.tools.publish import Record, encode
from segstream.tools.simulation import KINDS_BY_NAME
from segstream.tools.simulation.generator import SimulationConfig, generate
from segstream.tools.simulation.shops import shops_per_kind

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parents[1]
RUNS_DIR = REPO_ROOT / "var" / "bench"
PERCENTILES = (50, 95, 99)
EVENTS_PER_SHOP = 1100
"""Roughly how many events a simulated shop of 100 customers yields over a year."""


# ---------------------------------------------------------------- the simulated stream


def simulated_records(events: int, seed: int = 1) -> list[Record]:
    """The first ``events`` records of a simulated year of shops with 100 customers each,
    in send order; just enough shops (of every kind) are simulated to have that many."""
    kinds = len(shops_per_kind(1))
    per_kind = max(1, math.ceil(events / (EVENTS_PER_SHOP * kinds)))
    while True:
        config = SimulationConfig(
            seed=seed, shops_per_kind=per_kind, customers_per_shop=100, days=365
        )
        outbox = generate(config).outbox()
        if len(outbox) >= events:
            return outbox[:events]
        per_kind += 1


ShopEvent = tuple[type[Event], str, bytes, str]
"""What an in-process worker handles: (event type, input role, encoded value, shop id)."""


def one_shop_events(
    customers: int, days: int, kind: str = "coffee", seed: int = 1
) -> list[ShopEvent]:
    """One simulated shop of ``customers`` over ``days`` from 2025-01-01, encoded as the
    stream carries it (the simulator's deliberately invalid records left out)."""
    shop = shops_per_kind(1, (KINDS_BY_NAME[kind],))[0]
    config = SimulationConfig(
        seed=seed, shops=(shop,), customers_per_shop=customers, start=date(2025, 1, 1), days=days
    )
    return [
        (EVENT_TYPES[role], role, encode(value), value["shop_id"])
        for role, value in generate(config).outbox()
        if not isinstance(value, bytes)
    ]


# ---------------------------------------------------------------- statistics


def percentile(samples: Sequence[float], rank: float) -> float:
    """Nearest-rank percentile (``rank`` in 0..100) of non-empty ``samples``.

    >>> percentile([5, 1, 4, 2, 3], 50), percentile([5, 1, 4, 2, 3], 99)
    (3, 5)
    """
    ordered = sorted(samples)
    index = max(math.ceil(rank / 100 * len(ordered)) - 1, 0)
    return ordered[index]


def summary(samples: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and max of non-empty ``samples``.

    >>> summary(range(1, 101))
    {'p50': 50, 'p95': 95, 'p99': 99, 'max': 100}
    """
    ordered = sorted(samples)
    stats = {f"p{rank}": percentile(ordered, rank) for rank in PERCENTILES}
    stats["max"] = ordered[-1]
    return stats


def median_of(rounds: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per statistic, the median over rounds (robust to a round that noise hit hard).

    >>> median_of([{"p50": 1.0}, {"p50": 9.0}, {"p50": 2.0}])
    {'p50': 2.0}
    """
    return {name: statistics.median(stats[name] for stats in rounds) for name in rounds[0]}


def paired(values: Sequence[float], baselines: Sequence[float]) -> float:
    """Median over rounds of ``value / baseline`` measured in the same round (noise that hit
    a whole round cancels out).

    >>> paired([2.0, 9.0, 3.0], [1.0, 3.0, 1.0])
    3.0
    """
    return statistics.median(v / b for v, b in zip(values, baselines, strict=True))


def rotated(items: Sequence[T], by: int) -> list[T]:
    """``items`` rotated left by ``by``: each round starts with another variant.

    >>> rotated("abc", 4)
    ['b', 'c', 'a']
    """
    shift = by % len(items)
    return [*items[shift:], *items[:shift]]


def times(value: float) -> str:
    """A ratio as ``1.23x``.

    >>> times(0.5)
    '0.50x'
    """
    return f"{value:.2f}x"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table with aligned columns (first column left, the others right).

    >>> print(table(["variant", "n"], [["a", "1"], ["bb", "10"]]))
    | variant |  n |
    |:--------|---:|
    | a       |  1 |
    | bb      | 10 |
    """
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|".join(
        ":" + "-" * (w + 1) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)
    )
    return "\n".join([line(headers), f"|{rule}|", *(line(row) for row in rows)])


# ---------------------------------------------------------------- progress


class Progress:
    """A short progress line on stderr at most every ``every_s`` seconds."""

    def __init__(self, label: str, total: int | None = None, every_s: float = 3.0) -> None:
        self.label = label
        self.total = total
        self.every_s = every_s
        self.started = time.monotonic()
        self._last = self.started

    def update(self, done: int, detail: str = "") -> None:
        """Report ``done`` units (and ``detail``) if the last line is old enough."""
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        of = f"/{self.total}" if self.total is not None else ""
        elapsed = now - self.started
        parts = [f"{self.label}: {done}{of}", detail, f"({elapsed:.0f} s)"]
        say(" ".join(part for part in parts if part))


def code_version() -> str:
    """The commit the run measured, marked ``+dirty`` when the tree has local changes."""
    commit = _git("rev-parse", "--short", "HEAD") or "unknown commit"
    return commit + ("+dirty" if _git("status", "--porcelain", "--untracked-files=no") else "")


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)
    return done.stdout.strip()


def say(message: str) -> None:
    """One line on stderr (progress and status, kept apart from the results on stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def setting_assignment(text: str) -> tuple[str, str]:
    """``--worker-env SEGSTREAM_X=VALUE`` as (name, value)."""
    name, equals, value = text.partition("=")
    if not equals or not name.startswith("SEGSTREAM_"):
        raise argparse.ArgumentTypeError(f"expected SEGSTREAM_NAME=VALUE, got {text!r}")
    return name, value


def add_worker_env(parser: argparse.ArgumentParser, example: str) -> None:
    """``--worker-env SEGSTREAM_X=VALUE`` (repeatable): settings of the worker a bench
    starts, e.g. ``example``."""
    parser.add_argument(
        "--worker-env",
        type=setting_assignment,
        action="append",
        default=[],
        metavar="SEGSTREAM_X=VALUE",
        help=f"a segstream worker setting (repeatable), e.g. {example}",
    )
