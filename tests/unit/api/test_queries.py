"""Query answers computed from a pipeline fed in-process with a simulated shop."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from harness.stores import feed
from segstream.api import queries
from segstream.domain.customer import CustomerState
from segstream.domain.events import format_time
from segstream.engine.pipeline import Pipeline
from segstream.learning import lifetime as lifetime_module
from segstream.segments.defined import DefinitionError
from segstream.settings import Settings
from segstream.tools.simulation.generator import SimulationConfig, generate
from segstream.tools.simulation.shops import shops_per_kind

SHOP = "coffee-roaster-1"
EXAMPLES = (
    Path(__file__).resolve().parents[3] / "schemas" / "examples" / "v1" / "segment_definition"
)


@cache
def fed() -> tuple[Pipeline, dict[str, str]]:
    coffee = tuple(shop for shop in shops_per_kind(1) if shop.shop_id == SHOP)
    simulation = generate(SimulationConfig(seed=3, shops=coffee, customers_per_shop=60, days=300))
    pipeline = Pipeline(Settings(), {}, {}, {}, {})
    feed(pipeline, simulation.outbox())
    personas: dict[str, str] = {
        t.customer_id: t.persona for t in simulation.truth if t.shop_id == SHOP
    }
    return pipeline, personas


def lifetimes_by_persona(persona: str) -> list[dict[str, Any]]:
    pipeline, personas = fed()
    answers = [
        queries.customer(pipeline.reader, SHOP, c) for c, p in personas.items() if p == persona
    ]
    return [a["lifetime"] for a in answers if a["lifetime"] is not None]


def test_declining_big_spenders_are_flagged_cant_lose_and_loyal_customers_are_not() -> None:
    declining, loyal = lifetimes_by_persona("declining_big_spender"), lifetimes_by_persona("loyal")
    assert declining and loyal
    assert sum(bool(x["cant_lose"]) for x in declining) / len(declining) > 0.5
    assert not any(x["cant_lose"] for x in loyal)


def test_p_alive_is_high_for_loyal_customers_and_low_for_declining_ones() -> None:
    def mean(rows: list[dict[str, Any]]) -> float:
        return sum(float(r["p_alive"]) for r in rows) / len(rows)

    assert mean(lifetimes_by_persona("loyal")) > 0.8
    assert mean(lifetimes_by_persona("declining_big_spender")) < 0.3


def test_unknown_customer_and_shop_are_not_found() -> None:
    pipeline, _ = fed()
    with pytest.raises(queries.NotFoundError, match="nobody"):
        queries.customer(pipeline.reader, SHOP, "nobody")
    with pytest.raises(queries.NotFoundError, match="no-shop"):
        queries.segment_sizes(pipeline.reader, "no-shop")


def test_a_customers_lifetime_comes_from_the_streams_fit_not_a_fit_per_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipeline, _ = fed()
    fit = pipeline.book(SHOP).lifetime.fit
    assert fit is not None

    def no_fit(*args: object) -> None:
        raise AssertionError("the API fitted a model")

    monkeypatch.setattr(lifetime_module, "fit_customers", no_fit)
    buyer = next(s for s in pipeline.shop_customers(SHOP) if len(s.purchase_days) > 1)
    answer = queries.customer(pipeline.reader, SHOP, buyer.customer_id)["lifetime"]
    view = pipeline.view(buyer, queries.shop_now(pipeline.reader, SHOP))
    assert answer["p_alive"] == fit.model.p_alive(view.frequency, view.recency, view.T)
    assert answer["clv_trend"] in ("rising", "steady", "declining", None)


def definition(rule: dict[str, Any], shop_id: str = SHOP) -> bytes:
    """A segment definition of ``shop_id`` holding ``rule``, as a request body."""
    payload = {
        "schema_version": 1,
        "shop_id": shop_id,
        "segment_id": "preview-me",
        "name": "Preview me",
        "version": 3,
        "rule": rule,
    }
    return json.dumps(payload).encode()


LOYAL_OR_FREQUENT: dict[str, Any] = {
    "any": [
        {"field": "segments.lifecycle", "op": "eq", "value": "loyal"},
        {"all": [{"field": "behaviour.order_count", "op": "gte", "value": 4}]},
    ]
}
BOUGHT_IN_90_DAYS: dict[str, Any] = {
    "count": "purchase_days",
    "within_days": 90,
    "op": "gte",
    "value": 1,
}


def test_a_preview_counts_what_a_plain_recount_over_the_states_counts() -> None:
    pipeline, _ = fed()
    now = queries.shop_now(pipeline.reader, SHOP)
    states = list(pipeline.shop_customers(SHOP))
    recent = now.date() - timedelta(days=89)
    recounts: dict[str, tuple[dict[str, Any], list[CustomerState]]] = {
        "loyal or frequent": (
            LOYAL_OR_FREQUENT,
            [s for s in states if s.segments.get("lifecycle") == "loyal" or s.order_count >= 4],
        ),
        "bought in 90 days": (
            BOUGHT_IN_90_DAYS,
            [s for s in states if any(recent <= d <= now.date() for d in s.purchase_days)],
        ),
    }
    for name, (rule, expected) in recounts.items():
        preview = queries.definition_preview(pipeline.reader, SHOP, definition(rule), {})
        ids = sorted(s.customer_id for s in expected)
        assert 0 < len(ids) < len(states), name  # the rule splits the shop
        assert preview == {
            "shop_id": SHOP,
            "segment_id": "preview-me",
            "version": 3,
            "as_of": format_time(now),
            "customers": len(states),
            "matching": len(ids),
            "sample": ids[:20],
        }, name
        negated = definition({"not": rule})
        assert queries.definition_preview(pipeline.reader, SHOP, negated, {})["matching"] == len(
            states
        ) - len(ids)


def test_a_preview_lists_up_to_limit_matching_ids_in_order() -> None:
    pipeline, _ = fed()
    body = definition({"field": "behaviour.order_count", "op": "gte", "value": 0})
    everyone = sorted(s.customer_id for s in pipeline.shop_customers(SHOP))
    assert len(everyone) > queries.MAX_SAMPLE // 2
    for limit, size in (("0", 0), ("1", 1), ("7", 7), ("100", min(100, len(everyone)))):
        preview = queries.definition_preview(pipeline.reader, SHOP, body, {"limit": limit})
        assert preview["matching"] == len(everyone)
        assert preview["sample"] == everyone[:size]
    for limit in ("-1", "101", "many", ""):
        with pytest.raises(queries.BadRequestError, match="limit must be an integer from 0 to 100"):
            queries.definition_preview(pipeline.reader, SHOP, body, {"limit": limit})


def test_an_invalid_definition_names_the_offending_part() -> None:
    pipeline, _ = fed()
    wrong_type = {"all": [BOUGHT_IN_90_DAYS, {"field": "plan.interval", "op": "eq", "value": 1}]}
    with pytest.raises(DefinitionError) as raised:
        queries.definition_preview(pipeline.reader, SHOP, definition(wrong_type), {})
    assert raised.value.path == "rule/all/1/value"
    assert str(raised.value).startswith("rule/all/1/value: ")
    for example in sorted((EXAMPLES / "invalid").glob("*.json")):
        payload = json.loads(example.read_text())
        payload["shop_id"] = SHOP
        with pytest.raises(DefinitionError):
            queries.definition_preview(pipeline.reader, SHOP, json.dumps(payload).encode(), {})


def test_every_valid_example_previews_on_its_own_shop() -> None:
    pipeline, _ = fed()
    for example in sorted((EXAMPLES / "valid").glob("*.json")):
        payload = json.loads(example.read_text())
        payload["shop_id"] = SHOP
        preview = queries.definition_preview(
            pipeline.reader, SHOP, json.dumps(payload).encode(), {}
        )
        assert 0 <= preview["matching"] <= preview["customers"], example.name


def test_a_definition_of_another_shop_is_a_bad_request() -> None:
    pipeline, _ = fed()
    with pytest.raises(queries.BadRequestError, match="'tea-house-1', not 'coffee-roaster-1'"):
        queries.definition_preview(
            pipeline.reader, SHOP, definition(BOUGHT_IN_90_DAYS, "tea-house-1"), {}
        )


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        (b"", "empty"),
        (b"  \n", "empty"),
        (b"rule: all", "not JSON"),
        (b'{"schema_version": 1,', "not JSON"),
        (b"\xff\xfe\xfa", "not JSON"),
        (b'{"version": NaN}', "NaN is not a JSON number"),
        (b"[" * 100_000, "not JSON"),
    ],
)
def test_a_body_that_is_not_json_is_a_bad_request(body: bytes, mentions: str) -> None:
    pipeline, _ = fed()
    with pytest.raises(queries.BadRequestError, match=mentions):
        queries.definition_preview(pipeline.reader, SHOP, body, {})


def test_a_preview_of_an_unknown_shop_is_not_found_whatever_the_body() -> None:
    pipeline, _ = fed()
    with pytest.raises(queries.NotFoundError, match="no-shop"):
        queries.definition_preview(pipeline.reader, "no-shop", b"not json", {})


def test_a_fit_whose_next_order_is_out_of_reach_answers_null_not_an_error() -> None:
    # the quality variants' small shops fitted r = 0.0005: 2 ** (1 / r) overflowed a float
    pipeline, personas = fed()
    state = pipeline.load(SHOP, next(iter(personas)))
    view = pipeline.view(state, queries.shop_now(pipeline.reader, SHOP))
    tiny = lifetime_module.BgNbd(r=0.0005, alpha=4.41, a=0.79, b=2.43)
    view = replace(view, frequency=0, lifetime=lifetime_module.LifetimeFit(tiny, 20.0, 0))
    answer = queries.lifetime(pipeline.reader, state, view)
    assert answer is not None
    assert answer["expected_days_to_next_order"] is None
    assert answer["expected_next_order_at"] is None
