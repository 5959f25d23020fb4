"""The leaves of the rule language as plain functions: comparisons, item filters, and the
windowed aggregates of a history read on any day.

:mod:`segstream.segments.defined.rules` compiles a rule's leaves from these, and
:mod:`segstream.segments.defined.timing` reads the same aggregates on later days to find
when a rule's answer can next change; one definition of each keeps the two in step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from segstream.domain.customer import CustomerState
from segstream.segments.defined.fields import HISTORIES, History, Item

DayTest = Callable[[CustomerState, int], bool]
"""A leaf's answer for a customer on a day (a day number: days since 1970-01-01)."""


def kind_of(value: Any) -> str | None:
    """The rule-language type of a read value (None: missing or unusable)."""
    kind = type(value)
    if kind is int or kind is float:
        return "number"
    if kind is str:
        return "string"
    if kind is bool:
        return "boolean"
    return "set" if kind is frozenset else None


def numeric(op: str, value: Any) -> Callable[[float], bool]:
    """The comparison ``x <op> value`` on a number."""
    if op == "between":
        low, high = value
        return lambda x: low <= x <= high
    if op == "in":
        wanted = frozenset(value)
        return lambda x: x in wanted
    return {
        "eq": lambda x: x == value,
        "ne": lambda x: x != value,
        "lt": lambda x: x < value,
        "lte": lambda x: x <= value,
        "gt": lambda x: x > value,
        "gte": lambda x: x >= value,
    }[op]


def bounds(op: str, value: Any) -> list[float]:
    """The numbers a numeric comparison's answer turns at (see :func:`numeric`)."""
    values = value if op in ("between", "in") else [value]
    return [float(v) for v in values if kind_of(v) == "number"]


def item_filter(history: History, spec: dict[str, Any] | None) -> Callable[[Item], bool] | None:
    """A predicate on the history's items for a ``where`` (every key must hold)."""
    if not spec:
        return None
    checks: list[Callable[[Item], bool]] = []
    for key, wanted in spec.items():
        index, kind = history.fields[key]
        if isinstance(wanted, Mapping):
            checks.append(_in_range(index, wanted))
        else:
            allowed = frozenset(wanted if isinstance(wanted, list) else [wanted])
            checks.append(_overlaps(index, allowed) if kind == "set" else _member(index, allowed))
    if len(checks) == 1:
        return checks[0]
    return lambda item: all(check(item) for check in checks)


def _member(index: int, allowed: frozenset[Any]) -> Callable[[Item], bool]:
    return lambda item: item[index] in allowed


def _overlaps(index: int, allowed: frozenset[Any]) -> Callable[[Item], bool]:
    return lambda item: not allowed.isdisjoint(item[index])


def _in_range(index: int, limits: Mapping[str, float]) -> Callable[[Item], bool]:
    low = max((limits[k] for k in ("gt", "gte") if k in limits), default=-math.inf)
    high = min((limits[k] for k in ("lt", "lte") if k in limits), default=math.inf)
    low_open = "gt" in limits and limits["gt"] >= limits.get("gte", -math.inf)
    high_open = "lt" in limits and limits["lt"] <= limits.get("lte", math.inf)

    def check(item: Item) -> bool:
        x = item[index]
        above: bool = x > low if low_open else x >= low
        below: bool = x < high if high_open else x <= high
        return above and below

    return check


def days_of(node: dict[str, Any]) -> int | None:
    """A window's ``within_days`` as an int (None: all of the history). JSON Schema's
    integers include ``30.0``, and so do ``last``'s: Python cannot slice with those."""
    span = node.get("within_days")
    return None if span is None else int(span)


def history_of(node: dict[str, Any]) -> History:
    """The history an aggregate (``count``, ``sum``) or ``last`` node reads."""
    if "count" in node:
        return HISTORIES[node["count"]]
    if "sum" in node:
        return HISTORIES[node["sum"].split(".")[0]]
    return HISTORIES[node["of"]]


def aggregate(node: dict[str, Any]) -> DayTest:
    """``count`` or ``sum`` of a history's items within the window, compared by op."""
    history = history_of(node)
    index = None if "count" in node else history.fields[node["sum"].split(".")[1]][0]
    items, where = history.items, item_filter(history, node.get("where"))
    span = days_of(node)
    check = numeric(node["op"], node["value"])

    def test(state: CustomerState, today: int) -> bool:
        oldest = -math.inf if span is None else today - span + 1
        total: float = 0
        for item in items(state):
            if oldest <= item[0] <= today and (where is None or where(item)):
                total += 1 if index is None else item[index]
        return check(total)

    return test


def last(node: dict[str, Any]) -> DayTest:
    """The latest ``last`` items (matching ``where``): every / some / none match a filter."""
    history, wanted = history_of(node), int(node["last"])
    items, where = history.items, item_filter(history, node.get("where"))
    quantifier = next(key for key in ("every", "some", "none") if key in node)
    match = item_filter(history, node[quantifier])
    assert match is not None  # the schema asks for a non-empty filter

    def test(state: CustomerState, today: int) -> bool:
        taken = [
            item for item in items(state) if item[0] <= today and (where is None or where(item))
        ][-wanted:]
        if len(taken) < wanted:
            return False
        if quantifier == "every":
            return all(match(item) for item in taken)
        found = any(match(item) for item in taken)
        return found if quantifier == "some" else not found

    return test
