"""``segstream replay FILE.csv --shop-id SHOP``: publish a shop's transaction log.

Each CSV row (customer, date, amount; the ``lifetimes`` transaction-log shape)
becomes a one-off ``order`` event of the shop, sent in date order. Dates are
``YYYY-MM-DD`` (midnight UTC) or RFC 3339 with an offset. Event ids are derived
from the shop, the row's position and its content, so replaying the same file
again sends the same ids and the service de-duplicates them.

Exit codes: 0 done, 1 Kafka failure, 2 bad arguments, settings or rows (nothing
sent), 130 interrupted. ``--dry-run`` prints the events as JSON lines instead.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from service.core.events import Order
from service.tools.command import OneLineParser, parser_for
from service.tools.publish import Record
from service.tools.simulate import (
    UsageError,
    positive_float,
    positive_int,
    print_json_lines,
    run_cli,
    send,
    settings_from_environment,
)

EVENT_ID_NAMESPACE = uuid.UUID("0b7c4f5e-93d2-4a61-8e1f-2c6d9a4b7e30")
SHOP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
CURRENCY = re.compile(r"[A-Z]{3}")
DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_ID_CHARS = 128


class RowError(ValueError):
    """A CSV row that cannot become an order; the message names the line."""


@dataclass(frozen=True, slots=True)
class Columns:
    """Which CSV columns hold the customer, the date and the amount."""

    customer: str = "customer_id"
    date: str = "date"
    amount: str = "amount"


def row_to_event(
    row: Mapping[str, str | None],
    line: int,
    index: int,
    *,
    shop_id: str,
    currency: str = "EUR",
    columns: Columns = Columns(),
) -> dict[str, Any]:
    """The ``order`` event of one CSV row (``index`` counts data rows from 1).

    >>> event = row_to_event({"customer_id": "c-1", "date": "2025-03-01", "amount": "9.5"},
    ...                      2, 1, shop_id="tea-house-1")
    >>> event["occurred_at"], event["order_id"], event["amount"], event["is_renewal"]
    ('2025-03-01T00:00:00Z', 'row-000001', 9.5, False)
    """
    customer = _field(row, columns.customer, line)
    if len(customer) > MAX_ID_CHARS:
        raise RowError(f"line {line}: customer id is longer than {MAX_ID_CHARS} characters")
    content = "\x1f".join(f"{key}={value}" for key, value in sorted(row.items(), key=str))
    return {
        "schema_version": 1,
        "type": "order",
        "event_id": str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{shop_id}\x1e{index}\x1e{content}")),
        "shop_id": shop_id,
        "customer_id": customer,
        "occurred_at": parse_when(_field(row, columns.date, line), line),
        "order_id": f"row-{index:06d}",
        "amount": parse_amount(_field(row, columns.amount, line), line),
        "currency": currency,
        "is_renewal": False,
    }


def parse_when(text: str, line: int) -> str:
    """``YYYY-MM-DD`` or RFC 3339 (with offset) as an RFC 3339 UTC string with ``Z``.

    >>> parse_when("2025-03-01T10:00:00+01:00", 2)
    '2025-03-01T09:00:00Z'
    """
    try:
        if DATE_ONLY.fullmatch(text):
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise RowError(f"line {line}: date {text!r} is not YYYY-MM-DD or RFC 3339") from None
    if moment.tzinfo is None:
        raise RowError(f"line {line}: date {text!r} has no UTC offset (add Z or +01:00)")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_amount(text: str, line: int) -> float:
    """A non-negative amount with a decimal point, rounded to cents."""
    try:
        amount = float(text)
    except ValueError:
        hint = " (use a dot as the decimal separator)" if "," in text else ""
        raise RowError(f"line {line}: amount {text!r} is not a number{hint}") from None
    if not math.isfinite(amount) or amount < 0:
        raise RowError(f"line {line}: amount {text!r} must be a non-negative number")
    return round(amount, 2)


def _field(row: Mapping[str, str | None], column: str, line: int) -> str:
    """A row's non-empty value in ``column``."""
    value = (row.get(column) or "").strip()
    if not value:
        raise RowError(f"line {line}: {column!r} is empty")
    return value


def read_orders(
    lines: Iterable[str],
    *,
    shop_id: str,
    currency: str = "EUR",
    columns: Columns = Columns(),
    delimiter: str = ",",
) -> list[dict[str, Any]]:
    """All rows of a transaction CSV as order events, sorted by date (ties keep file order)."""
    reader = csv.DictReader(lines, delimiter=delimiter)
    missing = [
        name
        for name in (columns.customer, columns.date, columns.amount)
        if name not in (reader.fieldnames or [])
    ]
    if missing:
        found = ", ".join(reader.fieldnames or []) or "nothing"
        raise RowError(f"line 1: no column {', '.join(map(repr, missing))} (found: {found})")
    events = [
        row_to_event(
            row, reader.line_num, index, shop_id=shop_id, currency=currency, columns=columns
        )
        for index, row in enumerate(reader, start=1)
    ]
    return sorted(events, key=lambda event: _instant(event["occurred_at"]))


def _instant(text: str) -> datetime:
    """An RFC 3339 ``Z`` string as a datetime (strings with and without fractions mis-sort)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    """argparse type accepting only values that fully match ``pattern``."""

    def check(text: str) -> str:
        if not pattern.fullmatch(text):
            raise argparse.ArgumentTypeError(f"not a valid {what}: {text!r}")
        return text

    return check


def _parser() -> OneLineParser:
    """The command line of ``segstream replay``."""
    parser = parser_for("replay", __doc__)
    add = parser.add_argument
    add("file", metavar="FILE.csv", help="transaction CSV with a header row")
    add("--shop-id", required=True, type=_matching(SHOP_ID, "shop id"), help="the shop's id")
    add("--currency", default="EUR", type=_matching(CURRENCY, "currency code"))
    add("--customer-col", default="customer_id", help="customer column (default customer_id)")
    add("--date-col", default="date", help="date column (default date)")
    add("--amount-col", default="amount", help="amount column (default amount)")
    add("--delimiter", default=",", help="field separator (default ',')")
    add("--rate", type=positive_float, help="max events per second (default: unlimited)")
    add("--progress-every", type=positive_int, default=5000, help="progress line interval")
    add("--dry-run", action="store_true", help="print events as JSON lines instead of sending")
    return parser


def _load(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The file's events, with file and row problems as usage errors."""
    columns = Columns(args.customer_col, args.date_col, args.amount_col)
    try:
        with open(args.file, encoding="utf-8-sig", newline="") as stream:
            return read_orders(
                stream,
                shop_id=args.shop_id,
                currency=args.currency,
                columns=columns,
                delimiter=args.delimiter,
            )
    except (OSError, UnicodeDecodeError, csv.Error, RowError) as error:
        raise UsageError(f"{args.file}: {error}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, convert the CSV, then print or publish the orders."""
    args = _parser().parse_args(argv)

    def body() -> int:
        settings = None if args.dry_run else settings_from_environment()
        events = _load(args)
        if settings is None:
            print_json_lines(events, sys.stdout)
            return 0
        records: list[Record] = [(Order.topic_role, event) for event in events]
        return send("replay", settings, records, args.rate, args.progress_every)

    return run_cli("replay", body)


if __name__ == "__main__":
    sys.exit(main())
