"""Erasure of a customer: out of every segment, the metrics, the funnel and the lifetime
sample, their state deleted, and a marker (their id hashed) that drops their events that
occurred before the erasure and arrive later.

An erasure request is administrative: it takes effect at the shop's stream time and
never moves it (a request dated today for a shop replayed up to last year would otherwise
age every customer a year at once). A shop's first event sets its stream time, so a shop
without one has nobody to forget: only the marker is left.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from segstream.domain.changes import Cause, SegmentChange
from segstream.domain.customer import PAYING_STATUSES, CustomerState, apply, subscription_status
from segstream.domain.events import Cancellation, CustomerErased, Event
from segstream.engine.books import ShopBook, oldest_cohort
from segstream.engine.customers import Customers
from segstream.engine.evaluation import Evaluation, move
from segstream.engine.referrals import Referrals
from segstream.metrics.journey import journey_of
from segstream.metrics.ledger import MetricsLedger
from segstream.segments.defined.live import segment_of
from segstream.settings import Settings
from segstream.state.keyspace import erasure_key


class Erasure:
    """Forgets customers on request, and the events of theirs that come late."""

    def __init__(
        self,
        settings: Settings,
        shops: MutableMapping[str, Any],
        customers: Customers,
        evaluation: Evaluation,
        referrals: Referrals,
    ) -> None:
        self.settings = settings
        self.shops = shops
        self.customers = customers
        self.evaluation = evaluation
        self.referrals = referrals
        self.ledger: MetricsLedger = evaluation.ledger

    def mark(self, event: CustomerErased) -> None:
        """Leave (or move later) the marker of an erased customer."""
        marker = erasure_key(event.shop_id, event.customer_id)
        known = self.shops.get(marker)
        at = event.occurred_at.timestamp()
        self.shops[marker] = {"at": at if known is None else max(at, known["at"])}

    def erase(
        self, book: ShopBook, event: CustomerErased, state: CustomerState, now: datetime
    ) -> list[SegmentChange]:
        """Forget a customer at ``now``: out of every segment (cause ``erased``), a paying
        subscriber's churn booked now (reason ``erased``), out of the funnel and the
        lifetime sample, their state deleted (a tombstone on the changelog). Their
        referral is withdrawn from their referrer, and the referrals credited to them wait
        for their id on the shop's pending record (they are the referees' facts)."""
        before = state.copy()
        cause = Cause("erased", event.event_id, event.type_name)
        changes = []
        for name in sorted(state.segments):
            defined = segment_of(name)
            version = None if defined is None else book.definitions.last_version(defined)
            changes += move(book, state, name, None, now, cause, version)
        view = self.evaluation.view(before, now)
        for model in book.models.values():
            model.forget(view)
        request = replace(event, occurred_at=min(event.occurred_at, now))
        self.ledger.record(request, before, _leaving(state, event, now), now)
        oldest = oldest_cohort(self.settings, now)
        book.funnel_dirty |= book.funnel.move(journey_of(before), None, oldest)
        book.lifetime_dirty |= book.lifetime.forget(event.customer_id)
        book.schedule.set(event.customer_id, None)
        self.customers.delete(event.shop_id, event.customer_id)
        if before.referrer is not None:  # the referrer's change is no erasure of theirs
            referee = Cause("event", event.event_id, event.type_name)
            changes += self.referrals.credit(book, before.referrer, -1, now, referee)
        self.referrals.pend(event.shop_id, event.customer_id, before.referral_count)
        return changes

    def forgotten(self, event: Event, state: CustomerState | None) -> bool:
        """Whether the event occurred before an erasure of its customer (it belongs to
        the customer forgotten, whether it arrives before or after events of a new one).
        A state kept after an erasure holds only events after it, so an event no earlier
        than everything the state knows needs no look at the marker."""
        if state is not None and not _earlier_than_known(state, event.occurred_at):
            return False
        marker = self.shops.get(erasure_key(event.shop_id, event.customer_id))
        return marker is not None and event.occurred_at.timestamp() <= marker["at"]


def _earlier_than_known(state: CustomerState, when: datetime) -> bool:
    """Whether ``when`` is earlier than every event the state holds (its first event,
    touchpoints included)."""
    known = [] if state.first_touch is None else [state.first_touch[0]]
    known += [] if state.first_seen_at is None else [state.first_seen_at]
    return not known or when < min(known)


def _leaving(state: CustomerState, erasure: CustomerErased, now: datetime) -> CustomerState:
    """``state`` as the metrics see an erased customer: a paying subscription ends now
    (a cancellation with reason ``erased``, folded like any other), so the ledger books
    their churn instead of unbooking history."""
    leaving = state.copy()
    if subscription_status(state, now) in PAYING_STATUSES:
        envelope = {
            "event_id": erasure.event_id,
            "shop_id": erasure.shop_id,
            "customer_id": erasure.customer_id,
        }
        apply(leaving, Cancellation(**envelope, occurred_at=now, reason="erased", effective_at=now))
    return leaving
