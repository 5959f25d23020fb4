"""The lives of a shop's learned segments (:mod:`segstream.segments.cluster`): seeding the
first clusters (provisional ones for a small shop), starting a new group on probation once
enough far customers lie close together, and retiring clusters (merged into a nearer one,
shrunk away, or not formed in time), each retirement asking for a pass that moves their
members.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from segstream.learning.kmeans import Row, groups, squared_distance
from segstream.learning.quality import FadingMean
from segstream.segments.cluster_names import ClusterNames
from segstream.segments.cluster_space import ClusterSpace

SMALL_SHOP = timedelta(days=30)
"""How long a shop that has not reached ``warmup`` rows waits before it is clustered
with what it has (see :meth:`ClusterRoster.seed_if_due`)."""


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """How a shop's clusters are learned (the arguments of
    :class:`~segstream.segments.cluster.ClusterModel`, in its checkpoints' order)."""

    seed: int = 0
    max_clusters: int = 8
    warmup: int = 100
    maintain_every: int = 50
    respawn_factor: float = 4.0
    evidence: int = 5
    merge_factor: float = 0.5
    patience: int = 1000
    min_group_customers: int = 10
    min_group_share: float = 0.05
    switch_margin: float = 0.25


class ClusterRoster:
    """Which clusters live: seeded from the first rows, born from far customers, retired
    when merged, shrunk or not formed in time. ``typical`` is the model's typical distance
    of a customer to their cluster: what "far" and "too close" are judged by."""

    def __init__(
        self,
        config: ClusterConfig,
        space: ClusterSpace,
        naming: ClusterNames,
        typical: FadingMean,
    ) -> None:
        self.config = config
        self.space = space
        self.naming = naming
        self.typical = typical
        self.formed: set[int] = set()
        """Clusters announced as formed (they reached their minimum size)."""
        self.probation: set[int] = set()
        """A cluster started by far customers (:meth:`novel`) until it forms."""
        self.buffer: list[Row] = []
        """The first rows, the clusters are seeded from (:meth:`seed_if_due`)."""
        self.pool: list[Row] = []
        """The latest far customers' rows (:meth:`novel`)."""
        self.started: datetime | None = None
        """When the first row was learned (see :meth:`seed_if_due`)."""
        self.provisional = False
        """Whether the clusters were seeded from fewer than ``warmup`` rows."""
        self.pass_wanted = False
        """Whether customers need placing (a cluster retired, or the first ones seeded)."""

    @property
    def ready(self) -> bool:
        """Whether there are clusters to place customers in."""
        return bool(self.space.members)

    def settled(self) -> bool:
        """Whether the typical distance of a customer to their cluster rests on ``warmup``
        placements: what "far" and "too close" are judged by."""
        return self.typical.count >= self.config.warmup

    def formed_size(self) -> int:
        """Members a cluster needs to be announced as formed."""
        config = self.config
        return max(config.min_group_customers, round(config.min_group_share * self.space.assigned))

    def warm_up(self, row: Row, now: datetime | None) -> None:
        """Keep the first ``warmup`` rows: the clusters are seeded by :meth:`seed_if_due`."""
        if not self.buffer:
            self.started = now
        self.buffer.append(row)
        self.seed_if_due(now)

    def seed_if_due(self, now: datetime | None) -> None:
        """Seed the clusters from the first rows once there are ``warmup`` of them. A
        small shop does not wait for them: once it has at least twice
        ``min_group_customers`` rows but gathers fewer than half ``warmup`` per
        :data:`SMALL_SHOP`, it gets provisional clusters from what it has (one per
        ``min_group_customers`` rows), seeded again (the provisional ones retired) if it
        reaches ``warmup`` rows. Every seeding asks for a pass that places every customer."""
        config, space = self.config, self.space
        rows = len(self.buffer)
        if self.ready and (not self.provisional or rows < config.warmup):
            return
        if rows < config.warmup and not self._slow(rows, now):
            return
        for cluster_id in sorted(space.members):
            self.retire(cluster_id, last=True)
        scale = space.scale()
        scaled = [space.z(row, scale) for row in self.buffer]
        per_cluster = config.evidence if rows >= config.warmup else config.min_group_customers
        wanted = max(1, rows // per_cluster)
        wanted = min(wanted, config.max_clusters)
        centres, _ = groups(scaled, wanted, config.evidence, random.Random(config.seed))
        for centre in centres:
            self._birth(space.unscaled(centre))
        self.provisional = rows < config.warmup
        if not self.provisional:
            self.buffer = []
        self.pass_wanted = True

    def novel(self, row: Row) -> int | None:
        """Customers far from every cluster wait in a pool (their rows, the latest
        ``4 x evidence``); once ``evidence`` of them lie close together they are a new
        group: it starts on probation (see :meth:`_end_probation`) in a free place, or one
        freed by merging the closest two clusters if they came too close, and a pass moves
        the outliers near it. Returns the new cluster's id."""
        evidence = self.config.evidence
        self.pool = [*self.pool[-(4 * evidence - 1) :], row]
        scale = self.space.scale()
        z = self.space.z(row, scale)
        radius = self.typical.value**2
        close = [p for p in self.pool if squared_distance(self.space.z(p, scale), z) <= radius]
        if len(close) < evidence or not self._room():
            return None
        self.pool = [p for p in self.pool if p not in close]
        born = self._birth(tuple(sum(column) / len(close) for column in zip(*close, strict=True)))
        self.probation.add(born)
        self.pass_wanted = True
        return born

    def maintain(self) -> None:
        """Every ``maintain_every`` learned rows: retire formed clusters that shrank below
        half their size, and a cluster on probation that did not form within ``patience``
        rows; merge clusters that came too close; refresh names."""
        space = self.space
        needed = self.formed_size()
        for cluster_id in sorted(space.members):
            if cluster_id in self.formed:
                self.probation.discard(cluster_id)
                if 2 * space.members[cluster_id].count < needed:
                    self.retire(cluster_id)
            elif space.learned - space.born.get(cluster_id, 0) >= self.config.patience:
                self._end_probation(cluster_id)
        pair = self._closest_pair()
        if pair is not None:
            self.retire(pair)
        self.naming.refresh(space)

    def retire(self, cluster_id: int, last: bool = False) -> None:
        """A cluster stops; its members are moved by a pass (:attr:`pass_wanted`). The last
        one stops only when new ones are seeded (``last``)."""
        if len(self.space.members) <= 1 and not last:
            return
        self.naming.retire(cluster_id)
        self.pass_wanted |= self.space.drop(cluster_id)
        self.formed.discard(cluster_id)
        self.probation.discard(cluster_id)

    def _slow(self, rows: int, now: datetime | None) -> bool:
        """Whether a shop with ``rows`` rows so far is small: at least twice
        ``min_group_customers`` rows, gathered at under half ``warmup`` per :data:`SMALL_SHOP`."""
        config = self.config
        if now is None or self.started is None or rows < 2 * config.min_group_customers:
            return False
        waited = (now - self.started) / SMALL_SHOP
        return waited >= 1.0 and rows < config.warmup / 2 * waited

    def _room(self) -> bool:
        """Whether a new group fits: a free place, or one freed by merging the closest two
        clusters if they came too close, or by retiring the smallest cluster not on
        probation if it has fewer than ``min_group_customers`` members (no group the shop
        would be told of)."""
        members = self.space.members
        if len(members) < self.config.max_clusters:
            return True
        retired = self._closest_pair()
        settled = [c for c in members if c not in self.probation]  # give new ones time
        if retired is None and settled:
            smallest = min(settled, key=lambda c: (members[c].count, c))
            if members[smallest].count < self.config.min_group_customers:
                retired = smallest
        if retired is not None:
            self.retire(retired)
        return retired is not None

    def _end_probation(self, cluster_id: int) -> None:
        """A cluster on probation for ``patience`` rows stays if it gathered
        ``min_group_customers`` members, else it is retired."""
        if cluster_id not in self.probation:
            return
        self.probation.discard(cluster_id)
        if self.space.members[cluster_id].count < self.config.min_group_customers:
            self.retire(cluster_id)

    def _closest_pair(self) -> int | None:
        """The smaller of the two closest live clusters, if they are closer than
        ``merge_factor`` x the typical distance of a customer to their centre."""
        if len(self.space.members) < 2 or not self.settled():
            return None
        found = self.space.closest_pair()
        assert found is not None, "two clusters or more"
        gap, a, b = found
        if gap >= self.config.merge_factor * self.typical.value:
            return None
        return min((a, b), key=lambda c: (self.space.members[c].count, c))

    def _birth(self, anchor: Row) -> int:
        cluster_id = self.space.birth(anchor)
        self.naming.name(self.space, cluster_id)
        return cluster_id
