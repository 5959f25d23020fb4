"""Sequential k-means over named features, with the distances of one pass reused.

The algorithm of river's ``cluster.KMeans`` (each update moves the nearest centre a
``halflife`` share of the way to the point; centres start at Gaussian draws from one
seeded generator, centre by centre in feature order), kept here because the cluster
model asks three questions of the same point (nearest centre, distance to it, distance
to the nearest other centre) and river answers each with a new pass over the centres.

>>> kmeans = OnlineKMeans(n_clusters=2, halflife=0.5, seed=1, features=("x",))
>>> kmeans.centers = {0: {"x": 0.0}, 1: {"x": 4.0}}
>>> key, distances = kmeans.learn(({"x": 1.0}))
>>> key, distances[key], kmeans.centers[0]
(0, 0.25, {'x': 0.5})
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

from service.learning.vectors import Vector


class OnlineKMeans:
    """``n_clusters`` centres over ``features``, moved online towards the points they win."""

    def __init__(
        self, n_clusters: int, halflife: float, seed: int, features: Sequence[str]
    ) -> None:
        rng = random.Random(seed)
        self.halflife = halflife
        self.features = tuple(features)
        self.centers: dict[int, Vector] = {
            key: {name: rng.gauss(0.0, 1.0) for name in self.features} for key in range(n_clusters)
        }

    def squared_distances(self, x: Mapping[str, float]) -> dict[int, float]:
        """Squared Euclidean distance from ``x`` to every centre (features of ``x`` only;
        a centre lacking one counts it as 0)."""
        names, point = tuple(x), tuple(x.values())
        found = {}
        for key, centre in self.centers.items():
            gap = math.dist(point, [centre.get(name, 0.0) for name in names])
            found[key] = gap * gap
        return found

    def predict(self, x: Mapping[str, float]) -> int:
        """The nearest centre (the lowest key on a tie)."""
        distances = self.squared_distances(x)
        return min(distances, key=distances.__getitem__)

    def learn(self, x: Mapping[str, float]) -> tuple[int, dict[int, float]]:
        """Move the nearest centre towards ``x``; that centre and the squared distances
        from ``x`` to every centre after the move."""
        distances = self.squared_distances(x)
        key = min(distances, key=distances.__getitem__)
        centre, rate = self.centers[key], self.halflife
        for name, value in x.items():
            old = centre.get(name, 0.0)
            centre[name] = old + rate * (value - old)
        distances[key] *= (1.0 - rate) ** 2  # x - (c + h(x - c)) = (1 - h)(x - c)
        return key, distances

    def place(self, key: int, x: Mapping[str, float]) -> None:
        """Put centre ``key`` at ``x`` (how an empty centre takes over a new group)."""
        self.centers[key] = dict(x)
