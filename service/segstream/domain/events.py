"""Typed views of input events that already passed schema validation.

The contract lives in ``schemas/v1``; these records only give the worker typed
access to a validated payload (see :func:`from_payload`) and never validate twice.
:data:`EVENT_CLASSES` is the registry of input event types: each record class names its
schema ``type`` and its topic role, and everything else is derived from it.

>>> for cls in EVENT_CLASSES:
...     print(cls.type_name, cls.topic_role)
signup signups
order orders
cancellation cancellations
customer_updated customer_updates
plan_changed plan_changes
campaign_response campaign_responses
feedback feedback_responses
touchpoint touchpoints
customer_erased erasure_requests
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, TypedDict

Attributes = dict[str, str | int | float | bool | list[str]]


def parse_time(value: str) -> datetime:
    """RFC 3339 string to an aware datetime (``Z`` accepted).

    >>> parse_time("2026-03-01T09:30:00Z").isoformat()
    '2026-03-01T09:30:00+00:00'
    """
    return datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))


def format_time(value: datetime) -> str:
    """Aware datetime to an RFC 3339 UTC string with ``Z``."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Plan:
    """A subscription plan: price per billing interval."""

    plan_id: str
    price: float
    currency: str
    interval: str
    tier: str | None = None

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Plan:
        """Build from the schema's ``plan`` object."""
        return cls(
            plan_id=payload["plan_id"],
            price=float(payload["price"]),
            currency=payload["currency"],
            interval=payload["interval"],
            tier=payload.get("tier"),
        )

    def to_json(self) -> dict[str, Any]:
        """The schema's ``plan`` object."""
        return {
            "plan_id": self.plan_id,
            "price": self.price,
            "currency": self.currency,
            "interval": self.interval,
            "tier": self.tier,
        }


@dataclass(frozen=True, slots=True)
class Envelope:
    """Fields every input event carries."""

    event_id: str
    shop_id: str
    customer_id: str
    occurred_at: datetime


class EnvelopeFields(TypedDict):
    """The :class:`Envelope` fields, read from a payload once for every event type."""

    event_id: str
    shop_id: str
    customer_id: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class Event(Envelope):
    """Base of the input event records. Each subclass listed in :data:`EVENT_CLASSES` is
    one input event type: ``type_name`` is its schema's ``type`` (and the schema file
    ``schemas/v1/<type_name>.json``), ``topic_role`` the role of the topic it arrives on
    (``Settings.topic(topic_role)``), and :meth:`build` reads it from a validated payload."""

    type_name: ClassVar[str]
    topic_role: ClassVar[str]
    folds: ClassVar[bool] = True
    """Whether the event is a fact :func:`segstream.domain.customer.apply` folds into the
    customer's state (False: the pipeline acts on it otherwise, e.g. an erasure)."""

    @classmethod
    def build(cls, payload: dict[str, Any], envelope: EnvelopeFields) -> Event:
        """The record of a payload of this type that passed schema validation."""
        raise NotImplementedError(f"{cls.__name__} is not an input event type")


@dataclass(frozen=True, slots=True)
class Signup(Event):
    """A customer subscribed (or re-subscribed) to a plan."""

    type_name: ClassVar[str] = "signup"
    topic_role: ClassVar[str] = "signups"

    plan: Plan
    acquisition_channel: str
    referred_by: str | None = None
    preferred_channel: str | None = None
    attributes: Attributes = field(default_factory=dict)
    marketing_opt_in: bool | None = None
    """Whether the customer agreed to marketing messages (None: the platform did not say)."""

    @classmethod
    def build(cls, payload: dict[str, Any], envelope: EnvelopeFields) -> Signup:
        return cls(
            **envelope,
            plan=Plan.from_payload(payload["plan"]),
            acquisition_channel=payload["acquisition_channel"],
            referred_by=payload.get("referred_by"),
            preferred_channel=payload.get("preferred_channel"),
            attributes=dict(payload.get("attributes", {})),
            marketing_opt_in=payload.get("marketing_opt_in"),
        )


@dataclass(frozen=True, slots=True)
class Order(Event):
    """A purchase: a subscription renewal or a one-off order."""

    type_name: ClassVar[str] = "order"
    topic_role: ClassVar[str] = "orders"

    order_id: str
    amount: float
    currency: str
    is_renewal: bool
    categories: tuple[str, ...] = ()
    plan: Plan | None = None
    discount_code: str | None = None

    @classmethod
    def build(cls, payload: dict[str, Any], envelope: EnvelopeFields) -> Order:
        return cls(
            **envelope,
            order_id=payload["order_id"],
            amount=float(payload["amount"]),
            currency=payload["currency"],
            is_renewal=bool(payload["is_renewal"]),
            categories=tuple(sorted({item["category"] for item in payload.get("items", [])})),
            plan=Plan.from_payload(payload["plan"]) if "plan" in payload else None,
            discount_code=payload.get("discount_code"),
        )


@dataclass(frozen=True, slots=True)
class Cancellation(Event):
    """A customer cancelled; the subscription ends at ``effective_at``."""

    type_name: ClassVar[str] = "cancellation"
    topic_role: ClassVar[str] = "cancellations"

    reason: str
    effective_at: datetime

    @classmethod
    def build(cls, payload: dict[str, Any], envelope: EnvelopeFields) -> Cancellation:
        effective = payload.get("effective_at", payload["occurred_at"])
        effective_at = parse_time(effective).astimezone(UTC)
        return cls(**envelope, reason=payload["reason"], effective_at=effective_at)


@dataclass(frozen=True, slots=True)
class CustomerUpdated(Event):
    """The platform reports changed customer data; a field left out (None, or no attribute
    key) is not changed. Each value stated is latest-wins in event time."""

    type_name: ClassVar[str] = "customer_updated"
    topic_role: ClassVar[str] = "customer_updates"

    attributes: Attributes = field(default_factory=dict)
    preferred_channel: str | None = None
    marketing_opt_in: bool | None = None

    @classmethod
    def build(cls, payload: dict[str, Any], envelope: EnvelopeFields) -> CustomerUpdated:
        return cls(
            **envelope,
            attributes=dict(payload.get("attributes", {})),
            preferred_channel=payload.get("preferred_channel"),
            marketing_opt_in=payload.get("marketing_opt_in"),
        )


@dataclass(frozen=True, slots=True)
class PlanChanged(Event):
    """The plan in force changed at ``occurred_at`` (a pause is a plan of price 0)."""

    type_name: ClassVar[str] = "plan_changed"
    topic_role: ClassVar[str] = "plan_changes"

    plan: Plan
    change: str
    """upgrade, downgrade, switch, pause or resume."""

    @classmethod
    def build(cls, payload: dict[str, Any], envelope: EnvelopeFields) -> PlanChanged:
        return cls(**envelope, plan=Plan.from_payload(payload["plan"]), change=payload["change"])


CAMPAIGN_ACTIONS = ("delivered", "opened", "clicked", "converted", "unsubscribed")
"""``campaign_response.action`` values, as the schema lists them."""
CONTACT_CHANNELS = ("email", "sms", "push")
"""Contact channel values (``preferred_channel``, ``campaign_response.channel``)."""


@dataclass(frozen=True, slots=True)
class CampaignResponse(Event):
    """What the customer did with a campaign message; ``unsubscribed`` withdraws consent."""

    type_name: ClassVar[str] = "campaign_response"
    topic_role: ClassVar[str] = "campaign_responses"

    campaign_id: str
    channel: str
    action: str
    discount_code: str | None = None

    @classmethod
    def build(cls, payload: dict[str, Any], envelope: EnvelopeFields) -> CampaignResponse:
        return cls(
            **envelope,
            campaign_id=payload["campaign_id"],
            channel=payload["channel"],
            action=payload["action"],
            discount_code=payload.get("discount_code"),
        )


@dataclass(frozen=True, slots=True)
class Feedback(Event):
    """A rating from 1 to 5. The schema's free ``text`` is personal data: it is validated
    but deliberately not read into the record, so it can never reach state or logs."""

    type_name: ClassVar[str] = "feedback"
    topic_role: ClassVar[str] = "feedback_responses"

    score: int
    order_id: str | None = None

    @classmethod
    def build(cls, payload: dict[str, Any], envelope: EnvelopeFields) -> Feedback:
        return cls(**envelope, score=int(payload["score"]), order_id=payload.get("order_id"))


ACQUISITION_CHANNELS = (
    "web",
    "app",
    "marketplace",
    "referral",
    "social",
    "email",
    "retail",
    "other",
)
"""Channels that bring a customer (``signup.acquisition_channel``, ``touchpoint.channel``)."""
TOUCHPOINTS = ("site_visit", "trial", "sample_request")
"""``touchpoint.touchpoint`` values, as the schema lists them."""
CONSIDERATION_TOUCHPOINTS = frozenset({"trial", "sample_request"})
"""Touchpoints that show consideration (a site visit shows awareness only)."""


@dataclass(frozen=True, slots=True)
class Touchpoint(Event):
    """A step before (or besides) buying: a site visit, a trial or a sample request, with
    the channel that brought the visitor (see :mod:`segstream.metrics.journey`)."""

    type_name: ClassVar[str] = "touchpoint"
    topic_role: ClassVar[str] = "touchpoints"

    touchpoint: str
    channel: str

    @classmethod
    def build(cls, payload: dict[str, Any], envelope: EnvelopeFields) -> Touchpoint:
        return cls(**envelope, touchpoint=payload["touchpoint"], channel=payload["channel"])

    @property
    def considers(self) -> bool:
        """Whether this touchpoint shows consideration."""
        return self.touchpoint in CONSIDERATION_TOUCHPOINTS


@dataclass(frozen=True, slots=True)
class CustomerErased(Event):
    """The customer asked to be forgotten: the pipeline removes them (it is no fact to fold
    into their state; see ``Pipeline.erase``)."""

    type_name: ClassVar[str] = "customer_erased"
    topic_role: ClassVar[str] = "erasure_requests"
    folds: ClassVar[bool] = False

    @classmethod
    def build(cls, payload: dict[str, Any], envelope: EnvelopeFields) -> CustomerErased:
        return cls(**envelope)


EVENT_CLASSES: tuple[type[Event], ...] = (
    Signup,
    Order,
    Cancellation,
    CustomerUpdated,
    PlanChanged,
    CampaignResponse,
    Feedback,
    Touchpoint,
    CustomerErased,
)
"""The registry of input event types, the one place one is declared: everything else (the
schema ``type`` names, topic roles and names, the worker's subscriptions, the tools' lists
of input roles) is derived from it. Adding a type: its schema ``schemas/v1/<type_name>.json``
with examples, its class here, and how it changes customer state
(:func:`segstream.domain.customer.apply`)."""

BY_TYPE_NAME: dict[str, type[Event]] = {cls.type_name: cls for cls in EVENT_CLASSES}
"""Registry entries by schema ``type`` name, in registry order."""

BY_TOPIC_ROLE: dict[str, type[Event]] = {cls.topic_role: cls for cls in EVENT_CLASSES}
"""Registry entries by the role of the topic that carries them, in registry order."""

if len(BY_TYPE_NAME) != len(EVENT_CLASSES) or len(BY_TOPIC_ROLE) != len(EVENT_CLASSES):
    raise RuntimeError("EVENT_CLASSES: every type_name and topic_role must be unique")


def from_payload(payload: dict[str, Any]) -> Event:
    """Typed record for a payload that :func:`segstream.domain.contracts.parse_event` accepted."""
    envelope = EnvelopeFields(
        event_id=payload["event_id"],
        shop_id=payload["shop_id"],
        customer_id=payload["customer_id"],
        occurred_at=parse_time(payload["occurred_at"]).astimezone(UTC),
    )
    return BY_TYPE_NAME[payload["type"]].build(payload, envelope)


def event_type(event: Event) -> str:
    """The schema's ``type`` name of a record."""
    return event.type_name
