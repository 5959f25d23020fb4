"""What one customer contributes to the metrics ledger, derived from their state.

A :class:`Booking` is one countable fact at a moment: an MRR movement (see
:mod:`service.metrics.movements`), the customer's first signup, a cancellation taking
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

>>> from service.core.events import Plan, parse_time
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
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Literal

from service.core.customer import CustomerState
from service.metrics.movements import MovementKind, movements, mrr_at, mrr_steps

BookingKind = (
    MovementKind
    | Literal["signup", "cancellation", "orderer", "order", "renewal", "moved_in", "moved_out"]
)


@dataclass(frozen=True, slots=True)
class Booking:
    """One countable fact: ``kind`` at ``at``, worth ``amount`` (MRR or revenue)."""

    at: datetime
    kind: BookingKind
    amount: float = 0.0
    anchor: date | None = None

    @property
    def day(self) -> date:
        """The UTC day the booking falls on."""
        return self.at.astimezone(UTC).date()


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
    """Where a customer stands at a moment: paying subscribers (0/1), MRR, and the
    bookings still ahead (a cancellation that has not taken effect yet)."""

    subscribers: int
    mrr: float
    ahead: tuple[Booking, ...]


class Contribution:
    """Every booking of one customer, from their state (plans in force included); with
    ``from_day``, only those on that day or later (all that :meth:`since` and
    :meth:`standing` are then asked for: a long history is not rebuilt per event)."""

    def __init__(self, state: CustomerState, from_day: date | None = None) -> None:
        self.from_day = from_day
        self.cohort = cohort(state)
        self._steps = mrr_steps(state)
        found = [
            Booking(m.at, m.kind, m.mrr, m.spell_start.date() if m.kind == "churn" else None)
            for m in movements(state)
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
        """Subscribers, MRR and bookings still ahead at ``moment``."""
        assert self.from_day is None or moment >= midnight(self.from_day)
        mrr = mrr_at(self._steps, moment)
        ahead = tuple(b for b in self.bookings if b.at > moment)
        return Standing(int(mrr > 0), mrr, ahead)


def _purchase_days(state: CustomerState, from_day: date | None) -> list[Booking]:
    """One ``orderer`` booking per purchase day (from ``from_day`` on), anchored at the
    previous purchase day."""
    days = sorted(state.purchase_days)
    first = 0 if from_day is None else bisect_left(days, from_day)
    return [
        Booking(midnight(days[n]), "orderer", anchor=days[n - 1] if n else None)
        for n in range(first, len(days))
    ]
