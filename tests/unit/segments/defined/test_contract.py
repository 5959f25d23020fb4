"""schemas/v1/segment_definition.json, its examples, and the validator's error paths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from segstream.domain.contracts import EXAMPLE_DIR, document_error, schema_path
from segstream.segments.defined import DefinitionError, validate_definition
from segstream.segments.defined.fields import HISTORIES, catalogue
from tests.schema_docs import undocumented

EXAMPLES = EXAMPLE_DIR / "segment_definition"

# Every invalid example and the path its error must name (the start of the message).
BROKEN_PATH: dict[str, str] = {
    "any_empty": "rule/any",
    "between_low_above_high": "rule/value",
    "campaign_channel_unknown": "rule/where/channel",
    "exists_with_value": "rule/value",
    "extra_top_level_property": "definition",
    "feedback_range_empty": "rule/where/score",
    "gte_string_value": "rule/value",
    "last_two_quantifiers": "rule",
    "missing_rule": "definition",
    "name_too_long": "name",
    "nested_too_deep": "rule/not/not/not/not/not/not/not/not",
    "op_not_for_field_type": "rule/all/1/op",
    "op_unknown": "rule/op",
    "prediction_unknown": "rule/field",
    "segment_id_uppercase": "segment_id",
    "sum_of_unknown_item_field": "rule/sum",
    "too_many_nodes": "rule/any/7",
    "two_kinds_in_one_node": "rule",
    "unknown_field": "rule/all/0/field",
    "value_type_mismatch": "rule/all/2/value",
    "version_zero": "version",
}


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _paths(kind: str) -> list[Any]:
    return [pytest.param(p, id=p.stem) for p in sorted((EXAMPLES / kind).glob("*.json"))]


def test_schema_is_2020_12_with_id_title_and_every_property_described() -> None:
    schema = _load(schema_path("segment_definition"))
    Draft202012Validator.check_schema(schema)
    assert schema["$id"] == "https://segstream.example/schemas/v1/segment_definition.json"
    assert schema["title"] and schema["description"]
    assert undocumented(schema, "segment_definition") == []
    # not an input event: no "type" const, so the event registry does not claim it
    assert "type" not in schema["properties"]


def test_schema_lists_the_histories_the_code_has() -> None:
    schema = _load(schema_path("segment_definition"))
    assert schema["$defs"]["history"]["enum"] == list(HISTORIES)
    sums = schema["$defs"]["sum_rule"]["properties"]["sum"]["enum"]
    for name in sums:
        history, item_field = name.split(".")
        assert HISTORIES[history].fields[item_field][1] == "number"


def test_every_catalogue_name_matches_the_schemas_field_pattern() -> None:
    pattern = _load(schema_path("segment_definition"))["$defs"]["field_name"]
    check = Draft202012Validator(pattern)
    assert all(check.is_valid(name) for name in catalogue())


def test_examples_are_there_and_every_invalid_one_is_listed() -> None:
    assert len(list((EXAMPLES / "valid").glob("*.json"))) >= 5
    assert {p.stem for p in (EXAMPLES / "invalid").glob("*.json")} == set(BROKEN_PATH)


@pytest.mark.parametrize("path", _paths("valid"))
def test_valid_example_validates_and_round_trips(path: Path) -> None:
    payload = _load(path)
    assert document_error("segment_definition", payload) is None
    definition = validate_definition(payload)
    assert definition.to_json() == payload
    assert definition.segment_id == payload["segment_id"]


@pytest.mark.parametrize("path", _paths("invalid"))
def test_invalid_example_is_rejected_naming_its_path(path: Path) -> None:
    with pytest.raises(DefinitionError) as caught:
        validate_definition(_load(path))
    error = caught.value
    assert error.path == BROKEN_PATH[path.stem]
    assert str(error) == f"{error.path}: {error.reason}"


def test_document_error_knows_only_existing_schemas() -> None:
    assert document_error("segment_definition", {}) is not None
    with pytest.raises(KeyError, match="no schema 'nope'"):
        document_error("nope", {})


@pytest.mark.parametrize("payload", [None, [], "rule", 3])
def test_a_non_object_is_rejected_not_raised_on(payload: Any) -> None:
    with pytest.raises(DefinitionError, match=r"^definition: "):
        validate_definition(payload)


def test_a_deeply_nested_payload_is_rejected_before_the_schema_walks_it() -> None:
    rule: Any = {"field": "categories", "op": "exists"}
    for _ in range(5000):
        rule = {"not": rule}
    payload = _load(EXAMPLES / "valid" / "green_tea_lovers.json") | {"rule": rule}
    with pytest.raises(DefinitionError, match="at most 8 levels"):
        validate_definition(payload)
    wide = {"any": [{"all": [{"field": "categories", "op": "exists"}] * 32}] * 32}
    with pytest.raises(DefinitionError, match="at most 64 nodes"):
        validate_definition(payload | {"rule": wide})
