"""Answers to the query API's questions, from the worker's tables (no HTTP here).

Every function takes the :class:`~segstream.engine.view.ReadView` of the worker that owns
the shop's partition (reads that fill none of the writer's caches) and returns JSON-ready
data, or raises :class:`NotFoundError` / :class:`BadRequestError` (or, for a segment
definition that breaks its contract, :class:`~segstream.segments.defined.DefinitionError`)
with a message fit for the client.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import fields
from datetime import date, datetime, timedelta
from typing import Any

from segstream.api import edge
from segstream.api.bodies import definition_payload
from segstream.api.edge import BadRequestError as BadRequestError
from segstream.api.edge import NotFoundError as NotFoundError
from segstream.api.edge import json_body as json_body
from segstream.domain.customer import EPOCH_DAY, CustomerState
from segstream.domain.events import ACQUISITION_CHANNELS, format_time
from segstream.domain.features import CustomerSnapshot
from segstream.engine.books import ShopBook
from segstream.engine.view import ReadView
from segstream.learning.lifetime import (
    MAX_WAIT_DAYS,
    LifetimeFit,
    cant_lose,
    clv,
    spend_trend,
    trend_of,
)
from segstream.learning.retention import HORIZONS
from segstream.metrics.journey import UNKNOWN_CHANNEL, Counts, journey_of, total
from segstream.metrics.ledger import UnknownShopError
from segstream.metrics.windows import GRAINS, BadWindowError
from segstream.segments import available_models, is_segment_of, segment_names_hint
from segstream.segments.defined import check_segment_names, compile_definition, validate_definition
from segstream.segments.defined.live import model_name, segment_of

MAX_PAGE = 500
MAX_PREFIX = 128
"""Longest customer-id prefix a search takes (ids are at most 128 characters)."""
MAX_SAMPLE = 100
"""Most matching customer ids a definition preview lists."""
MAX_MONTHS = 36
"""Most months a cohort table or journey shows."""
_ANY = "[^\n\r\u2028\u2029]"
"""ECMA-262's ``.`` (what the document's pattern means by it)."""
DIMENSION = re.compile(
    rf"all|segment:[a-z_]+(:[a-z0-9][a-z0-9_-]{{0,63}})?={_ANY}+"
    r"|experiment:[a-z0-9][a-z0-9_-]{0,63}=[a-z][a-z0-9_-]{0,31}"
    rf"|cohort:[0-9]{{4}}-(0[1-9]|1[0-2])|(channel|cancel_reason|plan|interval):{_ANY}+"
)
"""A metrics dimension, as ``deploy/openapi.json`` documents it (a dimension with no
bookings is not refused: its counts are 0)."""


def shop_now(reader: ReadView, shop_id: str) -> datetime:
    """The shop's stream time; NotFoundError for a shop this worker never saw."""
    now = reader.stream_time(shop_id)
    if now is None:
        raise NotFoundError(f"unknown shop {shop_id!r}")
    return now


def customer(reader: ReadView, shop_id: str, customer_id: str) -> dict[str, Any]:
    """A customer's state, lifetimes features and segments, as of the shop's stream time."""
    now = shop_now(reader, shop_id)
    state = reader.customer(shop_id, customer_id)
    if state is None:
        raise NotFoundError(f"unknown customer {customer_id!r} of shop {shop_id!r}")
    book = reader.book(shop_id)
    view = reader.snapshot(book, state, now)
    models = book.models
    return {
        "shop_id": shop_id,
        "customer_id": customer_id,
        "as_of": format_time(now),
        "segments": dict(sorted(state.segments.items())),
        "features": _features(view),
        "lifetime": lifetime(reader, state, view),
        "journey": None if (journey := journey_of(state)) is None else journey.to_json(),
        "scores": {
            name: explained
            for name, model in models.items()
            if (explained := model.explain(view)) is not None
        },
        "state": {
            "shop_id": shop_id,
            "customer_id": customer_id,
            **{
                key: value
                for key, value in state.to_json().items()
                if key not in ("recent_event_ids", "segments")
            },
        },
    }


def lifetime(
    reader: ReadView, state: CustomerState, view: CustomerSnapshot
) -> dict[str, Any] | None:
    """Expected orders per horizon (the churn model's, see ``segstream.learning.retention``),
    P(alive), expected next order and CLV from the shop's lifetime model (fitted by the
    stream on a sample of the shop's customers, see ``ShopLifetime``), and the "Can't
    lose them" spend-trend flag; None before the shop has a fit or the customer a
    purchase. ``view`` is ``state`` at the shop's stream time."""
    fit: LifetimeFit | None = view.lifetime
    if fit is None or not view.has_purchased:
        return None
    now, model = view.as_of, fit.model
    trend = spend_trend(state.purchase_days, now.date())
    days_to_next = model.expected_days_to_next_order(view.frequency, view.T)
    next_order = now + timedelta(days=days_to_next) if days_to_next <= MAX_WAIT_DAYS else None
    return {
        "p_alive": model.p_alive(view.frequency, view.recency, view.T),
        **{f"expected_orders_{days}d": _expected_orders(view, days) for days in HORIZONS},
        "expected_days_to_next_order": days_to_next if next_order else None,
        "expected_next_order_at": format_time(next_order) if next_order else None,
        "clv_365d": clv(model, view, 365.0),
        "spend_per_30d_recent": None if trend is None else trend.recent_rate,
        "spend_per_30d_before": None if trend is None else trend.historical_rate,
        "clv_trend": trend_of(trend),
        "cant_lose": cant_lose(trend, fit.high_value_rate),
        "fitted_on": EPOCH_DAY.fromordinal(EPOCH_DAY.toordinal() + fit.day).isoformat(),
    }


def _expected_orders(view: CustomerSnapshot, days: int) -> float | None:
    forecast = view.forecast
    return None if forecast is None else forecast.expected_orders(view, days)


def segment_sizes(reader: ReadView, shop_id: str) -> dict[str, Any]:
    """Customers per segment, per model, and the human names of segments that are ids
    (clusters: ``{"cluster": {"c3": "frequent · big baskets"}}``)."""
    now = shop_now(reader, shop_id)
    book = reader.book(shop_id)
    models = {model: dict(sorted(c.items())) for model, c in sorted(book.sizes.items()) if c}
    names = {}
    for model, counts in models.items():
        labelled = {s: label for s in counts if (label := _label(book, model, s))}
        if labelled:
            names[model] = labelled
    return {"shop_id": shop_id, "as_of": format_time(now), "models": models, "names": names}


def _label(book: ShopBook, model: str, segment: str) -> str | None:
    """The human name a model gives one of its segments (None: the segment names itself)."""
    found = book.models.get(model)
    return None if found is None else found.label(segment)


def segment_members(
    reader: ReadView, shop_id: str, model: str, segment: str, query: Mapping[str, str]
) -> dict[str, Any]:
    """One page of the customers in a segment, ordered by customer id; a model the shop
    does not have, or a segment its model cannot name, is :class:`NotFoundError`."""
    shop_now(reader, shop_id)
    limit, offset = paging(query)
    book = reader.book(shop_id)
    check_model(model, known_models(reader, shop_id))
    check_segment(model, segment)
    members = [
        state.customer_id
        for state in reader.customers(shop_id)
        if state.segments.get(model) == segment
    ]
    return {
        "shop_id": shop_id,
        "model": model,
        "segment": segment,
        "name": _label(book, model, segment),
        "total": len(members),
        "limit": limit,
        "offset": offset,
        "customers": members[offset : offset + limit],
    }


def known_models(reader: ReadView, shop_id: str) -> list[str]:
    """The shop's segment models: its learned and rule models, then its defined segments."""
    book = reader.book(shop_id)
    return [*book.models, *(model_name(segment) for segment in sorted(book.definitions.rules))]


def check_model(model: str, known: list[str]) -> None:
    """:class:`NotFoundError` naming the ``known`` models unless ``model`` is one."""
    if model not in known:
        raise NotFoundError(f"unknown model {edge.shown(model)}; known: {', '.join(known)}")


def flows(reader: ReadView, shop_id: str, query: Mapping[str, str]) -> dict[str, Any]:
    """How many customers moved from each segment of ``model`` to each other in one
    window (``grain``, ``start``), counted as the change topic has them
    (:mod:`segstream.metrics.flows`); ``model`` is one of the shop's models now, or one
    that had flows (a deleted defined segment's leaves are counted too)."""
    now = shop_now(reader, shop_id)
    known = known_models(reader, shop_id)
    known += [model for model in reader.flow_models(shop_id) if model not in known]
    model = query.get("model")
    if model is None:
        raise BadRequestError(f"name a model: ?model=<one of {', '.join(known)}>")
    check_model(model, known)
    grain = edge.choice(query, "grain", "month", GRAINS)
    start = edge.day(query, "start") or now.date()
    try:
        found = reader.flows(shop_id, model, grain, start)
    except (BadWindowError, OverflowError) as error:
        raise NotFoundError(f"no such window kept: {error}") from None
    except UnknownShopError as error:
        raise NotFoundError(str(error)) from None
    return {"shop_id": shop_id, "grain": grain, **found.to_json()}


def search_customers(reader: ReadView, shop_id: str, query: Mapping[str, str]) -> dict[str, Any]:
    """The first ``limit`` customer ids of the shop that start with ``prefix`` (all ids
    when empty), in id order: a scan of that key range, no state read."""
    shop_now(reader, shop_id)
    prefix = query.get("prefix", "")
    if len(prefix) > MAX_PREFIX:
        raise BadRequestError(f"prefix must be at most {MAX_PREFIX} characters")
    limit = edge.integer(query, "limit", default=20, low=1, high=MAX_PAGE)
    found = list(itertools.islice(reader.customer_ids(shop_id, prefix), limit + 1))
    return {
        "shop_id": shop_id,
        "prefix": prefix,
        "limit": limit,
        "customers": found[:limit],
        "more": len(found) > limit,
    }


def shops(reader: ReadView, only: str | None) -> list[dict[str, Any]]:
    """The shops this worker holds (``only``: that one shop, if held), with their known
    customers (a scan of their key ranges) and stream time."""
    listed = []
    for shop_id in reader.shop_ids():
        now = reader.stream_time(shop_id)
        if now is None or (only is not None and shop_id != only):
            continue
        customers = sum(1 for _ in reader.customer_ids(shop_id, ""))
        listed.append({"shop_id": shop_id, "customers": customers, "as_of": format_time(now)})
    return listed


def check_segment(model: str, segment: str) -> None:
    """:class:`NotFoundError` unless ``model`` (a known model of the shop) can have
    ``segment``: a name from the model registry's ``segment_names``, or for a defined
    segment its own id."""
    defined = segment_of(model)
    if defined is not None:
        if segment != defined:
            raise NotFoundError(
                f"unknown segment {edge.shown(segment)} of model {model!r}; its one segment"
                f" is {defined!r}"
            )
        return
    kind = available_models()[model]
    if not is_segment_of(kind, segment):
        raise NotFoundError(
            f"unknown segment {edge.shown(segment)} of model {model!r};"
            f" known: {segment_names_hint(kind)}"
        )


def definition_preview(
    reader: ReadView, shop_id: str, body: bytes, query: Mapping[str, str]
) -> dict[str, Any]:
    """How many of the shop's customers a segment definition (``body``) matches now, and
    the first ``limit`` of them by customer id.

    The body is what ``POST /definitions`` takes (a definition without ``version``, or a
    template use; :func:`~segstream.api.bodies.definition_payload`); the answer's version is
    the one stated, or the one a create would assign. One pass over the shop's customers
    (each snapshotted at the shop's stream time, the rule compiled once): the same scan as
    :func:`segment_members`, unbounded like it. An unknown shop is :class:`NotFoundError`;
    a body that is not JSON, a bad ``limit`` or a definition of another shop
    :class:`BadRequestError`; a definition that breaks its contract, or compares with a
    segment its model never assigns, or a rule that fails on one of the shop's customers
    (a defect of segstream's, shown rather than hidden as a live rule's failure is),
    :class:`~segstream.segments.defined.DefinitionError` (with its ``path``).
    """
    now = shop_now(reader, shop_id)
    limit = edge.integer(query, "limit", default=20, low=0, high=MAX_SAMPLE)
    payload = definition_payload(body, shop_id)
    segment_id = payload.get("segment_id")
    if isinstance(segment_id, str):
        payload.setdefault("version", reader.definitions(shop_id).last_version(segment_id) + 1)
    definition = validate_definition(payload)
    check_segment_names(definition)
    rule = compile_definition(definition)
    customers = matching = 0
    sample: list[str] = []
    book = reader.book(shop_id)
    for state in reader.customers(shop_id):  # in customer-id order
        customers += 1
        if rule.strict(state, reader.snapshot(book, state, now)):
            matching += 1
            if len(sample) < limit:
                sample.append(state.customer_id)
    return {
        "shop_id": shop_id,
        "segment_id": definition.segment_id,
        "version": definition.version,
        "as_of": format_time(now),
        "customers": customers,
        "matching": matching,
        "sample": sample,
    }


def window_metrics(reader: ReadView, shop_id: str, query: Mapping[str, str]) -> dict[str, Any]:
    """Churn, retention and MRR metrics of one window (``grain``, ``start``, ``dimension``);
    a window after the shop's stream day or older than the kept history is
    :class:`NotFoundError` (no such window is kept)."""
    now = shop_now(reader, shop_id)
    grain = edge.choice(query, "grain", "month", GRAINS)
    start = edge.day(query, "start") or now.date()
    dimension = query.get("dimension", "all")
    if not DIMENSION.fullmatch(dimension):
        raise BadRequestError(
            f"dimension {edge.shown(dimension)} is not all, segment:<model>=<segment>,"
            " experiment:<id>=<arm>, cohort:YYYY-MM, channel:, cancel_reason:, plan: or"
            " interval:<value>"
        )
    try:
        window = reader.window(shop_id, grain, start, dimension)
    except (BadWindowError, OverflowError) as error:  # grain is checked: out of range
        raise NotFoundError(f"no such window kept: {error}") from None
    except UnknownShopError as error:
        raise NotFoundError(str(error)) from None
    return {"shop_id": shop_id, "grain": grain, **window.to_json()}


def cohorts(reader: ReadView, shop_id: str, query: Mapping[str, str]) -> dict[str, Any]:
    """Signup-month cohort retention table (customers and MRR by months since signup) of
    the last ``months`` months, or of as many as the kept history holds (``months`` in the
    answer is the number shown)."""
    shop_now(reader, shop_id)
    asked = edge.integer(query, "months", default=12, low=1, high=MAX_MONTHS)
    for months in range(asked, 0, -1):  # the ledger refuses a table older than it keeps
        try:
            rows = reader.cohort_table(shop_id, months)
        except BadWindowError:
            continue
        except UnknownShopError as error:
            raise NotFoundError(str(error)) from None
        return {"shop_id": shop_id, "months": months, "cohorts": [r.to_json() for r in rows]}
    raise NotFoundError(f"shop {shop_id!r} keeps no cohort month")


def journey(reader: ReadView, shop_id: str, query: Mapping[str, str]) -> dict[str, Any]:
    """The journey funnel of the cohorts that became aware in each of the last ``months``
    months (the current one included): per month, per acquisition channel and in all;
    ``channel`` keeps one channel's customers only."""
    now = shop_now(reader, shop_id)
    months = edge.integer(query, "months", default=12, low=1, high=MAX_MONTHS)
    channel = query.get("channel")
    if channel is not None and channel not in (*ACQUISITION_CHANNELS, UNKNOWN_CHANNEL):
        known = ", ".join((*ACQUISITION_CHANNELS, UNKNOWN_CHANNEL))
        raise BadRequestError(f"channel must be one of {known}, got {edge.shown(channel)}")
    shown = _months_back(now.date(), months)
    kept = reader.book(shop_id).funnel.months
    rows = [
        (month, name, counts)
        for month in shown
        for name, counts in sorted(kept.get(month, {}).items())
        if channel is None or name == channel
    ]
    by_channel: dict[str, list[Counts]] = {}
    for _, name, counts in rows:
        by_channel.setdefault(name, []).append(counts)
    return {
        "shop_id": shop_id,
        "as_of": format_time(now),
        "months": months,
        "channel": channel,
        "funnel": total(counts for _, _, counts in rows).to_json(),
        "cohorts": [
            {"cohort": month, "funnel": total(c for m, _, c in rows if m == month).to_json()}
            for month in shown
        ],
        "channels": [
            {"channel": name, "funnel": total(found).to_json()}
            for name, found in sorted(by_channel.items())
        ],
    }


def _months_back(today: date, months: int) -> list[str]:
    """The ``months`` calendar months up to ``today``'s, oldest first, as ``YYYY-MM``.

    >>> _months_back(date(2026, 2, 14), 3)
    ['2025-12', '2026-01', '2026-02']
    """
    index = today.year * 12 + today.month - 1
    return [f"{n // 12:04d}-{n % 12 + 1:02d}" for n in range(index - months + 1, index + 1)]


def model_quality(reader: ReadView, shop_id: str) -> dict[str, Any]:
    """Progressive-validation quality and size of each learned model of the shop."""
    shop_now(reader, shop_id)
    return {"shop_id": shop_id, "models": model_reports(reader, shop_id)}


def model_reports(reader: ReadView, shop_id: str) -> dict[str, dict[str, Any]]:
    """``{model: {"quality": {...}, "size_bytes": n}}`` for the shop's models that report
    either (the API and the Prometheus gauges read the same figures)."""
    reports: dict[str, dict[str, Any]] = {}
    sizes = reader.model_sizes(shop_id)
    for name, model in reader.book(shop_id).models.items():
        quality = model.quality()
        if quality:
            reports[name] = {"quality": _as_dict(quality), "size_bytes": sizes.get(name)}
    return reports


def paging(query: Mapping[str, str]) -> tuple[int, int]:
    """``limit`` (1..500, default 100) and ``offset`` (>= 0, default 0).

    >>> paging({"limit": "20", "offset": "40"})
    (20, 40)
    >>> paging({"limit": "0"})
    Traceback (most recent call last):
    ...
    segstream.api.edge.BadRequestError: limit must be an integer from 1 to 500, got '0'
    """
    return (
        edge.integer(query, "limit", default=100, low=1, high=MAX_PAGE),
        edge.integer(query, "offset", default=0, low=0, high=10**9),
    )


NOT_FEATURES = frozenset(
    (
        "shop_id",
        "customer_id",
        "attributes",
        "segments",
        "memory",
        "held",
        "review",
        "lifetime",
        "forecast",
    )
)
"""Fields of a snapshot that are not the customer's features (or are shown elsewhere)."""


def _features(view: CustomerSnapshot) -> dict[str, Any]:
    return {
        item.name: value.isoformat() if isinstance(value, date | datetime) else value
        for item in fields(view)
        if item.name not in NOT_FEATURES
        for value in (getattr(view, item.name),)
    }


def _as_dict(value: Any) -> dict[str, Any]:
    """Quality figures as JSON (NaN, before any label, becomes null)."""
    if not isinstance(value, Mapping):
        as_dict = getattr(value, "as_dict", None)
        value = as_dict() if as_dict else {"value": value}
    return {key: None if _is_nan(v) else v for key, v in value.items()}


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
