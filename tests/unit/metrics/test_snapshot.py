"""The metrics-snapshot message, its schema file and the schema's examples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, ValidationError

from segstream.domain import contracts
from segstream.domain.contracts import SCHEMA_DIR, schema_path, validate_output
from segstream.metrics.ledger import MetricsLedger, UnknownShopError
from segstream.metrics.snapshot import snapshot_payload
from tests.schema_docs import undocumented
from tests.unit.metrics.builders import SHOP, Shop, at, cancel, order, signup, tier_and_status

EXAMPLES = SCHEMA_DIR.parent / "examples" / "v1" / "metrics_snapshot"
BROKEN_FIELD = {
    "as_of_without_offset": "as_of",
    "extra_top_level_property": "generated_by",
    "late_events_fractional": "late_events",
    "missing_windows": "windows",
    "mrr_missing_churn": "churn",
    "rate_as_string": "rates.churn",
    "segment_missing_model": "model",
    "subscribers_start_negative": "subscribers.start",
    "window_grain_unknown": "grain",
    "window_start_with_time": "windows[1].start",
    "windows_empty": "windows",
}


def _load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture
def ledger() -> MetricsLedger:
    ledger = MetricsLedger({})
    shop = Shop(ledger, tier_and_status)
    shop.send(
        signup("c1", at("2025-03-01"), price=30.0),
        signup("c2", at("2025-03-03"), price=50.0, tier="premium"),
        cancel("c1", at("2025-03-10"), effective=at("2025-03-31")),
        order("c2", at("2025-03-12")),
    )
    return ledger


def test_snapshot_has_the_running_day_week_and_month_and_segment_churn(
    ledger: MetricsLedger,
) -> None:
    payload = snapshot_payload(SHOP, at("2025-03-12"), ledger)
    validate_output("metrics_snapshot", payload)
    assert payload["snapshot_id"] == "tea-1@2025-03-12T12:00:00Z"
    assert [(w["grain"], w["start"], w["end"], w["complete"]) for w in payload["windows"]] == [
        ("day", "2025-03-12", "2025-03-13", False),  # the running day
        ("week", "2025-03-10", "2025-03-13", False),
        ("month", "2025-03-01", "2025-03-13", False),
    ]
    month = payload["windows"][2]
    assert month["subscribers"]["end"] == 2 and month["mrr"]["end"] == 80.0
    assert month["cancellations"] == 0  # c1's cancellation takes effect on 31 March
    segments = {(s["model"], s["segment"]): s for s in payload["segments"]}
    assert set(segments) == {
        ("status", "active"),
        ("status", "cancelling"),
        ("tier", "basic"),
        ("tier", "premium"),
    }
    assert segments[("status", "cancelling")]["subscribers_end"] == 1
    assert segments[("status", "cancelling")]["churn_rate"] is None  # nobody at the start
    assert payload["late_events"] == 0


def test_snapshot_as_of_an_earlier_day_is_cut_there(ledger: MetricsLedger) -> None:
    payload = snapshot_payload(SHOP, at("2025-03-05"), ledger)
    assert payload["windows"][2]["end"] == "2025-03-06"
    assert payload["windows"][2]["subscribers"]["end"] == 2
    assert snapshot_payload(SHOP, at("2025-03-05"), ledger) == payload


def test_snapshot_of_an_unknown_shop_is_an_error(ledger: MetricsLedger) -> None:
    with pytest.raises(UnknownShopError):
        snapshot_payload("nobody", at("2025-03-05"), ledger)


def test_schema_file_is_2020_12_with_its_id_and_every_property_described() -> None:
    schema = _load(schema_path("metrics_snapshot"))
    Draft202012Validator.check_schema(schema)
    assert schema["$id"] == "https://segstream.example/schemas/v1/metrics_snapshot.json"
    assert schema["additionalProperties"] is False
    assert undocumented(schema, "metrics_snapshot") == []


@pytest.mark.parametrize("path", sorted((EXAMPLES / "valid").glob("*.json")), ids=lambda p: p.stem)
def test_valid_examples_validate(path: Path) -> None:
    validate_output("metrics_snapshot", _load(path))


def test_every_invalid_example_names_its_broken_field() -> None:
    assert {p.stem for p in (EXAMPLES / "invalid").glob("*.json")} == set(BROKEN_FIELD)
    assert len(list((EXAMPLES / "valid").glob("*.json"))) >= 2


@pytest.mark.parametrize(
    "path", sorted((EXAMPLES / "invalid").glob("*.json")), ids=lambda p: p.stem
)
def test_invalid_example_has_one_defect_and_is_rejected_naming_it(path: Path) -> None:
    instance = _load(path)
    errors = list(contracts._contracts().validator("metrics_snapshot").iter_errors(instance))
    assert len({e.json_path for e in errors}) == 1, [e.message for e in errors]
    with pytest.raises(ValidationError) as caught:
        validate_output("metrics_snapshot", instance)
    assert BROKEN_FIELD[path.stem] in f"{caught.value.json_path}: {caught.value.message}"
