"""Names an owner can read for a shop's learned segments (:mod:`segstream.segments.cluster`):
words for the features where a cluster's centre stands out from the shop's average, unique
among the live clusters, renamed only once they no longer describe the centre, and
remembered a while after the cluster retired (the changes that move its last members
still name it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from segstream.segments.cluster_space import FEATURES, LOGGED, WIDTH, ClusterSpace, original

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
GONE_NAMES = 64
"""Names of retired clusters remembered (for the changes that move their last members)."""


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


class ClusterNames:
    """The name of each live cluster, and the last names of the latest retired ones."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        """Live cluster id -> its name."""
        self.gone: dict[int, str] = {}
        """Retired cluster id -> its last name (the most recent :data:`GONE_NAMES`)."""

    def label(self, cluster_id: int) -> str | None:
        """The name of a live cluster, or of one retired lately."""
        return self.names.get(cluster_id) or self.gone.get(cluster_id)

    def name(self, space: ClusterSpace, cluster_id: int) -> None:
        """Name a cluster just born in ``space``."""
        self.names[cluster_id] = self._unique(space, cluster_id)

    def retire(self, cluster_id: int) -> None:
        """The cluster stopped: its name is remembered among the latest retired ones."""
        self.gone[cluster_id] = self.names.pop(cluster_id)
        while len(self.gone) > GONE_NAMES:
            del self.gone[next(iter(self.gone))]

    def refresh(self, space: ClusterSpace) -> None:
        """Rename a cluster only once its name no longer describes its centre (hysteresis:
        a name is given at 1.5 ("very") and 0.5 standard deviations, and kept while its
        words hold at 1.0 and 0.3)."""
        for cluster_id in sorted(space.members):
            words = NUMBERED.sub("", self.names[cluster_id]).split(" · ")
            if words == ["typical"]:
                stale = bool(_words(space, cluster_id, 0.6, 3))
            else:
                loose = _words(space, cluster_id, 0.3, len(WORDS), strong=1.0)
                stale = not set(_base(w) for w in words) <= set(_base(w) for w in loose)
                stale |= any(w.startswith("very ") and w not in loose for w in words)
            if stale:
                self.names[cluster_id] = self._unique(space, cluster_id)

    def describe(self, space: ClusterSpace, cluster_id: int) -> str:
        """A live cluster's name and its centre against the shop's averages, in the shop's
        units: ``"frequent · high spend (repeat days 8.0 vs 2.1; ...)"``."""
        centre, average = space.centre(cluster_id), space.shop.mean()
        z = dict(zip(FEATURES, space.z(centre), strict=True))
        ranked = sorted(range(WIDTH), key=lambda n: (-abs(z[FEATURES[n]]), FEATURES[n]))[:3]
        details = "; ".join(
            f"{FEATURES[n].replace('_', ' ')} {original(FEATURES[n], centre[n]):.1f} "
            f"vs {original(FEATURES[n], average[n]):.1f}"
            for n in ranked
        )
        return f"{self.names[cluster_id]} ({details})"

    def _unique(self, space: ClusterSpace, cluster_id: int) -> str:
        """Words for the cluster's centre that no other live cluster is called by (the
        same words in another order count as the same name)."""
        taken = {
            frozenset(NUMBERED.sub("", n).split(" · "))
            for c, n in self.names.items()
            if c != cluster_id
        }
        name = "typical"
        for words in (3, 4):
            found = _words(space, cluster_id, 0.5, words)
            name = " · ".join(found) or "typical"
            if frozenset(name.split(" · ")) not in taken:
                return name
        used = {n for c, n in self.names.items() if c != cluster_id}
        number = 2
        while f"{name} {number}" in used:
            number += 1
        return f"{name} {number}"


def _words(
    space: ClusterSpace, cluster_id: int, threshold: float, words: int, strong: float = 1.5
) -> list[str]:
    return traits(space.scaled_centre(cluster_id), words, threshold, strong)


def _base(word: str) -> str:
    return word.removeprefix("very ")
