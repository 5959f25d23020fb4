"""The windowed metric ledger: small per-day buckets of counters, per shop and dimension.

Keys: ``<shop>|day|<YYYY-MM-DD>|<dimension>`` (a day's non-zero counters),
``<shop>|total|<dimension>`` (running totals) and ``<shop>|index``. Dimensions are ``all`` and
the signup cohort in event time; segments (``segment:<model>=<segment>``), :data:`ATTRIBUTES`
and experiment arms in processing time. The ledger books the *difference* an event makes to a
customer's contribution, settles a too-late event's changes on the oldest open day (closed
windows never change) and writes each bucket at most once per batch (:meth:`MetricsLedger.flush`).
The layout, the lateness rules and the write cost per event: ``docs/design/metrics-ledger.md``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from segstream.domain.customer import CustomerState
from segstream.domain.events import Event, Order
from segstream.metrics.bookings import (
    MOVEMENT_KINDS,
    NOWHERE,
    Booking,
    BookingKind,
    Contribution,
    Standing,
    correction,
    midnight,
)
from segstream.metrics.buckets import (
    ALL,
    COUNTERS,
    NET,
    ShopIndex,
    accumulate,
    add_counters,
    cohort_dimension,
    histogram_bin,
)
from segstream.metrics.cohorts import CohortRow
from segstream.metrics.flows import FLOW_PREFIX, MOVES, SegmentFlows, flow_dimension, move_name
from segstream.metrics.ledger_reads import LedgerReads
from segstream.metrics.windows import MAX_WINDOW_DAYS, WindowMetrics
from segstream.settings import Settings
from segstream.state.keyspace import day_key, index_key, total_key

ATTRIBUTES: dict[str, Callable[[CustomerState], str | None]] = {
    "channel": lambda state: state.acquisition_channel,
    "cancel_reason": lambda state: state.cancel_reason if state.cancellations else None,
    "plan": lambda state: None if state.plan is None else state.plan.plan_id,
    "interval": lambda state: None if state.plan is None else state.plan.interval,
}
"""Dimensions of what the customer's events say about them now (``<name>:<value>``): the
acquisition channel of their latest signup, the reason of their latest cancellation, their
current plan and its billing interval. An event that changes one moves the customer's
standing to the new value, and its own bookings count there."""


def segment_prefix(model: str) -> str:
    """Start of the dimension of every segment of ``model`` (``segment:<model>=``)."""
    return f"segment:{model}="


def experiment_prefix(experiment_id: str) -> str:
    """Start of the dimension of every arm of an experiment (``experiment:<id>=``)."""
    return f"experiment:{experiment_id}="


def _arm(state: CustomerState, experiment_id: str) -> str | None:
    """The arm a customer's enrolment row names (rows hold it last)."""
    row = state.enrolments.get(experiment_id)
    return None if row is None else str(row[4])


class UnknownShopError(KeyError):
    """The ledger has never seen an event of this shop."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """What one :meth:`MetricsLedger.record` call did."""

    too_late: bool


class _Batch:
    """Every counter change of one shop's record calls since the last flush, merged per
    key so each key is written once."""

    def __init__(self, shop_id: str, index: ShopIndex) -> None:
        self.shop_id = shop_id
        self.index = index
        """The shop's index, widened as days and dimensions are booked."""
        self.saved = index.to_json()
        """The index as stored before the first of these bookings."""
        self.days: dict[str, dict[str, Any]] = {}
        self.totals: dict[str, dict[str, Any]] = {}
        self._keys: dict[tuple[date, str], str] = {}
        """Day bucket keys already formatted (a record books ~20 times, most on few keys)."""

    def book(self, booking: Booking, sign: int, day: date, dimension: str) -> None:
        """Count ``booking`` (``sign`` -1 takes it back) on ``day`` in ``dimension``."""
        counter, amount, histogram = COUNTERS[booking.kind]
        bucket = self._bucket(day, dimension)
        if counter is not None:
            bucket[counter] = bucket.get(counter, 0) + sign
        if amount is not None:
            bucket[amount] = bucket.get(amount, 0) + sign * booking.amount
        if histogram is not None:
            bins = bucket.setdefault(histogram, {})
            bin_ = histogram_bin(day, booking.anchor)
            bins[bin_] = bins.get(bin_, 0) + sign
        subscribers, mrr = NET.get(booking.kind, (0, 0))
        if subscribers or mrr:
            total = {"subscribers": sign * subscribers, "mrr": sign * mrr * booking.amount}
            if booking.kind == "new":
                total["customers"] = sign
            accumulate(self.totals.setdefault(total_key(self.shop_id, dimension), {}), total)

    def flow(self, model: str, previous: str | None, current: str | None, day: date) -> None:
        """Count one segment change of ``model`` on ``day`` (:mod:`~segstream.metrics.flows`)."""
        moves = self._bucket(day, flow_dimension(model)).setdefault(MOVES, {})
        name = move_name(previous, current)
        moves[name] = moves.get(name, 0) + 1

    def _bucket(self, day: date, dimension: str) -> dict[str, Any]:
        """The changes booked on ``day`` in ``dimension`` (the index widened to hold it)."""
        key = self._keys.get((day, dimension))
        if key is None:
            key = self._keys[day, dimension] = day_key(self.shop_id, day, dimension)
        self.index.note_day(day)
        self.index.dimensions.add(dimension)
        return self.days.setdefault(key, {})

    def count_customers(self, change: int, dimension: str) -> None:
        """Change the customers who ever paid in ``dimension`` without a ``new`` booking
        (see :func:`~segstream.metrics.bookings.correction`)."""
        if change:
            totals = self.totals.setdefault(total_key(self.shop_id, dimension), {})
            accumulate(totals, {"customers": change})

    def flush(self, buckets: MutableMapping[str, dict[str, Any]]) -> int:
        """Write the merged changes; returns the number of keys written or deleted."""
        writes = 0
        for key, summed in (*self.days.items(), *self.totals.items()):
            delta = add_counters({}, summed)  # rounded, zeros dropped
            if not delta:
                continue
            merged = add_counters(buckets.get(key, {}), delta)
            if merged:
                buckets[key] = merged
            else:
                buckets.pop(key, None)
            writes += 1
        return writes


def _diff(before: list[Booking], after: list[Booking]) -> list[tuple[Booking, int]]:
    """Bookings to add (+1) and to take back (-1) to go from ``before`` to ``after``."""
    if before == after:
        return []  # most dimensions of most events
    old, new = Counter(before), Counter(after)
    return [(b, 1) for b in (new - old).elements()] + [(b, -1) for b in (old - new).elements()]


def _event_dimensions(contribution: Contribution) -> set[str]:
    """Event-time dimensions a customer counts in: all, and their cohort."""
    if contribution.cohort is None:
        return {ALL}
    return {ALL, cohort_dimension(contribution.cohort)}


def _local_bookings(event: Event) -> list[Booking]:
    """Bookings of the event itself that no state recomputes: an order and its revenue,
    and a renewal's."""
    if not isinstance(event, Order):
        return []
    order = Booking(event.occurred_at, "order", event.amount)
    return (
        [order, Booking(event.occurred_at, "renewal", event.amount)]
        if event.is_renewal
        else [order]
    )


@dataclass(slots=True)
class _Placed:
    """An event's changes in one dimension, each with the day it is booked on, and the
    change in the customers who ever paid that no ``new`` booking carries."""

    entries: list[tuple[Booking, int, date]] = field(default_factory=list)
    customers: int = 0

    def book(self, batch: _Batch, dimension: str) -> None:
        """Book every change in ``dimension``."""
        for booking, sign, day in self.entries:
            batch.book(booking, sign, day, dimension)
        batch.count_customers(self.customers, dimension)


def _settle(
    changes: list[tuple[Booking, int]],
    before: Standing,
    after: Standing,
    past: Callable[[Booking], bool],
    at: datetime,
) -> _Placed:
    """Place an event's ``changes`` in one dimension: those not ``past`` on their own day;
    the ``past`` ones, which can no longer go on their own day, on the day of ``at``.

    The past MRR movements are not booked as such: taking back a movement booked on
    another day would make the day of ``at`` show a negative one (a late downgrade
    re-valuing a churn already booked: churn -13, contraction +13). Instead the one
    :func:`~segstream.metrics.bookings.correction` from the customer's standing as booked
    (``before``) to what it should be (``after``) is booked. Past counts (signups,
    cancellations, purchase days, orders) are booked as they are, but not a kind whose
    count would go down: a customer leaving the dimension leaves them in closed days."""
    day = at.astimezone(UTC).date()
    placed = _Placed([(b, sign, b.day) for b, sign in changes if not past(b)])
    counts = [(b, sign) for b, sign in changes if past(b) and b.kind not in MOVEMENT_KINDS]
    net = Counter[str]()
    for booking, sign in counts:
        net[booking.kind] += sign
    placed.entries += [(b, sign, day) for b, sign in counts if net[b.kind] >= 0]
    fixes, placed.customers = correction(before, after, at)
    placed.entries += [(booking, 1, day) for booking in fixes]
    return placed


def _move(
    batch: _Batch,
    prefix: str,
    previous: str | None,
    current: str | None,
    standing: Standing,
    now: datetime,
) -> None:
    """Move a customer's ``standing`` from ``prefix + previous`` to ``prefix + current``."""
    today = now.astimezone(UTC).date()
    moves: list[tuple[str, BookingKind, int]] = []
    if previous is not None:
        moves.append((previous, "moved_out", -1))
    if current is not None:
        moves.append((current, "moved_in", 1))
    for value, kind, sign in moves:
        dimension = prefix + value
        if standing.mrr > 0:
            batch.book(Booking(now, kind, standing.mrr), 1, today, dimension)
        for booking in standing.ahead:
            batch.book(booking, sign, booking.day, dimension)


class MetricsLedger:
    """Windowed churn, retention and MRR metrics per shop, segment and cohort.

    ``buckets`` is the mapping to keep the buckets in (``docs/design/metrics-ledger.md``,
    their format in :mod:`~segstream.metrics.buckets`). The ledger books and writes them;
    its :attr:`reads` sum them into windows and cohort tables.
    """

    def __init__(
        self,
        buckets: MutableMapping[str, dict[str, Any]],
        allowed_lateness_days: int = 7,
        retention_days: int = 400,
    ) -> None:
        if allowed_lateness_days < 0:
            raise ValueError("allowed_lateness_days must not be negative")
        if retention_days <= allowed_lateness_days + MAX_WINDOW_DAYS:
            raise ValueError("retention_days must exceed allowed lateness plus a month")
        self.buckets = buckets
        self._open: dict[str, _Batch] = {}
        """Per shop, what was booked since the last flush."""
        self._expired = 0
        self.allowed_lateness = timedelta(days=allowed_lateness_days)
        self.retention_days = retention_days
        self.reads = LedgerReads(buckets, retention_days)
        """Windows and cohort tables from the stored buckets (after a :meth:`flush`)."""

    @classmethod
    def from_settings(
        cls, buckets: MutableMapping[str, dict[str, Any]], settings: Settings
    ) -> MetricsLedger:
        """The ledger with this deployment's lateness and retention."""
        return cls(
            buckets,
            allowed_lateness_days=settings.metrics_allowed_lateness_days,
            retention_days=settings.metrics_retention_days,
        )

    # ---------------------------------------------------------------- recording

    def record(
        self,
        event: Event | None,
        before: CustomerState,
        after: CustomerState,
        stream_time: datetime,
    ) -> Recorded:
        """Book what ``event`` changed for one customer (``before``/``after`` its apply and
        segment evaluation). ``event`` None: a re-evaluation that only changed segments
        (a timer). ``stream_time`` is the shop's stream time after the event."""
        shop_id = after.shop_id
        batch = self._opened(shop_id, stream_time)
        index = batch.index
        self._expired += self._advance(batch, stream_time.astimezone(UTC).date())
        now = stream_time
        since = (now if event is None else event.occurred_at).astimezone(UTC).date()
        oldest_open = (now - self.allowed_lateness).astimezone(UTC).date()
        kept = min(since, oldest_open - timedelta(days=1))  # all that is asked for below
        old = Contribution(before, kept)
        new = old if event is None else Contribution(after, kept)  # a timer changes no facts
        late = event is not None and event.occurred_at < now - self.allowed_lateness
        changes: list[tuple[Booking, int]] = []
        if event is not None:
            local = _local_bookings(event)
            self._book_event_time(batch, old, new, since, local, oldest_open)
            changes = _diff(old.since(since), new.since(since) + local)
        # processing time: what happened by now is booked today, what is ahead on its day
        placed = _settle(changes, old.standing(now), new.standing(now), lambda b: b.at <= now, now)
        for model in sorted(set(before.segments) | set(after.segments)):
            previous, current = before.segments.get(model), after.segments.get(model)
            if previous != current:
                batch.flow(model, previous, current, now.astimezone(UTC).date())
            self._book_segment(
                batch, segment_prefix(model), previous, current, old, new, placed, now
            )
        for name, value in ATTRIBUTES.items():
            previous, current = value(before), value(after)
            self._book_attribute(batch, f"{name}:", previous, current, old, placed, now)
        for experiment in sorted(set(before.enrolments) | set(after.enrolments)):
            previous, current = _arm(before, experiment), _arm(after, experiment)
            prefix = experiment_prefix(experiment)
            self._book_arm(batch, prefix, previous, current, new, placed, now)
        index.too_late += int(late)
        return Recorded(late)

    def flush(self) -> int:
        """Write what the :meth:`record` calls since the last flush booked, each bucket
        once; returns the bucket writes and deletions (changelog records)."""
        writes, self._expired = self._expired, 0
        for shop_id, batch in self._open.items():
            writes += batch.flush(self.buckets)
            record = batch.index.to_json()
            if record != batch.saved:
                self.buckets[index_key(shop_id)] = record
                writes += 1
        self._open.clear()
        return writes

    def forget(self) -> None:
        """Drop what was booked since the last flush (its batch was aborted)."""
        self._open.clear()
        self._expired = 0

    def advance(self, shop_id: str, stream_time: datetime) -> None:
        """Move the shop's stream day to ``stream_time``'s without booking anything: an
        event that books nothing (a prospect's touchpoint, a duplicate) or a live shop's
        clock still moves the shop's day, and its windows must reach the day its clock
        shows (a snapshot asks for them)."""
        batch = self._opened(shop_id, stream_time)
        self._expired += self._advance(batch, stream_time.astimezone(UTC).date())

    def _opened(self, shop_id: str, stream_time: datetime) -> _Batch:
        """The shop's batch since the last flush; flows count from ``stream_time``'s day
        for a shop whose index has not counted them yet (new, or from an older release)."""
        batch = self._open.get(shop_id)
        if batch is None:
            batch = _Batch(shop_id, self._stored_index(shop_id) or ShopIndex())
            self._open[shop_id] = batch
        if batch.index.flows_since is None:
            batch.index.flows_since = stream_time.astimezone(UTC).date()
        return batch

    def _book_event_time(
        self,
        batch: _Batch,
        old: Contribution,
        new: Contribution,
        since: date,
        local: list[Booking],
        oldest_open: date,
    ) -> None:
        """Book the change in event time in ``all`` and the cohort, each on its own day;
        a too-late event's changes before the oldest open day are settled on that day
        (see :func:`_settle`). A customer whose cohort changes (a first signup; a late
        signup in an earlier month) takes every booking of theirs on an open day along;
        those on closed days stay, their MRR moves as a settled correction."""
        opens = midnight(oldest_open)
        closed = opens - timedelta(microseconds=1)  # the last moment of the closed days
        old_dims, new_dims = _event_dimensions(old), _event_dimensions(new)
        for dimension in sorted(old_dims | new_dims):
            was, is_in = dimension in old_dims, dimension in new_dims
            first = since if was and is_in else min(since, oldest_open)
            changes = _diff(
                old.since(first) if was else [], new.since(first) + local if is_in else []
            )
            standings = (
                old.standing(closed) if was else NOWHERE,
                new.standing(closed) if is_in else NOWHERE,
            )
            placed = _settle(changes, *standings, lambda b: b.day < oldest_open, opens)
            placed.book(batch, dimension)

    def _book_segment(
        self,
        batch: _Batch,
        prefix: str,
        previous: str | None,
        current: str | None,
        old: Contribution,
        new: Contribution,
        placed: _Placed,
        now: datetime,
    ) -> None:
        """Book the event's changes under the customer's segment (dimension ``prefix`` +
        segment) before the event, then move the customer's standing if the segment
        changed (``docs/design/metrics-ledger.md``)."""
        home = previous if previous is not None else current
        if home is not None:
            placed.book(batch, prefix + home)
        if previous != current:
            standing = (new if previous is not None else old).standing(now)
            _move(batch, prefix, previous, current, standing, now)

    @staticmethod
    def _book_arm(
        batch: _Batch,
        prefix: str,
        previous: str | None,
        current: str | None,
        new: Contribution,
        placed: _Placed,
        now: datetime,
    ) -> None:
        """Book the event's changes under the arm the customer had before it; an enrolment
        moves in their standing after the event, whose own changes happened before the
        experiment reached them (as the per-arm figures count)."""
        if previous is not None:
            placed.book(batch, prefix + previous)
        if previous != current:
            _move(batch, prefix, previous, current, new.standing(now), now)

    @staticmethod
    def _book_attribute(
        batch: _Batch,
        prefix: str,
        previous: str | None,
        current: str | None,
        old: Contribution,
        placed: _Placed,
        now: datetime,
    ) -> None:
        """Move the customer's standing before the event to the value the event gave the
        attribute, then book the event's changes there: a new or reactivated subscription
        counts under the plan taken, an upgrade's expansion under the plan upgraded to, a
        cancellation and its churn under its reason."""
        if previous != current:
            _move(batch, prefix, previous, current, old.standing(now), now)
        if current is not None:
            placed.book(batch, prefix + current)

    def _advance(self, batch: _Batch, today: date) -> int:
        """Move the shop's stream day forward to ``today``, deleting expired buckets."""
        index = batch.index
        if index.stream_day is not None and today <= index.stream_day:
            return 0
        index.stream_day = today
        return self._expire(batch, today - timedelta(days=self.retention_days))

    def _expire(self, batch: _Batch, cutoff: date) -> int:
        """Delete the day buckets before ``cutoff`` (stored ones and unflushed bookings)."""
        index = batch.index
        if index.first_day is None or index.last_day is None or index.first_day >= cutoff:
            return 0
        deleted = 0
        day = index.first_day
        while day < cutoff and day <= index.last_day:
            for dimension in index.dimensions:
                key = day_key(batch.shop_id, day, dimension)
                batch.days.pop(key, None)
                if self.buckets.pop(key, None) is not None:
                    deleted += 1
            day += timedelta(days=1)
        if index.last_day < cutoff:
            index.first_day = index.last_day = None
        else:
            index.first_day = cutoff
        return deleted

    # ---------------------------------------------------------------- queries

    def _index(self, shop_id: str) -> ShopIndex | None:
        if self._open:
            self.flush()  # queries see every booking
        return self._stored_index(shop_id)

    def _stored_index(self, shop_id: str) -> ShopIndex | None:
        stored = self.buckets.get(index_key(shop_id))
        return None if stored is None else ShopIndex.from_json(stored)

    def shop_index(self, shop_id: str) -> ShopIndex:
        """The shop's index; :class:`UnknownShopError` if the ledger never saw the shop."""
        index = self._index(shop_id)
        if index is None or index.stream_day is None:
            raise UnknownShopError(shop_id)
        return index

    def dimensions(self, shop_id: str) -> list[str]:
        """Every dimension of window metrics with bookings, ``all`` first (no flows)."""
        dimensions = self.shop_index(shop_id).dimensions - {ALL}
        return [ALL, *sorted(d for d in dimensions if not d.startswith(FLOW_PREFIX))]

    def flow_models(self, shop_id: str) -> list[str]:
        """The models with segment flows kept (:meth:`flows`), by name."""
        dimensions = self.shop_index(shop_id).dimensions
        return sorted(d.removeprefix(FLOW_PREFIX) for d in dimensions if d.startswith(FLOW_PREFIX))

    def too_late(self, shop_id: str) -> int:
        """Events of the shop that arrived after the allowed lateness."""
        return self.shop_index(shop_id).too_late

    def oldest_day(self, shop_id: str) -> date:
        """The oldest day a window may start on (older buckets are deleted)."""
        return self.reads.oldest_day(self.shop_index(shop_id))

    def window(
        self,
        shop_id: str,
        grain: str,
        start: date,
        dimension: str = ALL,
        as_of: date | None = None,
    ) -> WindowMetrics:
        """Metrics of the ``grain`` window containing ``start`` (see
        :func:`~segstream.metrics.windows.window_bounds`), cut at ``as_of`` (default and
        latest: the shop's stream day). :class:`UnknownShopError`, :class:`BadWindowError`."""
        index = self.shop_index(shop_id)
        return self.reads.window(index, shop_id, grain, start, dimension, as_of)

    def flows(
        self, shop_id: str, model: str, grain: str, start: date, as_of: date | None = None
    ) -> SegmentFlows:
        """``model``'s segment flows in the ``grain`` window containing ``start``, cut at
        ``as_of`` (default: the shop's stream day). :class:`UnknownShopError`,
        :class:`BadWindowError`."""
        return self.reads.flows(self.shop_index(shop_id), shop_id, model, grain, start, as_of)

    def cohort_table(self, shop_id: str, months: int) -> list[CohortRow]:
        """Signup-month cohorts of the last ``months`` months (the current one included)
        by months since signup: paying customers and MRR at each month's end."""
        return self.reads.cohort_table(self.shop_index(shop_id), shop_id, months)
