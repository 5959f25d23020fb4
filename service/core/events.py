"""Typed views of input events that already passed schema validation.

The contract lives in ``schemas/v1``; these records only give the worker typed
access to a validated payload (see :func:`from_payload`) and never validate twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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


@dataclass(frozen=True, slots=True)
class Signup(Envelope):
    """A customer subscribed (or re-subscribed) to a plan."""

    plan: Plan
    acquisition_channel: str
    referred_by: str | None = None
    preferred_channel: str | None = None
    attributes: Attributes = field(default_factory=dict)
    marketing_opt_in: bool | None = None
    """Whether the customer agreed to marketing messages (None: the platform did not say)."""


@dataclass(frozen=True, slots=True)
class Order(Envelope):
    """A purchase: a subscription renewal or a one-off order."""

    order_id: str
    amount: float
    currency: str
    is_renewal: bool
    categories: tuple[str, ...] = ()
    plan: Plan | None = None
    discount_code: str | None = None


@dataclass(frozen=True, slots=True)
class Cancellation(Envelope):
    """A customer cancelled; the subscription ends at ``effective_at``."""

    reason: str
    effective_at: datetime


Event = Signup | Order | Cancellation


def from_payload(payload: dict[str, Any]) -> Event:
    """Typed record for a payload that :func:`service.core.contracts.parse_event` accepted."""
    envelope = {
        "event_id": payload["event_id"],
        "shop_id": payload["shop_id"],
        "customer_id": payload["customer_id"],
        "occurred_at": parse_time(payload["occurred_at"]).astimezone(UTC),
    }
    kind = payload["type"]
    if kind == "signup":
        return Signup(
            **envelope,
            plan=Plan.from_payload(payload["plan"]),
            acquisition_channel=payload["acquisition_channel"],
            referred_by=payload.get("referred_by"),
            preferred_channel=payload.get("preferred_channel"),
            attributes=dict(payload.get("attributes", {})),
            marketing_opt_in=payload.get("marketing_opt_in"),
        )
    if kind == "order":
        return Order(
            **envelope,
            order_id=payload["order_id"],
            amount=float(payload["amount"]),
            currency=payload["currency"],
            is_renewal=bool(payload["is_renewal"]),
            categories=tuple(sorted({item["category"] for item in payload.get("items", [])})),
            plan=Plan.from_payload(payload["plan"]) if "plan" in payload else None,
            discount_code=payload.get("discount_code"),
        )
    effective = payload.get("effective_at", payload["occurred_at"])
    effective_at = parse_time(effective).astimezone(UTC)
    return Cancellation(**envelope, reason=payload["reason"], effective_at=effective_at)


def event_type(event: Event) -> str:
    """The schema's ``type`` name of a record."""
    return {Signup: "signup", Order: "order", Cancellation: "cancellation"}[type(event)]
