"""k-means pieces for a clustering learned online: seeding on a small buffer of rows, and
exact means of rows that come and go.

Points and centres are rows (tuples of floats in a fixed feature order). :func:`groups`
seeds (k-means++ then Lloyd rounds) on the first rows a shop sends; :class:`Tally` keeps
count, sums and sums of squares of a population whose members replace their rows as they
change, so a cluster's centre is always its members' mean and a shop's scaling its
customers' spread, without keeping the rows.

>>> rows = [(0.0, 0.0), (0.2, 0.0), (5.0, 5.0), (5.2, 5.0)]
>>> centres, counts = seed(rows, 2, random.Random(1))
>>> sorted(centres), sorted(counts)
([(0.1, 0.0), (5.1, 5.0)], [2, 2])
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

Row = tuple[float, ...]

LLOYD_ROUNDS = 10


class OnlineKMeans:
    """The cluster model's centres before issue 25: kept so its checkpoints still unpickle
    (``segstream.segments.cluster.ClusterModel.__setstate__`` starts such a model afresh)."""


def squared_distance(a: Row, b: Row) -> float:
    """Squared Euclidean distance of two rows of the same length."""
    gap = math.dist(a, b)
    return gap * gap


def nearest(point: Row, centres: Sequence[Row]) -> int:
    """Index of the centre nearest ``point`` (the first on a tie)."""
    distances = [squared_distance(point, centre) for centre in centres]
    return distances.index(min(distances))


def seed(rows: Sequence[Row], k: int, rng: random.Random) -> tuple[list[Row], list[int]]:
    """At most ``k`` centres for ``rows``: k-means++ seeding (each next centre drawn with
    probability proportional to its squared distance from the chosen ones), then Lloyd
    rounds; centres that win no row are dropped. Returns the centres and their row counts."""
    centres = [rows[rng.randrange(len(rows))]]
    while len(centres) < min(k, len(rows)):
        weights = [min(squared_distance(row, c) for c in centres) for row in rows]
        if sum(weights) <= 0.0:
            break  # every row sits on a centre already
        centres.append(rng.choices(rows, weights=weights)[0])
    counts: list[int] = []
    for _ in range(LLOYD_ROUNDS):
        groups: list[list[Row]] = [[] for _ in centres]
        for row in rows:
            groups[nearest(row, centres)].append(row)
        moved = [_mean(group) for group in groups if group]
        counts = [len(group) for group in groups if group]
        if moved == centres:
            break
        centres = moved
    return centres, counts


def groups(
    rows: Sequence[Row], k: int, least: int, rng: random.Random
) -> tuple[list[Row], list[int]]:
    """Centres of groups of at least ``least`` rows: :func:`seed` with ``k`` centres, then
    with fewer, keeping the try that finds the most such groups (the first on a tie) and
    dropping its smaller ones (a handful of odd rows is no group). One centre of every
    row when no try finds a group.

    >>> rows = [(0.0,), (0.5,), (1.0,), (5.0,), (5.5,), (6.0,), (9.0,)]
    >>> groups(rows, 4, 3, random.Random(1))
    ([(0.5,), (5.5,)], [3, 3])
    """
    best: list[tuple[Row, int]] = []
    for wanted in range(min(k, len(rows)), 0, -1):
        centres, counts = seed(rows, wanted, rng)
        found = [(c, n) for c, n in zip(centres, counts, strict=True) if n >= least]
        if len(found) > len(best):
            best = found
    if not best:
        return [_mean(rows)], [len(rows)]
    return [c for c, _ in best], [n for _, n in best]


def _mean(rows: Sequence[Row]) -> Row:
    return tuple(sum(column) / len(rows) for column in zip(*rows, strict=True))


class Tally:
    """Count, sums and sums of squares of rows that can be added and taken out again
    (each customer's current row, replaced when it changes): exact means and spreads of a
    population without keeping its rows.

    >>> tally = Tally(1)
    >>> for row in ((1.0,), (3.0,), (8.0,)):
    ...     tally.add(row)
    >>> tally.add((8.0,), -1)
    >>> tally.count, tally.mean(), tally.spread()
    (2, (2.0,), (1.0,))
    """

    __slots__ = ("count", "squares", "sums")

    def __init__(self, width: int) -> None:
        self.count = 0
        self.sums = [0.0] * width
        self.squares = [0.0] * width

    def add(self, row: Row, sign: int = 1) -> None:
        """Add ``row`` (``sign`` -1: take it out)."""
        self.count += sign
        for n, value in enumerate(row):
            self.sums[n] += sign * value
            self.squares[n] += sign * value * value

    def mean(self) -> Row:
        """The mean row (zeros while empty)."""
        count = max(self.count, 1)
        return tuple(total / count for total in self.sums)

    def spread(self) -> Row:
        """The standard deviation of each column (population; 0 while fewer than two)."""
        if self.count < 2:
            return (0.0,) * len(self.sums)
        return tuple(
            math.sqrt(max(square / self.count - (total / self.count) ** 2, 0.0))
            for total, square in zip(self.sums, self.squares, strict=True)
        )

    def __getstate__(self) -> tuple[int, list[float], list[float]]:
        return self.count, self.sums, self.squares

    def __setstate__(self, state: tuple[int, list[float], list[float]]) -> None:
        self.count, self.sums, self.squares = state
