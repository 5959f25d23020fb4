"""Churn labels from the stream, without peeking at the future.

A churn model predicts at ``as_of`` whether the customer churns within
``horizon_days``. The answer is only known later, so the prediction's inputs are
kept as a :class:`Pending` snapshot (the features *as they were* at ``as_of`` and
what was predicted then) until the stream settles it:

- the customer churns at ``churned_at`` (cancellation, or lapse: see
  :class:`LapseRule`): every pending snapshot taken before ``churned_at`` is
  labelled, positive when ``churned_at - as_of <= horizon``, else negative;
- ``horizon`` passes without churn: the snapshot is labelled negative, never
  earlier (a younger snapshot may still turn positive).

At most one snapshot per customer per ``snapshot_every_days`` is kept, at most
``per_customer`` per customer and ``max_pending`` in all (further snapshots are
skipped and counted: what is skipped depends on time, never on the outcome).
Snapshots are not taken while a customer is churned.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from service.core.features import CustomerSnapshot
from service.learning.vectors import Vector, as_row, from_row

DAY_SECONDS = 86_400


@dataclass(frozen=True, slots=True)
class LapseRule:
    """A customer lapses after ``lapse_multiple`` x their cadence without a purchase, or after
    ``lapse_days`` when they have no cadence yet; a cancellation is churn at once."""

    lapse_multiple: float = 3.0
    lapse_days: float = 90.0

    def gap_days(self, customer: CustomerSnapshot) -> float:
        """Days of silence after which this customer has lapsed."""
        if customer.cadence_days is None:
            return self.lapse_days
        return self.lapse_multiple * max(customer.cadence_days, 1.0)

    def churned_at(self, customer: CustomerSnapshot) -> datetime | None:
        """When the customer churned, as far as ``customer.as_of`` shows, or None.

        A cancellation counts when first seen (the snapshot carries no cancel time;
        the pipeline evaluates a customer at their cancellation event). A lapse
        counts from the day the silence exceeded the customer's gap.
        """
        if customer.subscription in ("cancelling", "cancelled"):
            return customer.as_of
        gap = self.gap_days(customer)
        if customer.last_activity_days <= gap:
            return None
        return customer.as_of - timedelta(days=customer.last_activity_days - gap)


@dataclass(frozen=True, slots=True)
class Pending:
    """A prediction waiting for its label: when, the features then, the predictions then."""

    as_of: int
    """Epoch seconds of the snapshot."""
    row: array[float]
    predictions: tuple[float, ...]

    @property
    def features(self) -> Vector:
        """The feature vector as it was at ``as_of``."""
        return from_row(tuple(self.row))


@dataclass(frozen=True, slots=True)
class Example:
    """A settled prediction: the features and predictions at ``as_of``, and the outcome."""

    features: Vector
    predictions: tuple[float, ...]
    churned: bool
    as_of: datetime


class Labeller:
    """Keeps pending snapshots per customer and settles them as the stream reveals outcomes."""

    def __init__(
        self,
        horizon_days: float = 60.0,
        snapshot_every_days: float = 7.0,
        per_customer: int = 8,
        max_pending: int = 20_000,
    ) -> None:
        self.horizon = round(horizon_days * DAY_SECONDS)
        self.every = round(snapshot_every_days * DAY_SECONDS)
        self.per_customer = per_customer
        self.max_pending = max_pending
        self.pending_count = 0
        self.skipped = 0
        self._pending: dict[str, list[Pending]] = {}

    def settle(self, customer_id: str, now: datetime, churned_at: datetime | None) -> list[Example]:
        """The customer's snapshots that ``now`` settles, oldest first (removed from pending)."""
        waiting = self._pending.get(customer_id)
        if not waiting:
            return []
        churn = None if churned_at is None else _seconds(churned_at)
        settled = list(self._settled(waiting, _seconds(now), churn))
        kept = waiting[len(settled) :] if churn is None else []
        self.pending_count -= len(waiting) - len(kept)
        if kept:
            self._pending[customer_id] = kept
        else:
            del self._pending[customer_id]
        return settled

    def _settled(self, waiting: list[Pending], now: int, churn: int | None) -> Iterator[Example]:
        for pending in waiting:
            if churn is None:
                if now - pending.as_of < self.horizon:
                    return
                yield _example(pending, churned=False)
            elif pending.as_of < churn:
                yield _example(pending, churned=churn - pending.as_of <= self.horizon)

    def due(self, customer_id: str, now: datetime) -> bool:
        """Whether a snapshot of this customer at ``now`` should be kept (skips are counted)."""
        waiting = self._pending.get(customer_id, [])
        if waiting and _seconds(now) - waiting[-1].as_of < self.every:
            return False
        if len(waiting) >= self.per_customer or self.pending_count >= self.max_pending:
            self.skipped += 1
            return False
        return True

    def hold(
        self, customer_id: str, now: datetime, features: Vector, predictions: tuple[float, ...]
    ) -> None:
        """Keep a snapshot (call after :meth:`due` said so)."""
        pending = Pending(_seconds(now), array("d", as_row(features)), predictions)
        self._pending.setdefault(customer_id, []).append(pending)
        self.pending_count += 1

    def pending(self, customer_id: str) -> list[Pending]:
        """The customer's unsettled snapshots, oldest first."""
        return list(self._pending.get(customer_id, []))


def _seconds(when: datetime) -> int:
    return int(when.timestamp())


def _example(pending: Pending, churned: bool) -> Example:
    return Example(
        features=pending.features,
        predictions=pending.predictions,
        churned=churned,
        as_of=datetime.fromtimestamp(pending.as_of, UTC),
    )
