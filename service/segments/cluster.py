"""Learned segments: online clustering of the shop's customers by behaviour.

Every evaluation of a customer scales their :func:`~service.learning.vectors.behaviour_vector`
(:class:`~service.learning.vectors.FadingScaler`) and moves the nearest of
``n_clusters`` centres of an online k-means (river's ``KMeans`` algorithm,
:class:`~service.learning.kmeans.OnlineKMeans`) towards it.

Why KMeans: measured on simulated shops (200 customers, 2025, default persona mix,
seeds 1-3, a different shop kind each), replayed as the pipeline evaluates them:
every event plus a daily re-evaluation of every customer (~40 000 updates). The
adjusted Rand index compares the end-of-year assignments with the planted persona;
µs per learn + predict of the algorithm alone on the scaled vector.

=====================================================  ===================  ======  =====
algorithm (settings)                                   ARI per seed         mean    µs
=====================================================  ===================  ======  =====
KMeans(n_clusters=8, halflife=0.05)                    0.94  0.82  0.94     0.90    59
KMeans(n_clusters=6, halflife=0.05)                    0.91  0.62  0.94     0.82    44
DBSTREAM(clustering_threshold=2, fading_factor=0.01)   0.88  0.85  0.92     0.88    132
DBSTREAM(clustering_threshold=1.5, fading_factor=0.01) 0.88  0.77  0.89     0.85    233
DenStream(epsilon=2, decaying_factor=0.01, mu=2.5)     0.91  0.68  0.85     0.81    529
CluStream(n_macro_clusters=6, max_micro_clusters=50)   0.46  0.60  0.49     0.52    642
=====================================================  ===================  ======  =====

KMeans recovers the personas best, costs least and has a fixed size (``n_clusters``
centres, no micro-clusters to bound). The default is 12 centres, not 8: the result
depends on the order customers are evaluated in, and with 8 the worst orderings merge
distinct personas. On the learning test's two shops (150 customers, a year, random
interleavings of the three input topics within each week), 8 centres scored ARI median
0.61, minimum 0.45 (5 of 60 shop-runs below 0.5); 12 scored median 0.77, minimum 0.52
(none of 140 below 0.5). Spare centres can split a persona across two clusters, which
costs far less than a merge. Plain KMeans can leave a late group (holiday gifters)
inside an old cluster, so a customer further than ``respawn_factor`` x the typical
distance from every centre takes over an empty centre. With 8 centres the complete model
scored ARI 0.95 / 0.84 / 0.91 on the same shops, finds the gifters as a new group in
November on all three, and costs 64-84 µs per learn + assign (vector, scaling, quality
and membership included; best of 5 runs over 20 000 evaluations; the machine was shared,
so treat µs as approximate).

What it clusters on: the behaviour vector without ``quiet_days`` and ``overdue``
(:data:`CLUSTER_FEATURES`). Those two say where a customer is *now* (every order resets
them, every quiet week grows them), which the lifecycle and churn-risk models already
tell; with them a cluster was half a status, and occasional buyers went "recent" on each
order and "lapsed" some weeks later. On the benchmark's backfill shop (5,000 customers,
two years of orders, ``make bench-changes``) clusters changed 0.66 times per customer
per 30 days with them and 0.47 without (weighting them by 0.5 instead gave 0.52, and a
switch margin of 0.5 with them 0.64). Agreement with the planted personas (ARI): the
learning test's two shops over 6 topic interleavings, coffee 0.75-0.79 -> 0.76-0.79,
tea 0.57-0.88 -> 0.89-0.92; the simulator's six shop kinds over two years, seeds 1-3,
0.77 / 0.84 / 0.79 -> 0.72 / 0.78 / 0.79 (the weighted variants dropped the coffee shop
to 0.51 in 2 of 6 interleavings).

Stable ids (river #891): centres are matched to persistent ids by
:class:`StableIds` (greedy nearest-centre matching every ``refresh_every`` updates),
so renumbering or re-clustering inside the algorithm never moves a customer. A
centre that jumps further than ``match_radius`` between two matchings has become
another group and gets a new id.

Names: the segment a customer carries is the stable id alone (``"c3"``): words
from a moving centre would drift ("new" turns "long-standing" over a year) and
rename a whole cluster while nobody in it moved. :meth:`ClusterModel.describe`
gives the live description, words from the centre's largest deviations from the
shop's averages plus those values in the shop's units ("frequent · high spend ·
recent (repeat days 8.0 vs 2.1; ...)"). A cluster *forms* when its members reach
``min_group_customers`` and ``min_group_share`` of the shop's assigned customers;
each formation is announced once through :meth:`ClusterModel.drain_announcements`
(the shop's first groups, then groups that appear later, such as holiday gifters
in November). A formed cluster that shrinks below half that size has *dissolved*: its
members moved on, and online k-means then lets the nearly empty centre drift to whatever
group arrives next. Reaching the size again announces it again, since it is a new group
under the old id (in-process replays of the learning test's shops found the gifters in
such a recycled cluster in 4 of 28 interleavings, announced only in July for its old
members).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Self

from service.core.features import CustomerSnapshot
from service.learning.kmeans import OnlineKMeans
from service.learning.quality import ClusterQuality, FadingMean, distance
from service.learning.vectors import (
    FEATURES,
    FadingScaler,
    Vector,
    behaviour_vector,
    original_value,
)
from service.segments.base import ModelHooks, next_on_ladder
from service.settings import Settings

WORDS: dict[str, tuple[str | None, str | None]] = {
    "quiet_days": ("lapsed", "recent"),
    "repeat_days": ("frequent", "one-off"),
    "mean_order_value": ("big baskets", "small baskets"),
    "spend_per_month": ("high spend", "low spend"),
    "tenure_days": ("long-standing", "new"),
    "cadence_days": ("slow cadence", "fast cadence"),
    "overdue": ("overdue", "on schedule"),
    "orders_per_month": ("many orders", "few orders"),
    "discount_share": ("discount-driven", "full price"),
    "renewal_share": ("subscription boxes", "one-off orders"),
    "subscribed": ("subscribed", "not subscribed"),
    "cancelled": ("cancelled", None),
    "gift_plan": ("gift plan", None),
}
"""Words for a centre above / below the shop's average on each feature (None: say nothing)."""


@dataclass(frozen=True, slots=True)
class GroupFormed:
    """A cluster reached its minimum size: ``segment`` is the name its members carry."""

    cluster_id: int
    segment: str
    description: str
    size: int
    at: datetime


def traits(centre: Vector, words: int = 3, threshold: float = 0.5) -> list[str]:
    """Up to ``words`` words for the features where a scaled centre is furthest from average.

    >>> traits({"repeat_days": 1.2, "quiet_days": -0.8, "tenure_days": 0.1})
    ['frequent', 'recent']
    """
    ranked = sorted(centre.items(), key=lambda item: (-abs(item[1]), item[0]))
    found: list[str] = []
    for feature, z in ranked:
        if abs(z) < threshold or len(found) == words:
            break
        above, below = WORDS.get(feature, (None, None))
        word = above if z > 0 else below
        if word is not None and word not in found:
            found.append(word)
    return found


class StableIds:
    """Persistent ids for the centres of a clustering that may renumber or move them.

    >>> ids = StableIds(radius=1.0)
    >>> ids.match({"a": {"x": 0.0}, "b": {"x": 5.0}})
    [0, 1]
    >>> ids.match({"b": {"x": 0.2}, "a": {"x": 5.1}})  # renumbered: same ids, nothing born
    []
    >>> ids.by_key == {"b": 0, "a": 1}
    True
    """

    def __init__(self, radius: float, max_ids: int = 32) -> None:
        self.radius = radius
        self.max_ids = max_ids
        self.positions: dict[int, Vector] = {}
        self.by_key: dict[Any, int] = {}
        self.next_id = 0
        self._matched_at: dict[int, int] = {}
        self._round = 0

    def match(self, centres: Mapping[Any, Vector]) -> list[int]:
        """Map every centre to the nearest free known id within ``radius`` (closest pairs
        first), or a new id; returns the new ids."""
        self._round += 1
        pairs = sorted(
            (gap, str(key), key, known)
            for key, centre in centres.items()
            for known, position in self.positions.items()
            if (gap := distance(centre, position)) <= self.radius
        )
        by_key: dict[Any, int] = {}
        for _, _, key, known in pairs:
            if key not in by_key and known not in by_key.values():
                by_key[key] = known
        born = []
        for key in sorted(centres, key=str):
            if key not in by_key:
                by_key[key] = self.next_id
                born.append(self.next_id)
                self.next_id += 1
        for key, known in by_key.items():
            self.positions[known] = dict(centres[key])
            self._matched_at[known] = self._round
        self.by_key = by_key
        self._forget_oldest()
        return born

    def _forget_oldest(self) -> None:
        """Keep at most ``max_ids`` positions: drop the ids unmatched for longest."""
        active = set(self.by_key.values())
        dormant = sorted((self._matched_at[i], i) for i in self.positions if i not in active)
        for _, known in dormant[: max(0, len(self.positions) - self.max_ids)]:
            del self.positions[known], self._matched_at[known]


CLUSTER_FEATURES = tuple(f for f in FEATURES if f not in ("quiet_days", "overdue"))
"""The features clusters are built on: behaviour, not recency (see the module docstring)."""


class ClusterModel(ModelHooks):
    """Per-shop online clustering with stable, described clusters (see the module docstring).

    Membership is the customers' own ``cluster`` segment; the model keeps only the
    size of each cluster."""

    name: ClassVar[str] = "cluster"
    segment_names: ClassVar[dict[str, Any]] = {"pattern": "^c(0|[1-9][0-9]{0,8})$"}
    """``c<stable id>``: ids are handed out as clusters form, so the set is open."""

    def __init__(
        self,
        seed: int = 0,
        n_clusters: int = 12,
        halflife: float = 0.05,
        scale_fading: float = 0.002,
        warmup: int = 100,
        refresh_every: int = 50,
        match_radius: float = 1.5,
        respawn_factor: float = 3.0,
        min_group_customers: int = 10,
        min_group_share: float = 0.05,
        switch_margin: float = 0.25,
        min_dwell_days: float = 60.0,
    ) -> None:
        self.scaler = FadingScaler(scale_fading)
        self.kmeans = OnlineKMeans(n_clusters, halflife, seed, CLUSTER_FEATURES)
        self.ids = StableIds(match_radius, max_ids=4 * n_clusters)
        self.warmup = warmup
        self.refresh_every = refresh_every
        self.respawn_factor = respawn_factor
        self.min_group_customers = min_group_customers
        self.min_group_share = min_group_share
        self.switch_margin = switch_margin
        self.min_dwell_days = min_dwell_days
        self.learned = 0
        self.sizes: Counter[int] = Counter()
        self.formed: set[int] = set()
        self.quality_meter = ClusterQuality()
        self._typical_distance = FadingMean(scale_fading)
        self._announcements: list[GroupFormed] = []
        self._latest: tuple[str, datetime, int] | None = None

    @classmethod
    def create(cls, settings: Settings, seed: int) -> Self:
        """A fresh shop model, configured by :meth:`from_settings`."""
        return cls.from_settings(settings, seed)

    @classmethod
    def from_settings(cls, settings: Settings, seed: int) -> Self:
        """A model configured by ``settings``."""
        return cls(
            seed=seed,
            n_clusters=settings.cluster_max_clusters,
            warmup=settings.cluster_warmup,
            min_group_customers=settings.cluster_min_group_customers,
            switch_margin=settings.cluster_switch_margin,
            min_dwell_days=settings.cluster_min_dwell_days,
        )

    @property
    def ready(self) -> bool:
        """Whether the model has learned enough to place customers."""
        return self.learned >= self.warmup

    def learn(self, customer: CustomerSnapshot) -> None:
        """Move the nearest centre towards the customer and record their cluster (the one
        they keep, see :meth:`_kept`)."""
        z = self._scaled(customer, learn=True)
        key, distances = self.kmeans.learn(z)  # the moved centre is still the nearest
        self.learned += 1
        if self.learned == self.warmup or (self.ready and self.learned % self.refresh_every == 0):
            self.refresh_ids()
        if not self.ready:
            return
        key = self._respawned_if_far(z, key, distances)
        self.quality_meter.update(key, distances)
        cluster_id = self._kept(customer, self.ids.by_key[key])
        self._record(customer, cluster_id)
        self._latest = (customer.customer_id, customer.as_of, cluster_id)

    def forget(self, customer: CustomerSnapshot) -> None:
        """Drop the last decision if it was about the erased customer (it names them)."""
        if self._latest is not None and self._latest[0] == customer.customer_id:
            self._latest = None

    def assign(self, customer: CustomerSnapshot) -> str | None:
        """The customer's stable cluster, ``"c<id>"``; None while the model warms up."""
        if not self.ready:
            return None
        latest = self._latest
        if latest is not None and latest[:2] == (customer.customer_id, customer.as_of):
            return f"c{latest[2]}"  # what learn just decided (``_kept``) for this snapshot
        nearest = self.ids.by_key[self.kmeans.predict(self._scaled(customer, learn=False))]
        return f"c{self._kept(customer, nearest)}"

    def _kept(self, customer: CustomerSnapshot, nearest: int) -> int:
        """The customer's current cluster while its centre is at most ``switch_margin``
        farther than the nearest one (a move needs a clear margin), else the nearest."""
        previous = customer.segments.get(self.name)
        if previous is None or previous == f"c{nearest}" or not previous[1:].isdigit():
            return nearest
        if self.name in customer.held and int(previous[1:]) in self.ids.by_key.values():
            return int(previous[1:])  # the pipeline holds a time-driven move (min dwell)
        keys = {cluster_id: key for key, cluster_id in self.ids.by_key.items()}
        own, best = keys.get(int(previous[1:])), keys.get(nearest)
        if own is None or best is None:
            return nearest  # the customer's cluster is gone
        distances = self.kmeans.squared_distances(self._scaled(customer, learn=False))
        if distances[own] <= (1 + self.switch_margin) ** 2 * distances[best]:
            return int(previous[1:])
        return nearest

    def min_dwell(self) -> timedelta:
        """Days in a cluster before time alone moves a customer (``cluster_min_dwell_days``)."""
        return timedelta(days=self.min_dwell_days)

    def explain(self, customer: CustomerSnapshot) -> dict[str, str] | None:
        """The live description of the customer's cluster (for the query API)."""
        segment = self.assign(customer)
        if segment is None:
            return None
        return {"cluster": segment, "description": self.describe(int(segment[1:]))}

    def refresh_ids(self) -> None:
        """Match the algorithm's current centres to persistent ids."""
        self.ids.match({key: dict(centre) for key, centre in self.kmeans.centers.items()})

    def drain_announcements(self) -> list[GroupFormed]:
        """Groups formed since the last call (the pipeline publishes each once)."""
        drained, self._announcements = self._announcements, []
        return drained

    def describe(self, cluster_id: int) -> str:
        """Live description of a cluster's centre, in the shop's units against its averages.

        ``"frequent · high spend (repeat days 8.0 vs 2.1; spend per month 41.0 vs 18.3; ...)"``
        """
        position = self.ids.positions[cluster_id]
        centre = {f: position[f] for f in CLUSTER_FEATURES if f in position}
        words = " · ".join(traits(centre)) or "typical"
        details = "; ".join(
            f"{feature.replace('_', ' ')} {self._original(feature, z):.1f} "
            f"vs {self._original(feature, 0.0):.1f}"
            for feature, z in sorted(centre.items(), key=lambda item: (-abs(item[1]), item[0]))[:3]
        )
        return f"{words} ({details})"

    def clusters(self) -> list[dict[str, Any]]:
        """Every current cluster: segment name, members, live description (for the HTTP view)."""
        return [
            {
                "cluster_id": cluster_id,
                "segment": f"c{cluster_id}",
                "size": self.sizes.get(cluster_id, 0),
                "description": self.describe(cluster_id),
            }
            for cluster_id in sorted(set(self.ids.by_key.values()))
        ]

    def quality(self) -> dict[str, float]:
        """``silhouette``, ``stability``, non-empty ``clusters`` and assigned ``customers``."""
        return {
            **self.quality_meter.as_dict(),
            "clusters": float(sum(1 for size in self.sizes.values() if size > 0)),
            "customers": float(self.assigned),
        }

    @property
    def assigned(self) -> int:
        """Customers carrying one of this model's clusters."""
        return sum(self.sizes.values())

    def next_review(self, customer: CustomerSnapshot) -> datetime | None:
        """Behaviour drifts with silence: look again on the quiet-days ladder."""
        return next_on_ladder(customer)

    def _scaled(self, customer: CustomerSnapshot, learn: bool) -> Vector:
        vector = behaviour_vector(customer)
        x = {feature: vector[feature] for feature in CLUSTER_FEATURES}
        if learn:
            self.scaler.learn_one(x)
        return self.scaler.transform_one(x)

    def _respawned_if_far(self, z: Vector, key: int, distances: dict[int, float]) -> int:
        """``key``, the nearest centre; but a customer far from every centre takes over an
        empty one (moved onto them, so it becomes a new cluster: how a new group gets a
        centre). ``distances`` (squared, to every centre) are updated to match."""
        gap = math.sqrt(distances[key])
        typical = self._typical_distance.value
        self._typical_distance.update(gap)
        if not gap > self.respawn_factor * typical:
            return key
        empty: list[int] = [
            k for k, known in sorted(self.ids.by_key.items()) if self.sizes[known] <= 0
        ]
        if not empty:
            return key
        self.kmeans.place(empty[0], z)
        distances[empty[0]] = 0.0
        self.refresh_ids()
        return empty[0]

    def _record(self, customer: CustomerSnapshot, cluster_id: int) -> None:
        """Update the sizes (the customer leaves the cluster they carry); forget a formed
        cluster that dissolved; announce the cluster when it just formed."""
        at = customer.as_of
        carried = customer.segments.get(self.name)
        if carried is not None:
            previous = int(carried[1:])
            self.quality_meter.reassigned(previous == cluster_id)
            self.sizes[previous] -= 1
            if previous != cluster_id and 2 * self.sizes[previous] < self._formed_size():
                self.formed.discard(previous)  # dissolved: its next formation is a new group
        self.sizes[cluster_id] += 1
        if cluster_id in self.formed or self.sizes[cluster_id] < self._formed_size():
            return
        self.formed.add(cluster_id)
        self._announcements.append(
            GroupFormed(
                cluster_id, f"c{cluster_id}", self.describe(cluster_id), self.sizes[cluster_id], at
            )
        )

    def _formed_size(self) -> int:
        return max(self.min_group_customers, round(self.min_group_share * self.assigned))

    def _original(self, feature: str, z: float) -> float:
        return max(0.0, original_value(feature, self.scaler.inverse(feature, z)))


MODEL = ClusterModel
