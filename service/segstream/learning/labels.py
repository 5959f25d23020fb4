"""Churn labels from the stream, without peeking at the future.

The churn model predicts at ``as_of`` whether a customer who has bought **leaves within the
next ``horizon_days``: places no order (renewals included) in that time, or asks to cancel
their subscription in it** (a subscriber who cancels has left even if a last paid box
still ships), and how many orders (purchase days) they place in that time. A shop without
subscriptions labels by orders alone. The answer is only known later, so the prediction's inputs
are kept as a :class:`Pending` snapshot (the features *as they were* at ``as_of``, the
customer's purchase days then, what was predicted then) until the window has passed: at
the customer's first evaluation at or after ``as_of + horizon`` (the model asks for a
review then) the snapshot is labelled with the purchase days that came inside the window
(``churned`` when none did, or a cancellation was asked for inside it), and never
earlier.

When to keep a snapshot: on a grid of stream days every ``snapshot_every_days``, each
customer at their own phase (a hash of their id), from the day after their first
purchase, at whatever evaluation first reaches the grid day (the model asks for a review
then). So settled snapshots sample every buyer at regular times, quiet or not, as a shop
looked at all its customers on a random day would: what the progressive validation
measures on them is what a holdout taken on any day would show, and the labels do not
over-weight the days customers order (an earlier version kept one at every event).

Bounds: at most ``per_customer`` snapshots wait per customer and ``max_pending`` per shop.
When the shop bound is hit, the share of customers (by id hash) that keep snapshots is
halved: which customers are sampled depends on their id, never on their outcome or on
when they were due. Snapshots are kept in the customer's memory (32-bit floats), so the
model's own state does not grow with the shop.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from segstream.domain.features import CustomerSnapshot

DAY_SECONDS = 86_400
EPOCH_DAY = date(1970, 1, 1)
HASH_SPACE = 2**32


@dataclass(frozen=True, slots=True)
class LapseRule:
    """A customer lapses after ``lapse_multiple`` x their cadence without a purchase, or after
    ``lapse_days`` when they have no cadence yet (used only by the cold-start guess)."""

    lapse_multiple: float = 3.0
    lapse_days: float = 90.0

    def gap_days(self, customer: CustomerSnapshot) -> float:
        """Days of silence after which this customer has lapsed."""
        if customer.cadence_days is None:
            return self.lapse_days
        return self.lapse_multiple * max(customer.cadence_days, 1.0)


F32_MAX = 3.4028234663852886e38
"""The largest finite 32-bit float: larger finite values are kept as it."""


def float32(value: float) -> float:
    """``value`` as a 32-bit float can hold it: a finite value beyond its range saturates
    (struct raised OverflowError: an extreme BG/NBD count dead-lettered an event as
    ``processing_error`` in the chaos run, seed 657927); NaN and infinities stay.

    >>> float32(1e300), float32(-1e300), float32(2.5)
    (3.4028234663852886e+38, -3.4028234663852886e+38, 2.5)
    """
    if math.isfinite(value) and abs(value) > F32_MAX:
        return math.copysign(F32_MAX, value)
    return value


HEAD = struct.Struct("<IIf")
"""Epoch seconds of the snapshot, the customer's distinct purchase days then, the orders
expected in the window then (NaN: none were)."""


@dataclass(frozen=True, slots=True)
class Pending:
    """A prediction waiting for its label: when, purchase days then, features, predictions."""

    as_of: int
    """Epoch seconds of the snapshot."""
    purchase_days: int
    """The customer's distinct purchase days at ``as_of``."""
    expected: float
    """Orders expected in the window at ``as_of`` (32-bit; NaN: none were)."""
    row: tuple[float, ...]
    predictions: tuple[float, ...]

    def to_memory(self) -> list[Any]:
        """The compact form kept in the customer's memory."""
        head = HEAD.pack(self.as_of, self.purchase_days, float32(self.expected))
        row = struct.pack(f"<{len(self.row)}f", *(float32(v) for v in self.row))
        return [head + row, *self.predictions]

    @staticmethod
    def taken_at(kept: list[Any]) -> int:
        """The epoch seconds of a kept snapshot, read without decoding the rest."""
        as_of: int = HEAD.unpack_from(kept[0])[0]
        return as_of

    @staticmethod
    def fits(kept: list[Any], features: int) -> bool:
        """Whether ``kept`` is a snapshot of ``features`` features in this format."""
        return (
            bool(kept) and isinstance(kept[0], bytes) and len(kept[0]) == HEAD.size + 4 * features
        )

    @classmethod
    def from_memory(cls, kept: list[Any]) -> Pending:
        """Inverse of :meth:`to_memory`."""
        blob: bytes = kept[0]
        as_of, days, expected = HEAD.unpack_from(blob)
        row = struct.unpack_from(f"<{(len(blob) - HEAD.size) // 4}f", blob, HEAD.size)
        return cls(as_of, days, expected, tuple(row), tuple(float(p) for p in kept[1:]))


@dataclass(frozen=True, slots=True)
class Example:
    """A settled prediction: the features and predictions at ``as_of``, and the outcome."""

    features: tuple[float, ...]
    predictions: tuple[float, ...]
    churned: bool
    """Left within the horizon after ``as_of``: no order, or a cancellation asked for."""
    as_of: datetime
    orders: int = 0
    """Purchase days within the horizon after ``as_of``."""
    expected: float = math.nan
    """The orders expected then (NaN: none were)."""


class Labeller:
    """Decides when to keep a snapshot of a customer, and settles their snapshots once the
    horizon has passed. The snapshots live with the customer (their ``memory``); the
    labeller keeps only the counts that bound them and the sampled share."""

    def __init__(
        self,
        horizon_days: float = 90.0,
        snapshot_every_days: int = 30,
        per_customer: int = 4,
        max_pending: int = 20_000,
    ) -> None:
        self.horizon = round(horizon_days * DAY_SECONDS)
        self.every = max(1, snapshot_every_days)
        self.per_customer = per_customer
        self.max_pending = max_pending
        self.pending_count = 0
        self.skipped = 0
        self.share = 1.0
        """Share of customers (by id hash) that keep snapshots (halved at the shop bound)."""

    # ------------------------------------------------------------ settling

    def settle(
        self, waiting: list[Pending], customer: CustomerSnapshot
    ) -> tuple[list[Example], list[Pending]]:
        """The snapshots whose horizon has passed by ``customer.as_of``, labelled, oldest
        first; and those still waiting."""
        now = _seconds(customer.as_of)
        settled = [self._label(p, customer) for p in waiting if now - p.as_of >= self.horizon]
        kept = waiting[len(settled) :]
        self.pending_count -= len(settled)
        return settled, kept

    def settles(self, as_of: int, customer: CustomerSnapshot) -> bool:
        """Whether a snapshot taken at ``as_of`` (epoch seconds) is settled by now."""
        return _seconds(customer.as_of) - as_of >= self.horizon

    def _label(self, pending: Pending, customer: CustomerSnapshot) -> Example:
        """Churned unless the customer's purchase days grew inside the window, or when a
        cancellation was asked for inside it. The customer is evaluated at each of their
        events, so at most their latest purchase day (or cancellation) can lie past the
        window's end (a review settles the snapshot at the end itself)."""
        ends = datetime.fromtimestamp(pending.as_of + self.horizon, UTC).date()
        grown = _purchase_days(customer) - pending.purchase_days
        last = customer.last_purchase
        if last is not None and last >= ends:
            grown -= 1  # that one came after the window
        cancelled = customer.cancelled_at
        asked = (
            cancelled is not None
            and pending.as_of < _seconds(cancelled) <= pending.as_of + self.horizon
        )
        return Example(
            features=pending.row,
            predictions=pending.predictions,
            churned=grown <= 0 or asked,
            as_of=datetime.fromtimestamp(pending.as_of, UTC),
            orders=max(grown, 0),
            expected=pending.expected,
        )

    def next_settlement(self, kept: Sequence[list[Any]] | None) -> datetime | None:
        """When the oldest kept snapshot's horizon passes; reads the customer's memory
        (:meth:`Pending.to_memory` rows) without decoding the features."""
        if not kept:
            return None
        return datetime.fromtimestamp(Pending.taken_at(kept[0]) + self.horizon, UTC)

    # ------------------------------------------------------------ keeping

    def sampled(self, customer_id: str) -> bool:
        """Whether the customer is in the share that keeps snapshots."""
        return zlib.crc32(customer_id.encode()) < self.share * HASH_SPACE

    def due(self, waiting: list[Pending], customer: CustomerSnapshot) -> bool:
        """Whether to keep a snapshot of ``customer`` now: a grid day of theirs after their
        first purchase has come since their last snapshot (bounds permitting; a snapshot
        the bounds refuse is counted as skipped)."""
        return self.due_after(waiting[-1].as_of if waiting else None, len(waiting), customer)

    def due_after(self, last: int | None, waiting: int, customer: CustomerSnapshot) -> bool:
        """:meth:`due` for a customer whose latest of ``waiting`` snapshots was taken at
        ``last`` (epoch seconds; None: none waits)."""
        grid = self.latest_grid_day(customer)
        if grid is None or not self.sampled(customer.customer_id):
            return False
        if last is None:
            last = _seconds(customer.as_of) - self.horizon
        if _midnight_seconds(grid) <= last:
            return False
        if waiting >= self.per_customer:
            self.skipped += 1
            return False
        if self.pending_count >= self.max_pending:
            self.skipped += 1
            self.share /= 2.0
            return False
        return True

    def latest_grid_day(self, customer: CustomerSnapshot) -> int | None:
        """The customer's latest grid day (epoch day number) up to ``customer.as_of`` that
        is after their first purchase day; None if there is none yet."""
        start = _start(customer)
        if start is None:
            return None
        today = _day_number(customer.as_of.date())
        grid = today - (today - self.phase(customer.customer_id)) % self.every
        return grid if grid > _day_number(start) else None

    def next_grid(self, customer: CustomerSnapshot) -> datetime | None:
        """The midnight of the customer's next grid day after ``customer.as_of`` (None:
        never bought, or not sampled)."""
        if _start(customer) is None or not self.sampled(customer.customer_id):
            return None
        today = _day_number(customer.as_of.date())  # on or after the start
        day = today + self.every - (today - self.phase(customer.customer_id)) % self.every
        return datetime.combine(EPOCH_DAY + timedelta(days=day), time(), UTC)

    def phase(self, customer_id: str) -> int:
        """The customer's grid offset in days (from their id: the load spreads evenly)."""
        return zlib.crc32(customer_id.encode()) % self.every

    def hold(
        self,
        customer: CustomerSnapshot,
        features: Sequence[float],
        predictions: tuple[float, ...],
        expected: float = math.nan,
    ) -> Pending:
        """A snapshot to keep (call after :meth:`due` said so), counted as pending; what it
        holds to 32-bit precision, as it is kept."""
        self.pending_count += 1
        kept = (float32(v) for v in features)
        row = struct.unpack(f"<{len(features)}f", struct.pack(f"<{len(features)}f", *kept))
        (expected,) = struct.unpack("<f", struct.pack("<f", float32(expected)))
        return Pending(
            _seconds(customer.as_of), _purchase_days(customer), expected, row, predictions
        )


def _start(customer: CustomerSnapshot) -> date | None:
    """The day the customer's snapshots may start after: their first purchase, or for a
    paying subscriber who has not bought yet, the day they were first seen."""
    if customer.first_purchase is not None:
        return customer.first_purchase
    return customer.first_seen if customer.is_customer else None


def _purchase_days(customer: CustomerSnapshot) -> int:
    return customer.frequency + 1 if customer.has_purchased else 0


def _seconds(when: datetime) -> int:
    return int(when.timestamp())


def _day_number(day: date) -> int:
    return (day - EPOCH_DAY).days


def _midnight_seconds(day: int) -> int:
    return day * DAY_SECONDS
