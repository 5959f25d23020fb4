"""What a shop-defined rule can read: the one catalogue of fields and the histories.

A field is read from a customer's :class:`~segstream.domain.customer.CustomerState` and its
:class:`~segstream.domain.features.CustomerSnapshot` at the evaluation's stream time. Names are
dotted, ``<group>.<name>``:

- ``behaviour.*``: purchase behaviour (the ``lifetimes`` features and counts);
- ``subscription.*`` and ``plan.*``: the subscription status and the current plan;
- ``acquisition.*`` and ``contact.*``: how the customer came, how they may be reached;
- ``journey.*``: their journey stage and first-touch channel (:mod:`segstream.metrics.journey`);
- ``segments.<model>``: the customer's segment in each segment model before this
  evaluation, one field per model of the registry (:func:`segment_fields`);
- ``feedback.*``: their ratings;
- ``categories``: the product categories they have bought (a set);
- ``attributes.<key>``: the shop's own attributes; the well-known keys are typed below,
  any other key is open (type ``any``: its value is compared as it is);
- ``predictions.*``: expected orders, P(alive), next order, CLV and its trend, see
  :data:`PREDICTIONS`.

Each field has a type: ``number``, ``string``, ``boolean``, ``set`` (a set of strings) or
``any``. A getter returns None when the customer has no value (no plan, no purchase yet,
an attribute they never stated): every comparison on it is then false.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Literal

from segstream.domain.customer import EPOCH_DAY, CustomerState
from segstream.domain.features import CustomerSnapshot
from segstream.learning.lifetime import (
    MAX_WAIT_DAYS,
    LifetimeFit,
    cant_lose,
    clv,
    spend_trend,
    trend_of,
)
from segstream.learning.retention import HORIZONS
from segstream.metrics.journey import journey_of
from segstream.segments import available_models, segment_names_hint

FieldType = Literal["number", "string", "boolean", "set", "any"]
Getter = Callable[[CustomerState, CustomerSnapshot], Any]
Clock = Literal["still", "days", "ends", "one_way", "drifts"]
"""How a field's value moves while the customer sends nothing: ``still`` not at all;
``days`` one up each UTC day (days since something); ``ends`` at the snapshot's
``subscription_ends_at`` (a pending cancellation takes effect); ``one_way`` with time and
only one way (P(alive) and CLV fall with silence), and ``drifts`` some other way, so only
a look on a later day tells. A defined segment schedules its own reviews from these
(:mod:`segstream.segments.defined.timing`)."""


@dataclass(frozen=True, slots=True)
class Field:
    """One readable field: its type, how to read it, what it means, how time moves it."""

    type: FieldType
    get: Getter
    description: str
    clock: Clock = "still"


def _attribute(key: str) -> Getter:
    def get(state: CustomerState, view: CustomerSnapshot) -> Any:
        value = view.attributes.get(key)
        return frozenset(value) if isinstance(value, list) else value

    return get


def _segment(model: str) -> Getter:
    return lambda state, view: view.segments.get(model)


def _categories(state: CustomerState, view: CustomerSnapshot) -> frozenset[str] | None:
    bought = frozenset(name for name, n in state.categories.items() if n > 0)
    return bought or None


def _latest_score(state: CustomerState, view: CustomerSnapshot) -> int | None:
    return state.feedback_scores[-1][1] if state.feedback_scores else None


def _mean_score(state: CustomerState, view: CustomerSnapshot) -> float | None:
    scores = [score for _, score in state.feedback_scores]
    return sum(scores) / len(scores) if scores else None


def _plan_id(state: CustomerState, view: CustomerSnapshot) -> str | None:
    plan = state.plan
    return None if plan is None else plan.plan_id


def _journey_stage(state: CustomerState, view: CustomerSnapshot) -> str | None:
    journey = journey_of(state)
    return None if journey is None else journey.stage


def _journey_channel(state: CustomerState, view: CustomerSnapshot) -> str | None:
    journey = journey_of(state)
    return None if journey is None else journey.channel


FIELDS: dict[str, Field] = {
    # --- behaviour: purchases (lifetimes features at the evaluation's stream time) ---
    "behaviour.order_count": Field(
        "number", lambda s, v: v.order_count, "orders placed (every order, renewals included)"
    ),
    "behaviour.total_spend": Field(
        "number", lambda s, v: v.total_spend, "money spent over all orders"
    ),
    "behaviour.frequency": Field(
        "number", lambda s, v: v.frequency, "repeat purchase days (distinct purchase days - 1)"
    ),
    "behaviour.recency_days": Field(
        "number",
        lambda s, v: v.recency if v.has_purchased else None,
        "days from the first to the last purchase day",
    ),
    "behaviour.first_purchase_days_ago": Field(
        "number",
        lambda s, v: v.T if v.has_purchased else None,
        "days since the first purchase",
        "days",
    ),
    "behaviour.days_since_last_purchase": Field(
        "number",
        lambda s, v: v.days_since_last_purchase,
        "days since the last purchase day",
        "days",
    ),
    "behaviour.monetary_value": Field(
        "number",
        lambda s, v: v.monetary_value,
        "mean total of the repeat purchase days (0 without)",
    ),
    "behaviour.cadence_days": Field(
        "number", lambda s, v: v.cadence_days, "mean days between purchase days (from the second)"
    ),
    "behaviour.tenure_days": Field(
        "number", lambda s, v: v.tenure_days, "days since the customer was first seen", "days"
    ),
    "behaviour.inactive_days": Field(
        "number",
        lambda s, v: v.last_activity_days,
        "days since the last purchase or signup",
        "days",
    ),
    "behaviour.renewal_count": Field(
        "number", lambda s, v: v.renewal_count, "orders that were subscription renewals"
    ),
    "behaviour.discount_order_count": Field(
        "number", lambda s, v: v.discount_order_count, "orders placed with a discount code"
    ),
    "behaviour.referral_count": Field(
        "number",
        lambda s, v: s.referral_count,
        "customers whose signup named this customer as their referrer",
    ),
    "behaviour.has_returned": Field(
        "boolean", lambda s, v: v.returned_at is not None, "came back after a churn gap or a cancel"
    ),
    "categories": Field("set", _categories, "product categories the customer has bought"),
    # --- subscription and plan ---
    "subscription.status": Field(
        "string",
        lambda s, v: v.subscription,
        "none, active, cancelling or cancelled",
        "ends",
    ),
    "subscription.cancel_reason": Field(
        "string", lambda s, v: s.cancel_reason, "reason of the latest cancellation"
    ),
    "plan.id": Field("string", _plan_id, "the current plan's plan_id"),
    "plan.price": Field("number", lambda s, v: v.plan_price, "the current plan's price"),
    "plan.tier": Field("string", lambda s, v: v.plan_tier, "the current plan's tier"),
    "plan.interval": Field(
        "string", lambda s, v: v.plan_interval, "billing interval: week, month, quarter, year"
    ),
    # --- acquisition and contact ---
    "acquisition.channel": Field(
        "string", lambda s, v: v.acquisition_channel, "where the latest signup came from"
    ),
    "acquisition.referred_by": Field(
        "string", lambda s, v: s.referred_by, "customer_id of the referrer (exists: referred)"
    ),
    "contact.preferred_channel": Field(
        "string", lambda s, v: v.preferred_channel, "email, sms or push, if stated"
    ),
    "contact.marketing_opt_in": Field(
        "boolean", lambda s, v: s.marketing_opt_in, "consent to marketing, if stated"
    ),
    # --- the journey (service/segstream/metrics/journey.py) ---
    "journey.stage": Field(
        "string", _journey_stage, "furthest stage: awareness, consideration, purchase, retention"
    ),
    "journey.channel": Field(
        "string", _journey_channel, "first-touch acquisition channel (the journey funnel's)"
    ),
    "journey.tried": Field(
        "boolean", lambda s, v: s.considered_at is not None, "had a trial or sample request"
    ),
    # --- feedback ---
    "feedback.latest_score": Field("number", _latest_score, "the latest rating, 1-5"),
    "feedback.mean_score": Field("number", _mean_score, "mean of the kept ratings (latest 16)"),
    # --- well-known attributes (envelope.json#/$defs/attributes); other keys are open ---
    "attributes.age": Field("number", _attribute("age"), "age in whole years"),
    "attributes.gender": Field("string", _attribute("gender"), "gender as the shop records it"),
    "attributes.region": Field("string", _attribute("region"), "region, state or county"),
    "attributes.location_type": Field("string", _attribute("location_type"), "urban or rural"),
    "attributes.postal_code": Field("string", _attribute("postal_code"), "postal code"),
    "attributes.preferences": Field(
        "set", _attribute("preferences"), "preference tags, e.g. vegan, green_tea"
    ),
}
"""Every field a rule may name but the segments and predictions (see :func:`catalogue`) and
``attributes.<key>`` for any other key (see :func:`resolve`). Adding a field is adding an
entry here (and to the oracle of ``tests/unit/segments/defined``)."""

SEGMENTS_PREFIX = "segments."
"""Fields that read the customer's segment of a model (``segments.lifecycle``)."""


def segment_fields() -> dict[str, Field]:
    """``segments.<model>`` for every model of the registry (the segment before this
    evaluation), so a new model is a new field without an entry here."""
    return {
        f"{SEGMENTS_PREFIX}{name}": Field(
            "string", _segment(name), f"{model.summary}: {segment_names_hint(model)}"
        )
        for name, model in available_models().items()
    }


def _fit(view: CustomerSnapshot) -> LifetimeFit | None:
    fit: LifetimeFit | None = view.lifetime
    return fit if view.has_purchased else None


def _p_alive(state: CustomerState, view: CustomerSnapshot) -> float | None:
    fit = _fit(view)
    return None if fit is None else fit.model.p_alive(view.frequency, view.recency, view.T)


def _expected_orders(days: int) -> Getter:
    def get(state: CustomerState, view: CustomerSnapshot) -> float | None:
        forecast = view.forecast
        if forecast is None or _fit(view) is None:
            return None
        found: float | None = forecast.expected_orders(view, days)
        return found

    return get


def _days_to_next(state: CustomerState, view: CustomerSnapshot) -> float | None:
    fit = _fit(view)
    if fit is None:
        return None
    days = fit.model.expected_days_to_next_order(view.frequency, view.T)
    return days if days <= MAX_WAIT_DAYS else None


def _clv(state: CustomerState, view: CustomerSnapshot) -> float | None:
    fit = _fit(view)
    return None if fit is None else clv(fit.model, view, 365.0)


def _trend(state: CustomerState, view: CustomerSnapshot) -> str | None:
    return trend_of(spend_trend(state.purchase_days, view.as_of.date()))


def _cant_lose(state: CustomerState, view: CustomerSnapshot) -> bool | None:
    fit = _fit(view)
    if fit is None:
        return None
    return cant_lose(spend_trend(state.purchase_days, view.as_of.date()), fit.high_value_rate)


PREDICTIONS: dict[str, Field] = {
    **{
        f"predictions.expected_orders_{days}d": Field(
            "number",
            _expected_orders(days),
            f"expected orders (purchase days) in the next {days} days: BG/NBD's orders per "
            "ordering customer times the churn model's chance of ordering",
        )
        for days in HORIZONS
    },
    "predictions.p_alive": Field(
        "number",
        _p_alive,
        "BG/NBD's probability the customer has not dropped out, 0-1; 1 for every one-time "
        "buyer (no repeat purchase yet), so not a chance of buying again: rank by "
        "expected orders for that",
    ),
    "predictions.expected_days_to_next_order": Field(
        "number", _days_to_next, "if still buying: expected days until the next order"
    ),
    "predictions.clv_365d": Field(
        "number", _clv, "expected spend over the next 365 days (BG/NBD x value per order)"
    ),
    "predictions.clv_trend": Field(
        "string",
        _trend,
        "rising, steady or declining: spend per 30 days over the last 90 days against before",
    ),
    "predictions.cant_lose": Field(
        "boolean",
        _cant_lose,
        "was among the shop's top quarter by spend rate, and spends under half that lately",
    ),
}
ONE_WAY = ("predictions.p_alive", "predictions.clv_365d")
"""Predictions that only fall while a customer sends nothing (BG/NBD: a longer silence
lowers both the chance they are alive and the rate they buy at; a property test checks it
day by day)."""
PREDICTIONS = {
    name: replace(found, clock="one_way" if name in ONE_WAY else "drifts")
    for name, found in PREDICTIONS.items()
}
"""Predictions from the shop's lifetime model (``segstream.learning.lifetime``): fitted per
shop on a bounded sample of its customers as its orders grow, and evaluated
per customer from their own features when a rule reads them; each drifts with time (a
customer who sends nothing grows older in the model). None (every comparison
false) before the shop has a fit or the customer a purchase; ``clv_trend`` needs no fit,
only 90 days of history."""

OPEN_PREFIX = "attributes."
"""Fields under this prefix are open: any attribute key may be named."""


def catalogue() -> dict[str, Field]:
    """Every named field: :data:`FIELDS`, one per segment model, :data:`PREDICTIONS`."""
    return {**FIELDS, **segment_fields(), **PREDICTIONS}


def resolve(name: str) -> Field | None:
    """The field ``name`` names, or None when no catalogue entry or open prefix covers it."""
    found = FIELDS.get(name) or PREDICTIONS.get(name)
    if found is None and name.startswith(SEGMENTS_PREFIX):
        found = segment_fields().get(name)
    if found is None and name.startswith(OPEN_PREFIX):
        key = name[len(OPEN_PREFIX) :]
        found = Field("any", _attribute(key), f"shop-specific attribute {key!r}")
    return found


# --- histories ---------------------------------------------------------------------------

Item = tuple[Any, ...]
"""One history item: ``(day number, ...fields)``, the day first."""


@dataclass(frozen=True, slots=True)
class History:
    """A history a windowed aggregate reads: its items, oldest to newest, and their fields."""

    items: Callable[[CustomerState], Sequence[Item]]
    fields: dict[str, tuple[int, Literal["number", "string", "set"]]]
    """Item field -> (index in the item, type); ``set``: the item holds a set of values."""


def _day_number(day: date) -> int:
    return (day - EPOCH_DAY).days


def _purchase_days(state: CustomerState) -> list[Item]:
    return sorted((_day_number(day), amount) for day, amount in state.purchase_days.items())


def _responses(state: CustomerState) -> list[Item]:
    return [(day, action, channel) for day, action, channel, _ in state.campaign_touches]


def _campaigns(state: CustomerState) -> list[Item]:
    """One item per campaign message (campaign and channel): the day of its first response,
    the set of its actions, its channel; ordered by (day, campaign)."""
    grouped: dict[tuple[int, str], tuple[int, set[str]]] = {}
    for day, action, channel, campaign in state.campaign_touches:
        first, actions = grouped.setdefault((campaign, channel), (day, set()))
        actions.add(action)
        if day < first:
            grouped[(campaign, channel)] = (day, actions)
    ordered = sorted((first, key) for key, (first, _) in grouped.items())
    return [(first, frozenset(grouped[key][1]), key[1]) for first, key in ordered]


def _feedback(state: CustomerState) -> list[Item]:
    return list(state.feedback_scores)


HISTORIES: dict[str, History] = {
    "purchase_days": History(_purchase_days, {"amount": (1, "number")}),
    "campaign_responses": History(_responses, {"action": (1, "string"), "channel": (2, "string")}),
    "campaigns": History(_campaigns, {"action": (1, "set"), "channel": (2, "string")}),
    "feedback": History(_feedback, {"score": (1, "number")}),
}
"""The histories of ``schemas/v1/segment_definition.json#/$defs/history``."""
