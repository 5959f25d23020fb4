"""Tick orders: make every shop's next full re-evaluation happen at a known stream time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from segstream.domain.events import parse_time
from tests.factories import order


def tick_orders(outbox: Sequence[tuple[Any, Any]], after: timedelta, label: str) -> list[Any]:
    """One order per shop ``after`` the latest event sent so far, from a ``tick`` customer.

    Sent once everything before it is consumed, it makes the shop's next full
    re-evaluation happen at the same stream time over the same facts in every run, so
    segments become comparable: Kafka orders nothing across the input topics, and
    between re-evaluations segments depend on the order events were consumed in.
    """
    latest: dict[str, datetime] = {}
    for _, value in outbox:
        if not isinstance(value, bytes):
            at = parse_time(value["occurred_at"])
            latest[value["shop_id"]] = max(latest.get(value["shop_id"], at), at)
    return [
        (
            "orders",
            order(
                "tick", at + after, f"tick-{label}-{shop}", 1.0, shop=shop, order_id=f"tick-{label}"
            ),
        )
        for shop, at in sorted(latest.items())
    ]
