"""Deterministic bad input records, each with the dead-letter reason segstream must give it.

For fuzzing the worker end to end: :func:`bad_records` mixes :data:`KINDS` kinds of broken
records (not UTF-8, broken JSON, schema violations, hidden characters in ids, oversize
values, implausible times, events on the wrong topic, ...) for the given shops. It is pure:
the same arguments give the same records, byte for byte, and it needs no broker. A test
tool, not a product feature (no command publishes it), so it is not installed.

>>> role, raw, reason = bad_records(seed=1, count=1, shop_ids=["roastery-42"])[0]
>>> from segstream.domain.contracts import EVENT_TYPES, parse_event
>>> parse_event(raw, EVENT_TYPES[role]).reason == reason
True
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, NamedTuple

from segstream.domain.contracts import (
    EVENT_TYPES,
    EXAMPLE_DIR,
    INPUT_ROLES,
    Rejection,
    RejectReason,
    bundled_schema,
    parse_event,
    schema_path,
)
from segstream.domain.events import Cancellation, Order, Signup, format_time

LARGEST_RECORD = 950_000
"""No generated value is longer (the broker accepts records up to about 1 MB)."""

_FIRST_DAY = datetime(2025, 6, 1, tzinfo=UTC)
"""Valid events happen within a year from here: in the past, so never implausible."""


class BadRecord(NamedTuple):
    """An input record value, the topic role it is sent to, and the reason it must get."""

    role: str
    value: bytes
    reason: RejectReason


def _encode(event: Any, *, ascii_only: bool = True) -> bytes:
    """JSON as a platform would send it (escaped, or raw UTF-8 with ``ascii_only=False``)."""
    return json.dumps(event, ensure_ascii=ascii_only).encode()


# --- valid events, the raw material -------------------------------------------------------


def _envelope(rng: random.Random, kind: str, shop_id: str) -> dict[str, Any]:
    """Fields every event carries, with a fresh event id and a past occurred_at."""
    moment = _FIRST_DAY + timedelta(seconds=rng.randrange(365 * 86_400))
    return {
        "schema_version": 1,
        "type": kind,
        "event_id": f"bad-{rng.getrandbits(64):016x}",
        "shop_id": shop_id,
        "customer_id": f"cust-{rng.randrange(100_000):05d}",
        "occurred_at": format_time(moment),
    }


@cache
def _examples(type_name: str) -> tuple[dict[str, Any], ...]:
    """The valid examples of an event type (``schemas/examples/v1/<type>/valid``)."""
    paths = sorted((EXAMPLE_DIR / type_name / "valid").glob("*.json"))
    if not paths:
        raise RuntimeError(f"no valid example of {type_name!r} events in {EXAMPLE_DIR}")
    return tuple(json.loads(path.read_text(encoding="utf-8")) for path in paths)


def valid_event(rng: random.Random, role: str, shop_id: str) -> dict[str, Any]:
    """A valid event of the type ``role`` carries (the base every bad record is made from):
    one of the type's valid schema examples, with a fresh envelope."""
    kind = EVENT_TYPES[role].type_name
    example = copy.deepcopy(rng.choice(_examples(kind)))
    return {**example, **_envelope(rng, kind, shop_id)}


# --- the kinds of bad record --------------------------------------------------------------

Made = tuple[bytes, RejectReason]
Maker = Callable[[random.Random, str, dict[str, Any]], Made]


def _not_utf8(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
    """The event encoded as Latin-1 (``ë`` becomes a byte that cannot start UTF-8; what
    Latin-1 has no byte for becomes ``?``)."""
    event["customer_id"] = "Zoë"
    raw = json.dumps(event, ensure_ascii=False).encode("latin-1", errors="replace")
    return raw, "undecodable"


def _binary_garbage(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
    """Random bytes starting with 0xFF (never valid UTF-8), as from a wrong serializer."""
    return b"\xff" + rng.randbytes(rng.randrange(1, 200)), "undecodable"


def _empty(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
    """An empty (not null) value."""
    return b"", "invalid_json"


def _utf8_bom(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
    """A valid event behind a UTF-8 byte-order mark: not JSON (RFC 8259 forbids it)."""
    return b"\xef\xbb\xbf" + _encode(event), "invalid_json"


def _truncated(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
    """A valid event cut off: any strict prefix of a JSON object is invalid."""
    raw = _encode(event)
    return raw[: rng.randrange(1, len(raw))], "invalid_json"


def _not_an_object(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
    """A JSON value that is not an object: the event in an array, a string, a number, null."""
    value = rng.choice([[event], event["event_id"], 42, None])
    return _encode(value), "invalid_json"


def _literal(text: str) -> Maker:
    """A kind that puts the non-JSON number ``text`` (NaN, Infinity, 1e999) in a field."""

    def make(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
        field = rng.choice(
            ["amount" if role == Order.topic_role else "schema_version", "customer_id"]
        )
        event[field] = "@@literal@@"
        return _encode(event).replace(b'"@@literal@@"', text.encode()), "invalid_json"

    make.__doc__ = f"A field holding {text}, which is not a JSON number."
    return make


def _duplicate_key(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
    """A key given twice (parsers disagree on which one wins)."""
    field = rng.choice(sorted(event))
    extra = _encode({field: "other"})[1:-1]
    return b"{" + extra + b", " + _encode(event)[1:], "invalid_json"


def _raw_control(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
    """An unescaped tab or newline inside a string: invalid JSON."""
    event["customer_id"] = "cust@@ctl@@1"
    raw = _encode(event).replace(b"@@ctl@@", rng.choice([b"\t", b"\n", b"\x00"]))
    return raw, "invalid_json"


def _lone_surrogate(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
    """A ``\\ud800`` escape with no partner: no UTF-8 form, so not storable."""
    event["customer_id"] = "cust@@sur@@"
    return _encode(event).replace(b"@@sur@@", b"\\ud83d"), "invalid_json"


def _deeply_nested(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
    """20 000 nested arrays (40 KB): beyond any parser's recursion limit."""
    depth = 20_000
    raw = _encode(event)
    return raw[:-1] + b', "x": ' + b"[" * depth + b"]" * depth + b"}", "invalid_json"


@cache
def _required(role: str) -> tuple[str, ...]:
    """The schema's required fields of the event type ``role`` carries, but ``type`` (its
    kinds of wrong are kinds of their own) and ``shop_id`` (the record stays keyable)."""
    schema = json.loads(schema_path(EVENT_TYPES[role].type_name).read_text(encoding="utf-8"))
    return tuple(name for name in schema["required"] if name not in ("type", "shop_id"))


def _missing_field(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
    """A required field left out (never shop_id, so the record can still be keyed)."""
    del event[rng.choice(_required(role))]
    return _encode(event), "schema_invalid"


def _wrong_type(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
    """A field of the wrong JSON type: numbers as strings, strings as numbers, and so on."""
    field = rng.choice(_required(role))
    value = event[field]
    event[field] = str(value) if isinstance(value, int | float) else [value]
    return _encode(event), "schema_invalid"


def _extra_field(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
    """A field the contract does not have (a typo or an unannounced addition)."""
    event[rng.choice(["occured_at", "email", "customer_email", "Type"])] = "x"
    return _encode(event), "schema_invalid"


def _unknown_version(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
    """A schema_version this segstream does not know."""
    event["schema_version"] = rng.choice([0, 2, 99])
    return _encode(event), "schema_invalid"


def _unknown_type(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
    """An event type that does not exist (or with the wrong case)."""
    event["type"] = rng.choice(["refund", "Order", "signups", ""])
    return _encode(event), "schema_invalid"


def _hidden_character(char: str, field: str, *, ascii_only: bool) -> Maker:
    """A kind that hides ``char`` in an id (escaped as ``\\uXXXX``, or raw UTF-8)."""

    def make(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
        value = str(event[field])
        at = rng.randrange(len(value) + 1)
        event[field] = value[:at] + char + value[at:]
        return _encode(event, ascii_only=ascii_only), "schema_invalid"

    make.__doc__ = f"U+{ord(char):04X} inside {field}."
    return make


def _sized(size: int) -> Maker:
    """A kind of an otherwise valid event padded to about ``size`` bytes: too_large."""

    def make(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
        target = size + rng.randrange(size // 50)
        event["note"] = ""
        event["note"] = "x" * (target - len(_encode(event)))
        return _encode(event), "too_large"

    make.__doc__ = f"A value of about {size} bytes."
    return make


def _occurred_at(stamp: str) -> Maker:
    """A kind of an otherwise valid event that happened at ``stamp``: implausible_time."""

    def make(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
        event["occurred_at"] = stamp
        return _encode(event), "implausible_time"

    make.__doc__ = f"occurred_at {stamp}."
    return make


def _wrong_topic(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
    """A valid event of another type than the topic for ``role`` carries."""
    other = rng.choice([r for r in INPUT_ROLES if r != role])
    return _encode(valid_event(rng, other, event["shop_id"])), "wrong_topic"


def _absurd_effective_at(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
    """A cancellation effective in 2099 or in 1999."""
    event["effective_at"] = rng.choice(["2099-12-31T00:00:00Z", "1999-12-31T23:59:59Z"])
    return _encode(event), "implausible_time"


def _negative_money(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
    """A negative order amount or plan price."""
    if role == Order.topic_role:
        event["amount"] = -rng.randrange(1, 100) / 4
    else:
        event["plan"]["price"] = -14.9
    return _encode(event), "schema_invalid"


def _bad_currency(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
    """A currency that is not three upper-case letters."""
    code = rng.choice(["eur", "EURO", "E1R", "EUR\n", "€"])
    target = event if role == Order.topic_role else event["plan"]
    target["currency"] = code
    return _encode(event, ascii_only=False), "schema_invalid"


def _bad_timestamp(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
    """An occurred_at outside the RFC 3339 profile (no offset, impossible date, epoch ms)."""
    event["occurred_at"] = rng.choice(
        ["2026-03-01T09:30:00", "2026-02-30T09:30:00Z", "1772357400000", "01/03/2026 09:30"]
    )
    return _encode(event), "schema_invalid"


def _money(text: str) -> Maker:
    """An order amount or plan price of ``text`` (a JSON number beyond the contract's
    maximum, though within the double range)."""

    def make(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
        if role == Order.topic_role:
            event["amount"] = "@@money@@"
        else:
            event["plan"]["price"] = "@@money@@"
        return _encode(event).replace(b'"@@money@@"', text.encode()), "schema_invalid"

    return make


def _twenty_digits(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
    """A 20-digit integer: an item quantity, or a signup's attribute (beyond 64 bits)."""
    if role == Order.topic_role:
        event["items"] = [{"sku": "S", "category": "c", "quantity": "@@n@@", "unit_price": 1}]
    else:
        event["attributes"] = {"points": "@@n@@"}
    return _encode(event).replace(b'"@@n@@"', b"98765432109876543210"), "schema_invalid"


def _nested_attribute(rng: random.Random, role: str, event: dict[str, Any]) -> Made:
    """An attribute holding arrays 40 deep (parsable, but not a string list)."""
    nested: Any = "x"
    for _ in range(40):
        nested = [nested]
    event["attributes"] = {"deep": nested}
    return _encode(event), "schema_invalid"


_KINDS: dict[str, tuple[Maker, tuple[str, ...]]] = {
    "not_utf8": (_not_utf8, INPUT_ROLES),
    "binary_garbage": (_binary_garbage, INPUT_ROLES),
    "empty": (_empty, INPUT_ROLES),
    "utf8_bom": (_utf8_bom, INPUT_ROLES),
    "truncated_json": (_truncated, INPUT_ROLES),
    "not_an_object": (_not_an_object, INPUT_ROLES),
    "nan": (_literal("NaN"), INPUT_ROLES),
    "infinity": (_literal("-Infinity"), INPUT_ROLES),
    "number_out_of_range": (_literal("1e999"), INPUT_ROLES),
    "duplicate_key": (_duplicate_key, INPUT_ROLES),
    "raw_control_character": (_raw_control, INPUT_ROLES),
    "lone_surrogate": (_lone_surrogate, INPUT_ROLES),
    "deeply_nested": (_deeply_nested, INPUT_ROLES),
    "missing_field": (_missing_field, INPUT_ROLES),
    "wrong_type": (_wrong_type, INPUT_ROLES),
    "extra_field": (_extra_field, INPUT_ROLES),
    "unknown_schema_version": (_unknown_version, INPUT_ROLES),
    "unknown_type": (_unknown_type, INPUT_ROLES),
    "wrong_topic": (_wrong_topic, INPUT_ROLES),
    "nul_in_event_id": (_hidden_character("\x00", "event_id", ascii_only=True), INPUT_ROLES),
    "bidi_override_in_customer_id": (
        _hidden_character("\u202e", "customer_id", ascii_only=False),
        INPUT_ROLES,
    ),
    "zero_width_in_customer_id": (
        _hidden_character("\u200b", "customer_id", ascii_only=False),
        INPUT_ROLES,
    ),
    "bom_in_event_id": (_hidden_character("\ufeff", "event_id", ascii_only=False), INPUT_ROLES),
    "c1_control_in_customer_id": (
        _hidden_character("\x85", "customer_id", ascii_only=True),
        INPUT_ROLES,
    ),
    "oversize_70kb": (_sized(70_000), INPUT_ROLES),
    "oversize_900kb": (_sized(900_000), INPUT_ROLES),
    "occurred_in_1970": (_occurred_at("1970-01-01T00:00:00Z"), INPUT_ROLES),
    "occurred_in_2099": (_occurred_at("2099-06-01T12:00:00Z"), INPUT_ROLES),
    "effective_at_absurd": (_absurd_effective_at, (Cancellation.topic_role,)),
    "negative_money": (_negative_money, (Order.topic_role, Signup.topic_role)),
    "bad_currency": (_bad_currency, (Order.topic_role, Signup.topic_role)),
    "bad_timestamp": (_bad_timestamp, INPUT_ROLES),
    "money_1e308": (_money("1e308"), (Order.topic_role, Signup.topic_role)),
    "money_1e18": (_money("1000000000000000000"), (Order.topic_role, Signup.topic_role)),
    "money_just_above_maximum": (_money("1000000000.01"), (Order.topic_role, Signup.topic_role)),
    "integer_20_digits": (_twenty_digits, (Order.topic_role, Signup.topic_role)),
    "nested_attribute": (_nested_attribute, (Signup.topic_role,)),
}
KINDS: tuple[str, ...] = tuple(_KINDS)
"""The names of the kinds of bad record, each a different way of being wrong."""


def bad_record(rng: random.Random, kind: str, shop_id: str) -> BadRecord:
    """One record of ``kind`` (a name in KINDS) for ``shop_id``."""
    make, roles = _KINDS[kind]
    role = rng.choice(roles)
    value, reason = make(rng, role, valid_event(rng, role, shop_id))
    return BadRecord(role, value, reason)


def _check_shops(shop_ids: list[str]) -> None:
    """ValueError unless every shop id is valid (else the records fail for another reason)."""
    if not shop_ids:
        raise ValueError("shop_ids must not be empty")
    rng = random.Random(0)
    for shop_id in shop_ids:
        if isinstance(parse_event(_encode(valid_event(rng, INPUT_ROLES[0], shop_id))), Rejection):
            raise ValueError(f"not a valid shop_id: {shop_id!r}")


def bad_records(seed: int, count: int, shop_ids: list[str]) -> list[BadRecord]:
    """``count`` bad records, ``(topic_role, value, expected_reason)``, for ``shop_ids``.

    Every kind in KINDS appears ``count // len(KINDS)`` or one more times (so ``count >=
    len(KINDS)`` gives all of them), in an order shuffled by ``seed``; each record is
    ``parse_event(value, EVENT_TYPES[topic_role])``'s ``expected_reason``.
    """
    _check_shops(shop_ids)
    rng = random.Random(seed)
    rounds, rest = divmod(count, len(KINDS))
    kinds = list(KINDS) * rounds + rng.sample(KINDS, rest)
    rng.shuffle(kinds)
    return [bad_record(rng, kind, rng.choice(shop_ids)) for kind in kinds]


# --- valid events at the contracts' bounds --------------------------------------------------

_PRINTABLE_FILL = "\u00e9x"
"""What strings are filled with up to their longest (a non-ASCII letter among ASCII ones)."""


def bound_events(seed: int, shop_ids: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Valid events at the contracts' bounds, ``(topic_role, event)``, which segstream must
    process: from every valid example of every input type, one with each string at its
    longest, each number at its maximum and each array at its most items, and three with
    each number at its minimum, at the smallest positive double (a subnormal), and at
    ``-0.0`` where the minimum is 0. Each has a fresh envelope (ids at their longest)."""
    _check_shops(shop_ids)
    rng = random.Random(seed)
    made = []
    for role in INPUT_ROLES:
        kind = EVENT_TYPES[role].type_name
        schema = bundled_schema(kind)
        for example in _examples(kind):
            for extreme in ("max", "min", "subnormal", "negative_zero"):
                event = {**copy.deepcopy(example), **_envelope(rng, kind, rng.choice(shop_ids))}
                if "effective_at" in event:  # the example's was relative to its own time
                    event["effective_at"] = event["occurred_at"]
                made.append((role, _valid_bound(role, event, schema, extreme)))
    return made


def _valid_bound(role: str, event: dict[str, Any], schema: dict[str, Any], extreme: str) -> Any:
    """``event`` at the bound ``extreme``; where a conditional part of the schema (a
    paused plan's price is at most 0) refuses that, with its numbers left as they were."""
    for numbers in (True, False):
        bound = _at_bound(event, schema, extreme if numbers else f"{extreme}-strings")
        for name in ("event_id", "customer_id"):  # fresh and at their longest
            bound[name] = (event[name] + "-" + _PRINTABLE_FILL * 64)[:128]
        if not isinstance(parse_event(_encode(bound), EVENT_TYPES[role]), Rejection):
            return bound
    raise RuntimeError(f"no valid {extreme} bound of {event!r}")


def _at_bound(value: Any, schema: dict[str, Any], extreme: str) -> Any:
    """``value`` with every part that ``schema`` bounds moved to the bound ``extreme``."""
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {
            key: _at_bound(
                item, properties.get(key, extra if isinstance(extra, dict) else {}), extreme
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        items = [_at_bound(item, schema.get("items", {}), extreme) for item in value]
        most = schema.get("maxItems")
        if extreme.startswith("max") and most is not None and items:
            items = (items * most)[:most]
        return items
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return value
    if isinstance(value, str):
        return _longest(value, schema) if extreme.startswith("max") else value
    return value if extreme.endswith("-strings") else _number(value, schema, extreme)


def _number(value: float, schema: dict[str, Any], extreme: str) -> float:
    """``value`` at its maximum or minimum; where the minimum is 0 (money), also the
    smallest positive double (a subnormal) or ``-0.0``."""
    high: float | None = schema.get("maximum")
    low: float | None = schema.get("minimum")
    if extreme == "max":
        return value if high is None else high
    if extreme == "min" or low != 0 or schema.get("type") == "integer":
        return value if low is None else low
    return 5e-324 if extreme == "subnormal" else -0.0


def _longest(value: str, schema: dict[str, Any]) -> str:
    """``value`` filled up to ``maxLength`` where the schema's pattern still holds."""
    most = schema.get("maxLength")
    if most is None or "enum" in schema or "const" in schema or "format" in schema:
        return value
    longer: str = (value + _PRINTABLE_FILL * most)[:most]
    pattern = schema.get("pattern")
    if pattern is not None and not re.search(pattern.replace("$", r"\Z"), longer):
        return value
    return longer
