"""When a defined segment's answer can next change although the customer sends nothing.

A rule over time ("no purchase for 45 days", "P(alive) under 0.3", "no order in the last
30 days") changes its answer on a day no event marks. Learned models schedule the
customer's next review for their own reasons, and a defined segment that waited for them
moved customers days late. So each rule compiles, beside its test, a function that names
the moment its answer may next differ; the engine reviews the customer then.

Per node, with the fields' clocks (:data:`segstream.segments.defined.fields.Clock`):

- a condition on a ``days`` field turns where the value, one up per day, crosses a bound of
  its comparison: exact;
- a condition on ``subscription.status`` may turn when a pending cancellation takes effect;
- a windowed ``count``/``sum`` or a ``last`` is read on each day an item enters or leaves
  its window (at most :data:`MAX_CANDIDATES` of them), the first whose answer differs: exact;
- a condition on a ``drifts`` field (a prediction) is read on later days, doubling the
  step up to :data:`HORIZON_DAYS` and halving back to the first day it differs: exact when
  its answer turns at most once in a doubling step, and a look at the horizon otherwise;
- a one-bound comparison (``lt``, ``lte``, ``gt``, ``gte``) on a ``one_way`` field turns at
  most once: it is read at the horizon first (one look when it holds that long, as most
  do) and halved back to the day it turns: exact;
- ``all``, ``any`` and ``not``: the earliest of their parts (a part may turn without the
  whole turning; the review then finds the next moment).

All moments but a cancellation's are UTC midnights: every day-based field and window reads
the stream time's UTC day. A review looks again and schedules anew, so the first moment is
all a node needs to name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any, Protocol

from segstream.domain.customer import EPOCH_DAY, CustomerState, day_number
from segstream.domain.features import CustomerSnapshot
from segstream.segments.defined.conditions import (
    DayTest,
    aggregate,
    bounds,
    days_of,
    history_of,
    last,
    numeric,
)
from segstream.segments.defined.fields import resolve


class Later(Protocol):
    """The customer's snapshot at a later moment with nothing happening in between (what a
    review then reads), and the count of looks ahead: each later snapshot read and each
    window read on another day is one, and :meth:`spend` raises :class:`OutOfLooksError` past
    the evaluation's budget."""

    def __call__(self, at: datetime) -> CustomerSnapshot: ...

    def spend(self) -> None: ...


class OutOfLooksError(Exception):
    """A customer's rules looked ahead more than :data:`MAX_LOOKS` times in one evaluation."""


class Looks:
    """A :class:`Later` over ``make`` (memoised per moment) with a budget of looks."""

    def __init__(
        self, make: Callable[[datetime], CustomerSnapshot], budget: int | None = None
    ) -> None:
        self.make = make
        self.left = MAX_LOOKS if budget is None else budget
        self._seen: dict[datetime, CustomerSnapshot] = {}

    def __call__(self, at: datetime) -> CustomerSnapshot:
        self.spend()
        if at not in self._seen:
            self._seen[at] = self.make(at)
        return self._seen[at]

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise OutOfLooksError


def soonest(view: CustomerSnapshot) -> datetime:
    """The first moment any rule's answer could change: the next UTC midnight, or a
    pending cancellation's moment if that comes first (what a rule that ran out of looks
    is reviewed at: never late, at worst daily)."""
    tomorrow = midnight(day_number(view.as_of) + 1)
    ends = view.subscription_ends_at
    return ends if ends is not None and view.as_of < ends < tomorrow else tomorrow


Test = Callable[[CustomerState, CustomerSnapshot], bool]
NextChange = Callable[[CustomerState, CustomerSnapshot, Later], datetime | None]
"""The first moment after the snapshot's at which a node's answer may differ (None: not
without an event)."""

HORIZON_DAYS = 730
"""Farthest a drifting condition is looked ahead; a customer whose answer holds that long
is looked at again then."""
ONE_BOUND = ("lt", "lte", "gt", "gte")
"""Comparisons whose answer on a value moving one way turns at most once."""
MAX_LOOKS = 256
"""Most looks ahead one evaluation of a customer takes over all the shop's rules (up to 100
rules of 64 nodes could otherwise take ~100,000: seconds per event); past it the customer
is reviewed at :func:`soonest`. A rule on a prediction takes at most 20."""
MAX_CANDIDATES = 32
"""Most window days a history node reads ahead; past them the next is a review's."""


def reads_predictions(node: dict[str, Any]) -> bool:
    """Whether a rule tree reads a field the shop's lifetime fit decides (a ``one_way`` or
    ``drifts`` field): a refit can move its answer for everyone at once."""
    children = [*node.get("all", ()), *node.get("any", ())]
    if "not" in node:
        children.append(node["not"])
    if any(reads_predictions(child) for child in children):
        return True
    found = resolve(node["field"]) if "field" in node else None
    return found is not None and found.clock in ("one_way", "drifts")


def midnight(day: int) -> datetime:
    """The first moment of a day (a day number), UTC."""
    return datetime.combine(EPOCH_DAY + timedelta(days=day), time(), UTC)


def compile_next_change(node: dict[str, Any], test: Callable[[dict[str, Any]], Test]) -> NextChange:
    """The :data:`NextChange` of a valid rule tree; ``test`` compiles a node's test (the
    rule's own compiler, so a look ahead reads exactly what the rule reads)."""
    for key in ("all", "any"):
        if key in node:
            return _earliest(tuple(compile_next_change(c, test) for c in node[key]))
    if "not" in node:
        return compile_next_change(node["not"], test)
    if "field" in node:
        return _condition(node, test(node))
    check = last(node) if "last" in node else aggregate(node)
    return _history(node, check)


def _never(state: CustomerState, view: CustomerSnapshot, later: Later) -> datetime | None:
    return None


def _earliest(parts: tuple[NextChange, ...]) -> NextChange:
    if len(parts) == 1:
        return parts[0]

    def earliest(state: CustomerState, view: CustomerSnapshot, later: Later) -> datetime | None:
        found = [when for part in parts if (when := part(state, view, later)) is not None]
        return min(found, default=None)

    return earliest


def _condition(node: dict[str, Any], test: Test) -> NextChange:
    found = resolve(node["field"])
    assert found is not None  # validated
    if found.clock == "days" and node["op"] not in ("exists",):
        return _counting_days(node, found.get)
    if found.clock == "ends":
        return _cancellation
    if found.clock == "one_way" and node["op"] in ONE_BOUND:
        return _turning_once(test)
    if found.clock in ("one_way", "drifts"):
        return _drifting(test)
    return _never


def _cancellation(state: CustomerState, view: CustomerSnapshot, later: Later) -> datetime | None:
    ends = view.subscription_ends_at
    return ends if ends is not None and ends > view.as_of else None


def _counting_days(node: dict[str, Any], get: Callable[..., Any]) -> NextChange:
    """A number that grows by one a day: its comparison turns where it crosses a bound."""
    check = numeric(node["op"], node["value"])
    turns = bounds(node["op"], node["value"])

    def next_change(state: CustomerState, view: CustomerSnapshot, later: Later) -> datetime | None:
        value = get(state, view)
        if type(value) is not float and type(value) is not int:
            return None  # missing stays missing until an event
        now = check(value)
        steps = {math.ceil(b - value) for b in turns} | {math.floor(b - value) + 1 for b in turns}
        for step in sorted(s for s in steps if s >= 1):
            if check(value + step) != now:
                return midnight(day_number(view.as_of) + step)
        return None

    return next_change


def _history(node: dict[str, Any], check: DayTest) -> NextChange:
    """A window over dated items: its answer may turn on a day an item enters or leaves."""
    items = history_of(node).items
    span = days_of(node)

    def next_change(state: CustomerState, view: CustomerSnapshot, later: Later) -> datetime | None:
        today = day_number(view.as_of)
        days = {item[0] for item in items(state)}
        turns = {day for day in days if day > today}
        if span is not None:
            turns |= {day + span for day in days if day + span > today}
        candidates = sorted(turns)[:MAX_CANDIDATES]
        now = check(state, today)
        for day in candidates:
            later.spend()
            if check(state, day) != now:
                return midnight(day)
        return midnight(candidates[-1]) if len(turns) > MAX_CANDIDATES else None

    return next_change


Search = Callable[[Callable[[int], bool]], int]
"""Given whether the answer differs ``step`` days ahead, the first step to look again."""


def _looking(test: Test, search: Search) -> NextChange:
    """A condition read on later days, at the steps ``search`` asks for."""

    def next_change(state: CustomerState, view: CustomerSnapshot, later: Later) -> datetime | None:
        today = day_number(view.as_of)
        now = test(state, view)

        def differs(step: int) -> bool:
            return test(state, later(midnight(today + step))) != now

        return midnight(today + search(differs))

    return next_change


def _turning_once(test: Test) -> NextChange:
    """A comparison that turns at most once: is it turned at the horizon, and if so, when."""

    def search(differs: Callable[[int], bool]) -> int:
        if not differs(HORIZON_DAYS):
            return HORIZON_DAYS
        return _first_differing(differs, 0, HORIZON_DAYS)

    return _looking(test, search)


def _first_differing(differs: Callable[[int], bool], same: int, step: int) -> int:
    """The first step after ``same`` whose answer differs, given ``step``'s does."""
    while step - same > 1:
        middle = (same + step) // 2
        same, step = (same, middle) if differs(middle) else (middle, step)
    return step


def _drifting(test: Test) -> NextChange:
    """A condition on a prediction: looked at on later days (see the module's docstring)."""

    def search(differs: Callable[[int], bool]) -> int:
        same, step = 0, 1
        while not differs(step):
            if step == HORIZON_DAYS:
                return HORIZON_DAYS
            same, step = step, min(step * 2, HORIZON_DAYS)
        return _first_differing(differs, same, step)

    return _looking(test, search)
