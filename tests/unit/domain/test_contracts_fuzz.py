"""Property-based: parse_event never raises, and every rejection makes a bounded dead letter.

Whatever bytes arrive, ``parse_event`` returns an event that validates and that
``from_payload`` can type, or a Rejection with a known reason; the dead letter made from a
rejected record stays far below Kafka's 1 MB limit and validates against its schema.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, get_args

import fastjsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segstream.domain import contracts
from segstream.domain.changes import DeadLetter, Source
from segstream.domain.contracts import (
    DETAIL_MAX_CHARS,
    EARLIEST_EVENT_TIME,
    MAX_EVENT_BYTES,
    MAX_FUTURE_SKEW,
    SCHEMA_DIR,
    TYPE_NAMES,
    EventType,
    Rejection,
    RejectReason,
    parse_event,
    validate_output,
)
from segstream.domain.events import EVENT_CLASSES, Cancellation, Order, event_type, from_payload

NOW = datetime(2027, 1, 1, tzinfo=UTC)  # after every example's occurred_at
KNOWN_REASONS = frozenset(get_args(RejectReason))
SOURCE = Source("segstream.orders", 5, 123_456)
EXAMPLES = SCHEMA_DIR.parent / "examples" / "v1"
VALID: list[tuple[EventType, bytes]] = [
    (kind, path.read_bytes())
    for kind in EVENT_CLASSES
    for path in sorted((EXAMPLES / kind.type_name / "valid").glob("*.json"))
]
FAST = settings(
    max_examples=150,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
EXPECTED = st.one_of(st.none(), st.sampled_from(list(EVENT_CLASSES)))
HIDDEN = st.sampled_from(
    [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0), *range(0x200B, 0x2010))]
    + [chr(c) for c in (*range(0x2028, 0x202F), *range(0x2060, 0x2065), *range(0x2066, 0x206A))]
    + ["\ufeff"]
)
ID_FIELDS = ("event_id", "customer_id", "shop_id", "order_id", "discount_code", "referred_by")
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=23, minutes=59))]
)
STAMPS = st.datetimes(datetime(1900, 1, 2), datetime(2999, 12, 30), timezones=ZONES).map(
    lambda moment: moment.isoformat().replace("+00:00", "Z")
)


def _check(raw: bytes | None, expected: EventType | None, key: bytes | None = b"shop-1") -> str:
    """Assert the contract for one record; the outcome ("ok" or the reason)."""
    result = parse_event(raw, expected, NOW)
    if isinstance(result, Rejection):
        assert result.reason in KNOWN_REASONS
        assert 0 < len(result.detail) <= DETAIL_MAX_CHARS
        letter = DeadLetter(result.reason, result.detail, SOURCE, key, raw).to_json(NOW)
        assert len(json.dumps(letter).encode()) < 200_000
        validate_output("dead_letter", letter)
        return result.reason
    assert contracts._contracts().validator(result["type"]).is_valid(result)
    event = from_payload(result)
    assert expected is None or event_type(event) == expected.type_name
    assert EARLIEST_EVENT_TIME <= event.occurred_at <= NOW + MAX_FUTURE_SKEW
    json.dumps(result, ensure_ascii=False).encode("utf-8")  # storable and re-publishable
    return "ok"


@FAST
@given(raw=st.binary(max_size=4096), expected=EXPECTED)
def test_arbitrary_bytes(raw: bytes, expected: EventType | None) -> None:
    _check(raw, expected)


@settings(FAST, max_examples=25)
@given(size=st.integers(MAX_EVENT_BYTES - 64, 1_000_000), fill=st.binary(min_size=1, max_size=8))
def test_big_values(size: int, fill: bytes) -> None:
    raw = (fill * (size // len(fill) + 1))[:size]
    outcome = _check(raw, Order, key=fill * 20_000)
    assert outcome == "too_large" or size <= MAX_EVENT_BYTES


@FAST
@given(value=JSON_VALUES, expected=EXPECTED)
def test_arbitrary_json_values(value: Any, expected: EventType | None) -> None:
    _check(json.dumps(value).encode(), expected)


@FAST
@given(
    example=st.sampled_from(VALID),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_valid_events_with_bytes_flipped(
    example: tuple[EventType, bytes], flips: list[tuple[int, int]]
) -> None:
    kind, raw = example
    mangled = bytearray(raw)
    for position, byte in flips:
        mangled[position % len(mangled)] = byte
    _check(bytes(mangled), kind)


def _event(example: tuple[EventType, bytes]) -> dict[str, Any]:
    event = json.loads(example[1])
    assert isinstance(event, dict)
    return event


@FAST
@given(example=st.sampled_from(VALID), data=st.data())
def test_valid_events_with_one_field_mutated(
    example: tuple[EventType, bytes], data: st.DataObject
) -> None:
    event = _event(example)
    field = data.draw(st.sampled_from([*event, "note", "occured_at", "type"]), label="field")
    how = data.draw(st.sampled_from(["delete", "value", "huge", "stamp"]), label="how")
    if how == "delete":
        event.pop(field, None)
    elif how == "value":
        event[field] = data.draw(JSON_VALUES, label="value")
    elif how == "huge":
        event[field] = "x" * data.draw(st.integers(2001, 80_000), label="length")
    else:
        event[field] = data.draw(STAMPS, label="stamp")
    outcome = _check(json.dumps(event).encode(), example[0])
    if how == "huge":  # longer than any field allows (feedback text: 2000)
        assert outcome != "ok"


@FAST
@given(
    example=st.sampled_from(VALID),
    field=st.sampled_from(ID_FIELDS),
    char=HIDDEN,
    at=st.integers(0, 200),
)
def test_hidden_characters_in_ids_are_never_accepted(
    example: tuple[EventType, bytes], field: str, char: str, at: int
) -> None:
    event = _event(example)
    value = str(event.get(field, "id-1"))
    event[field] = value[: at % (len(value) + 1)] + char + value[at % (len(value) + 1) :]
    assert _check(json.dumps(event).encode(), example[0]) == "schema_invalid"


@FAST
@given(example=st.sampled_from(VALID), data=st.data())
def test_duplicate_keys_are_never_accepted(
    example: tuple[EventType, bytes], data: st.DataObject
) -> None:
    event = _event(example)
    field = data.draw(st.sampled_from(sorted(event)), label="field")
    extra = json.dumps({field: data.draw(JSON_VALUES, label="value")})[1:-1]
    raw = json.dumps(event).encode()
    doubled = b"{" + extra.encode() + b", " + raw[1:]
    assert _check(doubled, example[0]) == "invalid_json"


@FAST
@given(
    example=st.sampled_from(VALID),
    field=st.sampled_from(["occurred_at", "effective_at"]),
    stamp=STAMPS,
)
def test_any_timestamp_is_accepted_only_within_the_bounds(
    example: tuple[EventType, bytes], field: str, stamp: str
) -> None:
    kind, _ = example
    event = _event(example)
    if field == "effective_at" and kind is not Cancellation:
        field = "occurred_at"
    event[field] = stamp
    outcome = _check(json.dumps(event).encode(), kind)
    assert outcome in ("ok", "implausible_time")


def _verdicts(event: Any) -> tuple[bool, bool]:
    """(compiled fast path, jsonschema reference) verdicts on one decoded event."""
    loaded = contracts._contracts()
    name = event.get("type") if isinstance(event, dict) else None
    name = name if isinstance(name, str) and name in set(TYPE_NAMES) else "order"
    try:
        loaded.fast_check(name)(event)
        fast = True
    except fastjsonschema.JsonSchemaException:
        fast = False
    return fast, bool(loaded.validator(name).is_valid(event))


@settings(FAST, max_examples=400)
@given(example=st.sampled_from(VALID), data=st.data())
def test_the_compiled_validator_agrees_with_jsonschema(
    example: tuple[EventType, bytes], data: st.DataObject
) -> None:
    event = _event(example)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        field = data.draw(st.sampled_from([*event, "note", "type"]), label="field")
        how = data.draw(st.sampled_from(["delete", "value", "stamp", "hidden"]), label="how")
        if how == "delete":
            event.pop(field, None)
        elif how == "value":
            event[field] = data.draw(JSON_VALUES, label="value")
        elif how == "stamp":
            event[field] = data.draw(STAMPS, label="stamp")
        else:
            event[field] = str(event.get(field, "x")) + data.draw(HIDDEN, label="char")
    fast, reference = _verdicts(event)
    assert fast == reference, event
