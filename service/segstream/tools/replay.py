"""``segstream replay FILE.csv... --shop-id SHOP``: import a shop's history.

Reads orders, subscriptions or a billing system's event export (the shapes:
``segstream.tools.replay_rows``; examples and every column: ``schemas/examples/replay/``),
checks every row as the worker will (the same contract, the same plausible times,
``SEGSTREAM_EARLIEST_EVENT_TIME`` included) and sends nothing if any row would be refused:
the refused rows are listed with file, line and reason. Otherwise it sends the events in
time order, with progress on stderr, waits for the worker to handle them and reports what
it processed, de-duplicated and dead-lettered, by reason. Event ids are derived from the
rows, so the worker de-duplicates rows sent again, within its de-duplication window
(``SEGSTREAM_DEDUP_WINDOW`` latest ids per customer, ``SEGSTREAM_DEDUP_HORIZON_DAYS``):
import a longer history once (the summary says when it is longer).

Run it with the worker's ``SEGSTREAM_*`` settings (broker, topic prefix, app id, earliest
event time). Exit codes: 0 done, 1 Kafka failure, the worker dead-lettered some of the
events or did not handle them in time, 2 bad arguments, settings or rows (nothing sent),
130 interrupted. ``--dry-run`` checks and summarises without sending.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata

from segstream.domain.contracts import (
    EARLIEST_EVENT_TIME,
    MAX_FUTURE_SKEW,
    Rejection,
    parse_event,
    role_for,
)
from segstream.domain.events import BY_TYPE_NAME, format_time, parse_time
from segstream.settings import Settings
from segstream.state.keyspace import shop_partition
from segstream.stream.topics import ensure_topics
from segstream.tools.command import PROGRAM, OneLineParser, UsageError, run_cli
from segstream.tools.publish import encode, publish
from segstream.tools.replay_report import Outcome, Reader, await_worker, rate_line, report_lines
from segstream.tools.replay_rows import (
    COLUMNS,
    SHAPES,
    History,
    Options,
    Refusal,
    Row,
    RowError,
    header_map,
    order_of,
    parse_amount,
    parse_when,
    read_history,
)
from segstream.tools.simulate import (
    positive_float,
    positive_int,
    print_json_lines,
    settings_from_environment,
)

__all__ = ["Columns", "RowError", "main", "parse_amount", "parse_when", "read_orders"]

EPILOG = """\
shapes (told apart by the header; columns and examples: schemas/examples/replay/README.md):
  orders         customer_id, date, amount [, order_id, is_renewal, currency]
  events         type, customer_id, date [, plan_id, price, interval, amount, ...]
                 types: signup, order, renewal, plan_change, upgrade, downgrade,
                 switch, pause, resume, cancellation
  subscriptions  customer_id, started_at, plan_id, price, interval
                 [, cancelled_at, ended_at, reason, ...]

settings: the worker's SEGSTREAM_* variables (broker, topic prefix, app id,
SEGSTREAM_EARLIEST_EVENT_TIME for a history before 2000).

exit codes: 0 done; 1 Kafka failure, or the worker dead-lettered events or did not
handle them in time; 2 bad arguments, settings or rows (nothing sent); 130 interrupted.
"""

SHOP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
CURRENCY = re.compile(r"[A-Za-z]{3}")
PROG = "replay"


# -------------------------------------------------------------- the orders shape, as before


@dataclass(frozen=True, slots=True)
class Columns:
    """Which CSV columns hold the customer, the date and the amount (orders shape)."""

    customer: str = "customer_id"
    date: str = "date"
    amount: str = "amount"

    def mapping(self) -> dict[str, str]:
        """As ``--column`` mappings."""
        return {"customer_id": self.customer, "date": self.date, "amount": self.amount}


def row_to_event(
    row: Mapping[str, str | None],
    line: int,
    index: int,
    *,
    shop_id: str,
    currency: str = "EUR",
    columns: Columns = Columns(),
) -> dict[str, Any]:
    """The ``order`` event of one orders-shape CSV row (``index`` counts data rows from 1).

    >>> event = row_to_event({"customer_id": "c-1", "date": "2025-03-01", "amount": "9.5"},
    ...                      2, 1, shop_id="tea-house-1")
    >>> event["occurred_at"], event["order_id"], event["amount"], event["is_renewal"]
    ('2025-03-01T00:00:00Z', 'row-000001', 9.5, False)
    """
    found = header_map([str(key) for key in row], "orders", columns.mapping())
    values: Row = {name: str(row.get(header) or "").strip() for name, header in found.items()}
    options = Options(shop_id, currency, columns.mapping())
    raw: dict[str | None, Any] = {key: value for key, value in row.items()}
    return order_of(values, raw, line, index, options)


def read_orders(
    lines: Iterable[str],
    *,
    shop_id: str,
    currency: str = "EUR",
    columns: Columns = Columns(),
    delimiter: str = ",",
) -> list[dict[str, Any]]:
    """All rows of a transaction CSV as order events, sorted by date (ties keep file order);
    RowError for the first row that cannot become one."""
    options = Options(shop_id, currency, columns.mapping(), delimiter, "orders")
    history = read_history([("orders", lines)], options)
    if history.refusals:
        first = history.refusals[0]
        raise RowError(first.where.line, first.detail)
    return [event for _, event in history.events]


# ------------------------------------------------------------------------ checking


@dataclass(slots=True)
class Checked:
    """The history with every refusal, the worker's contract's included."""

    history: History
    refusals: list[Refusal]
    too_old: list[datetime]
    """Times of the events refused only for lying before the earliest event time."""


def check(history: History, earliest: datetime, now: datetime) -> Checked:
    """Every event through the worker's own :func:`parse_event` (schema, plausible times
    with the worker's earliest event time): what it would dead-letter is refused here."""
    refusals, too_old = list(history.refusals), []
    for where, event in history.events:
        parsed = parse_event(encode(event), BY_TYPE_NAME[event["type"]], now, earliest=earliest)
        if isinstance(parsed, Rejection):
            refusals.append(Refusal(where, parsed.reason, parsed.detail))
            if parsed.reason == "implausible_time" and " is before " in parsed.detail:
                too_old.append(_oldest(event))
    refusals.sort(key=lambda refusal: (refusal.where.file, refusal.where.line))
    return Checked(history, refusals, too_old)


def _oldest(event: Mapping[str, Any]) -> datetime:
    """The earliest time an event carries (``occurred_at``, ``effective_at``)."""
    stamps = [event["occurred_at"], event.get("effective_at") or event["occurred_at"]]
    return min(parse_time(stamp) for stamp in stamps)


def refusal_lines(checked: Checked, earliest: datetime, listed: int) -> list[str]:
    """The refused rows (about ``listed``: the first of each reason, so that a rare one
    shows beside 69,000 of another), the count by reason and, for rows too old, how to
    import them."""
    refusals, rows = checked.refusals, checked.history.rows
    places = {(r.where.file, r.where.line) for r in refusals}
    lines = [f"{PROG}: refused: {len(places):,} of {rows:,} rows; nothing sent"]
    reasons = Counter(r.reason for r in refusals)
    kinds = len({_kind(r) for r in refusals})
    shown = _first_of_each(refusals, max(listed // kinds, 1))
    lines += [f"  {r.where}: {r.reason}: {r.detail}" for r in shown]
    if len(refusals) > len(shown):
        lines.append(f"  ... and {len(refusals) - len(shown):,} more")
    lines.append("  by reason: " + ", ".join(f"{k} {n:,}" for k, n in reasons.most_common()))
    if checked.too_old:
        oldest = min(checked.too_old).replace(hour=0, minute=0, second=0, microsecond=0)
        lines.append(
            f"  {len(checked.too_old):,} events are dated before {format_time(earliest)} "
            "(SEGSTREAM_EARLIEST_EVENT_TIME): to import this history, set it to "
            f"{format_time(oldest)} or earlier, for this command and for the worker"
        )
    return lines


def _first_of_each(refusals: Sequence[Refusal], each: int) -> list[Refusal]:
    """The first ``each`` refusals of every kind, in file and line order."""
    taken: Counter[str] = Counter()
    shown = []
    for refusal in refusals:
        kind = _kind(refusal)
        if taken[kind] < each:
            taken[kind] += 1
            shown.append(refusal)
    return shown


QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'")


def _kind(refusal: Refusal) -> str:
    """A refusal's reason and problem without the values it quotes: a date too early and
    a date too late are two kinds of ``implausible_time``.

    >>> from segstream.tools.replay_rows import Where
    >>> _kind(Refusal(Where("f", 2), "bad_row", "date 'soon' is not YYYY-MM-DD"))
    "bad_row: date '' is not YYYY-MM-DD"
    """
    return f"{refusal.reason}: {QUOTED.sub(repr(''), refusal.detail)}"


# ------------------------------------------------------------------------ summary


def summary_lines(history: History, settings: Settings, shop_id: str, now: datetime) -> list[str]:
    """What would be sent, and the settings the worker needs for it."""
    events = [event for _, event in history.events]
    kinds = Counter(event["type"] for event in events)
    shapes = ", ".join(f"{name} ({shape})" for name, shape in history.shapes.items())
    partition = shop_partition(shop_id, settings.topic_partitions)
    lines = [
        f"{PROG}: {history.rows:,} rows of {shapes}: {len(events):,} events of shop {shop_id} "
        f"(partition {partition} of {settings.topic_partitions})",
        "  " + (", ".join(f"{k} {n:,}" for k, n in kinds.most_common()) or "nothing to send"),
    ]
    if events:
        first, last = parse_time(events[0]["occurred_at"]), parse_time(events[-1]["occurred_at"])
        customers = len({event["customer_id"] for event in events})
        lines.append(
            f"  {first.date()} to {last.date()}, {customers:,} customers; every event passes "
            f"the worker's checks (earliest {format_time(settings.earliest_event_time)}, at "
            f"most {MAX_FUTURE_SKEW.days} days ahead)"
        )
        lines += _notes(events, settings, first, last, now)
    return lines


def _notes(
    events: Sequence[Mapping[str, Any]],
    settings: Settings,
    first: datetime,
    last: datetime,
    now: datetime,
) -> list[str]:
    """Settings the worker needs for this history: its earliest event time, its
    de-duplication, the metrics' allowed lateness (the input topics are read independently,
    so a fast replay delivers them out of step), and whether the shop turns live."""
    notes = []
    old = sum(_oldest(event) < EARLIEST_EVENT_TIME for event in events)
    earliest = settings.earliest_event_time
    if old:
        notes.append(
            f"  note: {old:,} events are dated before {format_time(EARLIEST_EVENT_TIME)}, "
            f"accepted with SEGSTREAM_EARLIEST_EVENT_TIME={format_time(earliest)}: the "
            "worker needs the same setting, or it dead-letters them (implausible_time)"
        )
    notes += _dedup_note(events, settings)
    span = (last - first).days
    topics = len({role_for(event) for event in events})
    if topics > 1 and span > settings.metrics_allowed_lateness_days:
        notes.append(
            f"  note: {span:,} days on {topics} topics, which the worker reads independently: "
            f"with SEGSTREAM_METRICS_ALLOWED_LATENESS_DAYS={settings.metrics_allowed_lateness_days}"
            f" some arrive too late for their window; set it to {span} on the worker for the "
            "backfill"
        )
    if now - last <= timedelta(seconds=settings.wall_clock_live_s):
        notes.append(
            "  note: the history ends within SEGSTREAM_WALL_CLOCK_LIVE_S of now: once "
            "handled, the shop is live and its clock follows the wall clock"
        )
    return notes


def _dedup_note(events: Sequence[Mapping[str, Any]], settings: Settings) -> list[str]:
    """Whether sending the history a second time would count some of its events again: a
    customer's ids are remembered only ``dedup_window`` at a time, and only for
    ``dedup_horizon_days`` behind their newest event."""
    per: dict[str, list[datetime]] = {}
    for event in events:
        per.setdefault(event["customer_id"], []).append(parse_time(event["occurred_at"]))
    most = max(len(times) for times in per.values())
    longest = max((max(times) - min(times)).days for times in per.values())
    if most <= settings.dedup_window and longest <= settings.dedup_horizon_days:
        return []
    return [
        f"  note: import this history once: a customer has up to {most:,} events over "
        f"{longest:,} days, more than the worker de-duplicates (SEGSTREAM_DEDUP_WINDOW="
        f"{settings.dedup_window} ids per customer, SEGSTREAM_DEDUP_HORIZON_DAYS="
        f"{settings.dedup_horizon_days}): sent again, their older events count twice"
    ]


# ------------------------------------------------------------------------ sending


class Ticker:
    """Progress on stderr: a line every ``every_s`` seconds (and every ``every`` records,
    if given) with the rate and the time left, and one after the last record."""

    def __init__(self, total: int, every_s: float, every: int | None, say: Say) -> None:
        self.total, self.every_s, self.every, self.say = total, every_s, every, say
        self.started = self.last = time.monotonic()

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        counted = self.every is not None and done % self.every == 0
        if done == self.total or counted or now - self.last >= self.every_s:
            self.say(rate_line("sent", done, self.total, now - self.started))
            self.last = now


Say = Callable[[str], None]


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def replay(
    settings: Settings, history: History, args: argparse.Namespace, say: Say = _say
) -> int:
    """Send the history's events, then (unless ``--no-wait``) wait for the worker and
    print its report; the exit code."""
    events = [event for _, event in history.events]
    await ensure_topics(settings)
    async with Reader(settings) as reader:
        count = len(await reader.partitions(settings.topic(role_for(events[0]))))
        before = await reader.before([shop_partition(args.shop_id, count or 1)])
        receipts: list[RecordMetadata] = []
        ticker = Ticker(len(events), args.progress_s, args.progress_every, say)
        records = [(role_for(event), event) for event in events]
        await publish(records, settings, rate=args.rate, progress=ticker, receipts=receipts)
        if args.wait is None:
            print(f"{PROG}: sent {len(events):,} events; not waiting for the worker (--no-wait)")
            return 0
        ids = {event["event_id"] for event in events}
        outcome = await await_worker(reader, before, receipts, ids, args.wait, say, args.progress_s)
    where = {event["event_id"]: str(place) for place, event in history.events}
    return _report(outcome, settings, where, args)


def _report(
    outcome: Outcome, settings: Settings, where: Mapping[str, str], args: argparse.Namespace
) -> int:
    """Print what the worker did; 0 if it handled every event and dead-lettered none."""
    if outcome.done:
        print(f"{PROG}: the worker (app id {settings.app_id}) handled the {outcome.ours:,} events:")
    else:
        print(
            f"{PROG}: the worker (app id {settings.app_id}) handled about {outcome.handled:,} "
            f"of the {outcome.ours:,} events sent, none in the last {args.wait:g} s: is a "
            "worker with these settings running? (the events are sent: do not send them again, "
            "a worker handles them when it runs)"
        )
    for line in report_lines(outcome, where, args.list):
        print(line)
    if outcome.letters:
        print(
            f"{PROG}: the worker refused {len(outcome.letters):,} of the events (listed above): "
            "fix the cause (a setting that differs from this command's?) and send those rows "
            "again; rows it processed are de-duplicated only within SEGSTREAM_DEDUP_WINDOW ids "
            "per customer and SEGSTREAM_DEDUP_HORIZON_DAYS"
        )
    return 0 if outcome.done and not outcome.letters else 1


# ------------------------------------------------------------------------ command line


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    """argparse type accepting only values that fully match ``pattern``."""

    def check(text: str) -> str:
        if not pattern.fullmatch(text):
            raise argparse.ArgumentTypeError(f"not a valid {what}: {text!r}")
        return text

    return check


def _mapping(text: str) -> tuple[str, str]:
    """argparse type of ``--column NAME=HEADER``."""
    name, sep, header = text.partition("=")
    known = sorted({column for columns in COLUMNS.values() for column in columns})
    if not sep or name.strip() not in known:
        raise argparse.ArgumentTypeError(
            f"expected NAME=HEADER with NAME one of {', '.join(known)}, got {text!r}"
        )
    return name.strip(), header


def _parser() -> OneLineParser:
    """The command line of ``segstream replay``."""
    parser = OneLineParser(
        prog=f"{PROGRAM} {PROG}",
        description="Import a shop's history from CSV files (an order log, a subscriptions\n"
        "export, a billing system's event export), checked row by row as the worker checks\n"
        "events: nothing is sent if a row would be refused. Then wait for the worker and\n"
        "report what it processed, de-duplicated and dead-lettered.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("files", nargs="+", metavar="FILE.csv", help="CSV files with a header row")
    add("--shop-id", required=True, type=_matching(SHOP_ID, "shop id"), help="the shop's id")
    add("--shape", choices=("auto", *SHAPES), default="auto", help="the files' shape (auto)")
    add(
        "--column",
        action="append",
        type=_mapping,
        default=[],
        metavar="NAME=HEADER",
        help="read column NAME from the file's column HEADER (repeat for more)",
    )
    add("--customer-col", help="header of the customer column (as --column customer_id=...)")
    add("--date-col", help="header of the date column (as --column date=...)")
    add("--amount-col", help="header of the amount column (as --column amount=...)")
    add("--currency", default="EUR", type=_matching(CURRENCY, "currency code"), help="(EUR)")
    add("--delimiter", default=",", help="field separator (default ',')")
    add("--assume-utc", action="store_true", help="read times without an offset as UTC")
    add("--rate", type=positive_float, help="max events per second (default: unlimited)")
    add("--progress-s", type=positive_float, default=5.0, help="seconds between progress lines (5)")
    add("--progress-every", type=positive_int, help="also a progress line every N events")
    add("--dry-run", action="store_true", help="check and summarise, send nothing")
    add("--json-lines", action="store_true", help="with --dry-run: print the events too")
    add("--list", type=positive_int, default=20, help="refused rows listed at most (20)")
    waiting = parser.add_mutually_exclusive_group()
    waiting.add_argument(
        "--wait",
        type=positive_float,
        default=120.0,
        metavar="S",
        help="wait for the worker until it handles none of the events for S seconds (120)",
    )
    waiting.add_argument(
        "--no-wait", dest="wait", action="store_const", const=None, help="send, then exit"
    )
    return parser


def _options(args: argparse.Namespace) -> Options:
    columns = dict(args.column)
    for name, given in (("customer_id", args.customer_col), ("date", args.date_col)):
        if given:
            columns[name] = given
    if args.amount_col:
        columns["amount"] = args.amount_col
    shape = None if args.shape == "auto" else args.shape
    return Options(
        args.shop_id, args.currency.upper(), columns, args.delimiter, shape, args.assume_utc
    )


def _load(args: argparse.Namespace) -> History:
    """The files' events, with file problems (unreadable, a column missing) as usage errors."""
    opened = []
    try:
        for name in args.files:
            opened.append(open(name, encoding="utf-8-sig", newline=""))  # noqa: SIM115
        return read_history(list(zip(args.files, opened, strict=True)), _options(args))
    except (OSError, UnicodeDecodeError, RowError) as error:
        raise UsageError(str(error)) from None
    except csv.Error as error:
        raise UsageError(f"not a readable CSV file: {error}") from None
    finally:
        for stream in opened:
            stream.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, read and check the files, then summarise or send and report."""
    args = _parser().parse_args(argv)

    def body() -> int:
        settings = settings_from_environment()
        history = _load(args)
        now = datetime.now(UTC)
        checked = check(history, settings.earliest_event_time, now)
        if checked.refusals:
            for line in refusal_lines(checked, settings.earliest_event_time, args.list):
                print(line, file=sys.stderr)
            return 2
        out = sys.stdout
        if args.json_lines and args.dry_run:
            print_json_lines((event for _, event in history.events), sys.stdout)
            out = sys.stderr
        for line in summary_lines(history, settings, args.shop_id, now):
            print(line, file=out, flush=True)
        if args.dry_run or not history.events:
            return 0
        return _send(settings, history, args)

    return run_cli(PROG, body)


def _send(settings: Settings, history: History, args: argparse.Namespace) -> int:
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # failures are reported below
    try:
        return asyncio.run(replay(settings, history, args))
    except (KafkaError, OSError) as error:
        print(f"{PROG}: kafka error at {settings.kafka_bootstrap}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
