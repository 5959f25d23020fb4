"""Built-in segment templates: definitions a shop uses as they are or copies and edits.

A template is a rule with a name and a category; a few take parameters (a region, a
preference, an amount), written ``"{{name}}"`` where a value goes. :func:`expand` turns a
template and a shop's choices into a definition document that is then validated like any
other. ``GET /templates`` lists them; ``POST /shops/{shop}/definitions`` with
``{"template": id, "parameters": {...}}`` defines one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from segstream.segments.defined.rules import DefinitionError

Category = Literal["demographic", "preference", "engagement", "value", "satisfaction"]
ParameterType = Literal["string", "number"]


@dataclass(frozen=True, slots=True)
class Parameter:
    """A value a template needs: its type, what it means, and a default (None: required)."""

    type: ParameterType
    description: str
    default: str | float | None = None


@dataclass(frozen=True, slots=True)
class Template:
    """One built-in segment."""

    template_id: str
    category: Category
    name: str
    description: str
    rule: dict[str, Any]
    parameters: dict[str, Parameter] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The template as ``GET /templates`` lists it."""
        return {
            "template_id": self.template_id,
            "category": self.category,
            "name": self.name,
            "description": self.description,
            "rule": copy.deepcopy(self.rule),
            "parameters": {
                key: {"type": p.type, "description": p.description, "default": p.default}
                for key, p in self.parameters.items()
            },
        }


def _field(name: str, op: str, value: Any = None) -> dict[str, Any]:
    node: dict[str, Any] = {"field": name, "op": op}
    if value is not None:
        node["value"] = value
    return node


def _responses(action: str, days: int, channel: str | None = None) -> dict[str, Any]:
    where: dict[str, Any] = {"action": [action]}
    if channel is not None:
        where["channel"] = [channel]
    return {
        "count": "campaign_responses",
        "within_days": days,
        "where": where,
        "op": "gte",
        "value": 1,
    }


def _age(low: int, high: int | None) -> Template:
    band = f"{low}-{high}" if high is not None else f"{low}+"
    rule = (
        _field("attributes.age", "between", [low, high])
        if high is not None
        else _field("attributes.age", "gte", low)
    )
    return Template(
        f"age-{band.replace('+', '-plus')}",
        "demographic",
        f"Aged {band}",
        f"Customers who stated an age of {band.replace('-', ' to ')}.",
        rule,
    )


def _place(kind: str) -> Template:
    return Template(
        kind,
        "demographic",
        f"{kind.capitalize()} customers",
        f"Customers who live in a {kind} area (attribute location_type).",
        _field("attributes.location_type", "eq", kind),
    )


TEMPLATES: dict[str, Template] = {
    t.template_id: t
    for t in [
        *(_age(low, high) for low, high in [(18, 24), (25, 34), (35, 44), (45, 54), (55, 64)]),
        _age(65, None),
        *(_place(kind) for kind in ("urban", "suburban", "rural")),
        Template(
            "region",
            "demographic",
            "Customers in a region",
            "Customers whose stated region is the one chosen.",
            _field("attributes.region", "eq", "{{region}}"),
            {"region": Parameter("string", "the region, as the signup form states it")},
        ),
        Template(
            "declared-preference",
            "preference",
            "Declared a preference",
            "Customers who declared the chosen preference (e.g. green_tea, vegan).",
            _field("attributes.preferences", "contains", "{{preference}}"),
            {"preference": Parameter("string", "a preference as the signup form states it")},
        ),
        Template(
            "bought-category",
            "preference",
            "Bought from a category",
            "Customers who bought products of the chosen category at least once.",
            _field("categories", "contains", "{{category}}"),
            {"category": Parameter("string", "a product category as orders state it")},
        ),
        Template(
            "email-openers-90d",
            "engagement",
            "Opened an e-mail in the last 90 days",
            "Customers who opened at least one campaign e-mail within 90 days.",
            _responses("opened", 90, "email"),
        ),
        Template(
            "clickers-90d",
            "engagement",
            "Clicked a campaign in the last 90 days",
            "Customers who clicked a campaign message (any channel) within 90 days.",
            _responses("clicked", 90),
        ),
        Template(
            "converters-180d",
            "engagement",
            "Converted from a campaign in the last 180 days",
            "Customers who bought from a campaign (any channel) within 180 days.",
            _responses("converted", 180),
        ),
        Template(
            "unengaged-last-3-emails",
            "engagement",
            "Opened none of the last 3 e-mails",
            "Customers who received at least 3 campaign e-mails and opened none of the last 3.",
            {
                "last": 3,
                "of": "campaigns",
                "where": {"channel": "email"},
                "none": {"action": "opened"},
            },
        ),
        Template(
            "discount-responders",
            "engagement",
            "Used a discount code",
            "Customers with at least one order that used a discount code.",
            _field("behaviour.discount_order_count", "gte", 1),
        ),
        Template(
            "referred-customers",
            "engagement",
            "Joined through a referral",
            "Customers acquired through a referral (channel referral, or a referrer named).",
            {
                "any": [
                    _field("acquisition.channel", "eq", "referral"),
                    _field("acquisition.referred_by", "exists"),
                ]
            },
        ),
        Template(
            "referrers",
            "engagement",
            "Referred a new customer",
            "Customers whose referral brought at least one new customer to the shop.",
            _field("behaviour.referral_count", "gte", 1),
        ),
        Template(
            "top-value",
            "value",
            "Top value (RFM)",
            "The shop's best customers by recency, frequency and spend within the shop: the "
            "RFM segments Champions and Loyal.",
            _field("segments.rfm", "in", ["Champions", "Loyal"]),
        ),
        Template(
            "valuable-slipping",
            "value",
            "Valuable but slipping (RFM)",
            "Customers who spent much but have not bought for a while: the RFM segments "
            "Can't Lose Them and At Risk.",
            _field("segments.rfm", "in", ["Can't Lose Them", "At Risk"]),
        ),
        Template(
            "big-spenders-365d",
            "value",
            "Spent a chosen amount in the last year",
            "Customers whose orders of the last 365 days add up to at least the amount.",
            {"sum": "purchase_days.amount", "within_days": 365, "op": "gte", "value": "{{amount}}"},
            {"amount": Parameter("number", "the least spend over 365 days", 200.0)},
        ),
        Template(
            "unhappy-90d",
            "satisfaction",
            "Unhappy in the last 90 days",
            "Customers who gave a delivery a score of 1 or 2 within 90 days.",
            {
                "count": "feedback",
                "within_days": 90,
                "where": {"score": {"lte": 2}},
                "op": "gte",
                "value": 1,
            },
        ),
        Template(
            "happy",
            "satisfaction",
            "Happy with the last delivery",
            "Customers whose latest feedback scored 4 or 5.",
            _field("feedback.latest_score", "gte", 4),
        ),
    ]
}
"""The built-in templates by id."""


def expand(
    template_id: str, parameters: Mapping[str, Any], shop_id: str, segment_id: str | None = None
) -> dict[str, Any]:
    """The definition document (without a version) a template makes for a shop; a
    :class:`DefinitionError` names what is wrong (unknown template or parameter, a value
    missing or of the wrong type)."""
    template = TEMPLATES.get(template_id)
    if template is None:
        raise DefinitionError("template", f"no template {template_id!r}; see GET /templates")
    unknown = sorted(set(parameters) - set(template.parameters))
    if unknown:
        raise DefinitionError(
            f"parameters/{unknown[0]}", f"{template_id!r} takes no such parameter"
        )
    values = {key: _value(key, p, parameters) for key, p in template.parameters.items()}
    return {
        "schema_version": 1,
        "shop_id": shop_id,
        "segment_id": segment_id or template_id,
        "name": template.name,
        "description": template.description,
        "rule": _filled(template.rule, values),
    }


def _value(key: str, parameter: Parameter, given: Mapping[str, Any]) -> Any:
    value = given.get(key, parameter.default)
    if value is None:
        raise DefinitionError(
            f"parameters/{key}", f"this template needs {key!r}: {parameter.description}"
        )
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if (parameter.type == "number") != number or (
        parameter.type == "string" and not isinstance(value, str)
    ):
        raise DefinitionError(f"parameters/{key}", f"{key!r} must be a {parameter.type}")
    return value


def _filled(node: Any, values: Mapping[str, Any]) -> Any:
    """``node`` with every ``"{{name}}"`` string replaced by its value."""
    if isinstance(node, dict):
        return {key: _filled(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_filled(value, values) for value in node]
    if isinstance(node, str) and node.startswith("{{") and node.endswith("}}"):
        return values[node[2:-2]]
    return node
