"""What a request must be before it reaches a table: path ids, query parameters and JSON
bodies, checked as ``deploy/openapi.json`` documents them.

A path id that breaks its documented pattern is 400 before anything looks it up: a shop id
such as ``__main__`` would otherwise reach the table keys, whose ``__`` namespace is the
per-partition records' (:mod:`segstream.state.keyspace`), and an answer would echo an id no shop
can have. Query integers and dates are read strictly (``int`` would take ``" 5"`` or
``"5_0"``, ``date.fromisoformat`` ``"20250101"``). A body is strict JSON: no NaN or
Infinity, no number beyond the double range, no duplicate key (parsers disagree on which
duplicate wins), as for events (:mod:`segstream.domain.contracts`). Every message quotes at
most :data:`SHOWN_CHARS` of what the client sent, so an answer never echoes a big field.

The patterns here and the document's are held together by ``tests/unit/api/test_openapi.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from segstream.domain.contracts import strict_json

SHOWN_CHARS = 80
"""Most characters of a client's value any message quotes."""
DETAIL_MAX_CHARS = 500
"""Longest ``detail`` (and ``path``) of an error answer."""


class NotFoundError(LookupError):
    """The shop, customer, model, segment or window is unknown (HTTP 404)."""


class BadRequestError(ValueError):
    """A parameter is malformed or out of range (HTTP 400)."""


def shown(value: object) -> str:
    """``repr`` of a client's value, cut to :data:`SHOWN_CHARS` characters.

    >>> shown("x" * 100).endswith("xxx'... (100 characters)"), shown("tea-1")
    (True, "'tea-1'")
    """
    if isinstance(value, str) and len(value) > SHOWN_CHARS:
        return f"{value[:SHOWN_CHARS]!r}... ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}..."


def bounded(text: str, limit: int = DETAIL_MAX_CHARS) -> str:
    """``text`` cut to ``limit`` characters (an error detail quotes what it refuses)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class IdRule:
    """A documented path id: its pattern (matched whole) and how the message names it."""

    pattern: re.Pattern[str]
    what: str

    def check(self, name: str, value: str) -> None:
        """:class:`BadRequestError` naming ``name`` unless ``value`` is such an id."""
        if not self.pattern.fullmatch(value):
            raise BadRequestError(f"{name} {shown(value)} is not {self.what}")


_PRINTABLE = r"[^\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
"""A character of ``envelope.json#/$defs/printable_id``."""
SLUG = r"[a-z0-9][a-z0-9_-]{0,63}"
"""A segment or experiment id: a lower-case slug, a letter or digit first."""

PATH_IDS: dict[str, IdRule] = {
    "shop_id": IdRule(
        re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"),
        "a shop id (a letter or digit, then letters, digits, '.', '_' or '-'; 1 to 64)",
    ),
    "customer_id": IdRule(
        re.compile(f"{_PRINTABLE}{{1,128}}"),
        "a customer id (1 to 128 characters, no control or invisible ones)",
    ),
    "segment_id": IdRule(re.compile(SLUG), "a segment id (a lower-case slug of 1 to 64)"),
    "experiment_id": IdRule(re.compile(SLUG), "an experiment id (a lower-case slug of 1 to 64)"),
    "webhook_id": IdRule(re.compile(r"wh_[0-9a-f]{16}"), "a webhook id (wh_ and 16 hex digits)"),
    "model": IdRule(
        re.compile(f"[a-z][a-z0-9_]{{0,63}}|defined:{SLUG}"),
        "a model name (a built-in model, or defined:<segment_id>)",
    ),
    "segment": IdRule(
        re.compile(f"{_PRINTABLE}{{1,128}}"),
        "a segment name (1 to 128 characters, no control or invisible ones)",
    ),
}
"""Every path parameter of the shop routes, by name."""


def check_path(params: Mapping[str, str]) -> None:
    """:class:`BadRequestError` for the first path parameter that breaks its pattern."""
    for name, value in params.items():
        PATH_IDS[name].check(name, value)


_INTEGER = re.compile(r"-?[0-9]{1,18}")
_DAY = re.compile(r"([0-9]{4})-[0-9]{2}-[0-9]{2}")


def integer(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """Query parameter ``name``: an integer from ``low`` to ``high`` (``default`` when
    absent), or :class:`BadRequestError`.

    >>> integer({"limit": "20"}, "limit", 100, 1, 500)
    20
    >>> integer({"limit": "5_0"}, "limit", 100, 1, 500)
    Traceback (most recent call last):
    ...
    segstream.api.edge.BadRequestError: limit must be an integer from 1 to 500, got '5_0'
    """
    raw = query.get(name)
    if raw is None:
        return default
    value = int(raw) if _INTEGER.fullmatch(raw) else None
    if value is None or not low <= value <= high:
        raise BadRequestError(f"{name} must be an integer from {low} to {high}, got {shown(raw)}")
    return value


def day(query: Mapping[str, str], name: str) -> date | None:
    """Query parameter ``name``: a date ``YYYY-MM-DD`` (None when absent), or
    :class:`BadRequestError`. Year 0 is a valid RFC 3339 date that Python cannot hold: it is
    :data:`date.min`, as far in the past as a date goes.

    >>> day({"start": "2025-03-01"}, "start"), day({"start": "0000-12-31"}, "start")
    (datetime.date(2025, 3, 1), datetime.date(1, 1, 1))
    """
    raw = query.get(name)
    if raw is None:
        return None
    found = _DAY.fullmatch(raw)
    try:
        if found is None:
            raise ValueError(raw)
        if found.group(1) == "0000":
            date.fromisoformat(f"2000{raw[4:]}")  # month and day still must be real
            return date.min
        return date.fromisoformat(raw)
    except ValueError:
        raise BadRequestError(f"{name} must be a date YYYY-MM-DD, got {shown(raw)}") from None


def choice(query: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    """Query parameter ``name``: one of ``allowed`` (``default`` when absent)."""
    raw = query.get(name, default)
    if raw not in allowed:
        raise BadRequestError(f"{name} must be one of {', '.join(allowed)}, got {shown(raw)}")
    return raw


def json_body(body: bytes, what: str) -> Any:
    """The request body (``what`` it should be) as strict JSON, or :class:`BadRequestError`.

    >>> json_body(b'{"name": "a", "name": "b"}', "a definition")
    Traceback (most recent call last):
    ...
    segstream.api.edge.BadRequestError: the body is not JSON: duplicate key 'name'
    """
    if not body.strip():
        raise BadRequestError(f"the body must be {what} as JSON; it is empty")
    try:
        return strict_json(body.decode("utf-8"))
    except RecursionError:
        raise BadRequestError("the body is not JSON: nested too deeply to read") from None
    except UnicodeDecodeError as error:
        raise BadRequestError(f"the body is not JSON: not UTF-8 at byte {error.start}") from None
    except ValueError as error:  # JSONDecodeError, or a refusal of strict_json's
        raise BadRequestError(bounded(f"the body is not JSON: {error}")) from None
