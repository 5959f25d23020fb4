"""Validation of segstream's event contracts against the JSON Schema files in ``schemas/v1``.

The schema files are the contract (platforms in any language validate against the same
files); this module only loads them, once, and applies them with ``jsonschema``:

* :func:`parse_event` turns a raw input record value into an event ``dict`` or a
  :class:`Rejection` whose ``reason`` is the dead-letter reason, so bad input never raises
  into the stream processor.
* :func:`validate_output` checks what segstream itself publishes (tests, debug builds).

Two Python-specific gaps are closed here so Python agrees with ECMA-262 based validators:
``pattern`` is matched with ECMA ``$`` semantics (end of input; Python's ``$`` also matches
before a trailing newline, so ``"EUR\\n"`` would pass), and JSON's non-standard ``NaN`` /
``Infinity`` literals and numbers beyond the double range (``1e999``) are rejected as
invalid JSON.

>>> parse_event(b"\\xff")
Rejection(reason='undecodable', detail='value is not UTF-8: invalid start byte at byte 0')
>>> parse_event(b'{"type": "order"}', EventType.SIGNUP)
Rejection(reason='wrong_topic', detail="event type 'order' on the topic for 'signup' events")
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from service.settings import TopicRole

if TYPE_CHECKING:
    from referencing._core import Resolver

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "v1"
"""Folder of the v1 schema files (the language-neutral contract)."""

SCHEMA_BASE_URI = "https://segstream.example/schemas/v1/"
"""Prefix of every v1 schema's ``$id``; relative ``$ref``s resolve against it, offline."""

DETAIL_MAX_CHARS = 500
"""Longest ``Rejection.detail``."""

_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")


class EventType(StrEnum):
    """The input event types; each has its own topic and schema file."""

    SIGNUP = "signup"
    ORDER = "order"
    CANCELLATION = "cancellation"


_EVENT_TYPES: dict[str, EventType] = {t.value: t for t in EventType}

ROLES: dict[EventType, TopicRole] = {
    EventType.SIGNUP: "signups",
    EventType.ORDER: "orders",
    EventType.CANCELLATION: "cancellations",
}
EVENT_TYPES: dict[TopicRole, EventType] = {role: kind for kind, role in ROLES.items()}
"""The event type each input topic carries (the inverse of ``ROLES``)."""


def role_for(event: Mapping[str, Any]) -> TopicRole:
    """The input topic role of an event, from its ``type``.

    >>> role_for({"type": "cancellation"})
    'cancellations'
    """
    return ROLES[EventType(event["type"])]


RejectReason = Literal["undecodable", "invalid_json", "schema_invalid", "wrong_topic"]
OutputSchema = Literal["segment_changed", "segment_formed", "dead_letter", "metrics_snapshot"]


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
    """``pattern`` keyword with ECMA-262 semantics for a final ``$`` (end of input only)."""
    if isinstance(instance, str) and not _compiled(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


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


def _finite_float(text: str) -> float:
    """JSON has no NaN/Infinity, but Python's json turns 1e999 into inf: reject that."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is not finite")
    return value


def _finite_int(text: str) -> int:
    """Reject integers beyond the double range (``float(amount)`` would overflow downstream)."""
    value = int(text)
    if abs(value) > _MAX_FLOAT_INT:
        raise ValueError(f"integer of {len(text)} digits is out of range")
    return value


def _reject_constant(name: str) -> float:
    """``NaN``, ``Infinity`` and ``-Infinity`` are Python extensions, not JSON."""
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(
    parse_float=_finite_float, parse_int=_finite_int, parse_constant=_reject_constant
)
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


def parse_event(raw: bytes | None, expected: EventType | None = None) -> dict[str, Any] | Rejection:
    """Decode and validate one input record value.

    Returns the event as parsed (no defaults filled in: a missing ``items`` means ``[]``),
    or a :class:`Rejection`. ``expected`` is the type the topic carries; a valid event of
    another type is rejected as ``wrong_topic``. Never raises for any input bytes.
    """
    if raw is None:
        return Rejection("undecodable", "record value is null (tombstone); expected a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return Rejection("undecodable", f"value is not UTF-8: {error.reason} at byte {error.start}")
    try:
        event = _DECODER.decode(text)
    except (ValueError, RecursionError) as error:
        return Rejection("invalid_json", _truncate(f"not valid JSON: {error}"))
    if not isinstance(event, dict):
        got = _JSON_TYPE_NAMES.get(type(event), type(event).__name__)
        return Rejection("invalid_json", f"expected a JSON object, got {got}")
    type_name = event.get("type")
    event_type = _EVENT_TYPES.get(type_name) if isinstance(type_name, str) else None
    if event_type is None:
        if "type" not in event:
            return Rejection("schema_invalid", "$: 'type' is a required property")
        return Rejection(
            "schema_invalid",
            _truncate(f"$.type: {type_name!r} is not one of {list(_EVENT_TYPES)}"),
        )
    if expected is not None and event_type is not expected:
        return Rejection(
            "wrong_topic",
            f"event type {event_type.value!r} on the topic for {expected.value!r} events",
        )
    validator = _contracts().validator(event_type.value)
    if validator.is_valid(event):
        return cast(dict[str, Any], event)
    return Rejection("schema_invalid", _describe(best_match(validator.iter_errors(event))))


def validate_output(schema: OutputSchema, payload: Mapping[str, Any]) -> None:
    """Raise the most relevant ``jsonschema.ValidationError`` if ``payload`` breaks ``schema``.

    For segstream's own output (tests, and the producer side in debug). ``KeyError`` when the
    schema file does not exist (``metrics_snapshot`` until its issue adds the file).
    """
    validator = _contracts().validator(schema)
    instance = payload if isinstance(payload, dict) else dict(payload)  # "object" means dict
    error = best_match(validator.iter_errors(instance))
    if error is not None:
        raise error
