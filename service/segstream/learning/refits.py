"""When a shop's lifetime model is refitted, and on what: an order of a sampled customer
counts towards the next refit, which happens at once when due
(:meth:`~segstream.learning.lifetime.ShopLifetime.due`), on the sample as it is then."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from segstream.domain.customer import CustomerState, Silence, day_number
from segstream.domain.features import snapshot
from segstream.learning.lifetime import ShopLifetime, spend_trend

Lookup = Callable[[str], CustomerState | None]
"""A customer's state by id (None: not known), of the shop the lifetime model is of."""


def count_order(
    lifetime: ShopLifetime, customer_id: str, now: datetime, lookup: Lookup, silence: Silence
) -> bool:
    """Count an order of ``customer_id`` at the shop's stream time ``now``, refitting
    when that makes a refit due; whether the lifetime record changed."""
    if not lifetime.note_order(customer_id):
        return False
    if lifetime.due(day_number(now)):
        refit(lifetime, now, lookup, silence)
    return True


def refit(lifetime: ShopLifetime, now: datetime, lookup: Lookup, silence: Silence) -> None:
    """Fit the lifetime model on its sample of customers as they are ``now`` (those the
    shop no longer knows are left out)."""
    states = (lookup(customer_id) for customer_id in lifetime.sample)
    lifetime.refit(
        day_number(now),
        (
            (snapshot(state, now, silence), spend_trend(state.purchase_days, now.date()))
            for state in states
            if state is not None
        ),
    )
