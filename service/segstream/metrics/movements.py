"""MRR movements: how and when a customer's MRR changes, and what one event changed.

The five movement kinds are ChartMogul's (help.chartmogul.com, "MRR movements"):

- ``new``: a customer starts paying for the first time (0 -> x);
- ``reactivation``: a customer who paid before pays again (0 -> x): after their
  subscription ended, or after a pause (a plan of price 0);
- ``expansion`` / ``contraction``: a paying customer's MRR goes up / down (x -> y);
- ``churn``: a paying customer's MRR drops to 0 (a pause too). A cancellation churns
  when it takes effect (``effective_at``, the end of the paid period), which may be
  weeks after the cancellation was requested and so in a later window.

A customer's movements are recomputed from the facts in :class:`CustomerState`
(signups, cancellations, and the plan history: which plan was in force when), so the
result does not depend on the order events arrived in.
A customer has at most one ``new`` movement, their first: it is what makes them count
among the customers who ever paid (a cohort's size). A churn remembers when its paying
spell began (the latest 0 -> x), which the ledger needs for "churned, but was not a
subscriber at the start of the period" (ChartMogul's customer churn rate counts only
subscribers at the start: a customer who paused before the period and resumed in it
was none).

>>> from segstream.domain.events import Plan, parse_time
>>> state = CustomerState("shop", "c-1", signups=[parse_time("2026-01-05T10:00:00Z")],
...     cancellations=[(parse_time("2026-01-20T08:00:00Z"), parse_time("2026-02-05T10:00:00Z"))],
...     plan_history=[(parse_time("2026-01-05T10:00:00Z"), Plan("p", 30.0, "EUR", "month"))])
>>> [(m.kind, m.at.date().isoformat(), m.mrr) for m in movements(state)]
[('new', '2026-01-05', 30.0), ('churn', '2026-02-05', 30.0)]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from segstream.domain.customer import PAYING_STATUSES, CustomerState, subscription_status
from segstream.domain.events import Event
from segstream.metrics.mrr import plan_in_force

MovementKind = Literal["new", "reactivation", "expansion", "contraction", "churn"]


@dataclass(frozen=True, slots=True)
class Movement:
    """One change of a customer's MRR, effective at ``at``."""

    at: datetime
    kind: MovementKind
    mrr_before: float
    mrr_after: float
    spell_start: datetime
    """When the paying spell this movement belongs to began (its latest 0 -> x)."""

    @property
    def mrr(self) -> float:
        """Size of the movement (positive)."""
        return round(abs(self.mrr_after - self.mrr_before), 6)

    @property
    def subscribers(self) -> int:
        """Change in paying subscribers: +1 new or reactivated, -1 churned, else 0."""
        return {"new": 1, "reactivation": 1, "churn": -1}.get(self.kind, 0)


@dataclass(frozen=True, slots=True)
class MrrStep:
    """From ``at`` on (until the next step) the customer pays ``mrr`` with ``status``."""

    at: datetime
    mrr: float
    status: str


def _moments(state: CustomerState) -> list[datetime]:
    """Every moment at which the customer's status or plan may change, in order."""
    moments = set(state.signups)
    for occurred, effective in state.cancellations:
        moments.update((occurred, effective))
    moments.update(taken_on for taken_on, _ in state.plan_history)
    return sorted(moments)


def mrr_steps(state: CustomerState) -> list[MrrStep]:
    """The customer's MRR over time: one step per moment where it may change."""
    steps = []
    for moment in _moments(state):
        status = subscription_status(state, moment)
        paying = status in PAYING_STATUSES
        steps.append(MrrStep(moment, plan_in_force(state, moment) if paying else 0.0, status))
    return steps


def mrr_at(steps: Iterable[MrrStep], moment: datetime) -> float:
    """MRR in force at ``moment`` according to ``steps`` (0 before the first)."""
    current = 0.0
    for step in steps:
        if step.at > moment:
            break
        current = step.mrr
    return current


def movements(state: CustomerState) -> list[Movement]:
    """Every MRR movement of the customer, oldest first (see the module docstring)."""
    found: list[Movement] = []
    previous = 0.0
    spell_start: datetime | None = None
    for step in mrr_steps(state):
        if step.mrr == previous:
            continue
        if previous == 0.0:
            spell_start = step.at
        kind = movement_kind(previous, step.mrr, paid_before=bool(found))
        found.append(Movement(step.at, kind, previous, step.mrr, spell_start or step.at))
        previous = step.mrr
    return found


def movement_kind(before: float, after: float, paid_before: bool) -> MovementKind:
    """The kind of a change of MRR from ``before`` to ``after`` (they differ), for a
    customer who did (``paid_before``) or did not pay at some earlier moment.

    >>> movement_kind(0.0, 9.0, False), movement_kind(0.0, 9.0, True), movement_kind(9.0, 0.0, True)
    ('new', 'reactivation', 'churn')
    """
    if before == 0.0:
        return "reactivation" if paid_before else "new"
    if after == 0.0:
        return "churn"
    return "expansion" if after > before else "contraction"


@dataclass(frozen=True, slots=True)
class EventEffect:
    """What one event did to one customer's movements.

    An event in time order adds at most one movement (a cancellation's churn may lie in
    the future). A late event can also move or re-value movements already recorded: a
    late signup turns an earlier "new" into its own, a late upgrade re-values a pending
    churn; those show up as ``removed`` plus ``added``.
    """

    added: tuple[Movement, ...]
    removed: tuple[Movement, ...]

    @property
    def kind(self) -> MovementKind | Literal["none", "correction"]:
        """The single movement the event caused, ``none``, or ``correction`` for more."""
        if not self.added and not self.removed:
            return "none"
        if len(self.added) == 1 and not self.removed:
            return self.added[0].kind
        return "correction"


def classify(event: Event, before: CustomerState, after: CustomerState) -> EventEffect:
    """Movements ``event`` added and removed, given the state before and after applying it.

    >>> from segstream.domain.events import from_payload
    >>> signup = from_payload({"type": "signup", "event_id": "e1", "shop_id": "s",
    ...     "customer_id": "c", "occurred_at": "2026-03-01T09:00:00Z",
    ...     "acquisition_channel": "web",
    ...     "plan": {"plan_id": "p", "price": 60.0, "currency": "EUR", "interval": "quarter"}})
    >>> from segstream.domain.events import Plan
    >>> after = CustomerState("s", "c", signups=[signup.occurred_at],
    ...     plan_history=[(signup.occurred_at, Plan("p", 60.0, "EUR", "quarter"))])
    >>> effect = classify(signup, CustomerState("s", "c"), after)
    >>> effect.kind, effect.added[0].mrr
    ('new', 20.0)
    """
    old = Counter(movements(before))
    new = Counter(movements(after))
    return EventEffect(_sorted(new - old), _sorted(old - new))


def _sorted(found: Counter[Movement]) -> tuple[Movement, ...]:
    return tuple(sorted(found.elements(), key=lambda m: (m.at, m.kind)))
