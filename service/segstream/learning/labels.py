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
Snapshots are not taken while a customer is churned. They are kept with the customer
(32-bit floats), so a shop's model stays the same size however many customers wait.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from segstream.core.features import CustomerSnapshot
from segstream.learning.vectors import FEATURES, Vector, as_row, from_row

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

    def lapses_at(self, customer: CustomerSnapshot) -> datetime | None:
        """The midnight at which the customer's silence passes their gap (None: already
        churned by then or before)."""
        if self.churned_at(customer) is not None:
            return None
        quiet_since = customer.as_of.date() - timedelta(days=customer.last_activity_days)
        lapse_day = quiet_since + timedelta(days=math.floor(self.gap_days(customer)) + 1)
        return datetime.combine(lapse_day, time(), UTC)


ROW = struct.Struct(f"<I{len(FEATURES)}f")
"""A kept snapshot: epoch seconds, then the feature row as 32-bit floats."""
AS_OF = struct.Struct("<I")
"""The epoch seconds at the start of a kept snapshot."""


@dataclass(frozen=True, slots=True)
class Pending:
    """A prediction waiting for its label: when, the features then, the predictions then."""

    as_of: int
    """Epoch seconds of the snapshot."""
    row: tuple[float, ...]
    predictions: tuple[float, ...]

    @property
    def features(self) -> Vector:
        """The feature vector as it was at ``as_of`` (to 32-bit precision)."""
        return from_row(self.row)

    def to_memory(self) -> list[Any]:
        """The compact form kept in the customer's memory."""
        return [ROW.pack(self.as_of, *self.row), *self.predictions]

    @classmethod
    def from_memory(cls, kept: list[Any]) -> Pending:
        """Inverse of :meth:`to_memory`."""
        as_of, *row = ROW.unpack(kept[0])
        return cls(as_of, tuple(row), tuple(float(p) for p in kept[1:]))


@dataclass(frozen=True, slots=True)
class Example:
    """A settled prediction: the features and predictions at ``as_of``, and the outcome."""

    features: Vector
    predictions: tuple[float, ...]
    churned: bool
    as_of: datetime


class Labeller:
    """Settles a customer's pending snapshots as the stream reveals outcomes, and decides
    when to keep a new one. The snapshots themselves live with the customer (their
    ``memory``); the labeller keeps only the shop-wide count that caps them."""

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

    def settle(
        self, waiting: list[Pending], now: datetime, churned_at: datetime | None
    ) -> tuple[list[Example], list[Pending]]:
        """The snapshots that ``now`` settles, oldest first, and those still waiting."""
        if not waiting:
            return [], []
        churn = None if churned_at is None else _seconds(churned_at)
        settled = list(self._settled(waiting, _seconds(now), churn))
        kept = waiting[len(settled) :] if churn is None else []
        self.pending_count -= len(waiting) - len(kept)
        return settled, kept

    def _settled(self, waiting: list[Pending], now: int, churn: int | None) -> Iterator[Example]:
        for pending in waiting:
            if churn is None:
                if now - pending.as_of < self.horizon:
                    return
                yield _example(pending, churned=False)
            elif pending.as_of < churn:
                yield _example(pending, churned=churn - pending.as_of <= self.horizon)

    def due(self, waiting: list[Pending], now: datetime) -> bool:
        """Whether a snapshot of this customer at ``now`` should be kept (skips are counted)."""
        if waiting and _seconds(now) - waiting[-1].as_of < self.every:
            return False
        if len(waiting) >= self.per_customer or self.pending_count >= self.max_pending:
            self.skipped += 1
            return False
        return True

    def hold(self, now: datetime, features: Vector, predictions: tuple[float, ...]) -> Pending:
        """A snapshot to keep (call after :meth:`due` said so), counted as pending."""
        self.pending_count += 1
        as_of, *row = ROW.unpack(ROW.pack(_seconds(now), *as_row(features)))
        return Pending(as_of, tuple(row), predictions)

    def next_settlement(self, kept: list[list[Any]] | None) -> datetime | None:
        """When the oldest kept snapshot's horizon passes (it is then labelled negative);
        reads the customer's memory (:meth:`Pending.to_memory` rows) without decoding it."""
        if not kept:
            return None
        (as_of,) = AS_OF.unpack_from(kept[0][0])
        return datetime.fromtimestamp(as_of + self.horizon, UTC)


def _seconds(when: datetime) -> int:
    return int(when.timestamp())


def _example(pending: Pending, churned: bool) -> Example:
    return Example(
        features=pending.features,
        predictions=pending.predictions,
        churned=churned,
        as_of=datetime.fromtimestamp(pending.as_of, UTC),
    )
