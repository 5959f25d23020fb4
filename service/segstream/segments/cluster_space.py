"""The online k-means state of a shop's learned segments (:mod:`segstream.segments.cluster`):
how a customer buys as a row of numbers, the rows' sums for the shop and for each live
cluster, and distances in the shop's standard deviations.

A centre is its members' exact mean (:class:`~segstream.learning.kmeans.Tally`), so a
cluster moves only as its members change; each customer's row is kept in their own memory
(:data:`MEMORY`) so it can be taken out exactly when it changes.
"""

from __future__ import annotations

import math
import struct
from typing import Any, NamedTuple

from segstream.domain.features import CustomerSnapshot
from segstream.learning.kmeans import Row, Tally, squared_distance

FEATURES = (
    "repeat_days",
    "mean_order_value",
    "total_spend",
    "span_days",
    "repeats_per_month",
    "discount_share",
    "renewal_share",
    "subscribed",
    "cancelled",
    "gift_plan",
)
"""What a cluster is made of, in this order (see :func:`buying_row`)."""
LOGGED = frozenset(FEATURES[:5])
"""Features that enter as ``log1p`` of their value (counts, money, days: heavy-tailed)."""
WIDTH = len(FEATURES)
PRIOR_WEIGHT = 1.0
"""A cluster's centre is its members' mean with its first position counted as this many
members: a cluster that lost every member stays where it was."""
MEMORY = struct.Struct(f"<i{WIDTH}f")
"""A customer's memory: the cluster their row counts in (-1: none yet) and the row, as
float32 (44 bytes), so it can be taken out exactly when it changes."""
EPSILON = 1e-9
Scale = tuple[Row, Row]
"""The shop's averages and 1 / spreads (see :meth:`ClusterSpace.scale`)."""


class Kept(NamedTuple):
    """What a customer's memory says: their cluster, the row, and whether the row counts in
    the cluster's mean (not for an outlier: a customer far from every cluster)."""

    cluster_id: int | None
    row: Row
    counted: bool = True

    def packed(self) -> bytes:
        """The memory this is read from (see :data:`MEMORY`)."""
        code = -1 if self.cluster_id is None else self.cluster_id
        return MEMORY.pack(code if self.counted else -2 - code, *self.row)


def kept_of(memory: Any) -> Kept | None:
    """What a customer's memory holds (None: nothing, or not this version's layout)."""
    if not isinstance(memory, bytes) or len(memory) != MEMORY.size:
        return None
    code, *row = MEMORY.unpack(memory)
    if code >= -1:
        return Kept(None if code < 0 else code, tuple(row))
    return Kept(-2 - code, tuple(row), counted=False)


def buying_row(customer: CustomerSnapshot) -> Row:
    """How a customer buys, from their own events only (time passing changes nothing), in
    :data:`FEATURES` order and float32 precision (as their memory keeps it):

    - ``repeat_days`` (lifetimes' frequency), ``mean_order_value``, ``total_spend``;
    - ``span_days``: first to last purchase day (lifetimes' recency);
    - ``repeats_per_month``: repeat days per 30 days of that span (at least 30);
    - ``discount_share``, ``renewal_share`` of orders; ``subscribed``, ``cancelled``
      (cancelled or cancelling), ``gift_plan``: 0/1.
    """
    orders = max(customer.order_count, 1)
    logged = (
        float(customer.frequency),
        customer.total_spend / orders,
        customer.total_spend,
        customer.recency,
        customer.frequency / max(customer.recency, 30.0) * 30.0,
    )
    row = (
        *(math.log1p(max(value, 0.0)) for value in logged),
        customer.discount_order_count / orders,
        customer.renewal_count / orders,
        float(customer.subscription == "active"),
        float(customer.subscription in ("cancelling", "cancelled")),
        float(customer.plan_tier == "gift"),
    )
    return MEMORY.unpack(MEMORY.pack(-1, *row))[1:]


def original(feature: str, value: float) -> float:
    """A feature's value in the shop's units (days, money, counts, shares)."""
    return max(0.0, math.expm1(value) if feature in LOGGED else value)


class ClusterSpace:
    """Every placed or waiting customer's row summed for the shop (its averages and
    spreads), and per live cluster its members' rows (outliers left out), its outliers'
    count and its birth place; ids are handed out in order and never reused."""

    def __init__(self) -> None:
        self.shop = Tally(WIDTH)
        """Every placed or waiting customer's row: the shop's averages and spreads."""
        self.members: dict[int, Tally] = {}
        """Live cluster id -> its members' rows (outliers left out)."""
        self.outliers: dict[int, int] = {}
        """Live cluster id -> its outliers: customers far from every cluster, carried here."""
        self.anchors: dict[int, Row] = {}
        """Live cluster id -> where it was born (see :data:`PRIOR_WEIGHT`)."""
        self.born: dict[int, int] = {}
        """Live cluster id -> :attr:`learned` when it was born."""
        self.next_id = 0
        self.learned = 0
        """Rows learned so far (a customer's changed row counts again)."""

    @property
    def assigned(self) -> int:
        """Customers placed in one of the live clusters (outliers included)."""
        return sum(tally.count for tally in self.members.values()) + sum(self.outliers.values())

    def add(self, cluster_id: int, row: Row, counted: bool) -> None:
        """Place ``row`` in the cluster: in its mean, or as one of its outliers."""
        if counted:
            self.members[cluster_id].add(row)
        else:
            self.outliers[cluster_id] += 1

    def take_out(self, kept: Kept) -> None:
        """Take a customer's row (as their memory keeps it) out of the sums."""
        self.shop.add(kept.row, -1)
        if kept.cluster_id not in self.members:
            return
        if kept.counted:
            self.members[kept.cluster_id].add(kept.row, -1)
        else:
            self.outliers[kept.cluster_id] -= 1

    def birth(self, anchor: Row) -> int:
        """A new cluster born at ``anchor``; its id."""
        cluster_id, self.next_id = self.next_id, self.next_id + 1
        self.members[cluster_id] = Tally(WIDTH)
        self.outliers[cluster_id] = 0
        self.anchors[cluster_id] = anchor
        self.born[cluster_id] = self.learned
        return cluster_id

    def drop(self, cluster_id: int) -> bool:
        """Remove the cluster; whether anyone was in it (their rows leave its sums)."""
        had = self.members.pop(cluster_id).count + self.outliers.pop(cluster_id, 0) > 0
        del self.anchors[cluster_id], self.born[cluster_id]
        return had

    def closest_pair(self) -> tuple[float, int, int] | None:
        """The distance between the two closest live clusters' centres, and their ids."""
        ids = sorted(self.members)
        if len(ids) < 2:
            return None
        scale = self.scale()
        scaled = {c: self.z(self.centre(c), scale) for c in ids}
        gap, a, b = min(
            (squared_distance(scaled[a], scaled[b]), a, b)
            for n, a in enumerate(ids)
            for b in ids[n + 1 :]
        )
        return math.sqrt(gap), a, b

    def centre(self, cluster_id: int) -> Row:
        """The members' mean, with the cluster's birth place as :data:`PRIOR_WEIGHT` members."""
        tally, anchor = self.members[cluster_id], self.anchors[cluster_id]
        weight = tally.count + PRIOR_WEIGHT
        return tuple(
            (total + PRIOR_WEIGHT * a) / weight for total, a in zip(tally.sums, anchor, strict=True)
        )

    def scaled_centre(self, cluster_id: int) -> dict[str, float]:
        """The cluster's centre in the shop's standard deviations, by feature."""
        return dict(zip(FEATURES, self.z(self.centre(cluster_id)), strict=True))

    def distances(self, z: Row) -> dict[int, float]:
        """Squared distance of the scaled row ``z`` to each live cluster's centre."""
        scale = self.scale()
        return {c: squared_distance(z, self.z(self.centre(c), scale)) for c in self.members}

    def scale(self) -> Scale:
        """The shop's averages and 1 / spreads (0 where there is no spread)."""
        spread = self.shop.spread()
        return self.shop.mean(), tuple(0.0 if s <= EPSILON else 1.0 / s for s in spread)

    def z(self, row: Row, scale: Scale | None = None) -> Row:
        """``row`` in the shop's standard deviations from its averages (0 where no spread)."""
        mean, inverse = scale or self.scale()
        return tuple((value - m) * i for value, m, i in zip(row, mean, inverse, strict=True))

    def unscaled(self, z: Row) -> Row:
        """A row in the shop's standard deviations back in the rows' own units."""
        mean, spread = self.shop.mean(), self.shop.spread()
        return tuple(m + value * s for value, m, s in zip(z, mean, spread, strict=True))
