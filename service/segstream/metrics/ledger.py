"""The windowed metric ledger: small per-day buckets of counters, per shop and dimension.

Layout of the ``buckets`` mapping (a changelog-backed Faust table in the worker, a dict in
tests); every value is a small JSON dict:

- ``"<shop>|day|<YYYY-MM-DD>|<dimension>"``: the day's counters (signups, new /
  reactivated / churned subscribers and their MRR, expansion and contraction MRR,
  cancellations, orders, revenue, segment moves, and two small histograms, see below);
  only non-zero counters are kept and an all-zero bucket is deleted;
- ``"<shop>|total|<dimension>"``: running totals over every day ever booked: paying
  subscribers, MRR, and customers who ever started paying (the cohort size);
- ``"<shop>|index"``: the shop's stream day, the range of booked days, the known
  dimensions and the ``too_late`` count.

Dimensions, in event time: ``all``; ``cohort:<YYYY-MM>`` (signup month, else first
purchase month). In processing time: ``segment:<model>=<segment>`` for every segment of
every model; and what the customer's events say about them now (:data:`ATTRIBUTES`):
``channel:<acquisition channel>``, ``cancel_reason:<reason>`` (of the latest cancellation),
``plan:<plan_id>``, ``interval:<billing interval>``; and, from their enrolment on, the arm of
every experiment they are enrolled in, ``experiment:<experiment_id>=<arm>`` (the enrolment
moves the customer's standing after the enrolling event in; the events after it count
there: orders, revenue, churn, MRR movements per arm).

Window queries sum the day buckets of the window; start and end values are the running
total minus the net change booked on or after the start (end) day, so they cost one read
per day from the window start to the last booked day, and a late change to an old day
shifts the start and end of every later window with it.

Event time and lateness. The ledger books the *difference* a customer's
:class:`~segstream.metrics.bookings.Contribution` makes before and after an event, on the
days the bookings take effect (a cancellation's churn on its effective day, possibly in a
later window). An event older than ``stream time - allowed_lateness_days`` is *too late*:
it is counted (``too_late``) and its changes on closed days are *settled* on the oldest
open day instead (:func:`_settle`): counts as they are, MRR movements as the one movement
from the customer's MRR as booked to their MRR as it is (a late downgrade of a customer
who has churned since books nothing; of one who still pays, one contraction). So closed
windows never change, no window shows a negative movement, and the running totals still
agree with the customers' states.

Segments are processing-time: a segment change happens when segstream re-evaluates a
customer, so a segment dimension books an event's changes on the shop's current day
(settled like a too-late event's; future ones, like a pending churn, on their own day),
under the segment the customer had *before* the event (or got with it, if it had none).
When the segment changes, the customer's standing moves with it: ``moved_out`` of the old
segment, ``moved_in`` to the new one, bookings still ahead follow. Attributes are the
same with one difference: the event itself sets the attribute, so the standing moves
first and the event's changes book under the new value (a new subscription counts under
its plan, an upgrade's expansion under the plan upgraded to, a cancellation and its
churn under its reason).

Bookings are merged in memory until :meth:`MetricsLedger.flush` (the worker flushes once
per batch, queries flush first), so each bucket is written at most once per batch, however
many of the batch's events touch it. Bucket writes of one event flushed alone: with
``D = 5 + models`` dimensions (6 once a customer has cancelled; an order-only customer
has neither channel nor plan) and an event whose bookings fall on ``k`` distinct days
(``k = 1`` in time order, also for a cancellation effective later; at most
``2 + allowed_lateness_days`` for a late event), at most ``D * (k + 1)`` writes, plus
``4 + 2a`` per model whose segment changed (``a``: days with bookings still ahead, 0 or
1), plus 1 for the index when the shop's day, range of days, dimensions or ``too_late``
change. With two models (``D = 7``): an order in time order costs 7 writes (no totals
change), a first signup 15, a cancellation effective later that moves the customer to
another lifecycle segment 19 (``tests/unit/metrics/test_ledger.py``). Once per
shop and stream day, expired buckets (older than ``retention_days``) are deleted: at most
one deletion per dimension and expired day.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from segstream.core.customer import CustomerState
from segstream.core.events import Event, Order
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
from segstream.metrics.cohorts import CohortCell, CohortRow, cohort_months, month_start
from segstream.metrics.definitions import share
from segstream.metrics.windows import (
    MAX_WINDOW_DAYS,
    BadWindowError,
    WindowMetrics,
    next_month,
    period_months,
    window_bounds,
)
from segstream.settings import Settings

ALL = "all"
COUNTERS: dict[str, tuple[str | None, str | None, str | None]] = {
    "new": ("new_subs", "new_mrr", None),
    "reactivation": ("reactivated_subs", "reactivation_mrr", None),
    "expansion": ("expansions", "expansion_mrr", None),
    "contraction": ("contractions", "contraction_mrr", None),
    "churn": ("churned_subs", "churn_mrr", "churn_age"),
    "signup": ("signups", None, None),
    "cancellation": ("cancellations", None, None),
    "orderer": (None, None, "orderers"),
    "order": ("orders", "revenue", None),
    "renewal": ("renewals", "renewal_revenue", None),
    "moved_in": ("moved_in_subs", "moved_in_mrr", None),
    "moved_out": ("moved_out_subs", "moved_out_mrr", None),
}
"""Per booking kind: the bucket counter it counts in, the one its amount adds to, and the
histogram (by days since its anchor) it is counted in."""

NET: dict[str, tuple[int, int]] = {
    "new": (1, 1),
    "reactivation": (1, 1),
    "expansion": (0, 1),
    "contraction": (0, -1),
    "churn": (-1, -1),
    "moved_in": (1, 1),
    "moved_out": (-1, -1),
}
"""Per booking kind: its effect on the running paying subscribers and MRR."""

OPEN_BIN = MAX_WINDOW_DAYS
"""Histogram bin for "anchor 31 days or more before, or none": before any window start."""


def day_key(shop_id: str, day: date, dimension: str) -> str:
    """Key of one day bucket."""
    return f"{shop_id}|day|{day.isoformat()}|{dimension}"


def total_key(shop_id: str, dimension: str) -> str:
    """Key of a dimension's running totals."""
    return f"{shop_id}|total|{dimension}"


def index_key(shop_id: str) -> str:
    """Key of a shop's index entry."""
    return f"{shop_id}|index"


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


def cohort_dimension(month: str) -> str:
    """Dimension of one signup-month cohort."""
    return f"cohort:{month}"


class UnknownShopError(KeyError):
    """The ledger has never seen an event of this shop."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """What one :meth:`MetricsLedger.record` call did."""

    too_late: bool


@dataclass(slots=True)
class ShopIndex:
    """A shop's stream day, range of booked days, dimensions and late-event count."""

    stream_day: date | None = None
    first_day: date | None = None
    last_day: date | None = None
    dimensions: set[str] = field(default_factory=set)
    too_late: int = 0

    def to_json(self) -> dict[str, Any]:
        """The index entry's value."""
        return {
            "stream_day": None if self.stream_day is None else self.stream_day.isoformat(),
            "first_day": None if self.first_day is None else self.first_day.isoformat(),
            "last_day": None if self.last_day is None else self.last_day.isoformat(),
            "dimensions": sorted(self.dimensions),
            "too_late": self.too_late,
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> ShopIndex:
        """Inverse of :meth:`to_json`."""
        return cls(
            stream_day=_day(payload["stream_day"]),
            first_day=_day(payload["first_day"]),
            last_day=_day(payload["last_day"]),
            dimensions=set(payload["dimensions"]),
            too_late=payload["too_late"],
        )

    def note_day(self, day: date) -> None:
        """Widen the booked range to include ``day``."""
        self.first_day = day if self.first_day is None else min(self.first_day, day)
        self.last_day = day if self.last_day is None else max(self.last_day, day)


def _day(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


def histogram_bin(day: date, anchor: date | None) -> str:
    """Days from ``anchor`` to ``day``, capped at :data:`OPEN_BIN` (also for no anchor)."""
    if anchor is None:
        return str(OPEN_BIN)
    return str(min((day - anchor).days, OPEN_BIN))


def add_counters(bucket: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """``bucket`` plus ``delta`` (histograms by bin), without zero counters."""
    merged: dict[str, Any] = {
        name: dict(value) if isinstance(value, dict) else value for name, value in bucket.items()
    }
    for name, change in delta.items():
        if isinstance(change, dict):
            histogram = merged.get(name, {})
            for bin_, count in change.items():
                histogram[bin_] = histogram.get(bin_, 0) + count
            merged[name] = {b: c for b, c in histogram.items() if c != 0}
        else:
            merged[name] = _add(merged.get(name, 0), change)
    return {name: value for name, value in merged.items() if value not in (0, {})}


def _accumulate(target: dict[str, Any], delta: dict[str, Any]) -> None:
    """Add ``delta`` into ``target`` in place (histograms by bin; zeros are kept)."""
    for name, change in delta.items():
        if isinstance(change, dict):
            histogram = target.setdefault(name, {})
            for bin_, count in change.items():
                histogram[bin_] = histogram.get(bin_, 0) + count
        else:
            target[name] = target.get(name, 0) + change


def _add(value: int | float, change: int | float) -> int | float:
    total = value + change
    if isinstance(total, float):
        total = round(total, 6)
        return 0 if abs(total) < 1e-9 else total
    return total


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

    def book(self, booking: Booking, sign: int, day: date, dimension: str) -> None:
        """Count ``booking`` (``sign`` -1 takes it back) on ``day`` in ``dimension``."""
        counter, amount, histogram = COUNTERS[booking.kind]
        delta: dict[str, Any] = {}
        if counter is not None:
            delta[counter] = sign
        if amount is not None:
            delta[amount] = sign * booking.amount
        if histogram is not None:
            delta[histogram] = {histogram_bin(day, booking.anchor): sign}
        _accumulate(self.days.setdefault(day_key(self.shop_id, day, dimension), {}), delta)
        self.index.note_day(day)
        self.index.dimensions.add(dimension)
        subscribers, mrr = NET.get(booking.kind, (0, 0))
        if subscribers or mrr:
            total = {"subscribers": sign * subscribers, "mrr": sign * mrr * booking.amount}
            if booking.kind == "new":
                total["customers"] = sign
            _accumulate(self.totals.setdefault(total_key(self.shop_id, dimension), {}), total)

    def count_customers(self, change: int, dimension: str) -> None:
        """Change the customers who ever paid in ``dimension`` without a ``new`` booking
        (see :func:`~segstream.metrics.bookings.correction`)."""
        if change:
            totals = self.totals.setdefault(total_key(self.shop_id, dimension), {})
            _accumulate(totals, {"customers": change})

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


def _diff(before: Iterable[Booking], after: Iterable[Booking]) -> list[tuple[Booking, int]]:
    """Bookings to add (+1) and to take back (-1) to go from ``before`` to ``after``."""
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


@dataclass(slots=True)
class _Scan:
    """Sums over the day buckets of one dimension from a window's first day on."""

    flows: dict[str, Any] = field(default_factory=dict)
    net_from_first: tuple[int, float] = (0, 0.0)
    net_from_end: tuple[int, float] = (0, 0.0)
    churned_start: int = 0
    ordering_customers: int = 0


def _net(bucket: dict[str, Any]) -> tuple[int, float]:
    """A bucket's change of paying subscribers and MRR."""
    subscribers = 0
    mrr = 0.0
    for kind, (sub_sign, mrr_sign) in NET.items():
        counter, amount, _ = COUNTERS[kind]
        if counter is not None:
            subscribers += sub_sign * bucket.get(counter, 0)
        if amount is not None:
            mrr += mrr_sign * bucket.get(amount, 0.0)
    return subscribers, mrr


def _before_start(histogram: dict[str, int], age_of_start: int) -> int:
    """Count of a histogram's entries anchored before the window start, on a day
    ``age_of_start`` days after it."""
    return sum(count for bin_, count in histogram.items() if int(bin_) > age_of_start)


class MetricsLedger:
    """Windowed churn, retention and MRR metrics per shop, segment and cohort.

    ``buckets`` is the mapping to keep the buckets in (see the module docstring).
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
        batch = self._opened(shop_id)
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

    def _opened(self, shop_id: str) -> _Batch:
        batch = self._open.get(shop_id)
        if batch is None:
            batch = _Batch(shop_id, self._stored_index(shop_id) or ShopIndex())
            self._open[shop_id] = batch
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
        changed (see the module docstring)."""
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
        """Every dimension with bookings, ``all`` first."""
        return [ALL, *sorted(self.shop_index(shop_id).dimensions - {ALL})]

    def too_late(self, shop_id: str) -> int:
        """Events of the shop that arrived after the allowed lateness."""
        return self.shop_index(shop_id).too_late

    def oldest_day(self, shop_id: str) -> date:
        """The oldest day a window may start on (older buckets are deleted)."""
        today = self._today(self.shop_index(shop_id))
        return today - timedelta(days=self.retention_days)

    @staticmethod
    def _today(index: ShopIndex) -> date:
        assert index.stream_day is not None, "shop_index() checks it"
        return index.stream_day

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
        today = self._today(index) if as_of is None else min(as_of, self._today(index))
        first, end = window_bounds(grain, start)
        if first > today:
            raise BadWindowError(f"window starts {first} after the shop's stream day {today}")
        if first < self.oldest_day(shop_id):
            raise BadWindowError(f"window starts {first} before the oldest kept day")
        cut = min(end, today + timedelta(days=1))
        scan = self._scan(shop_id, dimension, first, cut, index.last_day)
        total = self.buckets.get(total_key(shop_id, dimension), {})
        subscribers, mrr = total.get("subscribers", 0), total.get("mrr", 0.0)
        flows = scan.flows
        return WindowMetrics(
            shop_id=shop_id,
            dimension=dimension,
            grain=grain,
            start=first,
            end=cut,
            complete=end <= today,  # the stream day is past the window: it no longer runs
            period_months=period_months(grain, first, end),
            subscribers_start=subscribers - scan.net_from_first[0],
            subscribers_end=subscribers - scan.net_from_end[0],
            mrr_start=round(mrr - scan.net_from_first[1], 6),
            mrr_end=round(mrr - scan.net_from_end[1], 6),
            signups=flows.get("signups", 0),
            new_subscribers=flows.get("new_subs", 0),
            reactivations=flows.get("reactivated_subs", 0),
            churned_subscribers=flows.get("churned_subs", 0),
            churned_start_subscribers=scan.churned_start,
            cancellations=flows.get("cancellations", 0),
            moved_in=flows.get("moved_in_subs", 0),
            moved_out=flows.get("moved_out_subs", 0),
            new_mrr=flows.get("new_mrr", 0.0),
            expansion_mrr=flows.get("expansion_mrr", 0.0),
            contraction_mrr=flows.get("contraction_mrr", 0.0),
            churn_mrr=flows.get("churn_mrr", 0.0),
            reactivation_mrr=flows.get("reactivation_mrr", 0.0),
            moved_in_mrr=flows.get("moved_in_mrr", 0.0),
            moved_out_mrr=flows.get("moved_out_mrr", 0.0),
            orders=flows.get("orders", 0),
            revenue=flows.get("revenue", 0.0),
            renewals=flows.get("renewals", 0),
            renewal_revenue=flows.get("renewal_revenue", 0.0),
            ordering_customers=scan.ordering_customers,
        )

    def _scan(
        self, shop_id: str, dimension: str, first: date, cut: date, last_day: date | None
    ) -> _Scan:
        """Sum the window ``[first, cut)`` and the net changes from ``first`` and ``cut`` on."""
        scan = _Scan()
        last = max(last_day or first, cut - timedelta(days=1))
        day = first
        while day <= last:
            bucket = self.buckets.get(day_key(shop_id, day, dimension))
            if bucket:
                self._scan_day(scan, bucket, (day - first).days, day < cut)
            day += timedelta(days=1)
        return scan

    @staticmethod
    def _scan_day(scan: _Scan, bucket: dict[str, Any], age: int, inside: bool) -> None:
        subscribers, mrr = _net(bucket)
        scan.net_from_first = (scan.net_from_first[0] + subscribers, scan.net_from_first[1] + mrr)
        if not inside:
            scan.net_from_end = (scan.net_from_end[0] + subscribers, scan.net_from_end[1] + mrr)
            return
        scan.flows = add_counters(
            scan.flows,
            {name: value for name, value in bucket.items() if not isinstance(value, dict)},
        )
        scan.churned_start += _before_start(bucket.get("churn_age", {}), age)
        scan.ordering_customers += _before_start(bucket.get("orderers", {}), age)

    def cohort_table(self, shop_id: str, months: int) -> list[CohortRow]:
        """Signup-month cohorts of the last ``months`` months (the current one included)
        by months since signup: paying customers and MRR at each month's end."""
        index = self.shop_index(shop_id)
        today = self._today(index)
        if months < 1:
            raise BadWindowError(f"months must be at least 1, got {months}")
        cohorts = cohort_months(today, months)
        if next_month(month_start(cohorts[0])) < self.oldest_day(shop_id):
            raise BadWindowError(f"{months} months reach back before the oldest kept day")
        return [self._cohort_row(shop_id, month, today, index.last_day) for month in cohorts]

    def _cohort_row(
        self, shop_id: str, month: str, today: date, last_day: date | None
    ) -> CohortRow:
        dimension = cohort_dimension(month)
        customers = self.buckets.get(total_key(shop_id, dimension), {}).get("customers", 0)
        cuts = []
        end = next_month(month_start(month))
        while end <= next_month(today):
            cuts.append(min(end, today + timedelta(days=1)))
            end = next_month(end)
        cells = tuple(
            CohortCell(since_signup, subscribers, mrr, share(subscribers, customers))
            for since_signup, (subscribers, mrr) in enumerate(
                self._totals_before(shop_id, dimension, cuts, last_day)
            )
        )
        return CohortRow(month, customers, cells)

    def _totals_before(
        self, shop_id: str, dimension: str, cuts: list[date], last_day: date | None
    ) -> list[tuple[int, float]]:
        """Paying subscribers and MRR at the end of the day before each of ``cuts``: the
        running totals minus everything booked from that day on (one pass)."""
        total = self.buckets.get(total_key(shop_id, dimension), {})
        first = min(cuts)
        last = max(last_day or first, max(cuts))
        nets = []
        day = first
        while day <= last:
            nets.append(_net(self.buckets.get(day_key(shop_id, day, dimension), {})))
            day += timedelta(days=1)
        suffix: list[tuple[int, float]] = [(0, 0.0)] * (len(nets) + 1)
        for position in range(len(nets) - 1, -1, -1):
            later = suffix[position + 1]
            suffix[position] = (later[0] + nets[position][0], later[1] + nets[position][1])
        return [
            (
                total.get("subscribers", 0) - suffix[(cut - first).days][0],
                round(total.get("mrr", 0.0) - suffix[(cut - first).days][1], 6),
            )
            for cut in cuts
        ]
