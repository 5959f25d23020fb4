"""The customer journey: awareness -> consideration -> purchase -> retention, and the funnel.

A customer's stages, as far as their events show them (each at the earliest event time
that shows it; a later stage implies the earlier ones, so a customer who bought without a
trial has considered by the time they bought):

- ``awareness``: the first touchpoint, or the first event of any other kind;
- ``consideration``: the first trial or sample request, else the purchase;
- ``purchase``: the first signup or the first purchase day, whichever is earlier;
- ``retention``: the second purchase day (a repeat purchase: ``frequency >= 1``).

The funnel counts customers by the month they became aware (their *cohort*) and their
acquisition channel: the first touchpoint's channel when it came before the purchase,
else the signup's ``acquisition_channel``, else ``unknown``. For each cohort month and
channel it keeps how many reached each stage, so conversion and drop-off between stages
are shares of one set of people. A cohort's later stages keep filling as its customers
move on. Every count follows from the customers' states alone (events may arrive in any
order: a late touchpoint moves a customer to an earlier cohort), which the tests and the
chaos harness check by recounting.

>>> from segstream.domain.customer import CustomerState
>>> from segstream.domain.events import parse_time
>>> from datetime import date
>>> state = CustomerState("shop", "c-1", first_touch=(parse_time("2026-01-30T10:00:00Z"), "social"),
...                       first_seen_at=parse_time("2026-02-02T09:00:00Z"),
...                       purchase_days={date(2026, 2, 2): 20.0})
>>> journey = journey_of(state)
>>> journey.stage, journey.month, journey.channel
('purchase', '2026-01', 'social')
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from segstream.domain.customer import CustomerState, time_of
from segstream.domain.events import format_time

STAGES = ("awareness", "consideration", "purchase", "retention")
UNKNOWN_CHANNEL = "unknown"
"""The acquisition channel of a customer no event named one for."""


@dataclass(frozen=True, slots=True)
class Journey:
    """The stages one customer reached, with when, and their cohort and channel."""

    reached: tuple[datetime, ...]
    """The time of each stage reached, in :data:`STAGES` order (1 to 4 of them)."""
    channel: str

    @property
    def stage(self) -> str:
        """The furthest stage reached."""
        return STAGES[len(self.reached) - 1]

    @property
    def month(self) -> str:
        """The cohort: the month (``YYYY-MM``) of awareness."""
        return self.reached[0].strftime("%Y-%m")

    def to_json(self) -> dict[str, Any]:
        """The readable form the API shows."""
        return {
            "stage": self.stage,
            "channel": self.channel,
            "cohort": self.month,
            "reached": {
                name: format_time(at) for name, at in zip(STAGES, self.reached, strict=False)
            },
        }


def journey_of(state: CustomerState) -> Journey | None:
    """The customer's journey (None: no event shows them yet)."""
    days = sorted(state.purchase_days)
    bought = [time_of(days[0])] if days else []
    bought += state.signups[:1]
    purchase = min(bought, default=None)
    retention = time_of(days[1]) if len(days) > 1 else None
    consideration = _earliest(state.considered_at, purchase)
    touched = None if state.first_touch is None else state.first_touch[0]
    awareness = _earliest(_earliest(touched, state.first_seen_at), consideration)
    if awareness is None:
        return None
    reached = [awareness]
    for at in (consideration, purchase, retention):
        if at is None:
            break
        reached.append(at)
    return Journey(tuple(reached), _channel(state, purchase))


def _earliest(one: datetime | None, other: datetime | None) -> datetime | None:
    if one is None or other is None:
        return other if one is None else one
    return min(one, other)


def _channel(state: CustomerState, purchase: datetime | None) -> str:
    touch = state.first_touch
    if touch is not None and (purchase is None or touch[0] <= purchase):
        return touch[1]
    return state.acquisition_channel or UNKNOWN_CHANNEL


Counts = list[int]
"""Customers who reached each stage, in :data:`STAGES` order."""


@dataclass
class ShopFunnel:
    """A shop's funnel: per cohort month and channel, the customers who reached each stage.
    Kept for the months of the metrics retention (older cohorts are dropped whole)."""

    months: dict[str, dict[str, Counts]]

    @classmethod
    def load(cls, record: dict[str, Any] | None) -> ShopFunnel:
        """From the shop's funnel record (None: an empty funnel)."""
        months = {} if record is None else record["months"]
        return cls({m: {c: list(n) for c, n in rows.items()} for m, rows in months.items()})

    def record(self) -> dict[str, Any]:
        """The shop's funnel record."""
        return {"months": self.months}

    def move(self, before: Journey | None, after: Journey | None, oldest: str) -> bool:
        """One customer's journey went from ``before`` to ``after``: move their counts.
        Cohorts older than ``oldest`` (a month) are no longer kept. True if anything changed."""
        if before == after:
            return False
        if before is not None and before.month >= oldest:
            self._add(before, -1)
        if after is not None and after.month >= oldest:
            self._add(after, 1)
        return True

    def expire(self, oldest: str) -> bool:
        """Drop cohorts older than ``oldest``; True if any was kept."""
        old = [month for month in self.months if month < oldest]
        for month in old:
            del self.months[month]
        return bool(old)

    def _add(self, journey: Journey, sign: int) -> None:
        rows = self.months.setdefault(journey.month, {})
        counts = rows.setdefault(journey.channel, [0] * len(STAGES))
        for stage in range(len(journey.reached)):
            counts[stage] += sign
        if not any(counts):
            del rows[journey.channel]
            if not rows:
                del self.months[journey.month]


def recount(states: Iterable[CustomerState], oldest: str = "") -> ShopFunnel:
    """The funnel of ``states`` counted from scratch (what the booked funnel must equal)."""
    funnel = ShopFunnel({})
    for state in states:
        funnel.move(None, journey_of(state), oldest)
    return funnel


@dataclass(frozen=True, slots=True)
class Funnel:
    """Customers per stage, with conversion and drop-off between consecutive stages."""

    counts: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        """Per stage: customers, conversion from the stage before (share of it that reached
        this one; None for the first stage or after an empty one), drop-off (how many of
        the stage before did not reach this one) and its rate; and the overall purchase
        conversion from awareness."""
        stages = []
        for number, name in enumerate(STAGES):
            here = self.counts[number]
            previous = self.counts[number - 1] if number else None
            conversion = here / previous if previous else None
            stages.append(
                {
                    "stage": name,
                    "customers": here,
                    "conversion": conversion,
                    "drop_off": None if previous is None else previous - here,
                    "drop_off_rate": None if conversion is None else 1.0 - conversion,
                }
            )
        aware, purchased = self.counts[0], self.counts[STAGES.index("purchase")]
        return {"stages": stages, "purchase_conversion": purchased / aware if aware else None}


def total(rows: Iterable[Counts]) -> Funnel:
    """The stage-by-stage sum of funnel counts."""
    sums = [0] * len(STAGES)
    for counts in rows:
        for stage, n in enumerate(counts):
            sums[stage] += n
    return Funnel(tuple(sums))
