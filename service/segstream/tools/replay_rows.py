"""A shop's history in CSV files as segstream input events: the shapes replay reads.

Three shapes, told apart by their header (``--shape`` forces one; ``--column`` maps
other header names onto these; names match case-insensitively):

* ``orders``, a transaction log (``lifetimes``, CDNOW): ``customer_id, date, amount``,
  optional ``order_id, is_renewal, currency``. Each row is an ``order``.
* ``events``, one row per event with a ``type`` column (a billing system's event or
  activity export): ``type, customer_id, date`` and, as the type needs them, ``plan_id,
  price, interval, tier, currency, amount, order_id, effective_date, reason, channel,
  event_id``. Types: ``signup``, ``order``, ``renewal``, ``plan_change`` (or ``upgrade``,
  ``downgrade``, ``switch``), ``pause``, ``resume``, ``cancellation``.
* ``subscriptions``, one row per subscription (Stripe's or Recharge's subscriptions
  export): ``customer_id, started_at, plan_id, price, interval`` and optional
  ``cancelled_at, ended_at, reason, channel, subscription_id, tier, currency``. Each row
  is a ``signup`` and, once cancelled or ended, a ``cancellation``.

``schemas/examples/replay/README.md`` documents each column with example files. Pure: no
Kafka, no clock. A row that cannot become an event is a :class:`Refusal` naming its file
and line; replay then checks every event against the worker's own contract.
"""

from __future__ import annotations

import csv
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from typing import Any, Literal, get_args

from segstream.domain.contracts import bundled_schema
from segstream.metrics.mrr import monthly_price

EVENT_ID_NAMESPACE = uuid.UUID("0b7c4f5e-93d2-4a61-8e1f-2c6d9a4b7e30")
DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_ID_CHARS = 128
MAX_COMMENT_CHARS = 1000
"""Longest cancellation comment the schema takes (an unknown reason's text goes there)."""

Shape = Literal["orders", "events", "subscriptions"]
SHAPES: tuple[Shape, ...] = get_args(Shape)
COLUMNS: dict[Shape, tuple[str, ...]] = {
    "orders": ("customer_id", "date", "amount", "order_id", "is_renewal", "currency"),
    "events": (
        "type",
        "customer_id",
        "date",
        "plan_id",
        "price",
        "interval",
        "tier",
        "currency",
        "amount",
        "order_id",
        "effective_date",
        "reason",
        "channel",
        "event_id",
    ),
    "subscriptions": (
        "customer_id",
        "started_at",
        "plan_id",
        "price",
        "interval",
        "cancelled_at",
        "ended_at",
        "reason",
        "channel",
        "subscription_id",
        "tier",
        "currency",
    ),
}
"""Each shape's columns (by their names here; ``--column NAME=HEADER`` maps others)."""
REQUIRED: dict[Shape, tuple[str, ...]] = {
    "orders": ("customer_id", "date", "amount"),
    "events": ("type", "customer_id", "date"),
    "subscriptions": ("customer_id", "started_at", "plan_id", "price", "interval"),
}
PLAN_COLUMNS = ("plan_id", "price", "interval")
PLAN_CHANGES = ("plan_change", "upgrade", "downgrade", "switch", "pause", "resume")
ROW_TYPES = ("signup", "order", "renewal", *PLAN_CHANGES, "cancellation")
"""The ``type`` values of the events shape."""
INTERVALS = {
    "week": "week",
    "weekly": "week",
    "month": "month",
    "monthly": "month",
    "quarter": "quarter",
    "quarterly": "quarter",
    "year": "year",
    "yearly": "year",
    "annual": "year",
    "annually": "year",
}
TRUE, FALSE = {"true", "1", "yes", "y", "t"}, {"false", "0", "no", "n", "f", ""}

Row = dict[str, str]
"""One CSV row by the shape's column names, values stripped (a missing column: absent)."""


class RowError(ValueError):
    """A row (or the header, line 1) that cannot become an event."""

    def __init__(self, line: int, problem: str, file: str | None = None) -> None:
        super().__init__(f"{file}: line {line}: {problem}" if file else f"line {line}: {problem}")
        self.line = line
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Where:
    """A row's place: file name and line number (the header is line 1)."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A row that would not become a processed event: ``reason`` is a dead-letter reason
    (what the worker would do with it) or ``bad_row`` (no event can be made of it)."""

    where: Where
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Options:
    """How to read the files: the shop, defaults and the header mapping."""

    shop_id: str
    currency: str = "EUR"
    columns: Mapping[str, str] = field(default_factory=dict)
    """Column name here -> header in the file (``{"customer_id": "Customer ID"}``)."""
    delimiter: str = ","
    shape: Shape | None = None
    """None: detect from the header."""
    assume_utc: bool = False
    """Read times without an offset as UTC (exports whose header says "(UTC)")."""


@dataclass(slots=True)
class History:
    """The events of the files in time order (each with the row it came from), the rows
    refused, how many rows were read and each file's shape."""

    events: list[tuple[Where, dict[str, Any]]] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    rows: int = 0
    shapes: dict[str, Shape] = field(default_factory=dict)


# ------------------------------------------------------------------------ reading files


def read_history(files: Sequence[tuple[str, Iterable[str]]], options: Options) -> History:
    """Every file's rows as events, merged in time order (ties keep file and row order).

    Raises :class:`RowError` (line 1) for a header without a required column; a bad row
    is a refusal and the others are still read, so all problems are listed at once.
    """
    history = History()
    located: list[tuple[datetime, Where, dict[str, Any]]] = []
    for name, lines in files:
        reader = csv.DictReader(lines, delimiter=options.delimiter)
        headers = list(reader.fieldnames or [])
        shape = options.shape or detect_shape(headers, options.columns)
        history.shapes[name] = shape
        try:
            found = header_map(headers, shape, options.columns)
        except RowError as error:
            raise RowError(1, error.problem, name) from None
        rows = ((reader.line_num, raw, _canonical(raw, found)) for raw in reader)
        made, refused, count = _SHAPE_READERS[shape](name, rows, options)
        located += made
        history.refusals += refused
        history.rows += count
    located.sort(key=lambda item: item[0])
    history.events = [(where, event) for _, where, event in located]
    history.refusals.sort(key=lambda refusal: (refusal.where.file, refusal.where.line))
    return history


def detect_shape(headers: Sequence[str], columns: Mapping[str, str]) -> Shape:
    """``events`` with a type column, ``subscriptions`` with a start column, else ``orders``."""
    names = {_folded(header) for header in headers}
    markers: tuple[tuple[Shape, str], ...] = (("events", "type"), ("subscriptions", "started_at"))
    for shape, marker in markers:
        if _folded(columns.get(marker, marker)) in names:
            return shape
    return "orders"


def header_map(headers: Sequence[str], shape: Shape, columns: Mapping[str, str]) -> dict[str, str]:
    """Column name -> the file's header for it (exact, else case- and space-insensitive);
    RowError naming the required columns that are missing."""
    exact = set(headers)
    folded = {_folded(header): header for header in reversed(headers)}
    found, missing = {}, []
    for name in COLUMNS[shape]:
        wanted = columns.get(name, name)
        header = wanted if wanted in exact else folded.get(_folded(wanted))
        if header is not None:
            found[name] = header
        elif name in REQUIRED[shape]:
            missing.append(repr(wanted) if wanted == name else f"{wanted!r} (for {name})")
    if missing:
        seen = ", ".join(headers) or "nothing"
        raise RowError(1, f"no column {', '.join(missing)} for the {shape} shape (found: {seen})")
    return found


def _folded(header: str) -> str:
    """``" Customer ID "`` -> ``customer_id``."""
    return re.sub(r"[\s-]+", "_", header.strip().lower())


def _canonical(raw: Mapping[str | None, Any], found: Mapping[str, str]) -> Row:
    """The row by column names, values stripped."""
    return {name: str(raw.get(header) or "").strip() for name, header in found.items()}


RawRow = Mapping[str | None, Any]
Rows = Iterable[tuple[int, RawRow, Row]]
Made = tuple[list[tuple[datetime, Where, dict[str, Any]]], list[Refusal], int]


def _row_content(raw: RawRow) -> str:
    """A row's content as a string, for event ids (the same row gives the same id)."""
    return "\x1f".join(f"{key}={value}" for key, value in sorted(raw.items(), key=str))


def _event_id(*parts: object) -> str:
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, "\x1e".join(map(str, parts))))


# ------------------------------------------------------------------------ the orders shape


def _read_orders(name: str, rows: Rows, options: Options) -> Made:
    made, refused, count = [], [], 0
    for index, (line, raw, row) in enumerate(rows, start=1):
        count = index
        try:
            event = order_of(row, raw, line, index, options)
        except RowError as error:
            refused.append(Refusal(Where(name, line), "bad_row", error.problem))
            continue
        made.append((_instant(event["occurred_at"]), Where(name, line), event))
    return made, refused, count


def order_of(row: Row, raw: RawRow, line: int, index: int, options: Options) -> dict[str, Any]:
    """The ``order`` event of one orders-shape row (``index`` counts data rows from 1);
    its id is derived from the shop, the row's position and its content."""
    return {
        **_envelope("order", _event_id(options.shop_id, index, _row_content(raw)), options),
        "customer_id": customer_of(row, line),
        "occurred_at": parse_when(_field(row, "date", line), line, options.assume_utc),
        "order_id": row.get("order_id") or f"row-{index:06d}",
        "amount": parse_amount(_field(row, "amount", line), line),
        "currency": _currency(row, options),
        "is_renewal": _flag(row.get("is_renewal", ""), "is_renewal", line),
    }


# ------------------------------------------------------------------------ the subscriptions shape


def _read_subscriptions(name: str, rows: Rows, options: Options) -> Made:
    made, refused, count = [], [], 0
    for index, (line, _raw, row) in enumerate(rows, start=1):
        count = index
        try:
            events = subscription_events(row, line, options)
        except RowError as error:
            refused.append(Refusal(Where(name, line), "bad_row", error.problem))
            continue
        made += [(_instant(e["occurred_at"]), Where(name, line), e) for e in events]
    return made, refused, count


def subscription_events(row: Row, line: int, options: Options) -> list[dict[str, Any]]:
    """A subscription row's ``signup`` and, if it was cancelled or has ended, its
    ``cancellation`` (requested at ``cancelled_at``, effective at ``ended_at``). Ids come
    from the subscription (its id, else customer and start), not from the row, so a later
    export of the same subscription, now cancelled, repeats the signup's id."""
    customer = customer_of(row, line)
    started = parse_when(_field(row, "started_at", line), line, options.assume_utc)
    key = row.get("subscription_id") or f"{customer}\x1f{started}"
    plan = _plan(row, line, options, None)
    signup = {
        **_envelope("signup", _event_id(options.shop_id, "subscription", key, "signup"), options),
        "customer_id": customer,
        "occurred_at": started,
        "plan": plan,
        "acquisition_channel": _channel(row),
    }
    requested, ended = row.get("cancelled_at", ""), row.get("ended_at", "")
    if not (requested or ended):
        return [signup]
    cancel_id = _event_id(options.shop_id, "subscription", key, "cancellation")
    cancellation = {
        **_envelope("cancellation", cancel_id, options),
        "customer_id": customer,
        "occurred_at": parse_when(requested or ended, line, options.assume_utc),
        **_reason(row),
    }
    if ended:
        cancellation["effective_at"] = parse_when(ended, line, options.assume_utc)
    return [signup, cancellation]


# ------------------------------------------------------------------------ the events shape


@dataclass(slots=True)
class _Draft:
    """An events-shape row read, before the customer's earlier rows fill in its plan."""

    where: Where
    at: datetime
    kind: str
    row: Row
    event: dict[str, Any]


@dataclass(slots=True)
class _Plans:
    """A customer's plan in force while their rows are read in time order, and the plan
    a pause interrupted (a resume without plan columns resumes it)."""

    current: dict[str, Any] | None = None
    paused: dict[str, Any] | None = None


def _read_events(name: str, rows: Rows, options: Options) -> Made:
    drafts, refused, count = [], [], 0
    for index, (line, raw, row) in enumerate(rows, start=1):
        count = index
        try:
            drafts.append(_draft(Where(name, line), row, raw, index, options))
        except RowError as error:
            refused.append(Refusal(Where(name, line), "bad_row", error.problem))
    drafts.sort(key=lambda draft: draft.at)
    plans: dict[str, _Plans] = {}
    made = []
    for draft in drafts:
        try:
            event = _complete(
                draft, plans.setdefault(draft.event["customer_id"], _Plans()), options
            )
        except RowError as error:
            refused.append(Refusal(draft.where, "bad_row", error.problem))
            continue
        made.append((draft.at, draft.where, event))
    return made, refused, count


def _draft(where: Where, row: Row, raw: RawRow, index: int, options: Options) -> _Draft:
    """What a row says by itself: its type, customer, time and event id."""
    line = where.line
    kind = _field(row, "type", line).lower().replace("-", "_").replace(" ", "_")
    if kind not in ROW_TYPES:
        raise RowError(line, f"type {kind!r} is not one of {', '.join(ROW_TYPES)}")
    stamp = parse_when(_field(row, "date", line), line, options.assume_utc)
    event_id = row.get("event_id") or _event_id(options.shop_id, "events", index, _row_content(raw))
    type_name = {"renewal": "order"}.get(kind, kind)
    if kind in PLAN_CHANGES:
        type_name = "plan_changed"
    event = {
        **_envelope(type_name, event_id, options),
        "customer_id": customer_of(row, line),
        "occurred_at": stamp,
    }
    return _Draft(where, _instant(stamp), kind, row, event)


def _complete(draft: _Draft, plans: _Plans, options: Options) -> dict[str, Any]:
    """The row's event, its plan filled in from the customer's earlier rows where the row
    leaves plan columns empty; ``plans`` follows the change."""
    event, row, line, kind = draft.event, draft.row, draft.where.line, draft.kind
    if kind == "signup":
        plan = _plan(row, line, options, plans.current)
        event |= {"plan": plan, "acquisition_channel": _channel(row)}
        plans.current, plans.paused = plan, None
    elif kind in PLAN_CHANGES:
        _plan_change(event, kind, row, line, options, plans)
    elif kind == "cancellation":
        event |= _reason(row)
        effective = row.get("effective_date")
        if effective:
            event["effective_at"] = parse_when(effective, line, options.assume_utc)
    else:
        event |= {
            "order_id": row.get("order_id") or f"row-{line:06d}",
            "amount": parse_amount(_field(row, "amount", line), line),
            "currency": _currency(row, options),
            "is_renewal": kind == "renewal",
        }
    return event


def _plan_change(
    event: dict[str, Any], kind: str, row: Row, line: int, options: Options, plans: _Plans
) -> None:
    """A ``plan_changed`` event: a pause is its plan at price 0, a resume the plan the pause
    interrupted (unless the row names one), a ``plan_change`` an upgrade, downgrade or
    switch by the monthly price before and after."""
    before = plans.current
    plan = _plan(row, line, options, plans.paused or before if kind == "resume" else before)
    if kind == "pause":
        plan["price"] = 0.0
    change = _change_kind(kind, before, plan, plans.paused is not None)
    plans.paused = (plans.paused or before) if change == "pause" else None
    plans.current = plan
    event |= {"plan": plan, "change": change}


def _change_kind(
    kind: str, before: Mapping[str, Any] | None, plan: Mapping[str, Any], paused: bool
) -> str:
    """The schema's ``change`` of a row: as its type says, or, for ``plan_change``, by
    price: to 0 a pause, from a pause a resume, else up, down or a switch."""
    if kind != "plan_change":
        return kind
    after = monthly_price(plan["price"], plan["interval"])
    if after == 0:
        return "pause"
    if paused:
        return "resume"
    if before is None:
        return "switch"
    was = monthly_price(before["price"], before["interval"])
    return "upgrade" if after > was else "downgrade" if after < was else "switch"


# ------------------------------------------------------------------------ fields


def _envelope(type_name: str, event_id: str, options: Options) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "type": type_name,
        "event_id": event_id,
        "shop_id": options.shop_id,
    }


def customer_of(row: Row, line: int) -> str:
    """The row's customer id (the contract's checks of its characters come later)."""
    customer = _field(row, "customer_id", line)
    if len(customer) > MAX_ID_CHARS:
        raise RowError(line, f"customer id is longer than {MAX_ID_CHARS} characters")
    return customer


def _plan(
    row: Row, line: int, options: Options, fallback: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The row's plan; columns it leaves empty come from ``fallback`` (the customer's plan
    before the row) unless the row names another plan, or the row is refused."""
    given = {name: row.get(name, "") for name in (*PLAN_COLUMNS, "tier")}
    if fallback is not None and given["plan_id"] not in ("", fallback["plan_id"]):
        fallback = None
    missing = [name for name in PLAN_COLUMNS if not given[name]]
    if missing and fallback is None:
        raise RowError(
            line,
            f"no plan: {', '.join(missing)} empty, and no earlier row of the customer "
            "has this plan",
        )
    plan = dict(fallback or {})
    if given["plan_id"]:
        plan["plan_id"] = given["plan_id"]
    if given["price"]:
        plan["price"] = parse_amount(given["price"], line, "price")
    if given["interval"]:
        plan["interval"] = _interval(given["interval"], line)
    if given["tier"]:
        plan["tier"] = given["tier"]
    if row.get("currency") or "currency" not in plan:
        plan["currency"] = _currency(row, options)
    return plan


def _interval(text: str, line: int) -> str:
    interval = INTERVALS.get(text.strip().lower())
    if interval is None:
        known = ", ".join(sorted(set(INTERVALS.values())))
        raise RowError(line, f"interval {text!r} is not one of {known} (or monthly, yearly, ...)")
    return interval


def _currency(row: Row, options: Options) -> str:
    return (row.get("currency") or options.currency).upper()


@cache
def _enum(schema: str, prop: str) -> tuple[str, ...]:
    """An enum of an event schema (the contract's list, not a copy)."""
    values: list[str] = bundled_schema(schema)["properties"][prop]["enum"]
    return tuple(values)


def _channel(row: Row) -> str:
    """The signup's acquisition channel; one the schema does not know is ``other``."""
    channel = _folded(row.get("channel", ""))
    return channel if channel in _enum("signup", "acquisition_channel") else "other"


def _reason(row: Row) -> dict[str, str]:
    """The cancellation's reason; empty is ``unknown``, a text the schema does not list is
    ``other`` with the text kept as the comment."""
    text = row.get("reason", "")
    reason = _folded(text) or "unknown"
    if reason in _enum("cancellation", "reason"):
        return {"reason": reason}
    return {"reason": "other", "comment": text[:MAX_COMMENT_CHARS]}


def _field(row: Row, column: str, line: int) -> str:
    """A row's non-empty value in ``column``."""
    value = row.get(column, "")
    if not value:
        raise RowError(line, f"{column!r} is empty")
    return value


def _flag(text: str, column: str, line: int) -> bool:
    folded = text.strip().lower()
    if folded in TRUE or folded in FALSE:
        return folded in TRUE
    raise RowError(line, f"{column} {text!r} is not true or false")


def parse_when(text: str, line: int, assume_utc: bool = False) -> str:
    """``YYYY-MM-DD`` (midnight UTC) or an ISO 8601 / RFC 3339 time with an offset (without
    one only if ``assume_utc``), as an RFC 3339 UTC string with ``Z``.

    >>> parse_when("2025-03-01T10:00:00+01:00", 2)
    '2025-03-01T09:00:00Z'
    >>> parse_when("2025-03-01 10:00", 2, assume_utc=True)
    '2025-03-01T10:00:00Z'
    """
    try:
        if DATE_ONLY.fullmatch(text):
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise RowError(line, f"date {text!r} is not YYYY-MM-DD or RFC 3339") from None
    if moment.tzinfo is None:
        if not assume_utc:
            hint = "add Z or +01:00, or pass --assume-utc"
            raise RowError(line, f"date {text!r} has no UTC offset ({hint})")
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    except OverflowError:
        raise RowError(line, f"date {text!r} is out of range") from None


def parse_amount(text: str, line: int, what: str = "amount") -> float:
    """A non-negative amount with a decimal point, rounded to cents."""
    try:
        amount = float(text)
    except ValueError:
        hint = " (use a dot as the decimal separator)" if "," in text else ""
        raise RowError(line, f"{what} {text!r} is not a number{hint}") from None
    if not math.isfinite(amount) or amount < 0:
        raise RowError(line, f"{what} {text!r} must be a non-negative number")
    return round(amount, 2)


def _instant(text: str) -> datetime:
    """An RFC 3339 ``Z`` string as a datetime (strings with and without fractions mis-sort)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


_SHAPE_READERS = {
    "orders": _read_orders,
    "events": _read_events,
    "subscriptions": _read_subscriptions,
}
