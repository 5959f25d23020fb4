"""Validation of segstream's event contracts against the JSON Schema files in ``schemas/v1``.

The files are the contract: this module only loads them and applies them (``jsonschema``, the
reference, behind a compiled ``fastjsonschema`` fast path), closing the gaps where Python would
disagree with ECMA-262 validators. :func:`parse_event` turns a raw record value into an event
or a :class:`Rejection` carrying the dead-letter reason, so bad input never raises into the
stream; :func:`validate_output` checks what segstream publishes. Oversized records
(:data:`MAX_EVENT_BYTES`) and implausible times (:data:`MAX_FUTURE_SKEW`,
``Settings.earliest_event_time``) are rejected too. Why a fast path, and each gap closed:
``docs/design/event-validation.md``.

>>> parse_event(b"\\xff")
Rejection(reason='undecodable', detail='value is not UTF-8: invalid start byte at byte 0')
>>> parse_event(b'{"type": "order"}', BY_TYPE_NAME["signup"])
Rejection(reason='wrong_topic', detail="event type 'order' on the topic for 'signup' events")
>>> parse_event(b'{"amount": 1, "amount": 20}')
Rejection(reason='invalid_json', detail="not valid JSON: duplicate key 'amount'")
>>> parse_event(b" " * (MAX_EVENT_BYTES + 1)).reason
'too_large'
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, cast

import fastjsonschema
from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from segstream.domain.events import BY_TOPIC_ROLE, BY_TYPE_NAME, Event, format_time, parse_time

if TYPE_CHECKING:
    from referencing._core import Resolver

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas" / "v1"
"""Folder of the v1 schema files (the language-neutral contract)."""

EXAMPLE_DIR = SCHEMA_DIR.parent / "examples" / "v1"
"""Examples of each v1 schema: ``<schema name>/valid/*.json`` and ``<schema name>/invalid``."""

SCHEMA_BASE_URI = "https://segstream.example/schemas/v1/"
"""Prefix of every v1 schema's ``$id``; relative ``$ref``s resolve against it, offline."""

DETAIL_MAX_CHARS = 500
"""Longest ``Rejection.detail``."""

MAX_EVENT_BYTES = 64 * 1024
"""Longest input record value, in bytes, whatever the settings. An event is a few hundred
bytes; a bigger value is a producer bug, rejected as ``too_large`` before it is decoded (so
a 1 MB record costs no UTF-8 decode or JSON parse)."""

MAX_FUTURE_SKEW = timedelta(days=2)
"""How far ``occurred_at`` may lie ahead of the wall clock (producer clocks drift, time
zones get mixed up); later is ``implausible_time``: it would move the shop's stream time
into the future and fire every timer of its customers at once."""

EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
"""The default earliest event time (``SEGSTREAM_EARLIEST_EVENT_TIME`` sets it): event times
before it are ``implausible_time`` (an unset clock or a zero timestamp: 1970-01-01 would make
every customer look long gone). An older history is imported with an earlier setting."""

MAX_EFFECTIVE_DELAY = timedelta(days=400)
"""How far a cancellation's ``effective_at`` may lie after its ``occurred_at``. It is the end
of the paid period, legitimately in the future: up to a year (the longest plan interval)
plus slack. Later is ``implausible_time``."""

_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")


EventType: TypeAlias = type[Event]
"""An input event type: its record class in the registry, :data:`events.EVENT_CLASSES`
(``Order``; ``BY_TYPE_NAME["order"]``). Each has its own topic and schema file."""

TYPE_NAMES: tuple[str, ...] = tuple(BY_TYPE_NAME)
"""The schema ``type`` names of the input events, in registry order."""

INPUT_ROLES: tuple[str, ...] = tuple(BY_TOPIC_ROLE)
"""The roles of the input topics (``Settings.topic(role)``), in registry order."""

EVENT_TYPES: dict[str, EventType] = BY_TOPIC_ROLE
"""The event type each input topic role carries."""


def role_for(event: Mapping[str, Any]) -> str:
    """The input topic role of an event, from its ``type``.

    >>> role_for({"type": "cancellation"})
    'cancellations'
    """
    return BY_TYPE_NAME[event["type"]].topic_role


RejectReason = Literal[
    "undecodable",
    "too_large",
    "invalid_json",
    "schema_invalid",
    "wrong_topic",
    "implausible_time",
    "unknown_schema_id",
]
"""Why :func:`parse_event` rejects a record (the first failing check, in this order)."""
DeadLetterReason = Literal[
    RejectReason, "wrong_partition", "processing_error", "invalid_definition", "stale_definition"
]
"""Every ``dead_letter.reason`` (``schemas/v1/dead_letter.json``): a rejection, a valid event
in a partition its shop does not hash to, a valid event the worker failed on (a bug), or a
segment definition record that is invalid or older than the live version."""
OutputSchema = Literal[
    "segment_changed", "segment_membership", "segment_formed", "dead_letter", "metrics_snapshot"
]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an input record was not accepted; becomes a dead letter with the same reason."""

    reason: RejectReason
    detail: str


def schema_path(name: str) -> Path:
    """Path of the v1 schema file ``name`` (e.g. ``"order"``); the file may not exist yet."""
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"not a schema name: {name!r}")
    return SCHEMA_DIR / f"{name}.json"


def _ecma_pattern(
    validator: Any, pattern: str, instance: object, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    """``pattern`` keyword with ECMA-262 semantics for a final ``$`` (end of input only).

    When the string holds a control or invisible character, the message names it: the
    escaped pattern that excludes those (``printable_id``) is unreadable in a dead letter.
    """
    if isinstance(instance, str) and not _compiled(pattern).search(instance):
        hidden = _HIDDEN_CHARACTER.search(instance)
        if hidden is None:
            yield ValidationError(f"{instance!r} does not match {pattern!r}")
        else:
            code = f"U+{ord(hidden.group()):04X}"
            yield ValidationError(f"{instance!r} contains {code}, a control or invisible character")


_HIDDEN_CHARACTER = re.compile(
    r"[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
"""The characters ``envelope.json#/$defs/printable_id`` excludes (for messages only)."""


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    """Compile a schema pattern, turning a trailing unescaped ``$`` into ``\\Z``."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


_Validator: Any = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})

_ANNOTATIONS = frozenset({"title", "description", "examples", "default", "$comment"})
_SCHEMA_KEYWORDS = frozenset(
    {"items", "additionalProperties", "propertyNames", "not", "if", "then", "else", "contains"}
    | {"unevaluatedItems", "unevaluatedProperties", "contentSchema"}
)
_SCHEMA_LIST_KEYWORDS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_MAP_KEYWORDS = frozenset({"properties", "patternProperties", "dependentSchemas"})


def _bundle(node: Any, resolver: Resolver[Any], refs: tuple[int, ...] = ()) -> Any:
    """Copy of schema ``node`` with every ``$ref`` replaced by its target, annotations dropped.

    Why: resolving ``$ref`` through the registry on every validation costs more than half
    of ``parse_event``; the schemas are not recursive, so the references are inlined once.
    Validation results are unchanged (tests compare against the unbundled schema).
    """
    if isinstance(node, bool):
        return node
    if not isinstance(node, dict):
        raise TypeError(f"not a schema: {node!r}")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _ANNOTATIONS or key in ("$ref", "$defs", "$schema", "$id"):
            continue
        if key in ("$dynamicRef", "$dynamicAnchor", "$anchor"):
            raise RuntimeError(f"{key} is not supported by segstream's schema bundling")
        if key in _SCHEMA_KEYWORDS:
            out[key] = _bundle(value, resolver, refs)
        elif key in _SCHEMA_LIST_KEYWORDS:
            out[key] = [_bundle(item, resolver, refs) for item in value]
        elif key in _SCHEMA_MAP_KEYWORDS:
            out[key] = {name: _bundle(sub, resolver, refs) for name, sub in value.items()}
        else:
            out[key] = value
    ref = node.get("$ref")
    if ref is None:
        return out
    resolved = resolver.lookup(ref)
    if id(resolved.contents) in refs:
        raise RuntimeError(f"recursive $ref {ref!r} is not supported")
    target = _bundle(resolved.contents, resolved.resolver, (*refs, id(resolved.contents)))
    if isinstance(target, dict) and not out.keys() & target.keys():
        return {**target, **out}
    return {"allOf": [target], **out}


def _ecma_patterns(node: Any) -> Any:
    """Copy of a bundled schema with every ``pattern`` as :func:`_compiled` reads it."""
    if isinstance(node, dict):
        return {
            key: (
                _compiled(value).pattern
                if key == "pattern" and isinstance(value, str)
                else _ecma_patterns(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_ecma_patterns(item) for item in node]
    return node


class _Contracts:
    """The loaded schema files, their registry and the validators built from them."""

    def __init__(self) -> None:
        schemas: dict[str, dict[str, Any]] = {}
        for path in sorted(SCHEMA_DIR.glob("*.json")):
            schema = json.loads(path.read_text(encoding="utf-8"))
            Draft202012Validator.check_schema(schema)
            expected_id = f"{SCHEMA_BASE_URI}{path.name}"
            if schema.get("$id") != expected_id:
                raise RuntimeError(f"{path}: $id must be {expected_id!r}")
            schemas[path.stem] = schema
        self.schemas = schemas
        self.registry: Registry[Any] = Registry().with_resources(
            (s["$id"], Resource.from_contents(s, default_specification=DRAFT202012))
            for s in schemas.values()
        )
        self.format_checker = FormatChecker()
        if "date-time" not in self.format_checker.checkers:
            raise RuntimeError("date-time is not checked: install jsonschema[format-nongpl]")
        self._validators: dict[str, Any] = {}
        self._compiled: dict[str, Any] = {}
        self._documents: dict[str, Any] = {}

    def fast_check(self, name: str) -> Any:
        """The compiled check of schema ``name``: returns the event or raises
        ``fastjsonschema.JsonSchemaException`` (no useful message: see :meth:`validator`)."""
        found = self._compiled.get(name)
        if found is None:
            schema = self.schemas[name]
            bundled = _bundle(schema, self.registry.resolver(base_uri=schema["$id"]))
            bundled = {
                **_ecma_patterns(bundled),
                "$schema": "http://json-schema.org/draft-07/schema#",
            }
            formats = {"date-time": lambda value: self.format_checker.conforms(value, "date-time")}
            found = fastjsonschema.compile(bundled, formats=formats, use_default=False)
            self._compiled[name] = found
        return found

    def document_validator(self, name: str) -> Any:
        """The (cached) validator of schema ``name`` as written: its ``$ref``s resolve through
        the registry when used instead of being inlined, so the schema may refer to itself
        (a segment rule holds rules, which :func:`_bundle` cannot inline). Slower than
        :meth:`validator`; for documents checked once, not for every event."""
        found = self._documents.get(name)
        if found is None:
            if name not in self.schemas:
                raise KeyError(f"no schema {name!r}: {schema_path(name)} does not exist")
            schema = self.schemas[name]
            found = _Validator(schema, registry=self.registry, format_checker=self.format_checker)
            self._documents[name] = found
        return found

    def validator(self, name: str) -> Any:
        """The (cached) validator of schema ``name``; KeyError if there is no such file."""
        found = self._validators.get(name)
        if found is None:
            if name not in self.schemas:
                raise KeyError(
                    f"no schema {name!r}: {schema_path(name)} does not exist "
                    f"(known: {', '.join(sorted(self.schemas))})"
                )
            schema = self.schemas[name]
            bundled = _bundle(schema, self.registry.resolver(base_uri=schema["$id"]))
            bundled["$id"] = schema["$id"]
            found = _Validator(bundled, registry=self.registry, format_checker=self.format_checker)
            self._validators[name] = found
        return found


@cache
def _contracts() -> _Contracts:
    """Load the schema files on first use, then reuse them for the life of the process."""
    return _Contracts()


_MAX_FLOAT_INT = int(sys.float_info.max)
_QUOTED_CHARS = 80
"""Most characters of a refused value a JSON error message quotes."""


def _quoted(text: str) -> str:
    """``text`` quoted as Python shows it, at most :data:`_QUOTED_CHARS` of it."""
    shown = repr(text[: _QUOTED_CHARS + 1])
    return shown if len(text) <= _QUOTED_CHARS else shown[:-1] + "...'"


def _finite_float(text: str) -> float:
    """JSON has no NaN/Infinity, but Python's json turns 1e999 into inf: reject that."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:_QUOTED_CHARS]} is beyond the double range")
    return value


def _finite_int(text: str) -> int:
    """Reject integers beyond the double range (``float(amount)`` would overflow downstream)."""
    value = int(text)
    if abs(value) > _MAX_FLOAT_INT:
        raise ValueError(f"an integer of {len(text)} digits is beyond the double range")
    return value


def _reject_constant(name: str) -> float:
    """``NaN``, ``Infinity`` and ``-Infinity`` are Python extensions, not JSON."""
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object without duplicate keys: parsers disagree on which duplicate wins, so a
    ``{"amount": 1, "amount": 20}`` would mean different things to different consumers."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {_quoted(key)}")
            seen.add(key)
    return obj


_DECODER = json.JSONDecoder(
    parse_float=_finite_float,
    parse_int=_finite_int,
    parse_constant=_reject_constant,
    object_pairs_hook=_unique_keys,
)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
"""A ``\\uD800``-``\\uDFFF`` escape: only then can a decoded string hold a lone surrogate."""
_JSON_TYPE_NAMES: dict[type, str] = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _truncate(text: str) -> str:
    """Cap a detail at DETAIL_MAX_CHARS: messages quote the offending value, which can be big."""
    if len(text) > DETAIL_MAX_CHARS:
        return text[: DETAIL_MAX_CHARS - 3] + "..."
    return text


def _describe(error: ValidationError) -> str:
    """``"$.plan.currency: 'eur' does not match '^[A-Z]{3}$'"``: JSON path, then the message."""
    return _truncate(f"{error.json_path}: {error.message}")


def _lone_surrogate(value: Any) -> str | None:
    """The first string (or key) in ``value`` holding an unpaired surrogate, if any.

    Why: JSON allows ``"\\ud800"`` but no UTF-8 text can hold it, so such an id would crash
    the worker when it writes the id to a table key or an output record.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return item
    return None


def strict_json(text: str) -> Any:
    """``text`` as JSON, refusing what parsers disagree on or what could not be stored:
    duplicate keys, ``NaN``/``Infinity``, numbers beyond the double range, unpaired
    surrogate escapes. ``ValueError`` names the problem (``RecursionError``: nested too
    deeply). Events and the API's request bodies are read with it.

    >>> strict_json('{"a": 1, "a": 2}')
    Traceback (most recent call last):
    ...
    ValueError: duplicate key 'a'
    """
    value = _DECODER.decode(text)
    if _SURROGATE_ESCAPE.search(text):
        lone = _lone_surrogate(value)
        if lone is not None:
            raise ValueError(f"unpaired surrogate escape in string {_quoted(lone)}")
    return value


def _decode(raw: bytes) -> dict[str, Any] | Rejection:
    """UTF-8 JSON object, or why not (``undecodable`` or ``invalid_json``)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return Rejection("undecodable", f"value is not UTF-8: {error.reason} at byte {error.start}")
    try:
        event = strict_json(text)
    except (ValueError, RecursionError) as error:
        return Rejection("invalid_json", _truncate(f"not valid JSON: {error}"))
    if not isinstance(event, dict):
        got = _JSON_TYPE_NAMES.get(type(event), type(event).__name__)
        return Rejection("invalid_json", f"expected a JSON object, got {got}")
    return cast(dict[str, Any], event)


def _event_type(event: dict[str, Any]) -> EventType | Rejection:
    """The event's ``type``, or a ``schema_invalid`` rejection when it is missing or unknown."""
    type_name = event.get("type")
    event_type = BY_TYPE_NAME.get(type_name) if isinstance(type_name, str) else None
    if event_type is not None:
        return event_type
    if "type" not in event:
        return Rejection("schema_invalid", "$: 'type' is a required property")
    return Rejection(
        "schema_invalid", _truncate(f"$.type: {type_name!r} is not one of {list(BY_TYPE_NAME)}")
    )


def _schema_error(event_type: EventType, event: dict[str, Any]) -> Rejection | None:
    """``schema_invalid`` naming the most relevant error, or None if the event is valid."""
    contracts = _contracts()
    try:
        contracts.fast_check(event_type.type_name)(event)
        return None
    except fastjsonschema.JsonSchemaException:
        pass
    except RecursionError:
        return Rejection("schema_invalid", "$: a value is nested too deeply to validate")
    validator = contracts.validator(event_type.type_name)
    try:
        error = best_match(validator.iter_errors(event))
        return None if error is None else Rejection("schema_invalid", _describe(error))
    except RecursionError:  # a deeply nested value the decoder still accepted
        return Rejection("schema_invalid", "$: a value is nested too deeply to validate")


def _implausible_time(event: dict[str, Any], now: datetime, earliest: datetime) -> Rejection | None:
    """``implausible_time`` if ``occurred_at`` or ``effective_at`` is out of bounds.

    ``occurred_at`` drives the shop's stream time: it must lie between ``earliest`` and
    MAX_FUTURE_SKEW after ``now``. ``effective_at`` (the end of the paid period) must lie
    after ``earliest`` and at most MAX_EFFECTIVE_DELAY after ``occurred_at``.
    """
    stamp: str = event["occurred_at"]
    effective: str | None = event.get("effective_at")
    try:
        occurred = parse_time(stamp)
        ends = None if effective is None else parse_time(effective)
    except (ValueError, OverflowError) as error:  # the schema's format check prevents this
        return Rejection("schema_invalid", _truncate(f"$: not a date-time: {error}"))
    problem = None
    if occurred > now + MAX_FUTURE_SKEW:
        ahead = f"{MAX_FUTURE_SKEW.days} days after the current time {format_time(now)}"
        problem = f"$.occurred_at: {stamp!r} is more than {ahead}"
    elif occurred < earliest:
        problem = f"$.occurred_at: {stamp!r} is before {format_time(earliest)}"
    elif ends is not None and ends < earliest:
        problem = f"$.effective_at: {effective!r} is before {format_time(earliest)}"
    elif ends is not None and ends > occurred + MAX_EFFECTIVE_DELAY:
        after = f"{MAX_EFFECTIVE_DELAY.days} days after occurred_at {stamp!r}"
        problem = f"$.effective_at: {effective!r} is more than {after}"
    return None if problem is None else Rejection("implausible_time", problem)


def parse_event(
    raw: bytes | None,
    expected: EventType | None = None,
    now: datetime | None = None,
    schema_ids: Mapping[str, Collection[int]] | None = None,
    earliest: datetime = EARLIEST_EVENT_TIME,
) -> dict[str, Any] | Rejection:
    """Decode and validate one input record value.

    Returns the event as parsed (no defaults filled in: a missing ``items`` means ``[]``),
    or a :class:`Rejection`. ``expected`` is the type the topic carries; a valid event of
    another type is rejected as ``wrong_topic``. ``now`` (aware; default: the wall clock)
    and ``earliest`` (aware; the worker passes ``Settings.earliest_event_time``) bound
    ``occurred_at``. A value framed for a schema registry (:func:`unframe`) is read
    as its JSON; with ``schema_ids`` (type name -> the registry ids of its schema), one
    framed with another id is ``unknown_schema_id``. Never raises for any input bytes.
    """
    if raw is None:
        return Rejection("undecodable", "record value is null (tombstone); expected a JSON object")
    if len(raw) > MAX_EVENT_BYTES:
        return Rejection(
            "too_large",
            f"value is {len(raw)} bytes; an input event may have at most {MAX_EVENT_BYTES} bytes",
        )
    framed = unframe(raw)
    if isinstance(framed, Rejection):
        return framed
    raw, schema_id = framed
    event = _decode(raw)
    if isinstance(event, Rejection):
        return event
    event_type = _event_type(event)
    if isinstance(event_type, Rejection):
        return event_type
    if expected is not None and event_type is not expected:
        return Rejection(
            "wrong_topic",
            f"event type {event_type.type_name!r} on the topic for {expected.type_name!r} events",
        )
    rejection = _schema_error(event_type, event)
    if rejection is None:
        rejection = _implausible_time(event, datetime.now(UTC) if now is None else now, earliest)
    if rejection is None and schema_id is not None and schema_ids:
        rejection = _unknown_schema_id(event_type, schema_id, schema_ids)
    return event if rejection is None else rejection


REGISTRY_MAGIC = 0
"""First byte of a record framed for a schema registry (Confluent's wire format: the magic
byte, a 4-byte big-endian schema id, then the serialized value)."""


def unframe(raw: bytes) -> tuple[bytes, int | None] | Rejection:
    """The JSON of a record value and the schema-registry id it was framed with (None: not
    framed). JSON text never starts with a NUL byte, so a framed value is told apart
    unambiguously.

    >>> unframe(b"\\x00\\x00\\x00\\x00\\x07{}")
    (b'{}', 7)
    >>> unframe(b"{}")
    (b'{}', None)
    """
    if not raw or raw[0] != REGISTRY_MAGIC:
        return raw, None
    if len(raw) < 5:
        return Rejection(
            "undecodable",
            "value starts with a schema-registry magic byte (0) but has no 4-byte schema id",
        )
    return raw[5:], int.from_bytes(raw[1:5], "big")


def _unknown_schema_id(
    event_type: EventType, schema_id: int, schema_ids: Mapping[str, Collection[int]]
) -> Rejection | None:
    """A framed record whose schema id is not registered for its type (when ids are
    configured: ``SEGSTREAM_SCHEMA_REGISTRY_IDS``)."""
    known = schema_ids.get(event_type.type_name, ())
    if schema_id in known:
        return None
    shown = ", ".join(map(str, sorted(known))) or "none"
    return Rejection(
        "unknown_schema_id",
        f"framed with schema id {schema_id}, which is not a registered version of "
        f"{event_type.type_name}.json (known: {shown}; SEGSTREAM_SCHEMA_REGISTRY_IDS)",
    )


def bundled_schema(name: str) -> dict[str, Any]:
    """Schema ``name`` with its ``$ref``s inlined and annotations dropped (for tools that
    walk a schema, such as the generator of events at every bound)."""
    schema: dict[str, Any] = _contracts().validator(name).schema
    return schema


def document_error(name: str, payload: Any) -> ValidationError | None:
    """The most relevant error of ``payload`` against schema file ``name``, or None.

    For documents that are not events, such as segment definitions
    (``segment_definition``), whose schemas may be recursive. ``KeyError`` when the schema
    file does not exist; ``RecursionError`` for a value nested too deeply to walk.
    """
    return best_match(_contracts().document_validator(name).iter_errors(payload))


def validate_output(schema: OutputSchema, payload: Mapping[str, Any]) -> None:
    """Raise the most relevant ``jsonschema.ValidationError`` if ``payload`` breaks ``schema``.

    For segstream's own output: the tests check every kind, the worker each metrics snapshot
    before sending it. ``KeyError`` when the schema file does not exist.
    """
    validator = _contracts().validator(schema)
    instance = payload if isinstance(payload, dict) else dict(payload)  # "object" means dict
    error = best_match(validator.iter_errors(instance))
    if error is not None:
        raise error
