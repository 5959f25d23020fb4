"""The v1 schema files, their examples, and service.core.contracts' parsing and validation."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from service.core import contracts
from service.core.contracts import (
    SCHEMA_DIR,
    EventType,
    Rejection,
    parse_event,
    schema_path,
    validate_output,
)
from tests.schema_docs import undocumented

EXAMPLES = SCHEMA_DIR.parent / "examples" / "v1"
INPUT_TYPES = [t.value for t in EventType]
OUTPUT_TYPES = ["segment_changed", "segment_formed", "dead_letter"]
SCHEMA_NAMES = ["envelope", *INPUT_TYPES, *OUTPUT_TYPES]

# The field each invalid example breaks; the rejection detail must name it. Every invalid
# example file must appear here and every entry must have a file (see test below).
BROKEN_FIELD: dict[tuple[str, str], str] = {
    ("signup", "acquisition_channel_unknown"): "acquisition_channel",
    ("signup", "attribute_age_string"): "age",
    ("signup", "attribute_location_type_unknown"): "location_type",
    ("signup", "attribute_name_uppercase"): "BrewStrength",
    ("signup", "attribute_preferences_not_strings"): "preferences",
    ("signup", "attribute_value_object"): "address",
    ("signup", "event_id_empty"): "event_id",
    ("signup", "extra_top_level_property"): "email",
    ("signup", "marketing_opt_in_string"): "marketing_opt_in",
    ("signup", "missing_customer_id"): "customer_id",
    ("signup", "missing_plan"): "plan",
    ("signup", "occurred_at_impossible_date"): "occurred_at",
    ("signup", "occurred_at_lowercase_t"): "occurred_at",
    ("signup", "occurred_at_not_rfc3339"): "occurred_at",
    ("signup", "occurred_at_trailing_newline"): "occurred_at",
    ("signup", "occurred_at_without_offset"): "occurred_at",
    ("signup", "plan_currency_lowercase"): "plan.currency",
    ("signup", "plan_extra_property"): "trial_days",
    ("signup", "plan_interval_unknown"): "plan.interval",
    ("signup", "plan_price_negative"): "plan.price",
    ("signup", "schema_version_2"): "schema_version",
    ("signup", "shop_id_bad_pattern"): "shop_id",
    ("signup", "shop_id_too_long"): "shop_id",
    ("order", "amount_negative"): "amount",
    ("order", "amount_string"): "amount",
    ("order", "currency_lowercase"): "currency",
    ("order", "currency_trailing_newline"): "currency",
    ("order", "discount_code_empty"): "discount_code",
    ("order", "extra_top_level_property"): "customer_email",
    ("order", "is_renewal_string"): "is_renewal",
    ("order", "item_extra_property"): "gift_wrap",
    ("order", "item_missing_sku"): "sku",
    ("order", "item_quantity_fractional"): "items[1].quantity",
    ("order", "item_quantity_zero"): "items[0].quantity",
    ("order", "item_unit_price_negative"): "items[0].unit_price",
    ("order", "items_not_array"): "items",
    ("order", "missing_is_renewal"): "is_renewal",
    ("order", "missing_order_id"): "order_id",
    ("order", "occurred_at_not_rfc3339"): "occurred_at",
    ("order", "plan_missing_interval"): "interval",
    ("order", "shop_id_bad_pattern"): "shop_id",
    ("cancellation", "comment_too_long"): "comment",
    ("cancellation", "customer_id_empty"): "customer_id",
    ("cancellation", "customer_id_number"): "customer_id",
    ("cancellation", "effective_at_not_rfc3339"): "effective_at",
    ("cancellation", "extra_top_level_property"): "refund_amount",
    ("cancellation", "missing_occurred_at"): "occurred_at",
    ("cancellation", "missing_reason"): "reason",
    ("cancellation", "occurred_at_leap_second"): "occurred_at",
    ("cancellation", "reason_unknown"): "reason",
    ("cancellation", "schema_version_string"): "schema_version",
    ("cancellation", "shop_id_bad_pattern"): "shop_id",
    ("segment_changed", "cause_event_type_unknown"): "event_type",
    ("segment_changed", "cause_kind_unknown"): "kind",
    ("segment_changed", "changed_at_without_offset"): "changed_at",
    ("segment_changed", "current_empty_string"): "current",
    ("segment_changed", "event_cause_without_event_id"): "event_id",
    ("segment_changed", "extra_top_level_property"): "score",
    ("segment_changed", "missing_changed_at"): "changed_at",
    ("segment_changed", "previous_number"): "previous",
    ("segment_formed", "size_zero"): "size",
    ("segment_formed", "missing_segment"): "segment",
    ("dead_letter", "dead_lettered_at_without_offset"): "dead_lettered_at",
    ("dead_letter", "detail_empty"): "detail",
    ("dead_letter", "extra_top_level_property"): "retry_count",
    ("dead_letter", "missing_source"): "source",
    ("dead_letter", "original_key_b64_missing"): "original_key_b64",
    ("dead_letter", "original_value_b64_not_base64"): "original_value_b64",
    ("dead_letter", "reason_unknown"): "reason",
    ("dead_letter", "source_offset_string"): "source.offset",
    ("dead_letter", "source_partition_negative"): "source.partition",
}


def _examples(types: list[str], kind: str) -> list[Any]:
    """pytest params (type, path) for every example of ``kind`` ("valid"/"invalid")."""
    return [
        pytest.param(t, p, id=f"{t}/{kind}/{p.stem}")
        for t in types
        for p in sorted((EXAMPLES / t / kind).glob("*.json"))
    ]


def _load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _unbundled_validator(name: str) -> Any:
    """The schema file as written (with $refs via a registry), not the bundled copy."""
    registry: Registry[Any] = Registry().with_resources(
        (s["$id"], Resource.from_contents(s, default_specification=DRAFT202012))
        for s in (_load(schema_path(n)) for n in SCHEMA_NAMES)
    )
    return contracts._Validator(
        _load(schema_path(name)), registry=registry, format_checker=FormatChecker()
    )


# --- the schema files themselves ------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_file_is_valid_2020_12_with_id_and_title(name: str) -> None:
    schema = _load(schema_path(name))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://segstream.example/schemas/v1/{name}.json"
    assert schema["title"]
    assert schema["description"]


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_property_is_described(name: str) -> None:
    assert undocumented(_load(schema_path(name)), name) == []


@pytest.mark.parametrize("name", INPUT_TYPES)
def test_event_schemas_are_closed_and_share_the_envelope(name: str) -> None:
    schema = _load(schema_path(name))
    assert schema["additionalProperties"] is False
    envelope = _load(schema_path("envelope"))
    assert set(envelope["required"]) <= set(schema["required"])
    for field in ("event_id", "shop_id", "customer_id", "occurred_at", "schema_version"):
        assert schema["properties"][field]["$ref"] == f"envelope.json#/$defs/{field}"
    assert schema["properties"]["type"]["const"] == name


def test_schema_path_rejects_non_names() -> None:
    assert schema_path("order") == SCHEMA_DIR / "order.json"
    assert schema_path("order").is_file()
    with pytest.raises(ValueError, match="not a schema name"):
        schema_path("../pyproject")


# --- the examples ---------------------------------------------------------------------------


def test_example_folders_have_enough_examples() -> None:
    for t in INPUT_TYPES:
        assert len(list((EXAMPLES / t / "valid").glob("*.json"))) >= 3, t
        assert len(list((EXAMPLES / t / "invalid").glob("*.json"))) >= 5, t
    for t in OUTPUT_TYPES:
        assert list((EXAMPLES / t / "valid").glob("*.json")), t
        assert list((EXAMPLES / t / "invalid").glob("*.json")), t


def test_every_invalid_example_names_its_broken_field() -> None:
    on_disk = {
        (t, p.stem)
        for t in INPUT_TYPES + OUTPUT_TYPES
        for p in (EXAMPLES / t / "invalid").glob("*.json")
    }
    assert on_disk == set(BROKEN_FIELD)


@pytest.mark.parametrize(("type_name", "path"), _examples(INPUT_TYPES, "valid"))
def test_valid_input_example_parses_to_the_same_dict(type_name: str, path: Path) -> None:
    raw = path.read_bytes()
    expected = EventType(type_name)
    assert parse_event(raw, expected) == json.loads(raw)
    assert parse_event(raw) == json.loads(raw)


@pytest.mark.parametrize(("type_name", "path"), _examples(INPUT_TYPES, "invalid"))
def test_invalid_input_example_is_rejected_naming_the_field(type_name: str, path: Path) -> None:
    result = parse_event(path.read_bytes(), EventType(type_name))
    assert isinstance(result, Rejection), "accepted an invalid example"
    assert result.reason == "schema_invalid"
    assert result.detail.startswith("$")
    assert BROKEN_FIELD[(type_name, path.stem)] in result.detail
    assert len(result.detail) <= contracts.DETAIL_MAX_CHARS


@pytest.mark.parametrize(("type_name", "path"), _examples(INPUT_TYPES + OUTPUT_TYPES, "invalid"))
def test_invalid_example_has_exactly_one_defect(type_name: str, path: Path) -> None:
    errors = list(contracts._contracts().validator(type_name).iter_errors(_load(path)))
    assert errors
    assert len({e.json_path for e in errors}) == 1, [e.message for e in errors]


@pytest.mark.parametrize(("type_name", "path"), _examples(OUTPUT_TYPES, "valid"))
def test_valid_output_example_validates(type_name: str, path: Path) -> None:
    validate_output(type_name, _load(path))  # type: ignore[arg-type]


@pytest.mark.parametrize(("type_name", "path"), _examples(OUTPUT_TYPES, "invalid"))
def test_invalid_output_example_raises_naming_the_field(type_name: str, path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_output(type_name, _load(path))  # type: ignore[arg-type]
    error = caught.value
    assert BROKEN_FIELD[(type_name, path.stem)] in f"{error.json_path}: {error.message}"


@pytest.mark.parametrize(
    ("type_name", "path"),
    _examples(INPUT_TYPES + OUTPUT_TYPES, "valid")
    + _examples(INPUT_TYPES + OUTPUT_TYPES, "invalid"),
)
def test_bundled_validator_agrees_with_the_schema_files(type_name: str, path: Path) -> None:
    instance = _load(path)
    bundled = contracts._contracts().validator(type_name)
    reference = _unbundled_validator(type_name)
    assert (
        bundled.is_valid(instance) == reference.is_valid(instance) == (path.parent.name == "valid")
    )
    assert sorted((e.json_path, e.message) for e in bundled.iter_errors(instance)) == sorted(
        (e.json_path, e.message) for e in reference.iter_errors(instance)
    )


# --- format and pattern semantics -----------------------------------------------------------


def _order(**changes: Any) -> bytes:
    event = _load(EXAMPLES / "order" / "valid" / "renewal_minimal.json")
    event.update(changes)
    return json.dumps(event).encode()


def test_date_time_format_is_asserted_not_just_annotated() -> None:
    # Shape matches the profile pattern; only the date-time format check can reject it.
    result = parse_event(_order(occurred_at="2026-02-30T09:30:00Z"))
    assert result == Rejection(
        "schema_invalid", "$.occurred_at: '2026-02-30T09:30:00Z' is not a 'date-time'"
    )
    hour_25 = parse_event(_order(occurred_at="2026-03-01T25:00:00Z"))
    assert isinstance(hour_25, Rejection) and "date-time" in hour_25.detail


@pytest.mark.parametrize(
    "stamp",
    ["2026-03-01T09:30:00Z", "2026-03-01T09:30:00.123456789+05:30", "1999-12-31T23:59:59-00:00"],
)
def test_rfc3339_stamps_in_the_profile_are_accepted(stamp: str) -> None:
    assert isinstance(parse_event(_order(occurred_at=stamp)), dict)


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-03-01T09:30:00",  # no offset
        "2026-03-01 09:30:00Z",  # space separator
        "2026-03-01t09:30:00z",  # lower case: RFC 3339 allows it, the profile does not
        "2026-03-01T09:30Z",  # no seconds
        "0001-01-01T00:00:00Z",  # outside 1900-2999
        "2026-03-01T09:30:00.1234567890Z",  # more than 9 fractional digits
        "2026-03-01T09:30:00+24:00",  # offset out of range
        "2026-03-01T09:30:00Z\n",  # trailing newline
    ],
)
def test_stamps_outside_the_profile_are_rejected(stamp: str) -> None:
    result = parse_event(_order(occurred_at=stamp))
    assert isinstance(result, Rejection) and result.reason == "schema_invalid"
    assert "occurred_at" in result.detail


def test_pattern_dollar_means_end_of_string_unlike_python_re() -> None:
    # A plain Python jsonschema validator lets "EUR\n" match ^[A-Z]{3}$ (re's $ matches
    # before a final newline); ECMA-262 and so every other validator reject it.
    assert Draft202012Validator({"pattern": "^[A-Z]{3}$"}).is_valid("EUR\n")
    result = parse_event(_order(shop_id="roastery-42\n"))
    assert isinstance(result, Rejection) and "shop_id" in result.detail


def test_integer_and_boolean_are_not_confused() -> None:
    assert isinstance(parse_event(_order(schema_version=True)), Rejection)
    assert isinstance(parse_event(_order(is_renewal=1)), Rejection)
    assert isinstance(parse_event(_order(amount=False)), Rejection)


# --- everything that is not a valid event ---------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason", "mention"),
    [
        (None, "undecodable", "null"),
        (b"\xff\xfe{}", "undecodable", "UTF-8"),
        (b'{"type": "order", "customer_id": "\xe9"}', "undecodable", "UTF-8"),
        (b"", "invalid_json", "JSON"),
        (b"{not json}", "invalid_json", "JSON"),
        (b'{"type": "order",}', "invalid_json", "JSON"),
        (b"[1, 2]", "invalid_json", "array"),
        (b'"order"', "invalid_json", "string"),
        (b"null", "invalid_json", "null"),
        (b"[" * 100_000, "invalid_json", "recursion"),
        (b'{"type": "order", "amount": NaN}', "invalid_json", "NaN"),
        (b'{"type": "order", "amount": Infinity}', "invalid_json", "Infinity"),
        (b'{"type": "order", "amount": 1e999}', "invalid_json", "finite"),
        (b'{"type": "order", "amount": 1' + b"0" * 400 + b"}", "invalid_json", "range"),
        (b"{}", "schema_invalid", "'type' is a required property"),
        (b'{"type": "refund"}', "schema_invalid", "$.type: 'refund'"),
        (b'{"type": "Order"}', "schema_invalid", "$.type"),
        (b'{"type": ["order"]}', "schema_invalid", "$.type"),
        (b'{"type": null}', "schema_invalid", "$.type"),
    ],
)
def test_bad_records_are_rejected_with_their_reason(
    raw: bytes | None, reason: str, mention: str
) -> None:
    result = parse_event(raw, EventType.ORDER)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert mention in result.detail
    assert len(result.detail) <= contracts.DETAIL_MAX_CHARS


def test_valid_event_on_another_types_topic_is_wrong_topic() -> None:
    raw = (EXAMPLES / "order" / "valid" / "renewal_minimal.json").read_bytes()
    result = parse_event(raw, EventType.SIGNUP)
    assert result == Rejection("wrong_topic", "event type 'order' on the topic for 'signup' events")
    assert isinstance(parse_event(raw, EventType.ORDER), dict)
    assert isinstance(parse_event(raw, EventType.CANCELLATION), Rejection)


def test_type_is_checked_before_topic_and_topic_before_schema() -> None:
    # An unknown type is schema_invalid even on a typed topic; a broken order on the
    # signups topic is wrong_topic (the record is misrouted before it is malformed).
    assert parse_event(b'{"type": "refund"}', EventType.ORDER) == Rejection(
        "schema_invalid", "$.type: 'refund' is not one of ['signup', 'order', 'cancellation']"
    )
    broken = parse_event(b'{"type": "order"}', EventType.SIGNUP)
    assert isinstance(broken, Rejection) and broken.reason == "wrong_topic"
    assert parse_event(b'{"type": "order"}', EventType.ORDER) == Rejection(
        "schema_invalid", "$: 'schema_version' is a required property"
    )


def test_long_details_are_truncated() -> None:
    result = parse_event(_order(order_id="x" * 5000))
    assert isinstance(result, Rejection)
    assert result.detail.startswith("$.order_id: 'xxx")
    assert len(result.detail) == contracts.DETAIL_MAX_CHARS
    assert result.detail.endswith("...")


def test_parse_event_never_raises_on_mangled_records() -> None:
    rng = random.Random(20260301)
    seeds = [p.read_bytes() for _, p in (x.values for x in _examples(INPUT_TYPES, "valid"))]
    outcomes: set[str] = set()
    for _ in range(2000):
        raw = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        result = parse_event(bytes(raw), rng.choice([None, *EventType]))
        assert isinstance(result, (dict, Rejection))
        outcomes.add("ok" if isinstance(result, dict) else result.reason)
    assert {"undecodable", "invalid_json", "schema_invalid"} <= outcomes


# --- outputs --------------------------------------------------------------------------------


def test_validate_output_accepts_non_dict_mappings() -> None:
    from types import MappingProxyType

    event = _load(EXAMPLES / "segment_changed" / "valid" / "timer_cause_at_risk.json")
    validate_output("segment_changed", MappingProxyType(event))
    with pytest.raises(ValidationError):
        validate_output("dead_letter", event)


def test_unknown_output_schema_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="no schema 'nope'"):
        validate_output("nope", {})  # type: ignore[arg-type]
