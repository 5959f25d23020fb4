"""Referral counts: a fact of the referees, credited to their referrer.

A referral count is how many known customers name the referrer
(:attr:`CustomerState.referrer`). It lives on the referrer's state when segstream knows
them, else on a pending record of the shop's keyed by their id hashed, which their first
event picks up (and an erasure of theirs refills). So it is the same whatever order the
topics deliver signups in, also when the referrer comes later than the referee, or is
erased and comes back.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import datetime
from typing import Any

from segstream.domain.changes import Cause, SegmentChange
from segstream.domain.customer import CustomerState
from segstream.engine.books import ShopBook
from segstream.engine.customers import Customers
from segstream.engine.evaluation import Evaluation
from segstream.metrics.ledger import MetricsLedger
from segstream.state.keyspace import referrals_key


class Referrals:
    """Credits referrals to referrers, known or not yet."""

    def __init__(
        self,
        shops: MutableMapping[str, Any],
        customers: Customers,
        evaluation: Evaluation,
        ledger: MetricsLedger,
    ) -> None:
        self.shops = shops
        self.customers = customers
        self.evaluation = evaluation
        self.ledger = ledger

    def credit(
        self, book: ShopBook, referrer_id: str, delta: int, now: datetime, cause: Cause
    ) -> list[SegmentChange]:
        """Count one referral more (``delta`` 1) or less (-1) for ``referrer_id``. The
        referrer's defined segments may move; the models do not look: a referral is not
        the referrer's own behaviour, and an extra look would feed the learned models a
        sample they never saw before."""
        referrer = self.customers.get(book.shop_id, referrer_id)
        if referrer is None:
            self.pend(book.shop_id, referrer_id, delta)
            return []
        before = referrer.copy()
        referrer.referral_count = max(0, referrer.referral_count + delta)
        changes = []
        if not referrer.is_prospect:  # a prospect is in no segment yet
            view = self.evaluation.view(referrer, now)
            changes = self.evaluation.evaluate_defined(book, referrer, view, now, cause)
            self.evaluation.review_sooner(book, referrer, view)
        self.customers.save(referrer)
        if changes:
            self.ledger.record(None, before, referrer, now)
        return changes

    def pend(self, shop_id: str, referrer_id: str, delta: int) -> None:
        """Add ``delta`` to the referrals pending for a customer segstream does not know
        (a record exists only while some are: at most one per referrer named)."""
        key = referrals_key(shop_id, referrer_id)
        known = self.shops.get(key)
        count = (0 if known is None else int(known["count"])) + delta
        if count > 0:
            self.shops[key] = {"count": count}
        elif known is not None:
            del self.shops[key]

    def new_customer(self, shop_id: str, customer_id: str) -> CustomerState:
        """A customer's first state: with the referrals credited to them before segstream
        knew them (the pending record is picked up, and deleted)."""
        state = CustomerState(shop_id, customer_id)
        key = referrals_key(shop_id, customer_id)
        pending = self.shops.get(key)
        if pending is not None:
            state.referral_count = int(pending["count"])
            del self.shops[key]
        return state
