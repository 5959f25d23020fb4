"""Learned segments: at most ``max_clusters`` groups of a shop's customers who buy alike,
each with a stable id and a name an owner can read.

A customer's row (:func:`buying_row`) changes only with their own events, so time alone never
moves anyone; a centre is its members' exact mean (:class:`~segstream.learning.kmeans.Tally`),
so a cluster moves only as its members change and its name (:func:`traits`) stays true. Far
customers wait as outliers until enough lie close together to start a cluster of their own.
The model answers the hooks and places customers; its collaborators keep the rest: the
online k-means state (:mod:`~segstream.segments.cluster_space`), the names
(:mod:`~segstream.segments.cluster_names`) and which clusters live: seeding, new groups,
merges and dissolution (:mod:`~segstream.segments.cluster_roster`). Why this design, the
variants measured against it and its known limit: ``docs/design/clusters.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Self, TypeVar

from segstream.domain.features import CustomerSnapshot
from segstream.learning.kmeans import Row
from segstream.learning.quality import ClusterQuality, FadingMean
from segstream.segments.base import ModelHooks
from segstream.segments.cluster_names import ClusterNames, traits
from segstream.segments.cluster_roster import SMALL_SHOP, ClusterConfig, ClusterRoster
from segstream.segments.cluster_space import (
    FEATURES,
    MEMORY,
    ClusterSpace,
    Kept,
    buying_row,
    kept_of,
)
from segstream.settings import Settings

__all__ = [
    "FEATURES",
    "MEMORY",
    "MODEL",
    "SMALL_SHOP",
    "ClusterModel",
    "GroupFormed",
    "StableIds",
    "buying_row",
    "traits",
]
FAR_ON_ONE_FEATURE = 4.0
"""Standard deviations of the shop on one feature by which a customer differs from even
the nearest cluster's centre to count as far from it (a new flag, such as a gift plan,
sets a new group apart on one feature, and the more of them come the smaller their
deviation in the shop's units gets)."""
REVIEW_UNPLACED = timedelta(days=7)
"""How soon a customer the model could not place yet (it warms up) is looked at again."""
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class GroupFormed:
    """A cluster reached its minimum size: ``segment`` is the id its members carry."""

    cluster_id: int
    segment: str
    name: str
    description: str
    size: int
    at: datetime


SUMMARY = (
    "learned behavioural group (online k-means over how a customer buys) with a "
    "stable id and a human name"
)
"""What the model is (:attr:`ClusterModel.summary`)."""
SEGMENT_DESCRIPTION = (
    'Stable id of the learned behavioural group, "c<number>": a cluster keeps its id '
    "for life and an id is never reused. Its human name is in the segment sizes "
    "(names), in scores.cluster and on segment changes. A customer's cluster changes "
    "only at their own events (orders, signups, cancellations), or when the shop's "
    "model retires their cluster (merged into a nearer one or dissolved), never "
    "because time passed."
)
"""What a customer's cluster says (:attr:`ClusterModel.segment_description`); ids are
handed out as clusters are born and never reused."""


class ClusterModel(ModelHooks):
    """Per-shop online clustering with stable ids and readable names (see the module docstring).
    Membership is the customers' own ``cluster`` segment; each customer's row and cluster are
    in their memory, the model keeps sums per cluster and for the shop, so its size does not
    grow with the shop."""

    name: ClassVar[str] = "cluster"
    summary: ClassVar[str] = SUMMARY
    segment_description: ClassVar[str] = SEGMENT_DESCRIPTION
    segment_names: ClassVar[dict[str, Any]] = {"pattern": "^c(0|[1-9][0-9]{0,8})$"}
    time_moves: ClassVar[bool] = False

    def __init__(
        self,
        seed: int = 0,
        max_clusters: int = 8,
        warmup: int = 100,
        fading: float = 0.002,
        maintain_every: int = 50,
        respawn_factor: float = 4.0,
        evidence: int = 5,
        merge_factor: float = 0.5,
        patience: int = 1000,
        min_group_customers: int = 10,
        min_group_share: float = 0.05,
        switch_margin: float = 0.25,
    ) -> None:
        self.config = ClusterConfig(
            seed,
            max_clusters,
            warmup,
            maintain_every,
            respawn_factor,
            evidence,
            merge_factor,
            patience,
            min_group_customers,
            min_group_share,
            switch_margin,
        )
        self.space = ClusterSpace()
        """The online k-means state: rows summed for the shop and per cluster."""
        self.naming = ClusterNames()
        self.typical = FadingMean(fading)
        """The typical distance of a customer to their cluster's centre."""
        self.roster = ClusterRoster(self.config, self.space, self.naming, self.typical)
        """Which clusters live: seeding, new groups, merges and dissolution."""
        self.quality_meter = ClusterQuality()
        self.kept_at_events = FadingMean(0.001)
        self.clock: datetime | None = None
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
            max_clusters=settings.cluster_max_clusters,
            warmup=settings.cluster_warmup,
            min_group_customers=settings.cluster_min_group_customers,
            switch_margin=settings.cluster_switch_margin,
        )

    # ------------------------------------------------------------ the hooks

    @property
    def ready(self) -> bool:
        """Whether the model has clusters to place customers in."""
        return self.roster.ready

    def learn(self, customer: CustomerSnapshot) -> None:
        """Count the customer's current row (taking their previous one out) and decide
        their cluster: after their own event, or when they have none that lives. A review
        of a placed customer brings nothing new (time passing changes no feature)."""
        kept = kept_of(customer.memory.get(self.name))
        if customer.review and kept is not None and not self._misplaced(customer, kept):
            if self.ready:
                self.quality_meter.reassigned(True)  # time passed, the customer stays
            else:
                self.roster.seed_if_due(customer.as_of)
            return
        self.clock = customer.as_of
        row = buying_row(customer)
        if kept is not None:
            self.space.take_out(kept)
        self.space.shop.add(row)
        self.space.learned += 1
        if not self.ready or self.roster.provisional:
            self.roster.warm_up(row, self.clock)
        if not self.ready:
            customer.memory[self.name] = Kept(None, row).packed()
            return
        chosen, counted = self._place(customer, row)
        self.space.add(chosen, row, counted)
        customer.memory[self.name] = Kept(chosen, row, counted).packed()
        self._latest = (customer.customer_id, customer.as_of, chosen)
        if self.space.learned % self.config.maintain_every == 0:
            self.roster.maintain()

    def assign(self, customer: CustomerSnapshot) -> str | None:
        """The customer's cluster, ``"c<id>"``: the one they carry while it lives and
        nothing of theirs changed (a review), else the nearest by a clear margin; while the
        model warms up, whatever they carry (None for a new shop)."""
        carried = customer.segments.get(self.name)
        if not self.ready:
            return carried
        latest = self._latest
        if latest is not None and latest[:2] == (customer.customer_id, customer.as_of):
            return f"c{latest[2]}"  # what learn just decided for this snapshot
        if customer.review and self._live(carried):
            return carried
        distances = self.space.distances(self.space.z(buying_row(customer)))
        return f"c{self._choice(customer, distances)}"

    def label(self, segment: str) -> str | None:
        """The human name of a cluster segment (also of one retired lately)."""
        cluster_id = _cluster_id(segment)
        return None if cluster_id is None else self.naming.label(cluster_id)

    def explain(self, customer: CustomerSnapshot) -> dict[str, Any] | None:
        """The customer's cluster with its name and live description (what the segment
        says), and the ``nearest`` cluster when the model would place them elsewhere now:
        clusters follow the customer's own events, so a customer moves at their next one."""
        carried = customer.segments.get(self.name)
        segment = carried if carried is not None else self.assign(customer)
        if segment is None:
            return None
        cluster_id = _cluster_id(segment)
        found: dict[str, Any] = {"cluster": segment, "name": self.label(segment)}
        if cluster_id in self.space.members:
            found["description"] = self.describe(cluster_id)
        else:
            found["retired"] = True  # its members are being moved (a pass over the shop)
        nearest = self.assign(customer)
        if nearest is not None and nearest != segment:
            found["nearest"] = nearest
        return found

    def next_review(self, customer: CustomerSnapshot) -> datetime | None:
        """Time alone never moves a customer; one not placed yet is looked at again."""
        if self.ready and self._live(customer.segments.get(self.name)):
            return None
        return customer.as_of + REVIEW_UNPLACED

    def drain_announcements(self) -> list[GroupFormed]:
        """Clusters that reached their minimum size since the last call (each once)."""
        needed = self.roster.formed_size()
        formed = self.roster.formed
        for cluster_id, tally in sorted(self.space.members.items()):
            if cluster_id not in formed and tally.count >= needed:
                formed.add(cluster_id)
                self._announcements.append(
                    GroupFormed(
                        cluster_id,
                        f"c{cluster_id}",
                        self.naming.names[cluster_id],
                        self.describe(cluster_id),
                        tally.count,
                        self.clock or datetime.min,
                    )
                )
        drained, self._announcements = self._announcements, []
        return drained

    def drain_pass_request(self) -> bool:
        """Whether customers need placing since the last call (a cluster was retired, or
        the model just got its first clusters): the pipeline then reviews every customer
        of the shop with this model (a pass, a step per commit)."""
        wanted, self.roster.pass_wanted = self.roster.pass_wanted, False
        return wanted

    def forget(self, customer: CustomerSnapshot) -> None:
        """Take the erased customer's row out, and the last decision if it was about them."""
        kept = kept_of(customer.memory.pop(self.name, None))
        if kept is not None:
            self.space.take_out(kept)
        if self._latest is not None and self._latest[0] == customer.customer_id:
            self._latest = None

    def quality(self) -> dict[str, float]:
        """``silhouette``; ``stability``: the share of looks at customers who sent nothing
        (reviews, passes) that left them in their cluster (only a retired cluster moves
        them); ``kept_at_events``: the share of customers' own events that left them in
        it; live ``clusters``; placed ``customers``. The shares fade (see
        :class:`~segstream.learning.quality.ClusterQuality`)."""
        return {
            **self.quality_meter.as_dict(),
            "kept_at_events": self.kept_at_events.value,
            "clusters": float(len(self.space.members)),
            "customers": float(self.space.assigned),
        }

    # ------------------------------------------------------------ views

    def describe(self, cluster_id: int) -> str:
        """A live cluster's name and its centre against the shop's averages, in the shop's
        units: ``"frequent · high spend (repeat days 8.0 vs 2.1; ...)"``."""
        return self.naming.describe(self.space, cluster_id)

    def clusters(self) -> list[dict[str, Any]]:
        """Every live cluster: segment, name, members, description."""
        return [
            {
                "cluster_id": cluster_id,
                "segment": f"c{cluster_id}",
                "name": self.naming.names[cluster_id],
                "size": tally.count + self.space.outliers[cluster_id],
                "description": self.describe(cluster_id),
            }
            for cluster_id, tally in sorted(self.space.members.items())
        ]

    # ------------------------------------------------------------ placing

    def _misplaced(self, customer: CustomerSnapshot, kept: Kept) -> bool:
        """Whether a review must place the customer: the model is ready and they carry
        no live cluster, or not the one their memory names, or they are an outlier (a new
        cluster near them may have started since)."""
        if not self.ready:
            return False
        carried = _cluster_id(customer.segments.get(self.name))
        return carried not in self.space.members or carried != kept.cluster_id or not kept.counted

    def _place(self, customer: CustomerSnapshot, row: Row) -> tuple[int, bool]:
        """The customer's cluster: their own while it is not clearly farther than the
        nearest. A customer far from every cluster is an outlier of the nearest (carried,
        not counted in its mean, so a few of them do not drag it away) until their own
        events bring them near one, or a new group forms with them
        (:meth:`~segstream.segments.cluster_roster.ClusterRoster.novel`). Returns the
        cluster and whether the row counts in its mean."""
        space, settled = self.space, self.roster.settled()
        z = space.z(row)
        distances = space.distances(z)
        nearest = min(distances, key=distances.__getitem__)
        gap = math.sqrt(distances[nearest])
        limit = self.config.respawn_factor * self.typical.value
        centre = space.z(space.centre(nearest))
        apart = max(abs(a - b) for a, b in zip(z, centre, strict=True))
        far = settled and (gap > limit or apart > FAR_ON_ONE_FEATURE)
        if not customer.review:  # a review sees a row already seen
            self.typical.update(min(gap, limit) if settled else gap)
            if far and (born := self.roster.novel(row)) is not None:
                distances = space.distances(z)
                nearest, far = born, False
        carried = _cluster_id(customer.segments.get(self.name))
        if far and customer.review and carried in space.members:
            chosen = carried  # still far from every cluster: an outlier stays where it is
        else:
            chosen = nearest if far else self._choice(customer, distances)
        self.quality_meter.update(chosen, distances)
        if customer.review and carried is not None:
            self.quality_meter.reassigned(carried == chosen)  # off a retired cluster, mostly
        elif not customer.review and carried in space.members:
            self.kept_at_events.update(float(carried == chosen))
        return chosen, not far

    def _choice(self, customer: CustomerSnapshot, distances: Mapping[int, float]) -> int:
        """The customer's live cluster while its centre is at most ``switch_margin``
        farther than the nearest one (a move needs a clear margin), else the nearest."""
        nearest = min(distances, key=distances.__getitem__)
        own = _cluster_id(customer.segments.get(self.name))
        margin = (1 + self.config.switch_margin) ** 2
        if own is not None and own in distances and distances[own] <= margin * distances[nearest]:
            return own
        return nearest

    def _live(self, segment: str | None) -> bool:
        return _cluster_id(segment) in self.space.members

    # ------------------------------------------------------------ checkpoints

    def __getstate__(self) -> dict[str, Any]:
        """The checkpoint: flat, in the layout (names and order) of the model before its
        collaborators, so checkpoints are the same bytes either side of that change and a
        worker of either version reads the other's (a rolling upgrade or a rollback)."""
        return _flat(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint (see :meth:`__getstate__`). One of the model before issue 25
        (online k-means over time-drifting features, its ids matched to moving centres)
        becomes a fresh model that learns again: its ids continue after the old ones, so
        no old id comes back with another meaning, and once it has clusters its pass moves
        every customer off the old ids (until then they keep them)."""
        if "ids" not in state:
            _unflat(self, state)
            return
        self.__init__(  # type: ignore[misc]
            warmup=state["warmup"],
            min_group_customers=state["min_group_customers"],
            switch_margin=state["switch_margin"],
        )
        self.space.next_id = getattr(state["ids"], "next_id", 0)


class StableIds:
    """What the model before issue 25 kept its ids in; its checkpoints still unpickle (see
    :meth:`ClusterModel.__setstate__`): only ``next_id`` is read."""

    next_id: int = 0


def _flat(model: ClusterModel) -> dict[str, Any]:
    """The model's state as one flat mapping, in the order the model before its
    collaborators kept its attributes in (see :meth:`ClusterModel.__getstate__`)."""
    config, space, naming, roster = model.config, model.space, model.naming, model.roster
    return {
        **{name: getattr(config, name) for name in ClusterConfig.__dataclass_fields__},
        "shop": space.shop,
        "members": space.members,
        "outliers": space.outliers,
        "anchors": space.anchors,
        "names": naming.names,
        "formed": roster.formed,
        "probation": roster.probation,
        "born": space.born,
        "gone": naming.gone,
        "next_id": space.next_id,
        "learned": space.learned,
        "buffer": roster.buffer,
        "pool": roster.pool,
        "typical": model.typical,
        "quality_meter": model.quality_meter,
        "kept_at_events": model.kept_at_events,
        "clock": model.clock,
        "started": roster.started,
        "provisional": roster.provisional,
        "_announcements": model._announcements,
        "_pass_wanted": roster.pass_wanted,
        "_latest": model._latest,
    }


def _unflat(model: ClusterModel, state: Mapping[str, Any]) -> None:
    """Give ``model`` and its collaborators the state :func:`_flat` made."""
    model.config = ClusterConfig(*(state[name] for name in ClusterConfig.__dataclass_fields__))
    model.space = _restored(ClusterSpace(), state, "shop members outliers anchors born")
    model.space.next_id, model.space.learned = state["next_id"], state["learned"]
    model.naming = _restored(ClusterNames(), state, "names gone")
    model.typical = state["typical"]
    model.roster = ClusterRoster(model.config, model.space, model.naming, model.typical)
    _restored(model.roster, state, "formed probation buffer pool started provisional")
    model.roster.pass_wanted = state["_pass_wanted"]
    model.quality_meter, model.kept_at_events = state["quality_meter"], state["kept_at_events"]
    model.clock, model._latest = state["clock"], state["_latest"]
    model._announcements = state["_announcements"]


def _restored(target: T, state: Mapping[str, Any], names: str) -> T:
    """``target`` with the attributes ``names`` (space-separated) set from ``state``."""
    for name in names.split():
        setattr(target, name, state[name])
    return target


def _cluster_id(segment: str | None) -> int | None:
    """The id of a ``c<id>`` segment (None for anything else)."""
    if segment is None or not segment.startswith("c") or not segment[1:].isdigit():
        return None
    return int(segment[1:])


MODEL = ClusterModel
