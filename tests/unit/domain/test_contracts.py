"""The v1 schema files, their examples, and segstream.domain.contracts' parsing and validation."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import fastjsonschema
import pytest
from jsonschema import Draft202012Validator, FormatChecker, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from harness.badinput import bad_records
from segstream.domain import contracts
from segstream.domain.contracts import (
    EVENT_TYPES,
    SCHEMA_DIR,
    TYPE_NAMES,
    OutputSchema,
    Rejection,
    parse_event,
    schema_path,
    validate_output,
)
from segstream.domain.events import BY_TYPE_NAME, EVENT_CLASSES, Cancellation, Order, Signup
from tests.schema_docs import undocumented

EXAMPLES = SCHEMA_DIR.parent / "examples" / "v1"
INPUT_TYPES = list(TYPE_NAMES)
OUTPUT_TYPES = ["segment_changed", "segment_membership", "segment_formed", "dead_letter"]
SCHEMA_NAMES = ["envelope", *INPUT_TYPES, *OUTPUT_TYPES]
# The valid examples are dated up to 2026-12-24; parse them at a fixed time after that
# (implausible_time rejects an occurred_at more than 2 days ahead of "now").
EXAMPLES_NOW = datetime(2027, 1, 1, tzinfo=UTC)

# The field each invalid example breaks; the rejection detail must name it. Every invalid
# example file must appear here and every entry must have a file (see test below).
BROKEN_FIELD: dict[tuple[str, str], str] = {
    ("signup", "acquisition_channel_unknown"): "acquisition_channel",
    ("signup", "attribute_age_string"): "age",
    ("signup", "attribute_location_type_unknown"): "location_type",
    ("signup", "attribute_name_uppercase"): "BrewStrength",
    ("signup", "attribute_preferences_not_strings"): "preferences",
    ("signup", "attribute_value_object"): "address",
    ("signup", "customer_id_bidi_override"): "customer_id",
    ("signup", "event_id_empty"): "event_id",
    ("signup", "event_id_nul"): "event_id",
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
    ("signup", "plan_id_byte_order_mark"): "plan.plan_id",
    ("signup", "plan_interval_unknown"): "plan.interval",
    ("signup", "plan_price_negative"): "plan.price",
    ("signup", "plan_tier_zero_width_space"): "plan.tier",
    ("signup", "referred_by_line_separator"): "referred_by",
    ("signup", "schema_version_2"): "schema_version",
    ("signup", "shop_id_bad_pattern"): "shop_id",
    ("signup", "shop_id_too_long"): "shop_id",
    ("signup", "shop_id_zero_width_space"): "shop_id",
    ("order", "amount_negative"): "amount",
    ("order", "amount_1e308"): "amount",
    ("order", "amount_1e18"): "amount",
    ("order", "item_quantity_20_digits"): "items[0].quantity",
    ("order", "amount_string"): "amount",
    ("order", "currency_lowercase"): "currency",
    ("order", "currency_trailing_newline"): "currency",
    ("order", "customer_id_left_to_right_mark"): "customer_id",
    ("order", "discount_code_delete"): "discount_code",
    ("order", "discount_code_empty"): "discount_code",
    ("order", "extra_top_level_property"): "customer_email",
    ("order", "is_renewal_string"): "is_renewal",
    ("order", "item_category_word_joiner"): "items[1].category",
    ("order", "item_extra_property"): "gift_wrap",
    ("order", "item_missing_sku"): "sku",
    ("order", "item_quantity_fractional"): "items[1].quantity",
    ("order", "item_quantity_zero"): "items[0].quantity",
    ("order", "item_sku_tab"): "items[0].sku",
    ("order", "item_unit_price_negative"): "items[0].unit_price",
    ("order", "items_not_array"): "items",
    ("order", "missing_is_renewal"): "is_renewal",
    ("order", "missing_order_id"): "order_id",
    ("order", "occurred_at_not_rfc3339"): "occurred_at",
    ("order", "order_id_c1_control"): "order_id",
    ("order", "plan_missing_interval"): "interval",
    ("order", "shop_id_bad_pattern"): "shop_id",
    ("cancellation", "comment_too_long"): "comment",
    ("cancellation", "customer_id_bidi_isolate"): "customer_id",
    ("cancellation", "customer_id_empty"): "customer_id",
    ("cancellation", "customer_id_number"): "customer_id",
    ("cancellation", "effective_at_not_rfc3339"): "effective_at",
    ("cancellation", "event_id_invisible_times"): "event_id",
    ("cancellation", "event_id_newline"): "event_id",
    ("cancellation", "extra_top_level_property"): "refund_amount",
    ("cancellation", "missing_occurred_at"): "occurred_at",
    ("cancellation", "missing_reason"): "reason",
    ("cancellation", "occurred_at_leap_second"): "occurred_at",
    ("cancellation", "reason_unknown"): "reason",
    ("cancellation", "schema_version_string"): "schema_version",
    ("cancellation", "shop_id_bad_pattern"): "shop_id",
    ("customer_updated", "attribute_age_string"): "attributes.age",
    ("customer_updated", "attribute_number_20_digits"): "attributes.cups_per_day",
    ("customer_updated", "attribute_number_1e308"): "attributes.cups_per_day",
    ("customer_updated", "attributes_empty"): "attributes",
    ("customer_updated", "customer_id_zero_width_joiner"): "customer_id",
    ("customer_updated", "extra_top_level_property"): "email",
    ("customer_updated", "marketing_opt_in_string"): "marketing_opt_in",
    ("customer_updated", "missing_occurred_at"): "occurred_at",
    # no field is missing more than the others: the event states nothing
    ("customer_updated", "nothing_changed"): "is not valid under any of the given schemas",
    ("customer_updated", "preferred_channel_unknown"): "preferred_channel",
    ("plan_changed", "change_unknown"): "change",
    ("plan_changed", "extra_top_level_property"): "previous_plan_id",
    ("plan_changed", "missing_change"): "change",
    ("plan_changed", "missing_plan"): "plan",
    ("plan_changed", "occurred_at_without_offset"): "occurred_at",
    ("plan_changed", "pause_with_price"): "plan.price",
    ("plan_changed", "plan_interval_unknown"): "plan.interval",
    ("plan_changed", "plan_price_negative"): "plan.price",
    ("campaign_response", "action_unknown"): "action",
    ("campaign_response", "campaign_id_empty"): "campaign_id",
    ("campaign_response", "campaign_id_tab"): "campaign_id",
    ("campaign_response", "channel_unknown"): "channel",
    ("campaign_response", "discount_code_too_long"): "discount_code",
    ("campaign_response", "extra_top_level_property"): "email",
    ("campaign_response", "missing_action"): "action",
    ("campaign_response", "missing_campaign_id"): "campaign_id",
    ("feedback", "extra_top_level_property"): "nps",
    ("feedback", "missing_score"): "score",
    ("feedback", "order_id_nul"): "order_id",
    ("feedback", "score_fractional"): "score",
    ("feedback", "score_six"): "score",
    ("feedback", "score_string"): "score",
    ("feedback", "score_zero"): "score",
    ("feedback", "text_too_long"): "text",
    ("touchpoint", "channel_unknown"): "channel",
    ("customer_erased", "extra_top_level_property"): "email",
    ("customer_erased", "missing_customer_id"): "customer_id",
    ("customer_erased", "occurred_at_not_rfc3339"): "occurred_at",
    ("customer_erased", "event_id_empty"): "event_id",
    ("customer_erased", "customer_id_too_long"): "customer_id",
    ("touchpoint", "extra_top_level_property"): "page_url",
    ("touchpoint", "missing_channel"): "channel",
    ("touchpoint", "missing_touchpoint"): "touchpoint",
    ("touchpoint", "touchpoint_unknown"): "touchpoint",
    ("segment_changed", "cause_event_type_unknown"): "event_type",
    ("segment_changed", "cause_kind_unknown"): "kind",
    ("segment_changed", "changed_at_without_offset"): "changed_at",
    ("segment_changed", "current_empty_string"): "current",
    ("segment_changed", "current_name_empty_string"): "current_name",
    ("segment_changed", "event_cause_without_event_id"): "event_id",
    ("segment_changed", "extra_top_level_property"): "score",
    ("segment_changed", "missing_changed_at"): "changed_at",
    ("segment_changed", "previous_number"): "previous",
    ("segment_changed", "marketing_opt_in_string"): "marketing_opt_in",
    ("segment_changed", "churn_probability_above_one"): "churn_probability",
    ("segment_membership", "kind_segment_changed"): "kind",
    ("segment_membership", "missing_change_id"): "change_id",
    ("segment_membership", "segment_null"): "segment",
    ("segment_membership", "since_without_offset"): "since",
    ("segment_formed", "size_zero"): "size",
    ("segment_formed", "missing_segment"): "segment",
    ("dead_letter", "dead_lettered_at_without_offset"): "dead_lettered_at",
    ("dead_letter", "detail_empty"): "detail",
    ("dead_letter", "detail_too_long"): "detail",
    ("dead_letter", "extra_top_level_property"): "retry_count",
    ("dead_letter", "missing_source"): "source",
    ("dead_letter", "original_key_b64_missing"): "original_key_b64",
    ("dead_letter", "original_key_truncated_without_bytes"): "original_key_bytes",
    ("dead_letter", "original_value_b64_not_base64"): "original_value_b64",
    ("dead_letter", "original_value_bytes_negative"): "original_value_bytes",
    ("dead_letter", "original_value_sha256_uppercase"): "original_value_sha256",
    ("dead_letter", "original_value_truncated_missing"): "original_value_truncated",
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
    expected = BY_TYPE_NAME[type_name]
    assert parse_event(raw, expected, EXAMPLES_NOW) == json.loads(raw)
    assert parse_event(raw, now=EXAMPLES_NOW) == json.loads(raw)


@pytest.mark.parametrize(("type_name", "path"), _examples(INPUT_TYPES, "invalid"))
def test_invalid_input_example_is_rejected_naming_the_field(type_name: str, path: Path) -> None:
    result = parse_event(path.read_bytes(), BY_TYPE_NAME[type_name], EXAMPLES_NOW)
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
def test_valid_output_example_validates(type_name: OutputSchema, path: Path) -> None:
    validate_output(type_name, _load(path))


@pytest.mark.parametrize(("type_name", "path"), _examples(OUTPUT_TYPES, "invalid"))
def test_invalid_output_example_raises_naming_the_field(
    type_name: OutputSchema, path: Path
) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_output(type_name, _load(path))
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
    ["2026-03-01T09:30:00Z", "2026-03-01T09:30:00.123456789+05:30", "2000-01-01T00:00:00-00:00"],
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
        (b"[" * 50_000, "invalid_json", "recursion"),
        (b'{"type": "order", "amount": NaN}', "invalid_json", "NaN"),
        (b'{"type": "order", "amount": Infinity}', "invalid_json", "Infinity"),
        (b'{"type": "order", "amount": 1e999}', "invalid_json", "double range"),
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
    result = parse_event(raw, Order)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert mention in result.detail
    assert len(result.detail) <= contracts.DETAIL_MAX_CHARS


def test_valid_event_on_another_types_topic_is_wrong_topic() -> None:
    raw = (EXAMPLES / "order" / "valid" / "renewal_minimal.json").read_bytes()
    result = parse_event(raw, Signup)
    assert result == Rejection("wrong_topic", "event type 'order' on the topic for 'signup' events")
    assert isinstance(parse_event(raw, Order), dict)
    assert isinstance(parse_event(raw, Cancellation), Rejection)


def test_type_is_checked_before_topic_and_topic_before_schema() -> None:
    # An unknown type is schema_invalid even on a typed topic; a broken order on the
    # signups topic is wrong_topic (the record is misrouted before it is malformed).
    assert parse_event(b'{"type": "refund"}', Order) == Rejection(
        "schema_invalid", f"$.type: 'refund' is not one of {list(TYPE_NAMES)}"
    )
    broken = parse_event(b'{"type": "order"}', Signup)
    assert isinstance(broken, Rejection) and broken.reason == "wrong_topic"
    assert parse_event(b'{"type": "order"}', Order) == Rejection(
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
        result = parse_event(bytes(raw), rng.choice([None, *EVENT_CLASSES]))
        assert isinstance(result, (dict, Rejection))
        outcomes.add("ok" if isinstance(result, dict) else result.reason)
    assert {"undecodable", "invalid_json", "schema_invalid"} <= outcomes


# --- hidden characters in ids ---------------------------------------------------------------

HIDDEN = {
    "NUL": "\x00",
    "C0 control (ESC)": "\x1b",
    "tab": "\t",
    "DEL": "\x7f",
    "C1 control (NEL)": "\x85",
    "C1 control (APC)": "\x9f",
    "zero-width space": "\u200b",
    "right-to-left mark": "\u200f",
    "line separator": "\u2028",
    "paragraph separator": "\u2029",
    "left-to-right embedding": "\u202a",
    "right-to-left override": "\u202e",
    "word joiner": "\u2060",
    "invisible plus": "\u2064",
    "left-to-right isolate": "\u2066",
    "pop directional isolate": "\u2069",
    "byte-order mark": "\ufeff",
}
# Where an id-like string sits in which valid example: (type, example, path to the field).
ID_FIELDS: list[tuple[str, str, tuple[str | int, ...]]] = [
    ("signup", "rich_attributes_referral", ("event_id",)),
    ("signup", "rich_attributes_referral", ("customer_id",)),
    ("signup", "rich_attributes_referral", ("shop_id",)),
    ("signup", "rich_attributes_referral", ("referred_by",)),
    ("signup", "rich_attributes_referral", ("plan", "plan_id")),
    ("signup", "rich_attributes_referral", ("plan", "tier")),
    ("order", "one_off_with_items_and_discount", ("order_id",)),
    ("order", "one_off_with_items_and_discount", ("discount_code",)),
    ("order", "one_off_with_items_and_discount", ("items", 0, "sku")),
    ("order", "one_off_with_items_and_discount", ("items", 1, "category")),
    ("cancellation", "minimal", ("customer_id",)),
    ("customer_updated", "consent_withdrawn", ("event_id",)),
    ("plan_changed", "upgrade_to_premium", ("plan", "plan_id")),
    ("campaign_response", "sms_converted_with_code", ("campaign_id",)),
    ("campaign_response", "sms_converted_with_code", ("discount_code",)),
    ("feedback", "low_score_with_text_and_order", ("order_id",)),
]


def _with(type_name: str, example: str, path: tuple[str | int, ...], value: Any) -> bytes:
    """A valid example with the field at ``path`` replaced by ``value``."""
    event: Any = _load(EXAMPLES / type_name / "valid" / f"{example}.json")
    node = event
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return json.dumps(event).encode()


@pytest.mark.parametrize("char", HIDDEN.values(), ids=HIDDEN.keys())
@pytest.mark.parametrize(
    ("type_name", "example", "path"), ID_FIELDS, ids=[".".join(map(str, f[2])) for f in ID_FIELDS]
)
def test_ids_with_control_or_invisible_characters_are_rejected(
    type_name: str, example: str, path: tuple[str | int, ...], char: str
) -> None:
    raw = _with(type_name, example, path, f"ab{char}12")
    result = parse_event(raw, BY_TYPE_NAME[type_name], EXAMPLES_NOW)
    assert isinstance(result, Rejection) and result.reason == "schema_invalid"
    assert str(path[-1]) in result.detail
    assert f"contains U+{ord(char):04X}, a control or invisible character" in result.detail


@pytest.mark.parametrize("text", ["Zoë-7", "顧客-1", "cust 42", "emoji-\U0001f600", "a/b|c"])
def test_visible_unicode_in_ids_is_accepted(text: str) -> None:
    raw = _with("signup", "rich_attributes_referral", ("customer_id",), text)
    assert isinstance(parse_event(raw, Signup, EXAMPLES_NOW), dict)


def test_hidden_character_message_class_matches_the_schema_pattern() -> None:
    # The Python class only words the message; the schema's printable_id decides. They must
    # agree on every BMP character (astral characters are all visible or unassigned).
    printable = contracts._compiled(
        _load(schema_path("envelope"))["$defs"]["printable_id"]["pattern"]
    )
    for code in range(0x10000):
        char = chr(code)
        assert (printable.search(char) is None) == bool(contracts._HIDDEN_CHARACTER.search(char))


# --- duplicate keys, surrogates, nesting ----------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b'{"amount": 1, "amount": 20}', "amount"),
        (b'{"type": "order", "plan": {"price": 1, "currency": "EUR", "price": 2}}', "price"),
        (b'{"items": [{"sku": "a", "sku": "b"}]}', "sku"),
        (b'{"am\\u006funt": 1, "amount": 2}', "amount"),  # the same key once decoded
    ],
)
def test_duplicate_keys_are_invalid_json_naming_the_key(raw: bytes, key: str) -> None:
    result = parse_event(raw, Order)
    assert result == Rejection("invalid_json", f"not valid JSON: duplicate key {key!r}")


def test_duplicate_key_in_an_otherwise_valid_event_is_rejected() -> None:
    raw = (EXAMPLES / "order" / "valid" / "renewal_minimal.json").read_bytes()
    doubled = raw.replace(b'"amount": 14.9', b'"amount": 1, "amount": 14.9')
    assert doubled != raw
    result = parse_event(doubled, Order)
    assert isinstance(result, Rejection) and result.reason == "invalid_json"
    assert "'amount'" in result.detail


@pytest.mark.parametrize("escape", ["\\ud800", "\\uDFFF", "x\\udc00y", "\\ude00\\ud83d"])
def test_unpaired_surrogate_escapes_are_invalid_json(escape: str) -> None:
    raw = _order().replace(b'"cust-000123"', f'"{escape}"'.encode())
    result = parse_event(raw, Order)
    assert isinstance(result, Rejection) and result.reason == "invalid_json"
    assert "surrogate" in result.detail


def test_paired_surrogate_escapes_and_escaped_backslashes_are_fine() -> None:
    emoji = parse_event(_order().replace(b'"cust-000123"', b'"c-\\ud83d\\ude00"'))
    assert isinstance(emoji, dict) and emoji["customer_id"] == "c-\U0001f600"
    literal = parse_event(_order().replace(b'"cust-000123"', b'"c-\\\\ud800"'))
    assert isinstance(literal, dict) and literal["customer_id"] == "c-\\ud800"


def test_deeply_nested_values_are_rejected_without_raising() -> None:
    for depth in (50, 500, 990, 5000):
        nested = b"[" * depth + b"]" * depth
        result = parse_event(_order()[:-1] + b', "items": ' + nested + b"}")
        assert isinstance(result, Rejection), depth
        assert result.reason in ("schema_invalid", "invalid_json")


# --- size -----------------------------------------------------------------------------------


def _padded(size: int) -> bytes:
    """A valid order of exactly ``size`` bytes (JSON whitespace before the closing brace)."""
    raw = _order()
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


def test_records_up_to_max_event_bytes_are_read() -> None:
    assert isinstance(parse_event(_padded(contracts.MAX_EVENT_BYTES)), dict)


@pytest.mark.parametrize("size", [contracts.MAX_EVENT_BYTES + 1, 70_000, 950_000])
def test_larger_records_are_too_large_before_decoding(size: int) -> None:
    expected = Rejection(
        "too_large", f"value is {size} bytes; an input event may have at most 65536 bytes"
    )
    assert parse_event(_padded(size), Order) == expected
    # not even decoded: a non-UTF-8 value of that size is too_large, not undecodable
    assert parse_event(b"\xff" * size, Order) == expected


# --- implausible times ----------------------------------------------------------------------

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-12-03T12:00:00Z",  # exactly MAX_FUTURE_SKEW ahead
        "2026-12-03T13:00:00+01:00",  # the same instant
        "2000-01-01T00:00:00Z",  # exactly EARLIEST_EVENT_TIME
        "2000-01-01T00:00:00.5-01:00",
        "2026-12-01T12:00:00Z",
    ],
)
def test_times_within_the_bounds_are_accepted(stamp: str) -> None:
    assert isinstance(parse_event(_order(occurred_at=stamp), Order, NOW), dict)


@pytest.mark.parametrize(
    ("stamp", "why"),
    [
        ("2026-12-03T12:00:00.000001Z", "is more than 2 days after the current time"),
        ("2026-12-03T12:30:00+00:29", ""),  # 12:01Z: the offset counts
        ("2099-01-01T00:00:00Z", "2026-12-01T12:00:00Z"),
        ("2999-12-31T23:59:59Z", "days after"),
        ("1999-12-31T23:59:59.999Z", "is before 2000-01-01T00:00:00Z"),
        ("2000-01-01T00:30:00+01:00", "is before"),  # 1999-12-31T23:30Z
        ("1970-01-01T00:00:00Z", "is before"),
        ("1900-01-01T00:00:00Z", "is before"),
    ],
)
def test_implausible_occurred_at_is_rejected_with_field_and_why(stamp: str, why: str) -> None:
    result = parse_event(_order(occurred_at=stamp), Order, NOW)
    assert isinstance(result, Rejection) and result.reason == "implausible_time"
    assert result.detail.startswith(f"$.occurred_at: {stamp!r} ")
    assert why in result.detail


def test_the_earliest_event_time_is_a_parameter() -> None:
    """An older history passes with an earlier bound (the worker passes its setting,
    SEGSTREAM_EARLIEST_EVENT_TIME); the message names the bound in force."""
    old = _order(occurred_at="1997-01-01T00:00:00Z")
    earlier = datetime(1995, 1, 1, tzinfo=UTC)
    assert isinstance(parse_event(old, Order, NOW, earliest=earlier), dict)
    later = datetime(1997, 1, 2, tzinfo=UTC)
    result = parse_event(old, Order, NOW, earliest=later)
    assert result == Rejection(
        "implausible_time", "$.occurred_at: '1997-01-01T00:00:00Z' is before 1997-01-02T00:00:00Z"
    )
    effective = _cancellation(
        occurred_at="1997-03-01T00:00:00Z", effective_at="1996-12-31T00:00:00Z"
    )
    assert isinstance(parse_event(effective, Cancellation, NOW, earliest=earlier), dict)
    result = parse_event(effective, Cancellation, NOW, earliest=later)
    assert isinstance(result, Rejection) and result.detail.startswith("$.effective_at: ")


def _cancellation(**changes: Any) -> bytes:
    event = _load(EXAMPLES / "cancellation" / "valid" / "with_effective_at_and_comment.json")
    event.update(changes)
    return json.dumps(event).encode()


def test_effective_at_may_lie_in_the_future_up_to_max_effective_delay() -> None:
    # A yearly plan cancelled today ends up to a year from now: that is no producer bug.
    occurred = "2026-12-01T10:00:00Z"
    for effective in ("2027-12-01T10:00:00Z", "2028-01-05T10:00:00Z", "2026-11-30T00:00:00Z"):
        raw = _cancellation(occurred_at=occurred, effective_at=effective)
        assert isinstance(parse_event(raw, Cancellation, NOW), dict), effective


@pytest.mark.parametrize(
    ("effective", "why"),
    [
        ("2028-01-05T10:00:00.001Z", "is more than 400 days after occurred_at"),
        ("2099-12-01T00:00:00Z", "400 days"),
        ("1999-12-31T23:59:59Z", "is before 2000-01-01T00:00:00Z"),
    ],
)
def test_implausible_effective_at_is_rejected(effective: str, why: str) -> None:
    raw = _cancellation(occurred_at="2026-12-01T10:00:00Z", effective_at=effective)
    result = parse_event(raw, Cancellation, NOW)
    assert isinstance(result, Rejection) and result.reason == "implausible_time"
    assert result.detail.startswith(f"$.effective_at: {effective!r} ") and why in result.detail


def test_the_future_bound_follows_the_wall_clock_by_default() -> None:
    from datetime import timedelta

    from segstream.domain.events import format_time

    soon = format_time(datetime.now(UTC) + timedelta(days=1))
    later = format_time(datetime.now(UTC) + timedelta(days=3))
    assert isinstance(parse_event(_order(occurred_at=soon)), dict)
    result = parse_event(_order(occurred_at=later))
    assert isinstance(result, Rejection) and result.reason == "implausible_time"


def test_schema_and_topic_are_checked_before_time() -> None:
    far = "2099-01-01T00:00:00Z"
    broken = parse_event(_order(occurred_at=far, amount=-1), Order, NOW)
    assert isinstance(broken, Rejection) and broken.reason == "schema_invalid"
    misrouted = parse_event(_order(occurred_at=far), Signup, NOW)
    assert isinstance(misrouted, Rejection) and misrouted.reason == "wrong_topic"


# --- outputs --------------------------------------------------------------------------------


def test_validate_output_accepts_non_dict_mappings() -> None:
    from types import MappingProxyType

    event = _load(EXAMPLES / "segment_changed" / "valid" / "timer_cause_at_risk.json")
    validate_output("segment_changed", MappingProxyType(event))
    with pytest.raises(ValidationError):
        validate_output("dead_letter", event)


def test_every_reason_is_in_the_dead_letter_schema_and_back() -> None:
    enum = _load(schema_path("dead_letter"))["properties"]["reason"]["enum"]
    assert list(get_args(contracts.DeadLetterReason)) == enum
    assert set(get_args(contracts.RejectReason)) < set(enum)


def test_unknown_output_schema_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="no schema 'nope'"):
        validate_output("nope", {})  # type: ignore[arg-type]


def test_the_compiled_validator_agrees_with_jsonschema_on_every_example_and_bad_record() -> None:
    loaded = contracts._contracts()
    cases: list[tuple[str, Any]] = []
    for kind in EVENT_CLASSES:
        for path in sorted((EXAMPLES / kind.type_name).glob("*/*.json")):
            cases.append((kind.type_name, _load(path)))
    for record in bad_records(seed=5, count=2000, shop_ids=["shop-1", "tea-house-2"]):
        try:
            decoded = json.loads(record.value)
        except (ValueError, RecursionError):  # not JSON (or nested too deep to decode)
            continue
        cases.append((EVENT_TYPES[record.role].type_name, decoded))
    disagreements = []
    for name, event in cases:
        try:
            loaded.fast_check(name)(event)
            fast = True
        except fastjsonschema.JsonSchemaException:
            fast = False
        if fast != loaded.validator(name).is_valid(event):
            disagreements.append((name, event))
    assert len(cases) > 1000 and disagreements == []
