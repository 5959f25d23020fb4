"""Adding a segment model is adding its module: a toy model that is no module of the
package (``tests/toy_model.py``), registered, is in the engine's books, the query API's
answers, the rules' fields, the generated OpenAPI components and the contract suite, with
no other file naming it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from harness.stores import feed
from segstream.api import document, queries
from segstream.engine.pipeline import Pipeline
from segstream.segments import available_models, registered
from segstream.segments.defined import DefinitionError, catalogue
from segstream.settings import Settings
from tests import factories
from tests.factories import SHOP, order
from tests.hand_lists import listing
from tests.toy_model import SpendBandModel
from tests.unit.segments import test_contract

T0 = datetime(2025, 3, 1, 9, tzinfo=UTC)
SPEND = {"c-1": 20.0, "c-2": 45.0, "c-3": 80.0, "c-4": 150.0}
"""Each customer's one order: two small spenders, two big ones (BIG_SPEND is 60)."""


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    """A pipeline built while the toy model is registered, fed an order per customer and
    a signup that never ordered."""
    with registered(SpendBandModel):
        built = Pipeline(Settings(rfm_min_customers=1), {}, {}, {}, {})
        records: list[tuple[str, dict[str, Any]]] = [
            ("orders", order(customer, T0 + timedelta(hours=n), f"e-{n}", amount))
            for n, (customer, amount) in enumerate(SPEND.items())
        ]
        records.append(("signups", factories.signup("c-5", T0 + timedelta(days=1), "e-s")))
        feed(built, records)
        yield built


def definition(rule: dict[str, Any]) -> bytes:
    payload = {
        "schema_version": 1,
        "shop_id": SHOP,
        "segment_id": "big",
        "name": "Big",
        "rule": rule,
    }
    return json.dumps(payload).encode()


def test_the_query_api_answers_with_the_toy_models_segments(pipeline: Pipeline) -> None:
    bands = {
        c: queries.customer(pipeline.reader, SHOP, c)["segments"].get("spend_band") for c in SPEND
    }
    assert bands == {"c-1": "small", "c-2": "small", "c-3": "big", "c-4": "big"}
    assert "spend_band" not in queries.customer(pipeline.reader, SHOP, "c-5")["segments"]
    sizes = queries.segment_sizes(pipeline.reader, SHOP)["models"]
    assert sizes["spend_band"] == {"big": 2, "small": 2}
    members = queries.segment_members(pipeline.reader, SHOP, "spend_band", "big", {})
    assert members["customers"] == ["c-3", "c-4"]
    with pytest.raises(queries.NotFoundError, match="known: small, big"):
        queries.segment_members(pipeline.reader, SHOP, "spend_band", "huge", {})


def test_a_shop_defined_rule_reads_the_toy_models_segment(pipeline: Pipeline) -> None:
    assert "segments.spend_band" in catalogue()
    rule = {"field": "segments.spend_band", "op": "eq", "value": "big"}
    preview = queries.definition_preview(pipeline.reader, SHOP, definition(rule), {})
    assert (preview["matching"], preview["sample"]) == (2, ["c-3", "c-4"])
    unknown = {"field": "segments.spend_band", "op": "eq", "value": "huge"}
    with pytest.raises(DefinitionError, match="small, big"):
        queries.definition_preview(pipeline.reader, SHOP, definition(unknown), {})


def test_the_generated_openapi_document_offers_the_toy_model() -> None:
    def offered() -> dict[str, bool]:
        spec = document.rewritten(json.loads(document.SPEC_PATH.read_text()))
        schemas = spec["components"]["schemas"]
        targets = schemas["ExperimentTarget"]["anyOf"]
        fields = schemas["SegmentRule.catalogue"]["anyOf"]
        return {
            "model name": "spend_band" in schemas["ModelName"]["enum"],
            "segments": "spend_band" in schemas["Segments"]["properties"],
            "sizes": "spend_band" in schemas["SegmentSizes"]["properties"]["models"]["properties"],
            "experiment target": any(
                b["properties"]["model"].get("const") == "spend_band" for b in targets
            ),
            "rule field": any(
                b["properties"]["field"].get("const") == "segments.spend_band" for b in fields
            ),
        }

    assert not any(offered().values())
    with registered(SpendBandModel):
        assert all(offered().values()), offered()


def test_the_contract_suite_runs_over_the_toy_model() -> None:
    assert dict(test_contract.MODELS)["spend_band"] is SpendBandModel


def test_without_registration_the_toy_model_is_nowhere() -> None:
    assert "segments.spend_band" not in catalogue()
    rule = {"field": "segments.spend_band", "op": "eq", "value": "big"}
    built = Pipeline(Settings(), {}, {}, {}, {})
    feed(built, [("orders", order("c-1", T0, "e-1", 80.0))])
    assert "spend_band" not in queries.customer(built.reader, SHOP, "c-1")["segments"]
    with pytest.raises(DefinitionError, match=r"unknown field 'segments\.spend_band'"):
        queries.definition_preview(built.reader, SHOP, definition(rule), {})


LISTS_THE_MODELS = {
    "deploy/openapi.json": "the lists python -m segstream.api.document writes, and examples",
    "docs/segments.md": "the table python -m segstream.tools.models_doc writes, and notes",
    "bench/quality_replay.py": "scores what each built-in model answers",
    "README.md": "the flow diagram",
}
"""The only files that may name every model of the package in one passage (with four, a
passage naming three is an example, not a list)."""


def test_nothing_else_lists_the_segment_models_by_hand() -> None:
    found = listing([list(available_models())], share=1.0)
    assert set(found) <= set(LISTS_THE_MODELS), {
        path: lines[:3] for path, lines in found.items() if path not in LISTS_THE_MODELS
    }
