"""Evaluating shop-defined segments: every op, every aggregate, the issue's five segments."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from segstream.domain.contracts import EXAMPLE_DIR
from segstream.domain.customer import CustomerState, day_number, id_hash
from segstream.domain.events import Plan
from segstream.domain.features import CustomerSnapshot, snapshot
from segstream.learning.lifetime import BgNbd, LifetimeFit
from segstream.learning.retention import HORIZONS
from segstream.observability.telemetry import REGISTRY
from segstream.segments import available_models
from segstream.segments.churn_risk import ChurnRiskModel
from segstream.segments.defined import (
    PREDICTIONS,
    CompiledRule,
    DefinitionError,
    compile_definition,
    rules,
    validate_definition,
)
from segstream.segments.defined.fields import catalogue, resolve
from segstream.segments.defined.timing import Looks, OutOfLooksError
from tests.factories import LogRecorder
from tests.states import plan, state

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
TODAY = NOW.date()


def ago(days: int) -> str:
    """The ISO day ``days`` before NOW's day."""
    return (TODAY - timedelta(days=days)).isoformat()


def touch(days: int, action: str, channel: str = "email", campaign: str = "c1") -> Any:
    return (day_number(NOW) - days, action, channel, id_hash(campaign))


def customer(**fields: Any) -> tuple[CustomerState, CustomerSnapshot]:
    kept = state("shop", "c-1", **fields)
    kept.campaign_touches.sort()
    kept.feedback_scores.sort()
    return kept, snapshot(kept, NOW)


def compiled(rule: dict[str, Any]) -> CompiledRule:
    payload = {
        "schema_version": 1,
        "shop_id": "shop",
        "segment_id": "s",
        "name": "S",
        "version": 1,
        "rule": rule,
    }
    return compile_definition(validate_definition(payload))


def holds(rule: dict[str, Any], who: tuple[CustomerState, CustomerSnapshot]) -> bool:
    result = compiled(rule)(*who)
    assert compiled({"not": rule})(*who) is not result  # two-valued: a partition
    return result


def cond(name: str, op: str, value: Any = None) -> dict[str, Any]:
    node: dict[str, Any] = {"field": name, "op": op}
    if op != "exists":
        node["value"] = value
    return node


BUYER = customer(
    purchase_days={ago(100): 20.0, ago(40): 30.0, ago(10): 50.0},
    order_count=4,
    total_spend=100.0,
    discount_order_count=1,
    categories={"green_tea": 2, "teapot": 1},
    attributes={"age": 34, "location_type": "urban", "preferences": ["vegan"], "vip": True},
    segments={"churn_risk": "high", "rfm": "Champions"},
    acquisition_channel="referral",
    referred_by="c-0",
    marketing_opt_in=True,
    signups=[f"{ago(120)}T09:00:00Z"],
    plans=[(f"{ago(120)}T09:00:00Z", plan(25.0, "month", "premium"))],
    first_seen_at=f"{ago(120)}T09:00:00Z",
)
NOBODY = customer()


# --- conditions: every op ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "buyer", "nobody"),
    [
        (cond("behaviour.order_count", "eq", 4), True, False),
        (cond("behaviour.order_count", "eq", 4.0), True, False),
        (cond("behaviour.order_count", "ne", 4), False, True),  # 0 orders is a value
        (cond("behaviour.order_count", "lt", 5), True, True),
        (cond("behaviour.order_count", "lte", 4), True, True),
        (cond("behaviour.order_count", "gt", 4), False, False),
        (cond("behaviour.order_count", "gte", 4), True, False),
        (cond("behaviour.order_count", "in", [1, 4]), True, False),
        (cond("behaviour.order_count", "between", [4, 4]), True, False),
        (cond("behaviour.days_since_last_purchase", "between", [10, 10]), True, False),
        (cond("behaviour.days_since_last_purchase", "lt", 1000), True, False),  # missing
        (cond("behaviour.days_since_last_purchase", "ne", 3), True, False),  # missing: false
        (cond("behaviour.days_since_last_purchase", "exists"), True, False),
        (cond("plan.tier", "eq", "premium"), True, False),
        (cond("plan.tier", "ne", "basic"), True, False),
        (cond("plan.interval", "in", ["month", "year"]), True, False),
        (cond("plan.price", "gte", 25), True, False),
        (cond("subscription.status", "eq", "active"), True, False),
        (cond("subscription.status", "eq", "none"), False, True),
        (cond("contact.marketing_opt_in", "eq", True), True, False),
        (cond("contact.marketing_opt_in", "ne", True), False, False),
        (cond("categories", "contains", "green_tea"), True, False),
        (cond("categories", "contains", "coffee"), False, False),
        (cond("categories", "exists"), True, False),
        (cond("attributes.preferences", "contains", "vegan"), True, False),
        (cond("attributes.age", "between", [30, 40]), True, False),
        (cond("attributes.vip", "eq", True), True, False),  # an open attribute
        (cond("attributes.vip", "eq", 1), False, False),  # a boolean is no number
        (cond("attributes.vip", "in", [1, "yes"]), False, False),
        (cond("attributes.vip", "in", [True]), True, False),
        (cond("attributes.vip", "gte", 0), False, False),
        (cond("attributes.vip", "contains", "x"), False, False),
        (cond("attributes.vip", "eq", "true"), False, False),  # open types compare as stated
        (cond("attributes.location_type", "eq", "urban"), True, False),
        (cond("segments.churn_risk", "eq", "high"), True, False),
        (cond("segments.lifecycle", "exists"), False, False),
        (cond("acquisition.referred_by", "exists"), True, False),
    ],
)
def test_each_op_on_a_buyer_and_on_a_customer_with_nothing(
    rule: dict[str, Any], buyer: bool, nobody: bool
) -> None:
    assert holds(rule, BUYER) is buyer
    assert holds(rule, NOBODY) is nobody


def test_all_any_not() -> None:
    yes, no = cond("behaviour.order_count", "eq", 4), cond("behaviour.order_count", "eq", 5)
    assert holds({"all": [yes, yes]}, BUYER) and not holds({"all": [yes, no]}, BUYER)
    assert holds({"any": [no, yes]}, BUYER) and not holds({"any": [no, no]}, BUYER)
    assert holds({"not": no}, BUYER) and not holds({"not": {"not": no}}, BUYER)
    assert holds({"all": [yes]}, BUYER) and not holds({"any": [no]}, BUYER)


# --- aggregates ----------------------------------------------------------------------------


def count(history: str, op: str, value: Any, **extra: Any) -> dict[str, Any]:
    return {"count": history, **extra, "op": op, "value": value}


def test_count_of_purchase_days_in_a_window_includes_today_and_stops_at_its_edge() -> None:
    who = customer(purchase_days={ago(0): 5.0, ago(29): 10.0, ago(30): 20.0, ago(200): 1.0})
    assert holds(count("purchase_days", "eq", 1, within_days=1), who)
    assert holds(count("purchase_days", "eq", 2, within_days=30), who)
    assert holds(count("purchase_days", "eq", 3, within_days=31), who)
    assert holds(count("purchase_days", "eq", 4), who)  # no window: every kept item
    where = {"amount": {"gte": 10, "lt": 20}}
    assert holds(count("purchase_days", "eq", 1, where=where), who)
    assert holds(count("purchase_days", "eq", 2, where={"amount": {"gt": 5}}), who)
    assert holds(count("purchase_days", "between", [0, 0]), NOBODY)


def test_items_after_the_evaluation_day_are_not_seen() -> None:
    kept = state(purchase_days={ago(0): 5.0, ago(-1): 7.0, ago(-3): 7.0})
    view = snapshot(kept, NOW)
    assert compiled(count("purchase_days", "eq", 1))(kept, view)
    latest = {"last": 1, "of": "purchase_days", "every": {"amount": {"lt": 6}}}
    assert compiled(latest)(kept, view)


def test_sum_of_amounts_and_of_scores() -> None:
    who = customer(
        purchase_days={ago(1): 12.5, ago(20): 30.0, ago(90): 100.0},
        feedback_scores=[(day_number(NOW) - 2, 2), (day_number(NOW) - 50, 5)],
    )
    spend = {"sum": "purchase_days.amount", "within_days": 30, "op": "eq", "value": 42.5}
    assert holds(spend, who)
    assert holds({**spend, "where": {"amount": {"lte": 20}}, "value": 12.5}, who)
    assert holds({"sum": "purchase_days.amount", "op": "gt", "value": 142}, who)
    assert holds({"sum": "feedback.score", "op": "eq", "value": 7}, who)
    assert holds({"sum": "feedback.score", "within_days": 3, "op": "in", "value": [2, 3]}, who)
    assert holds({"sum": "purchase_days.amount", "op": "eq", "value": 0}, NOBODY)


def test_count_of_campaign_responses_filters_on_action_and_channel() -> None:
    who = customer(
        campaign_touches=[
            touch(1, "delivered"),
            touch(1, "opened"),
            touch(5, "delivered", "sms", "c2"),
            touch(60, "clicked", "push", "c3"),
        ]
    )
    assert holds(count("campaign_responses", "eq", 4), who)
    assert holds(count("campaign_responses", "eq", 3, within_days=30), who)
    assert holds(count("campaign_responses", "eq", 2, where={"action": "delivered"}), who)
    both = {"action": ["opened", "clicked"], "channel": ["email", "push"]}
    assert holds(count("campaign_responses", "eq", 2, where=both), who)
    assert holds(count("campaigns", "eq", 3), who)
    assert holds(count("campaigns", "eq", 1, where={"action": "opened"}), who)


def test_count_of_feedback_by_score() -> None:
    who = customer(
        feedback_scores=[(day_number(NOW) - d, s) for d, s in [(1, 1), (10, 2), (40, 5)]]
    )
    assert holds(count("feedback", "eq", 2, where={"score": {"lte": 2}}), who)
    assert holds(count("feedback", "eq", 1, where={"score": [5, 4]}), who)
    assert holds(count("feedback", "eq", 1, where={"score": 2}, within_days=30), who)


def test_last_n_needs_n_items_and_reads_the_latest() -> None:
    def last(quantifier: str, test: dict[str, Any], n: int = 2) -> dict[str, Any]:
        return {"last": n, "of": "purchase_days", quantifier: test}

    who = customer(purchase_days={ago(30): 5.0, ago(20): 50.0, ago(10): 60.0})
    big = {"amount": {"gte": 40}}
    assert holds(last("every", big), who)
    assert not holds(last("every", big, 3), who)
    assert holds(last("some", big, 3), who)
    assert holds(last("none", {"amount": {"lt": 40}}), who)
    assert not holds(last("none", big, 4), who)  # only 3 purchase days
    assert not holds(last("none", big, 1), NOBODY)


# --- the five segments, on hand-built customers -------------------------------------


def example(name: str) -> CompiledRule:
    path = EXAMPLE_DIR / "segment_definition" / "valid" / f"{name}.json"
    return compile_definition(validate_definition(json.loads(path.read_text())))


def test_vegan_meal_kit_customers_in_cities_with_three_orders() -> None:
    rule = example("vegan_meal_kit_city_regulars")
    fields = {
        "attributes": {"preferences": ["vegan", "spicy"], "location_type": "urban"},
        "categories": {"meal_kit": 3},
        "order_count": 3,
    }
    assert rule(*customer(**fields))
    assert not rule(*customer(**{**fields, "order_count": 2}))
    assert not rule(*customer(**{**fields, "attributes": {"preferences": ["vegan"]}}))
    rural = {"preferences": ["vegan"], "location_type": "rural"}
    assert not rule(*customer(**{**fields, "attributes": rural}))
    assert not rule(*customer(**{**fields, "categories": {"snack": 3}}))


def test_green_tea_lovers() -> None:
    rule = example("green_tea_lovers")
    assert rule(*customer(categories={"green_tea": 1}))
    assert rule(*customer(attributes={"preferences": ["green_tea"]}))
    assert not rule(*customer(categories={"black_tea": 4}, attributes={"preferences": []}))


def test_high_spend_but_churn_risk_high() -> None:
    rule = example("high_spend_churn_risk")
    spent = {ago(d): 60.0 for d in (10, 50, 100, 200, 300)}
    assert rule(*customer(purchase_days=spent, segments={"churn_risk": "high"}))
    assert not rule(*customer(purchase_days=spent, segments={"churn_risk": "medium"}))
    old = {ago(d): 60.0 for d in (10, 50, 100, 200, 400)}  # one of them over a year ago
    assert not rule(*customer(purchase_days=old, segments={"churn_risk": "high"}))


def test_opened_none_of_the_last_three_emails() -> None:
    rule = example("opened_none_of_last_3_emails")
    sent = [touch(d, "delivered", campaign=f"m{d}") for d in (30, 20, 10)]
    assert rule(*customer(campaign_touches=sent))
    # an open of an older e-mail does not count; an sms in between is no e-mail
    older = [*sent, touch(40, "delivered", campaign="m40"), touch(40, "opened", campaign="m40")]
    older.append(touch(5, "delivered", "sms", "s5"))
    assert rule(*customer(campaign_touches=older))
    # an open of one of the three, even on a later day, does
    assert not rule(*customer(campaign_touches=[*sent, touch(2, "opened", campaign="m20")]))
    # a fourth, newer e-mail pushes the opened one out
    opened_old = [*sent, touch(30, "opened", campaign="m30"), touch(1, "delivered", campaign="n")]
    assert rule(*customer(campaign_touches=opened_old))
    assert not rule(*customer(campaign_touches=sent[1:]))  # only two e-mails so far


def test_joined_through_a_referral_and_used_a_discount_code() -> None:
    rule = example("referred_discount_users")
    assert rule(*customer(acquisition_channel="referral", discount_order_count=1))
    assert rule(*customer(acquisition_channel="web", referred_by="c-9", discount_order_count=2))
    assert not rule(*customer(acquisition_channel="web", discount_order_count=2))
    assert not rule(*customer(acquisition_channel="referral", discount_order_count=0))


# --- the catalogue -------------------------------------------------------------------------


def test_every_field_reads_its_type_or_none() -> None:
    kinds: dict[str, type | tuple[type, ...]] = {
        "number": (int, float),
        "string": str,
        "boolean": bool,
        "set": frozenset,
    }
    for who in (BUYER, NOBODY):
        for name, found in catalogue().items():
            value = found.get(*who)
            assert value is None or isinstance(value, kinds[found.type]), name
            assert found.type != "number" or not isinstance(value, bool), name


def test_the_catalogue_covers_every_built_in_model_and_the_predictions() -> None:
    assert {f"segments.{name}" for name in available_models()} <= set(catalogue())
    assert set(PREDICTIONS) == {
        "predictions.expected_orders_30d",
        "predictions.expected_orders_90d",
        "predictions.expected_orders_365d",
        "predictions.p_alive",
        "predictions.expected_days_to_next_order",
        "predictions.clv_365d",
        "predictions.clv_trend",
        "predictions.cant_lose",
    }
    assert resolve("predictions.p_alive") is PREDICTIONS["predictions.p_alive"]
    assert resolve("predictions.clv") is None
    assert resolve("attributes.anything_new") is not None
    assert resolve("behaviour.anything_new") is None
    assert all(found.description for found in catalogue().values())


def test_plan_fields_follow_the_current_plan() -> None:
    later = Plan("p-2", 40.0, "EUR", "year", None)
    who = customer(plans=[(f"{ago(100)}T00:00:00Z", plan(10.0)), (f"{ago(5)}T00:00:00Z", later)])
    assert holds(cond("plan.id", "eq", "p-2"), who)
    assert holds(cond("plan.interval", "eq", "year"), who)
    assert not holds(cond("plan.tier", "exists"), who)


def test_semantic_errors_name_the_part() -> None:
    with pytest.raises(DefinitionError) as caught:
        compiled({"all": [cond("categories", "exists"), cond("plan.tier", "lt", 3)]})
    assert str(caught.value).startswith("rule/all/1/op: 'lt' does not apply to field 'plan.tier'")
    with pytest.raises(DefinitionError, match=r"^rule/value/1: 'in' needs a number value"):
        compiled(cond("behaviour.order_count", "in", [1, "2"]))
    with pytest.raises(DefinitionError, match=r"^rule/value: between needs low <= high"):
        compiled(count("purchase_days", "between", [3, 1]))
    with pytest.raises(DefinitionError, match=r"^rule: a rule is an object with one of the keys"):
        compiled({"op": "eq"})


def test_the_definition_is_a_private_copy() -> None:
    rule = cond("behaviour.order_count", "gte", 4)
    rule_payload = {"any": [rule]}
    definition = compiled(rule_payload)
    rule["value"] = 100
    assert definition(*BUYER)
    assert definition.definition.rule == {"any": [cond("behaviour.order_count", "gte", 4)]}
    assert (definition.nodes, definition.depth) == (2, 2)


FIT = LifetimeFit(BgNbd(r=0.24, alpha=4.41, a=0.79, b=2.43), high_value_rate=20.0, day=0)


def with_fit(who: tuple[CustomerState, CustomerSnapshot]) -> tuple[CustomerState, CustomerSnapshot]:
    return who[0], replace(who[1], lifetime=FIT)


def test_predictions_read_the_shops_lifetime_model_and_the_customers_own_features() -> None:
    state, view = with_fit(BUYER)
    p_alive = FIT.model.p_alive(view.frequency, view.recency, view.T)
    assert PREDICTIONS["predictions.p_alive"].get(state, view) == pytest.approx(p_alive)
    assert holds(
        cond("predictions.p_alive", "between", [p_alive - 1e-9, p_alive + 1e-9]), (state, view)
    )
    assert holds(cond("predictions.clv_365d", "gt", 0), (state, view))
    days = FIT.model.expected_days_to_next_order(view.frequency, view.T)
    assert holds(cond("predictions.expected_days_to_next_order", "gte", days - 1e-9), (state, view))
    # per 30 days: 20 in the 10 days before the last 90 (60), 80 within them (26.7)
    assert holds(cond("predictions.clv_trend", "eq", "declining"), BUYER)  # needs no fit
    # 60 per 30 days was above the shop's top-quarter rate (20); 26.7 is under half of it
    assert holds(cond("predictions.cant_lose", "eq", True), (state, view))


def test_without_a_fit_or_a_purchase_predictions_are_missing() -> None:
    churn = ChurnRiskModel()
    for who in (BUYER, with_fit(NOBODY), (BUYER[0], replace(BUYER[1], forecast=churn))):
        for name in (
            "predictions.p_alive",
            "predictions.clv_365d",
            "predictions.cant_lose",
            "predictions.expected_orders_90d",
        ):
            assert not holds(cond(name, "exists"), who), name
    assert not holds(cond("predictions.clv_trend", "exists"), NOBODY)
    assert not holds(cond("predictions.expected_orders_30d", "exists"), with_fit(BUYER))


def test_expected_orders_are_the_churn_models_at_every_horizon() -> None:
    churn = ChurnRiskModel()
    state, view = with_fit(BUYER)
    view = replace(view, forecast=churn)
    found = [PREDICTIONS[f"predictions.expected_orders_{d}d"].get(state, view) for d in HORIZONS]
    assert found == [churn.expected_orders(view, days) for days in HORIZONS]
    assert 0 < found[0] < found[1] < found[2]
    assert holds(cond("predictions.expected_orders_365d", "gt", found[2] - 1e-9), (state, view))


def test_a_customer_spending_as_ever_is_steady_and_not_cant_lose() -> None:
    steady = customer(purchase_days={ago(300): 30.0, ago(200): 30.0, ago(100): 30.0, ago(5): 30.0})
    assert holds(cond("predictions.clv_trend", "eq", "steady"), steady)
    assert holds(cond("predictions.cant_lose", "eq", False), with_fit(steady))


def test_a_fit_whose_next_order_is_out_of_reach_gives_no_wait_and_no_error() -> None:
    # the quality variants' small shops fitted r = 0.0005: 2 ** (1 / r) overflowed a float
    # (OverflowError in the customer API, tests/unit/api/test_queries.py); beyond a
    # century the answer is missing
    tiny = LifetimeFit(BgNbd(r=0.0005, alpha=4.41, a=0.79, b=2.43), high_value_rate=20.0, day=0)
    state, view = BUYER[0], replace(BUYER[1], frequency=0, lifetime=tiny)  # one-time buyer
    assert PREDICTIONS["predictions.expected_days_to_next_order"].get(state, view) is None


def test_a_rule_that_fails_holds_for_nobody_and_is_counted_and_logged_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A defect in a rule must not fail the event: the definition is a shop's input."""
    recorder = LogRecorder()
    monkeypatch.setattr(rules, "log", recorder)

    def boom(*_: Any) -> Any:
        raise TypeError("slice indices must be integers")

    rule = replace(compiled(cond("behaviour.order_count", "gte", 1)), test=boom, changes=boom)
    counted = REGISTRY.get_sample_value("segstream_definition_failures_total", {"step": "evaluate"})
    assert rule(*BUYER) is False
    assert rule(*BUYER) is False
    assert rule.next_change(BUYER[0], BUYER[1], Looks(lambda at: BUYER[1])) is None
    assert rule.failures == [3]
    after = REGISTRY.get_sample_value("segstream_definition_failures_total", {"step": "evaluate"})
    assert after == (counted or 0.0) + 2
    ((event, fields),) = recorder.said("error")
    assert event == "definition_failed"
    assert fields["segment"] == "s" and fields["step"] == "evaluate"
    assert fields["error"] == "TypeError: slice indices must be integers"


def test_the_look_ahead_budget_still_reaches_the_caller() -> None:
    def spent(*_: Any) -> Any:
        raise OutOfLooksError

    rule = replace(compiled(cond("behaviour.order_count", "gte", 1)), changes=spent)
    with pytest.raises(OutOfLooksError):
        rule.next_change(BUYER[0], BUYER[1], Looks(lambda at: BUYER[1]))


def test_a_preview_shows_a_failing_rule_instead_of_counting_it() -> None:
    """A preview is the shop's chance to see a rule that cannot work: it names a customer
    and the error (422 through the API), and counts nothing against the live rules."""

    def boom(*_: Any) -> Any:
        raise TypeError("slice indices must be integers")

    rule = replace(compiled(cond("behaviour.order_count", "gte", 1)), test=boom)
    counted = REGISTRY.get_sample_value("segstream_definition_failures_total", {"step": "evaluate"})
    with pytest.raises(DefinitionError, match="fails on customer 'c-1': TypeError: slice"):
        rule.strict(*BUYER)
    assert rule.failures == [0]
    after = REGISTRY.get_sample_value("segstream_definition_failures_total", {"step": "evaluate"})
    assert after == counted
