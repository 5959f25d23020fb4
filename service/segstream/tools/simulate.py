"""``segstream simulate``: publish a simulated stream of tiny-shop events to Kafka.

Generates the events of ``--shops-per-kind`` shops of every kind, with
``--customers`` customers each, over ``--days`` days (by default ending on
31 December 2025, so the holiday-season group forms at the end) and sends them
to the input topics, creating missing topics first. Settings (broker, topic
prefix, partitions) come from the ``SEGSTREAM_*`` environment.

Exit codes: 0 done, 1 Kafka failure, 2 bad arguments, settings or input (nothing
sent), 130 interrupted. Progress goes to stderr; ``--dry-run`` prints the events
as JSON lines to stdout instead of sending them (invalid records are not printed).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from typing import IO, Any

from aiokafka.errors import KafkaError

from segstream.settings import ConfigError, Settings, load_settings
from segstream.stream.topics import ensure_topics
from segstream.tools.command import OneLineParser, UsageError, parser_for, run_cli
from segstream.tools.publish import Record, publish
from segstream.tools.simulation import CustomerTruth, SimulationConfig, generate

LAST_DAY = date(2025, 12, 31)
TRUTH_COLUMNS = (
    "shop_id",
    "customer_id",
    "persona",
    "signup_at",
    "churned",
    "churned_at",
    "lapsed",
)


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number greater than 0."""
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def ratio(text: str) -> float:
    """argparse type: a share between 0 and 1."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def one_line(text: str) -> str:
    """A possibly multi-line message as one line (settings errors list one issue a line)."""
    head, *rest = [line.strip() for line in text.splitlines() if line.strip()] or [""]
    return " ".join([head, "; ".join(rest)]).strip()


class Progress:
    """Writes ``prog sent=N/TOTAL rate=R/s`` every ``every`` records and after the last."""

    def __init__(self, prog: str, total: int, every: int, stream: IO[str]) -> None:
        self._prog, self._total, self._every, self._stream = prog, total, every, stream
        self._started = time.monotonic()

    def __call__(self, sent: int) -> None:
        """Report if ``sent`` is a multiple of ``every`` or the last record."""
        if sent % self._every and sent != self._total:
            return
        rate = sent / max(time.monotonic() - self._started, 1e-9)
        print(f"{self._prog} sent={sent}/{self._total} rate={rate:.0f}/s", file=self._stream)


def settings_from_environment() -> Settings:
    """:func:`load_settings`, with bad settings reported as a one-line usage error."""
    try:
        return load_settings()
    except ConfigError as error:
        raise UsageError(one_line(str(error))) from None


def send(
    prog: str, settings: Settings, records: Sequence[Record], rate: float | None, every: int
) -> int:
    """Create missing topics and publish ``records``; returns the process exit code."""
    progress = Progress(prog, len(records), every, sys.stderr)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # failures are reported below

    async def run() -> int:
        await ensure_topics(settings)
        return await publish(records, settings, rate=rate, progress=progress)

    try:
        asyncio.run(run())
    except (KafkaError, OSError) as error:
        print(f"{prog}: kafka error at {settings.kafka_bootstrap}: {error}", file=sys.stderr)
        return 1
    return 0


def print_json_lines(events: Iterable[Mapping[str, Any]], stream: IO[str]) -> None:
    """One compact JSON object per line."""
    for event in events:
        stream.write(json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n")


def write_truth(truth: Iterable[CustomerTruth], stream: IO[str]) -> None:
    """The truth as CSV: one row per customer, booleans as ``true``/``false``."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(TRUTH_COLUMNS)
    for row in truth:
        writer.writerow(_cell(getattr(row, column)) for column in TRUTH_COLUMNS)


def _cell(value: object) -> str:
    """A truth value as CSV text: empty for None, lower-case booleans."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def iso_date(text: str) -> date:
    """argparse type: a YYYY-MM-DD date."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


def _parser() -> OneLineParser:
    """The command line of ``segstream simulate``."""
    parser = parser_for("simulate", __doc__)
    add = parser.add_argument
    add("--seed", type=int, default=0, help="random seed (default 0)")
    add("--shops-per-kind", type=positive_int, default=1, help="shops of each of the 6 kinds")
    add("--customers", type=positive_int, default=100, help="customers per shop")
    add("--days", type=positive_int, default=365, help="length of the stream in days")
    add("--start", type=iso_date, help="first day, YYYY-MM-DD (default: end 2025-12-31)")
    add("--rate", type=positive_float, help="max events per second (default: as fast as possible)")
    add("--invalid-ratio", type=ratio, default=0.0, help="share of extra invalid records")
    add("--duplicate-ratio", type=ratio, default=0.0, help="share of events sent twice")
    add("--out-of-order-ratio", type=ratio, default=0.0, help="share of events sent late")
    add("--touchpoints", action="store_true", help="site visits, trials and prospects too")
    add("--progress-every", type=positive_int, default=5000, help="progress line interval")
    add("--truth", metavar="FILE", help="write the per-customer truth as CSV to FILE")
    add("--dry-run", action="store_true", help="print events as JSON lines instead of sending")
    return parser


def _config(args: argparse.Namespace) -> SimulationConfig:
    """The simulation the arguments ask for."""
    start = args.start or LAST_DAY - timedelta(days=args.days - 1)
    try:
        return SimulationConfig(
            seed=args.seed,
            shops_per_kind=args.shops_per_kind,
            customers_per_shop=args.customers,
            start=start,
            days=args.days,
            invalid_ratio=args.invalid_ratio,
            duplicate_ratio=args.duplicate_ratio,
            out_of_order_ratio=args.out_of_order_ratio,
            touchpoints=args.touchpoints,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None


def _write_truth_file(path: str, truth: list[CustomerTruth]) -> None:
    """Write the truth CSV to ``path``."""
    try:
        with open(path, "w", encoding="utf-8", newline="") as stream:
            write_truth(truth, stream)
    except OSError as error:
        raise UsageError(f"cannot write truth file: {error}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, generate the stream, then print or publish it."""
    args = _parser().parse_args(argv)

    def body() -> int:
        config = _config(args)
        settings = None if args.dry_run else settings_from_environment()
        simulation = generate(config)
        if args.truth:
            _write_truth_file(args.truth, simulation.truth)
        if settings is None:
            print_json_lines(simulation.events, sys.stdout)
            return 0
        return send("simulate", settings, simulation.outbox(), args.rate, args.progress_every)

    return run_cli("simulate", body)


if __name__ == "__main__":
    sys.exit(main())
