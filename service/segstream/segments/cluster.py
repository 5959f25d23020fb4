"""Learned segments: at most ``max_clusters`` groups of a shop's customers who buy alike,
each with a stable id and a name an owner can read.

**What a cluster is made of** (:func:`buying_row`): repeat days, basket, total spend, span
from first to last order, repeats per month, discount and renewal shares, subscribed /
cancelled / gift plan. All change only with the customer's own events: time passing never
moves a customer (lifecycle and churn risk tell who is quiet). The model before issue 25
also clustered on tenure and per-month rates, which grow or fall with every quiet day, so
its reviews moved quiet customers: on CDNOW 72-77 % of quiet customers kept their cluster
over 30 days, 56 % on the full log.

**State.** Each customer's memory holds their row and their cluster (44 bytes); the model
keeps count, sums and sums of squares per cluster and for the shop
(:class:`~segstream.learning.kmeans.Tally`), taking a row out when it changes. A centre is
its members' mean, the scaling the shop's customers' spread: a cluster moves only as its
members change, so its name stays true. (An online k-means whose centres follow every
event drifts with the flow of events: on CDNOW, after the first quarter only repeat buyers
send events, and the one-off buyers ended 6 standard deviations from such a fading
"average", with six of eight clusters carved out of them.)

**Placing.** At their own event a customer goes to the nearest cluster, but leaves their
own only for one ``switch_margin`` nearer. A review (no event of theirs) keeps a placed
customer where they are. The first clusters are seeded from the first ``warmup`` rows
(k-means++ and Lloyd rounds, the try with the most groups of ``evidence`` rows); a shop
gathering under half that per 30 days gets provisional ones from what it has, seeded again
at ``warmup``. Seeding asks the pipeline for a pass that places everyone (see
:meth:`ClusterModel.drain_pass_request`).

**New groups.** A customer far from every cluster (``respawn_factor`` typical distances, or
:data:`FAR_ON_ONE_FEATURE` shop standard deviations on one feature) is an outlier of the
nearest: carried there, not counted in its mean. Once ``evidence`` such customers lie close
together they start a cluster, on probation until it has ``min_group_customers`` members
(retired if it has not after ``patience`` rows), in a free place or one freed by merging
the two closest clusters or retiring the smallest with too few members to be announced;
the pass moves the outliers near it (the simulator's holiday gifters in November).

**Retiring.** A formed cluster that shrank below half the size a group needs, a failed
probation, the smaller of two clusters closer than ``merge_factor`` typical distances,
provisional clusters at the second seeding. Its id is never used again; the pipeline's pass
moves its members (cause ``model``); its name stays known for those changes.

**Names** (:func:`traits`): up to three words for the features where the centre lies
furthest from the shop's average (0.5 standard deviations; "very" from 1.5), the same
words in another order counting as the same name (then a fourth word, then a number). A
name is kept while its words still hold (0.3 and 1.0 standard deviations): over CDNOW's
nine months 5-6 renames, nearly all in the first weeks.

Measured with ``python -m bench.quality`` (figures and the before/after table in
``bench/README.md``, Quality); the variants tried on the same histories, in order:

=======================================================  ============  ===========  =========
variant                                                  CDNOW ids     CDNOW        simulator
                                                         ever (paper)  stability    ARI
=======================================================  ============  ===========  =========
before (online k-means, 12 centres, time-drifting)       19            0.77         0.74
the same, 8 centres, these features, reviews keep        8             1.00         0.71
centres with MacQueen rates, fading scaler               9-20          0.99         0.82-0.88
exact member means (this), a far customer alone starts   10-11         0.96-0.98    0.86
  a cluster in a free place
outliers, groups of five start a cluster (this)          8-9           0.98-0.99    0.76-0.83
=======================================================  ============  ===========  =========

Known limit: nothing splits a cluster. A group that only sets itself apart after seeding
stays with the cluster it was seeded in (the coffee shop's loyal and occasional subscribers
look alike at their first order): in-process replays of the learning test's coffee shop,
topics interleaved within weeks, scored ARI 0.56-0.88.

A checkpoint of the model before issue 25 loads as a fresh model whose ids continue after
the old ones (:meth:`ClusterModel.__setstate__`).
"""

from __future__ import annotations

import math
import random
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, NamedTuple, Self

from segstream.core.features import CustomerSnapshot
from segstream.learning.kmeans import Row, Tally, groups, squared_distance
from segstream.learning.quality import ClusterQuality, FadingMean
from segstream.segments.base import ModelHooks
from segstream.settings import Settings

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

WORDS: dict[str, tuple[str | None, str | None]] = {
    "repeat_days": ("frequent", "one-off"),
    "mean_order_value": ("big baskets", "small baskets"),
    "total_spend": ("high spend", "low spend"),
    "span_days": ("long-standing", None),
    "repeats_per_month": ("fast cadence", "slow cadence"),
    "discount_share": ("discount-driven", "full price"),
    "renewal_share": ("subscription boxes", "no boxes"),
    "subscribed": ("subscribed", "not subscribed"),
    "cancelled": ("cancelled", None),
    "gift_plan": ("gift plan", None),
}
"""Words for a centre above / below the shop's average on each feature (None: say nothing)."""
SUPPRESSES = {"one-off": "slow cadence"}
"""A word that silences another (a one-off buyer has no cadence to speak of)."""
PLAIN = frozenset({"one-off"})
"""Words that take no "very"."""
NUMBERED = re.compile(r" [0-9]+$")
"""The number that tells apart two clusters the same words describe."""
SMALL_SHOP = timedelta(days=30)
"""How long a shop that has not reached ``warmup`` rows waits before it is clustered
with what it has (see :meth:`ClusterModel._seed_if_due`)."""
FAR_ON_ONE_FEATURE = 4.0
"""Standard deviations of the shop on one feature by which a customer differs from even
the nearest cluster's centre to count as far from it (a new flag, such as a gift plan,
sets a new group apart on one feature, and the more of them come the smaller their
deviation in the shop's units gets)."""
REVIEW_UNPLACED = timedelta(days=7)
"""How soon a customer the model could not place yet (it warms up) is looked at again."""
GONE_NAMES = 64
"""Names of retired clusters remembered (for the changes that move their last members)."""
PRIOR_WEIGHT = 1.0
"""A cluster's centre is its members' mean with its first position counted as this many
members: a cluster that lost every member stays where it was."""
MEMORY = struct.Struct(f"<i{WIDTH}f")
"""A customer's memory: the cluster their row counts in (-1: none yet) and the row, as
float32 (44 bytes), so it can be taken out exactly when it changes."""
EPSILON = 1e-9


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


@dataclass(frozen=True, slots=True)
class GroupFormed:
    """A cluster reached its minimum size: ``segment`` is the id its members carry."""

    cluster_id: int
    segment: str
    name: str
    description: str
    size: int
    at: datetime


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


def traits(
    centre: Mapping[str, float],
    words: int = 3,
    threshold: float = 0.5,
    strong: float = 1.5,
) -> list[str]:
    """Up to ``words`` words for the features where a scaled centre is furthest from the
    shop's average, "very" where it is ``strong`` standard deviations or more.

    >>> traits({"repeat_days": 1.6, "total_spend": 0.8, "span_days": 0.1})
    ['very frequent', 'high spend']
    >>> traits({"repeat_days": -1.2, "repeats_per_month": -1.6})
    ['one-off']
    """
    ranked = sorted(centre.items(), key=lambda item: (-abs(item[1]), item[0]))
    candidates = []
    for feature, z in ranked:
        if abs(z) < threshold:
            break
        above, below = WORDS.get(feature, (None, None))
        word = above if z > 0 else below
        if word is not None:
            very = abs(z) >= strong and feature in LOGGED and word not in PLAIN
            candidates.append((word, f"very {word}" if very else word))
    said = {word for word, _ in candidates}
    unsaid = {quiet for word, quiet in SUPPRESSES.items() if word in said}
    return [shown for word, shown in candidates if word not in unsaid][:words]


class ClusterModel(ModelHooks):
    """Per-shop online clustering with stable ids and readable names (see the module
    docstring). Membership is the customers' own ``cluster`` segment; each customer's row
    and cluster are in their memory, the model keeps sums per cluster and for the shop, so
    its size does not grow with the shop."""

    name: ClassVar[str] = "cluster"
    segment_names: ClassVar[dict[str, Any]] = {"pattern": "^c(0|[1-9][0-9]{0,8})$"}
    """``c<id>``: ids are handed out as clusters are born and never reused."""
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
        self.seed = seed
        self.max_clusters = max_clusters
        self.warmup = warmup
        self.maintain_every = maintain_every
        self.respawn_factor = respawn_factor
        self.evidence = evidence
        self.merge_factor = merge_factor
        self.patience = patience
        self.min_group_customers = min_group_customers
        self.min_group_share = min_group_share
        self.switch_margin = switch_margin
        self.shop = Tally(WIDTH)
        """Every placed or waiting customer's row: the shop's averages and spreads."""
        self.members: dict[int, Tally] = {}
        """Live cluster id -> its members' rows (outliers left out)."""
        self.outliers: dict[int, int] = {}
        """Live cluster id -> its outliers: customers far from every cluster, carried here."""
        self.anchors: dict[int, Row] = {}
        """Live cluster id -> where it was born (see :data:`PRIOR_WEIGHT`)."""
        self.names: dict[int, str] = {}
        self.formed: set[int] = set()
        self.probation: set[int] = set()
        """A cluster started by far customers (:meth:`_novel`) until it forms."""
        self.born: dict[int, int] = {}
        """Live cluster id -> :attr:`learned` when it was born."""
        self.gone: dict[int, str] = {}
        """Retired cluster id -> its last name (the most recent :data:`GONE_NAMES`)."""
        self.next_id = 0
        self.learned = 0
        self.buffer: list[Row] = []
        self.pool: list[Row] = []
        self.typical = FadingMean(fading)
        self.quality_meter = ClusterQuality()
        self.kept_at_events = FadingMean(0.001)
        self.clock: datetime | None = None
        self.started: datetime | None = None
        """When the first row was learned (see :meth:`_seed_if_due`)."""
        self.provisional = False
        """Whether the clusters were seeded from fewer than ``warmup`` rows."""
        self._announcements: list[GroupFormed] = []
        self._pass_wanted = False
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
        return bool(self.members)

    def learn(self, customer: CustomerSnapshot) -> None:
        """Count the customer's current row (taking their previous one out) and decide
        their cluster: after their own event, or when they have none that lives. A review
        of a placed customer brings nothing new (time passing changes no feature)."""
        kept = _kept(customer.memory.get(self.name))
        if customer.review and kept is not None and not self._misplaced(customer, kept):
            if self.ready:
                self.quality_meter.reassigned(True)  # time passed, the customer stays
            else:
                self._seed_if_due(customer.as_of)
            return
        self.clock = customer.as_of
        row = buying_row(customer)
        if kept is not None:
            self._take_out(kept)
        self.shop.add(row)
        self.learned += 1
        if not self.ready or self.provisional:
            self._warm_up(row)
        if not self.ready:
            customer.memory[self.name] = Kept(None, row).packed()
            return
        chosen, counted = self._place(customer, row)
        if counted:
            self.members[chosen].add(row)
        else:
            self.outliers[chosen] += 1
        customer.memory[self.name] = Kept(chosen, row, counted).packed()
        self._latest = (customer.customer_id, customer.as_of, chosen)
        if self.learned % self.maintain_every == 0:
            self._maintain()

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
        return f"c{self._choice(customer, self._distances(self._z(buying_row(customer))))}"

    def label(self, segment: str) -> str | None:
        """The human name of a cluster segment (also of one retired lately)."""
        cluster_id = _cluster_id(segment)
        if cluster_id is None:
            return None
        return self.names.get(cluster_id) or self.gone.get(cluster_id)

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
        if cluster_id in self.members:
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
        needed = self._formed_size()
        for cluster_id, tally in sorted(self.members.items()):
            if cluster_id not in self.formed and tally.count >= needed:
                self.formed.add(cluster_id)
                self._announcements.append(
                    GroupFormed(
                        cluster_id,
                        f"c{cluster_id}",
                        self.names[cluster_id],
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
        wanted, self._pass_wanted = self._pass_wanted, False
        return wanted

    def forget(self, customer: CustomerSnapshot) -> None:
        """Take the erased customer's row out, and the last decision if it was about them."""
        kept = _kept(customer.memory.pop(self.name, None))
        if kept is not None:
            self._take_out(kept)
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
            "clusters": float(len(self.members)),
            "customers": float(self.assigned),
        }

    # ------------------------------------------------------------ views

    @property
    def assigned(self) -> int:
        """Customers placed in one of the live clusters (outliers included)."""
        return sum(tally.count for tally in self.members.values()) + sum(self.outliers.values())

    def describe(self, cluster_id: int) -> str:
        """A live cluster's name and its centre against the shop's averages, in the shop's
        units: ``"frequent · high spend (repeat days 8.0 vs 2.1; ...)"``."""
        centre, average = self._centre(cluster_id), self.shop.mean()
        z = dict(zip(FEATURES, self._z(centre), strict=True))
        ranked = sorted(range(WIDTH), key=lambda n: (-abs(z[FEATURES[n]]), FEATURES[n]))[:3]
        details = "; ".join(
            f"{FEATURES[n].replace('_', ' ')} {_original(FEATURES[n], centre[n]):.1f} "
            f"vs {_original(FEATURES[n], average[n]):.1f}"
            for n in ranked
        )
        return f"{self.names[cluster_id]} ({details})"

    def clusters(self) -> list[dict[str, Any]]:
        """Every live cluster: segment, name, members, description."""
        return [
            {
                "cluster_id": cluster_id,
                "segment": f"c{cluster_id}",
                "name": self.names[cluster_id],
                "size": tally.count + self.outliers[cluster_id],
                "description": self.describe(cluster_id),
            }
            for cluster_id, tally in sorted(self.members.items())
        ]

    # ------------------------------------------------------------ learning

    def _misplaced(self, customer: CustomerSnapshot, kept: Kept) -> bool:
        """Whether a review must place the customer: the model is ready and they carry
        no live cluster, or not the one their memory names, or they are an outlier (a new
        cluster near them may have started since)."""
        if not self.ready:
            return False
        carried = _cluster_id(customer.segments.get(self.name))
        return carried not in self.members or carried != kept.cluster_id or not kept.counted

    def _take_out(self, kept: Kept) -> None:
        self.shop.add(kept.row, -1)
        if kept.cluster_id not in self.members:
            return
        if kept.counted:
            self.members[kept.cluster_id].add(kept.row, -1)
        else:
            self.outliers[kept.cluster_id] -= 1

    def _place(self, customer: CustomerSnapshot, row: Row) -> tuple[int, bool]:
        """The customer's cluster: their own while it is not clearly farther than the
        nearest. A customer far from every cluster is an outlier of the nearest (carried,
        not counted in its mean, so a few of them do not drag it away) until their own
        events bring them near one, or a new group forms with them (:meth:`_novel`).
        Returns the cluster and whether the row counts in its mean."""
        z = self._z(row)
        distances = self._distances(z)
        nearest = min(distances, key=distances.__getitem__)
        gap = math.sqrt(distances[nearest])
        limit = self.respawn_factor * self.typical.value
        centre = self._z(self._centre(nearest))
        apart = max(abs(a - b) for a, b in zip(z, centre, strict=True))
        far = self._settled() and (gap > limit or apart > FAR_ON_ONE_FEATURE)
        if not customer.review:  # a review sees a row already seen
            self.typical.update(min(gap, limit) if self._settled() else gap)
            if far and (born := self._novel(row)) is not None:
                distances = self._distances(z)
                nearest, far = born, False
        carried = _cluster_id(customer.segments.get(self.name))
        if far and customer.review and carried in self.members:
            chosen = carried  # still far from every cluster: an outlier stays where it is
        else:
            chosen = nearest if far else self._choice(customer, distances)
        self.quality_meter.update(chosen, distances)
        if customer.review and carried is not None:
            self.quality_meter.reassigned(carried == chosen)  # off a retired cluster, mostly
        elif not customer.review and carried in self.members:
            self.kept_at_events.update(float(carried == chosen))
        return chosen, not far

    def _warm_up(self, row: Row) -> None:
        """Keep the first ``warmup`` rows: the clusters are seeded from them
        (:meth:`_seed_if_due`)."""
        if not self.buffer:
            self.started = self.clock
        self.buffer.append(row)
        self._seed_if_due(self.clock)

    def _seed_if_due(self, now: datetime | None) -> None:
        """Seed the clusters from the first rows once there are ``warmup`` of them. A
        small shop does not wait for them: once it has at least twice
        ``min_group_customers`` rows but gathers fewer than half ``warmup`` per
        :data:`SMALL_SHOP`, it gets provisional clusters from what it has (one per
        ``min_group_customers`` rows), seeded again (the provisional ones retired) if it
        reaches ``warmup`` rows. Every seeding asks for a pass that places every customer."""
        rows = len(self.buffer)
        if self.ready and (not self.provisional or rows < self.warmup):
            return
        if rows < self.warmup and not self._slow(rows, now):
            return
        for cluster_id in sorted(self.members):
            self._retire(cluster_id, last=True)
        scale = self._scale()
        scaled = [self._z(row, scale) for row in self.buffer]
        per_cluster = self.evidence if rows >= self.warmup else self.min_group_customers
        wanted = max(1, rows // per_cluster)
        wanted = min(wanted, self.max_clusters)
        centres, _ = groups(scaled, wanted, self.evidence, random.Random(self.seed))
        for centre in centres:
            self._birth(self._unscaled(centre))
        self.provisional = rows < self.warmup
        if not self.provisional:
            self.buffer = []
        self._pass_wanted = True

    def _slow(self, rows: int, now: datetime | None) -> bool:
        """Whether a shop with ``rows`` rows so far is small: at least twice
        ``min_group_customers`` rows, gathered at under half ``warmup`` per :data:`SMALL_SHOP`."""
        if now is None or self.started is None or rows < 2 * self.min_group_customers:
            return False
        waited = (now - self.started) / SMALL_SHOP
        return waited >= 1.0 and rows < self.warmup / 2 * waited

    def _novel(self, row: Row) -> int | None:
        """Customers far from every cluster wait in a pool (their rows, the latest
        ``4 x evidence``); once ``evidence`` of them lie close together they are a new
        group: it starts on probation (see :meth:`_end_probation`) in a free place, or one
        freed by merging the closest two clusters if they came too close, and a pass moves
        the outliers near it. Returns the new cluster's id."""
        self.pool = [*self.pool[-(4 * self.evidence - 1) :], row]
        scale = self._scale()
        z = self._z(row, scale)
        radius = self.typical.value**2
        close = [p for p in self.pool if squared_distance(self._z(p, scale), z) <= radius]
        if len(close) < self.evidence or not self._room():
            return None
        self.pool = [p for p in self.pool if p not in close]
        born = self._birth(tuple(sum(column) / len(close) for column in zip(*close, strict=True)))
        self.probation.add(born)
        self._pass_wanted = True
        return born

    def _room(self) -> bool:
        """Whether a new group fits: a free place, or one freed by merging the closest two
        clusters if they came too close, or by retiring the smallest cluster not on
        probation if it has fewer than ``min_group_customers`` members (no group the shop
        would be told of)."""
        if len(self.members) < self.max_clusters:
            return True
        retired = self._closest_pair()
        settled = [c for c in self.members if c not in self.probation]  # give new ones time
        if retired is None and settled:
            smallest = min(settled, key=lambda c: (self.members[c].count, c))
            if self.members[smallest].count < self.min_group_customers:
                retired = smallest
        if retired is not None:
            self._retire(retired)
        return retired is not None

    def _maintain(self) -> None:
        """Every ``maintain_every`` learned rows: retire formed clusters that shrank below
        half their size, and a cluster on probation that did not form within ``patience``
        rows; merge clusters that came too close; refresh names."""
        needed = self._formed_size()
        for cluster_id in sorted(self.members):
            if cluster_id in self.formed:
                self.probation.discard(cluster_id)
                if 2 * self.members[cluster_id].count < needed:
                    self._retire(cluster_id)
            elif self.learned - self.born.get(cluster_id, 0) >= self.patience:
                self._end_probation(cluster_id)
        pair = self._closest_pair()
        if pair is not None:
            self._retire(pair)
        self._refresh_names()

    def _end_probation(self, cluster_id: int) -> None:
        """A cluster on probation for ``patience`` rows stays if it gathered
        ``min_group_customers`` members, else it is retired."""
        if cluster_id not in self.probation:
            return
        self.probation.discard(cluster_id)
        if self.members[cluster_id].count < self.min_group_customers:
            self._retire(cluster_id)

    def _closest_pair(self) -> int | None:
        """The smaller of the two closest live clusters, if they are closer than
        ``merge_factor`` x the typical distance of a customer to their centre."""
        ids = sorted(self.members)
        if len(ids) < 2 or not self._settled():
            return None
        scale = self._scale()
        scaled = {c: self._z(self._centre(c), scale) for c in ids}
        gap, a, b = min(
            (squared_distance(scaled[a], scaled[b]), a, b)
            for n, a in enumerate(ids)
            for b in ids[n + 1 :]
        )
        if math.sqrt(gap) >= self.merge_factor * self.typical.value:
            return None
        return min((a, b), key=lambda c: (self.members[c].count, c))

    def _birth(self, anchor: Row) -> int:
        cluster_id, self.next_id = self.next_id, self.next_id + 1
        self.members[cluster_id] = Tally(WIDTH)
        self.outliers[cluster_id] = 0
        self.anchors[cluster_id] = anchor
        self.born[cluster_id] = self.learned
        self.names[cluster_id] = self._unique_name(cluster_id)
        return cluster_id

    def _retire(self, cluster_id: int, last: bool = False) -> None:
        """A cluster stops; its members are moved by a pass (:meth:`drain_pass_request`).
        The last one stops only when new ones are seeded (``last``)."""
        if len(self.members) <= 1 and not last:
            return
        self.gone[cluster_id] = self.names.pop(cluster_id)
        while len(self.gone) > GONE_NAMES:
            del self.gone[next(iter(self.gone))]
        self._pass_wanted |= (
            self.members.pop(cluster_id).count + self.outliers.pop(cluster_id, 0) > 0
        )
        del self.anchors[cluster_id], self.born[cluster_id]
        self.formed.discard(cluster_id)
        self.probation.discard(cluster_id)

    # ------------------------------------------------------------ names

    def _words(
        self, cluster_id: int, threshold: float, words: int, strong: float = 1.5
    ) -> list[str]:
        centre = dict(zip(FEATURES, self._z(self._centre(cluster_id)), strict=True))
        return traits(centre, words, threshold, strong)

    def _unique_name(self, cluster_id: int) -> str:
        """Words for the cluster's centre that no other live cluster is called by (the
        same words in another order count as the same name)."""
        taken = {
            frozenset(NUMBERED.sub("", n).split(" · "))
            for c, n in self.names.items()
            if c != cluster_id
        }
        name = "typical"
        for words in (3, 4):
            found = self._words(cluster_id, 0.5, words)
            name = " · ".join(found) or "typical"
            if frozenset(name.split(" · ")) not in taken:
                return name
        used = {n for c, n in self.names.items() if c != cluster_id}
        number = 2
        while f"{name} {number}" in used:
            number += 1
        return f"{name} {number}"

    def _refresh_names(self) -> None:
        """Rename a cluster only once its name no longer describes its centre (hysteresis:
        a name is given at :data:`STRONG` and 0.5 standard deviations, and kept while its
        words hold at 1.0 and 0.3)."""
        for cluster_id in sorted(self.members):
            words = NUMBERED.sub("", self.names[cluster_id]).split(" · ")
            if words == ["typical"]:
                stale = bool(self._words(cluster_id, 0.6, 3))
            else:
                loose = self._words(cluster_id, 0.3, len(WORDS), strong=1.0)
                stale = not set(_base(w) for w in words) <= set(_base(w) for w in loose)
                stale |= any(w.startswith("very ") and w not in loose for w in words)
            if stale:
                self.names[cluster_id] = self._unique_name(cluster_id)

    # ------------------------------------------------------------ geometry

    def _choice(self, customer: CustomerSnapshot, distances: Mapping[int, float]) -> int:
        """The customer's live cluster while its centre is at most ``switch_margin``
        farther than the nearest one (a move needs a clear margin), else the nearest."""
        nearest = min(distances, key=distances.__getitem__)
        own = _cluster_id(customer.segments.get(self.name))
        margin = (1 + self.switch_margin) ** 2
        if own is not None and own in distances and distances[own] <= margin * distances[nearest]:
            return own
        return nearest

    def _settled(self) -> bool:
        """Whether the typical distance of a customer to their cluster rests on ``warmup``
        placements: what "far" and "too close" are judged by."""
        return self.typical.count >= self.warmup

    def _live(self, segment: str | None) -> bool:
        return _cluster_id(segment) in self.members

    def _formed_size(self) -> int:
        return max(self.min_group_customers, round(self.min_group_share * self.assigned))

    def _centre(self, cluster_id: int) -> Row:
        """The members' mean, with the cluster's birth place as :data:`PRIOR_WEIGHT` members."""
        tally, anchor = self.members[cluster_id], self.anchors[cluster_id]
        weight = tally.count + PRIOR_WEIGHT
        return tuple(
            (total + PRIOR_WEIGHT * a) / weight for total, a in zip(tally.sums, anchor, strict=True)
        )

    def _distances(self, z: Row) -> dict[int, float]:
        scale = self._scale()
        return {c: squared_distance(z, self._z(self._centre(c), scale)) for c in self.members}

    def _scale(self) -> tuple[Row, Row]:
        """The shop's averages and 1 / spreads (0 where there is no spread)."""
        spread = self.shop.spread()
        return self.shop.mean(), tuple(0.0 if s <= EPSILON else 1.0 / s for s in spread)

    def _z(self, row: Row, scale: tuple[Row, Row] | None = None) -> Row:
        """``row`` in the shop's standard deviations from its averages (0 where no spread)."""
        mean, inverse = scale or self._scale()
        return tuple((value - m) * i for value, m, i in zip(row, mean, inverse, strict=True))

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint. One of the model before issue 25 (online k-means over
        time-drifting features, its ids matched to moving centres) becomes a fresh model
        that learns again: its ids continue after the old ones, so no old id comes back
        with another meaning, and once it has clusters its pass moves every customer off
        the old ids (until then they keep them)."""
        if "ids" not in state:
            self.__dict__.update(state)
            return
        self.__init__(  # type: ignore[misc]
            warmup=state["warmup"],
            min_group_customers=state["min_group_customers"],
            switch_margin=state["switch_margin"],
        )
        self.next_id = getattr(state["ids"], "next_id", 0)

    def _unscaled(self, z: Row) -> Row:
        mean, spread = self.shop.mean(), self.shop.spread()
        return tuple(m + value * s for value, m, s in zip(z, mean, spread, strict=True))


class StableIds:
    """What the model before issue 25 kept its ids in; its checkpoints still unpickle (see
    :meth:`ClusterModel.__setstate__`): only ``next_id`` is read."""

    next_id: int = 0


def _kept(memory: Any) -> Kept | None:
    """What a customer's memory holds (None: nothing, or not this version's layout)."""
    if not isinstance(memory, bytes) or len(memory) != MEMORY.size:
        return None
    code, *row = MEMORY.unpack(memory)
    if code >= -1:
        return Kept(None if code < 0 else code, tuple(row))
    return Kept(-2 - code, tuple(row), counted=False)


def _base(word: str) -> str:
    return word.removeprefix("very ")


def _original(feature: str, value: float) -> float:
    """A feature's value in the shop's units (days, money, counts, shares)."""
    return max(0.0, math.expm1(value) if feature in LOGGED else value)


def _cluster_id(segment: str | None) -> int | None:
    """The id of a ``c<id>`` segment (None for anything else)."""
    if segment is None or not segment.startswith("c") or not segment[1:].isdigit():
        return None
    return int(segment[1:])


MODEL = ClusterModel
