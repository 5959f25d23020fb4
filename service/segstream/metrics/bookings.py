"""What one customer contributes to the metrics ledger, derived from their state.

A :class:`Booking` is one countable fact at a moment: an MRR movement (see
:mod:`segstream.metrics.movements`), the customer's first signup, a cancellation taking
effect, a purchase day, an order. :class:`Contribution` lists a customer's bookings from
their :class:`CustomerState`; the ledger books the *difference* between the contribution
after and before an event, so an event that arrives late (or out of order) corrects what
earlier events booked instead of adding to it, and the totals always agree with the
customers' states.

Two bookings carry an ``anchor`` day so the ledger can answer "was this already the case
when the window started?" without remembering customers:

- a churn's anchor is the day its subscription spell began: a churn in window
  ``[s, e)`` whose spell began before ``s`` is a churn of a subscriber at the start
  (ChartMogul's customer churn rate counts only those);
- a purchase day's anchor is the customer's previous purchase day: the first purchase
  day in ``[s, e)`` is the one whose previous purchase day lies before ``s``, which
  counts every ordering customer of a window exactly once.

>>> from segstream.domain.events import Plan, parse_time
>>> start = parse_time("2026-01-05T10:00:00Z")
>>> state = CustomerState("shop", "c-1", signups=[start],
...     purchase_days={date(2026, 1, 5): 20.0, date(2026, 1, 19): 20.0},
...     plan_history=[(start, Plan("p", 20.0, "EUR", "month"))])
>>> [(b.kind, b.day.isoformat(), b.anchor) for b in Contribution(state).bookings]
... # doctest: +NORMALIZE_WHITESPACE
[('orderer', '2026-01-05', None), ('new', '2026-01-05', None),
 ('signup', '2026-01-05', None), ('orderer', '2026-01-19', datetime.date(2026, 1, 5))]
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Literal, get_args

from segstream.domain.customer import CustomerState
from segstream.metrics.movements import (
    Movement,
    MovementKind,
    movement_kind,
    movements,
    mrr_at,
    mrr_steps,
)

BookingKind = (
    MovementKind
    | Literal["signup", "cancellation", "orderer", "order", "renewal", "moved_in", "moved_out"]
)
MOVEMENT_KINDS: frozenset[str] = frozenset(get_args(MovementKind))
"""Booking kinds that are MRR movements."""


@dataclass(frozen=True, slots=True)
class Booking:
    """One countable fact: ``kind`` at ``at``, worth ``amount`` (MRR or revenue)."""

    at: datetime
    kind: BookingKind
    amount: float = 0.0
    anchor: date | None = None
    day: date = field(init=False, repr=False, compare=False)
    """The UTC day the booking falls on (kept: the ledger asks for it many times)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "day", self.at.astimezone(UTC).date())


def midnight(day: date) -> datetime:
    """Start of ``day`` in UTC."""
    return datetime.combine(day, time(), UTC)


def cohort(state: CustomerState) -> str | None:
    """Signup month of the customer (``YYYY-MM``); without a signup, first purchase month.

    >>> cohort(CustomerState("s", "c", purchase_days={date(2026, 2, 3): 5.0}))
    '2026-02'
    """
    if state.signups:
        return state.signups[0].astimezone(UTC).strftime("%Y-%m")
    if state.purchase_days:
        return min(state.purchase_days).strftime("%Y-%m")
    return None


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a customer stands at a moment: paying subscribers (0/1), MRR, the bookings
    still ahead (a cancellation that has not taken effect yet), whether they had started
    paying by then and the day their paying spell began."""

    subscribers: int
    mrr: float
    ahead: tuple[Booking, ...] = ()
    paid: bool = False
    spell_start: date | None = None


NOWHERE = Standing(0, 0.0)
"""The standing of a customer in a dimension they are not in."""


def correction(before: Standing, after: Standing, at: datetime) -> tuple[list[Booking], int]:
    """The one movement at ``at`` that takes a customer's MRR as booked (``before``) to
    what it should be (``after``), and the change in the customers who ever paid that no
    ``new`` booking carries (a spell begun and ended in the past counts, but moves no MRR).

    A correction of the past is booked as such a movement, never as the take-back of
    movements booked earlier on other days, so no window shows a negative movement.

    >>> moment = midnight(date(2025, 12, 10))
    >>> correction(Standing(1, 28.9, paid=True), Standing(1, 15.9, paid=True), moment)[0]
    ... # doctest: +NORMALIZE_WHITESPACE
    [Booking(at=datetime.datetime(2025, 12, 10, 0, 0, tzinfo=datetime.timezone.utc),
             kind='contraction', amount=13.0, anchor=None)]
    >>> correction(Standing(0, 0.0, paid=True), Standing(0, 0.0, paid=True), moment)
    ([], 0)
    >>> correction(NOWHERE, Standing(0, 0.0, paid=True), moment)
    ([], 1)
    """
    customers = int(after.paid) - int(before.paid)
    if before.mrr == after.mrr:
        return [], customers
    kind = movement_kind(before.mrr, after.mrr, before.paid)
    anchor = before.spell_start if kind == "churn" else None
    amount = round(abs(after.mrr - before.mrr), 6)
    return [Booking(at, kind, amount, anchor)], customers - int(kind == "new")


class Contribution:
    """Every booking of one customer, from their state (plans in force included); with
    ``from_day``, only those on that day or later (all that :meth:`since` and
    :meth:`standing` are then asked for: a long history is not rebuilt per event)."""

    def __init__(self, state: CustomerState, from_day: date | None = None) -> None:
        self.from_day = from_day
        self.cohort = cohort(state)
        self._steps = mrr_steps(state)
        self._movements = movements(state)
        found = [
            Booking(m.at, m.kind, m.mrr, m.spell_start.date() if m.kind == "churn" else None)
            for m in self._movements
        ]
        if state.signups:
            found.append(Booking(state.signups[0], "signup"))
        for occurred, effective in state.cancellations:
            found.append(Booking(max(occurred, effective), "cancellation"))
        if from_day is not None:
            found = [b for b in found if b.day >= from_day]
        found += _purchase_days(state, from_day)
        self.bookings = sorted(found, key=lambda b: (b.at, b.kind))

    def since(self, day: date) -> list[Booking]:
        """The bookings on ``day`` or later."""
        assert self.from_day is None or day >= self.from_day, "bookings before from_day"
        return [b for b in self.bookings if b.day >= day]

    def standing(self, moment: datetime) -> Standing:
        """Subscribers, MRR, bookings still ahead, whether they had paid and when their
        paying spell began, at ``moment``."""
        assert self.from_day is None or moment >= midnight(self.from_day)
        mrr = mrr_at(self._steps, moment)
        ahead = tuple(b for b in self.bookings if b.at > moment)
        latest = _latest(self._movements, moment)
        spell = None if latest is None or mrr == 0 else latest.spell_start.date()
        return Standing(int(mrr > 0), mrr, ahead, latest is not None, spell)


def _latest(found: list[Movement], moment: datetime) -> Movement | None:
    """The latest of ``found`` (oldest first) at or before ``moment``."""
    latest = None
    for movement in found:
        if movement.at > moment:
            break
        latest = movement
    return latest


def _purchase_days(state: CustomerState, from_day: date | None) -> list[Booking]:
    """One ``orderer`` booking per purchase day (from ``from_day`` on), anchored at the
    previous purchase day."""
    days = sorted(state.purchase_days)
    first = 0 if from_day is None else bisect_left(days, from_day)
    return [
        Booking(midnight(days[n]), "orderer", anchor=days[n - 1] if n else None)
        for n in range(first, len(days))
    ]
