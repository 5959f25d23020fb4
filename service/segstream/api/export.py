"""CSV export of a segment's members: every member, with the columns a mailing or CRM tool
imports (consent, key features, the lifetime model's predictions), streamed in pages so a
segment of 100,000 members takes bounded memory (no HTTP here: ``routes`` streams it).

Cells a spreadsheet would run as a formula (text that starts with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return: OWASP's "CSV injection") are prefixed with ``'``;
customer ids and attributes are the shop's customers' own input.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any

from segstream.api import edge
from segstream.api.edge import BadRequestError
from segstream.api.queries import NotFoundError as NotFoundError
from segstream.api.queries import check_model, check_segment, known_models, lifetime, shop_now
from segstream.domain.customer import CustomerState
from segstream.domain.events import format_time
from segstream.domain.features import CustomerSnapshot
from segstream.engine.view import ReadView
from segstream.learning.retention import HORIZONS
from segstream.observability.logs import get_logger

log = get_logger(__name__)

PAGE = 100
"""Customers read, and members formatted and written, at a time (~25 ms of the event
loop at most: the caller yields to the worker between pages)."""
Column = Callable[[CustomerState, Callable[[], CustomerSnapshot], Callable[[], Any]], Any]

STATE_COLUMNS: dict[str, Column] = {
    "customer_id": lambda state, view, life: state.customer_id,
    "marketing_opt_in": lambda state, view, life: state.marketing_opt_in,
}
FEATURE_COLUMNS = (
    "frequency",
    "recency",
    "monetary_value",
    "order_count",
    "total_spend",
    "days_since_last_purchase",
    "last_purchase",
    "tenure_days",
    "subscription",
    "plan_price",
    "acquisition_channel",
)
LIFETIME_COLUMNS = (
    "p_alive",
    *(f"expected_orders_{days}d" for days in HORIZONS),
    "clv_365d",
    "clv_trend",
    "cant_lose",
)
DEFAULT_FIELDS = (
    "customer_id",
    "marketing_opt_in",
    "since",
    "order_count",
    "total_spend",
    "days_since_last_purchase",
    "p_alive",
    "clv_365d",
)
"""The columns when the request names none."""


def columns() -> list[str]:
    """Every column a request may name."""
    return [*STATE_COLUMNS, "since", *FEATURE_COLUMNS, *LIFETIME_COLUMNS]


def chosen(query: Mapping[str, str]) -> list[str]:
    """The ``fields`` asked for (comma-separated; ``customer_id`` always first), or
    :class:`BadRequestError` naming an unknown one."""
    raw = query.get("fields")
    if raw is None:
        return list(DEFAULT_FIELDS)
    names = [name.strip() for name in raw.split(",") if name.strip()]
    allowed = columns()
    for name in names:
        if name not in allowed:
            raise BadRequestError(
                f"unknown field {edge.shown(name)}; fields are: {', '.join(allowed)}"
            )
    return ["customer_id", *dict.fromkeys(n for n in names if n != "customer_id")]


def check(reader: ReadView, shop_id: str, model: str, segment: str) -> None:
    """:class:`NotFoundError` for an unknown shop, model or segment of the model."""
    shop_now(reader, shop_id)
    check_model(model, known_models(reader, shop_id))
    check_segment(model, segment)


def header(fields: list[str]) -> str:
    """The CSV header line."""
    return _line(fields)


def pages(
    reader: ReadView, shop_id: str, model: str, segment: str, fields: list[str]
) -> Iterator[str]:
    """The members' rows, :data:`PAGE` customers read at a time: each page resumes from
    the last customer id, so the caller may wait (stream) between pages while the
    worker goes on writing."""
    after: str | None = None
    while True:
        states = list(itertools.islice(reader.customers(shop_id, after), PAGE))
        if not states:
            return
        after = states[-1].customer_id
        now = shop_now(reader, shop_id)
        book = reader.book(shop_id)
        rows = []
        for state in states:
            if state.segments.get(model) == segment:
                rows.append(_row(reader, book, state, now, model, fields))
        yield "".join(rows)


def _row(
    reader: ReadView, book: Any, state: CustomerState, now: datetime, model: str, fields: list[str]
) -> str:
    view_cache: list[CustomerSnapshot] = []
    life_cache: list[Any] = []

    def view() -> CustomerSnapshot:
        if not view_cache:
            view_cache.append(reader.snapshot(book, state, now))
        return view_cache[0]

    def life() -> Any:
        if not life_cache:
            life_cache.append(lifetime(reader, state, view()) or {})
        return life_cache[0]

    cells = []
    for name in fields:
        try:
            value = _value(name, state, model, view, life)
        except Exception:  # a defect of segstream's must not cut the file: the cell stays empty
            log.exception("export_cell_failed", shop_id=state.shop_id, column=name)
            value = None
        cells.append(_cell(value))
    return _line(cells)


def _value(
    name: str,
    state: CustomerState,
    model: str,
    view: Callable[[], CustomerSnapshot],
    life: Callable[[], Any],
) -> Any:
    """One column of one member."""
    if name in STATE_COLUMNS:
        return STATE_COLUMNS[name](state, view, life)
    if name == "since":
        since = state.segment_since.get(model)
        return None if since is None else format_time(datetime.fromtimestamp(since, UTC))
    if name in LIFETIME_COLUMNS:
        return life().get(name)
    return getattr(view(), name)


def _cell(value: Any) -> str:
    """One value as CSV text: empty for none, ISO dates, ``true``/``false``, and text a
    spreadsheet would run as a formula prefixed with ``'``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(round(value, 6))
    if not isinstance(value, str):
        return str(value)
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _line(cells: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(cells)
    return buffer.getvalue()
