"""Built-in templates: each expands to a valid definition that holds for a customer it
describes and for nobody without the facts it needs; parameters are checked."""

from __future__ import annotations

import json
from typing import Any

import pytest

from segstream.domain.customer import day_number
from segstream.segments.defined import DefinitionError, compile_definition, validate_definition
from segstream.segments.defined.templates import TEMPLATES, expand
from tests.unit.segments.defined.test_rules import NOBODY, NOW, ago, customer, touch

PARAMETERS: dict[str, dict[str, Any]] = {
    "region": {"region": "north"},
    "declared-preference": {"preference": "vegan"},
    "bought-category": {"category": "green_tea"},
    "big-spenders-365d": {},  # its default amount
}
MEMBERS: dict[str, dict[str, Any]] = {
    "age-18-24": {"attributes": {"age": 18}},
    "age-25-34": {"attributes": {"age": 34}},
    "age-35-44": {"attributes": {"age": 40}},
    "age-45-54": {"attributes": {"age": 45}},
    "age-55-64": {"attributes": {"age": 64}},
    "age-65-plus": {"attributes": {"age": 80}},
    "urban": {"attributes": {"location_type": "urban"}},
    "suburban": {"attributes": {"location_type": "suburban"}},
    "rural": {"attributes": {"location_type": "rural"}},
    "region": {"attributes": {"region": "north"}},
    "declared-preference": {"attributes": {"preferences": ["vegan", "decaf"]}},
    "bought-category": {"categories": {"green_tea": 2}},
    "email-openers-90d": {"campaign_touches": [touch(30, "opened")]},
    "clickers-90d": {"campaign_touches": [touch(89, "clicked", "sms")]},
    "converters-180d": {"campaign_touches": [touch(170, "converted", "push")]},
    "unengaged-last-3-emails": {
        "campaign_touches": [touch(9, "delivered", campaign=c) for c in ("a", "b", "c")]
    },
    "discount-responders": {"discount_order_count": 1},
    "referred-customers": {"referred_by": "c-0"},
    "referrers": {"referral_count": 2},
    "top-value": {"segments": {"rfm": "Champions"}},
    "valuable-slipping": {"segments": {"rfm": "Can't Lose Them"}},
    "big-spenders-365d": {"purchase_days": {ago(300): 150.0, ago(10): 60.0}},
    "unhappy-90d": {"feedback_scores": [(day_number(NOW) - 5, 2)]},
    "happy": {"feedback_scores": [(day_number(NOW) - 50, 1), (day_number(NOW) - 5, 5)]},
}
"""Per template: the facts of a customer it should hold for."""


def definition(template_id: str, **parameters: Any) -> Any:
    document = expand(template_id, parameters or PARAMETERS.get(template_id, {}), "shop")
    return compile_definition(validate_definition({**document, "version": 1}))


def test_every_template_has_a_member_here() -> None:
    assert set(MEMBERS) == set(TEMPLATES)


@pytest.mark.parametrize("template_id", sorted(TEMPLATES))
def test_a_template_holds_for_whom_it_describes_and_not_for_nobody(template_id: str) -> None:
    rule = definition(template_id)
    assert rule(*customer(**MEMBERS[template_id])), template_id
    assert not rule(*NOBODY), template_id


@pytest.mark.parametrize(
    ("template_id", "facts"),
    [
        ("age-25-34", {"attributes": {"age": 35}}),
        ("age-65-plus", {"attributes": {"age": 64}}),
        ("region", {"attributes": {"region": "south"}}),
        ("email-openers-90d", {"campaign_touches": [touch(91, "opened")]}),
        ("email-openers-90d", {"campaign_touches": [touch(3, "opened", "sms")]}),
        ("unengaged-last-3-emails", {"campaign_touches": [touch(9, "opened")]}),
        ("big-spenders-365d", {"purchase_days": {ago(400): 500.0, ago(10): 60.0}}),
        ("happy", {"feedback_scores": [(day_number(NOW) - 50, 5), (day_number(NOW) - 5, 3)]}),
    ],
)
def test_a_template_leaves_out_the_near_misses(template_id: str, facts: dict[str, Any]) -> None:
    assert not definition(template_id)(*customer(**facts))


def test_parameters_are_filled_in_and_checked() -> None:
    assert definition("big-spenders-365d", amount=50.0)(*customer(purchase_days={ago(5): 60.0}))
    document = expand("region", {"region": "north"}, "tea-1", "north-customers")
    assert (document["shop_id"], document["segment_id"]) == ("tea-1", "north-customers")
    assert document["rule"] == {"field": "attributes.region", "op": "eq", "value": "north"}
    with pytest.raises(DefinitionError, match="needs 'region'") as missing:
        expand("region", {}, "tea-1")
    assert missing.value.path == "parameters/region"
    with pytest.raises(DefinitionError, match="must be a number"):
        expand("big-spenders-365d", {"amount": "lots"}, "tea-1")
    with pytest.raises(DefinitionError, match="no such parameter"):
        expand("urban", {"town": "x"}, "tea-1")
    with pytest.raises(DefinitionError, match="no template"):
        expand("nope", {}, "tea-1")


def test_the_listing_shows_each_templates_rule_and_parameters() -> None:
    listed = TEMPLATES["big-spenders-365d"].to_json()
    assert listed["parameters"]["amount"]["default"] == 200.0
    assert listed["rule"]["value"] == "{{amount}}"
    assert {t.category for t in TEMPLATES.values()} == {
        "demographic",
        "preference",
        "engagement",
        "value",
        "satisfaction",
    }


def test_no_template_reads_p_alive_as_will_stay() -> None:
    """P(alive) is 1 for every one-time buyer (BG/NBD's convention): a template that read
    it as "likely to stay" would target exactly the customers least likely to order again
    (issue 25). Templates rank by orders and silence instead."""
    for template in TEMPLATES.values():
        assert "predictions.p_alive" not in json.dumps(template.rule), template.template_id
