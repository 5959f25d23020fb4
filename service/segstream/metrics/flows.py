"""Segment flows: how many customers moved from each segment of a model to each other in a
window ("Champions → At Risk this month"), counted by the metric ledger.

The ledger books every segment change on the day of the shop's stream time it happened
(its ``changed_at``, the day the change topic says) in the day bucket of dimension
``flow:<model>``, under the counter ``moves`` keyed ``<from>><to>`` (an empty side: in no
segment of the model, as a first assignment or a leave). A window sums its days, so the
flows of a window equal a recount of the change topic's changes of those days. Segment
names never hold ``>`` (segment ids, cluster ids and the models' fixed names do not).
The buckets expire with the ledger's other day buckets. The shop's ledger index notes the
day counting began (``flows_since``): state an older release wrote has no flows before
its first record by this one, and a window that ends before that day is refused rather
than shown empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from segstream.metrics.buckets import add_counters
from segstream.state.keyspace import day_key

FLOW_PREFIX = "flow:"
MOVES = "moves"
"""The counter of a flow day bucket: moves by ``<from>><to>``."""
_ARROW = ">"


def flow_dimension(model: str) -> str:
    """The ledger dimension holding ``model``'s flows."""
    return FLOW_PREFIX + model


def move_name(previous: str | None, current: str | None) -> str:
    """The ``moves`` entry of one change.

    >>> move_name(None, "active"), move_name("active", "at_risk")
    ('>active', 'active>at_risk')
    """
    return f"{previous or ''}{_ARROW}{current or ''}"


@dataclass(frozen=True, slots=True)
class Flow:
    """Customers who moved from ``source`` to ``target`` (None: no segment)."""

    source: str | None
    target: str | None
    customers: int

    def to_json(self) -> dict[str, Any]:
        """The API's ``{"from", "to", "customers"}``."""
        return {"from": self.source, "to": self.target, "customers": self.customers}


@dataclass(frozen=True, slots=True)
class SegmentFlows:
    """One model's flows in the window ``[start, end)`` (``end``: the day after the
    shop's stream day while the window runs)."""

    model: str
    start: date
    end: date
    complete: bool
    flows: tuple[Flow, ...]
    counted_from: date
    """The day the ledger began counting the shop's flows: a window starting before it
    holds only the changes from that day on (state an older release wrote)."""

    @property
    def entered(self) -> dict[str, int]:
        """Customers who entered each segment in the window (a customer who entered twice
        counts twice)."""
        return _totals((flow.target, flow.customers) for flow in self.flows)

    @property
    def left(self) -> dict[str, int]:
        """Customers who left each segment in the window."""
        return _totals((flow.source, flow.customers) for flow in self.flows)

    def to_json(self) -> dict[str, Any]:
        """The flows as the API and the metrics snapshot show them."""
        return {
            "model": self.model,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "complete": self.complete,
            "counted_from": self.counted_from.isoformat(),
            "flows": [flow.to_json() for flow in self.flows],
            "entered": self.entered,
            "left": self.left,
        }


def _totals(pairs: Iterable[tuple[str | None, int]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for segment, customers in pairs:
        if segment is not None:
            totals[segment] = totals.get(segment, 0) + customers
    return dict(sorted(totals.items()))


def sum_moves(
    buckets: Mapping[str, dict[str, Any]], shop_id: str, model: str, first: date, cut: date
) -> dict[str, int]:
    """The ``moves`` of ``model``'s day buckets from ``first`` up to ``cut`` (exclusive)."""
    moves: dict[str, Any] = {}
    dimension = flow_dimension(model)
    day = first
    while day < cut:
        bucket = buckets.get(day_key(shop_id, day, dimension))
        if bucket:
            moves = add_counters(moves, bucket.get(MOVES, {}))
        day += timedelta(days=1)
    return moves


def flows_of(moves: Mapping[str, int]) -> tuple[Flow, ...]:
    """Summed ``moves`` as flows, largest first (then by names).

    >>> [f.to_json() for f in flows_of({">new": 2, "new>active": 5})]
    [{'from': 'new', 'to': 'active', 'customers': 5}, {'from': None, 'to': 'new', 'customers': 2}]
    """
    found = []
    for name, customers in moves.items():
        source, _, target = name.partition(_ARROW)
        if customers:
            found.append(Flow(source or None, target or None, customers))
    found.sort(key=lambda f: (-f.customers, f.source or "", f.target or ""))
    return tuple(found)
