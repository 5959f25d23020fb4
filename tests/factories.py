"""Input events for tests, one builder per event type, in the wire format of ``schemas/v1``.

Each builder returns the payload (a JSON object as a dict, what a platform publishes and
``segstream.tools.publish`` takes); :func:`encoded` makes it a record value (what
``Pipeline.handle`` reads) and :func:`event` the typed record the stream folds, after the
real contract check (:func:`segstream.domain.contracts.parse_event`): a test that builds an
event through :func:`event` cannot get one the worker would have dead-lettered.

The builders do not validate, so a test can make a payload and then break it on purpose
(``order(..., amount=1e308)``, a field removed). Optional fields are left out unless given,
as a platform leaves them out. Times are aware datetimes or RFC 3339 strings.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from segstream.domain.contracts import Rejection, parse_event
from segstream.domain.events import Event, format_time, from_payload, parse_time

Payload = dict[str, Any]
"""An input event as its JSON object."""
Moment = datetime | str
"""An aware datetime, or an RFC 3339 string already formatted."""

SHOP = "tea-1"
"""The shop every builder uses unless told another."""


def _time(at: Moment) -> str:
    return at if isinstance(at, str) else format_time(at)


def envelope(kind: str, customer: str, at: Moment, event_id: str, shop: str = SHOP) -> Payload:
    """The fields every input event carries, for an event of schema type ``kind``."""
    return {
        "schema_version": 1,
        "type": kind,
        "event_id": event_id,
        "shop_id": shop,
        "customer_id": customer,
        "occurred_at": _time(at),
    }


def plan(
    price: float = 19.0,
    interval: str = "month",
    *,
    plan_id: str = "monthly",
    tier: str | None = None,
    currency: str = "EUR",
) -> Payload:
    """A ``plan`` object: ``price`` per ``interval`` (``tier`` left out unless given)."""
    payload: Payload = {
        "plan_id": plan_id,
        "price": price,
        "currency": currency,
        "interval": interval,
    }
    if tier is not None:
        payload["tier"] = tier
    return payload


def order(
    customer: str,
    at: Moment,
    event_id: str,
    amount: float = 20.0,
    *,
    shop: str = SHOP,
    order_id: str | None = None,
    currency: str = "EUR",
    is_renewal: bool = False,
    new_plan: Payload | None = None,
) -> Payload:
    """An order of ``amount`` (order id ``o-<event_id>`` unless given), optionally
    switching the customer to ``new_plan``."""
    payload = envelope("order", customer, at, event_id, shop) | {
        "order_id": f"o-{event_id}" if order_id is None else order_id,
        "amount": amount,
        "currency": currency,
        "is_renewal": is_renewal,
    }
    if new_plan is not None:
        payload["plan"] = new_plan
    return payload


def signup(
    customer: str,
    at: Moment,
    event_id: str,
    *,
    shop: str = SHOP,
    to_plan: Payload | None = None,
    channel: str = "web",
    referred_by: str | None = None,
) -> Payload:
    """A signup to ``to_plan`` (default: :func:`plan`), acquired through ``channel``,
    optionally referred by another customer."""
    payload = envelope("signup", customer, at, event_id, shop) | {
        "plan": plan() if to_plan is None else to_plan,
        "acquisition_channel": channel,
    }
    if referred_by is not None:
        payload["referred_by"] = referred_by
    return payload


def cancellation(
    customer: str,
    at: Moment,
    event_id: str,
    *,
    shop: str = SHOP,
    reason: str = "price",
    effective_at: Moment | None = None,
) -> Payload:
    """A cancellation, effective when it occurred unless ``effective_at`` is given."""
    payload = envelope("cancellation", customer, at, event_id, shop) | {"reason": reason}
    if effective_at is not None:
        payload["effective_at"] = _time(effective_at)
    return payload


def plan_change(
    customer: str, at: Moment, event_id: str, to_plan: Payload, change: str, *, shop: str = SHOP
) -> Payload:
    """A change to ``to_plan`` (``change``: upgrade, downgrade, switch, pause or resume)."""
    return envelope("plan_changed", customer, at, event_id, shop) | {
        "plan": to_plan,
        "change": change,
    }


def touchpoint(
    customer: str, at: Moment, event_id: str, *, shop: str = SHOP, kind: str = "site_visit"
) -> Payload:
    """A prospect's (or customer's) touchpoint of ``kind``, through the web."""
    return envelope("touchpoint", customer, at, event_id, shop) | {
        "touchpoint": kind,
        "channel": "web",
    }


def erasure(customer: str, at: Moment, event_id: str, *, shop: str = SHOP) -> Payload:
    """A request to forget the customer."""
    return envelope("customer_erased", customer, at, event_id, shop)


def encoded(payload: Payload) -> bytes:
    """The record value of ``payload``, as a platform publishes it."""
    return json.dumps(payload).encode()


def event(payload: Payload) -> Event:
    """The typed record of ``payload``, which must pass the input contract (its time is
    judged against itself, so the result does not depend on the wall clock)."""
    now = parse_time(payload["occurred_at"])
    checked = parse_event(encoded(payload), now=now)
    if isinstance(checked, Rejection):
        raise ValueError(f"not a valid input event ({checked.reason}): {checked.detail}")
    return from_payload(checked)


class LogRecorder:
    """Stands in for a module's structlog logger: keeps what it was told, per level, in
    order (``monkeypatch.setattr(module, "log", recorder)``)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def said(self, level: str) -> list[tuple[str, dict[str, Any]]]:
        """The ``(event, fields)`` logged at ``level``."""
        return [(event, fields) for at, event, fields in self.lines if at == level]

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append(("info", event, fields))

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append(("warning", event, fields))

    def error(self, event: str, **fields: Any) -> None:
        self.lines.append(("error", event, fields))
