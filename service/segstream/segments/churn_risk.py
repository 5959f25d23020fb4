"""Churn risk: the probability that a buyer (or a paying subscriber) leaves within
``horizon_days``: places no order (renewals included), or asks to cancel, learned online
from the shop's own stream.

A calibrated logistic layer (:class:`~segstream.learning.logit.OnlineLogit`) over
:mod:`segstream.learning.retention`'s features, the first of which is the shop's BG/NBD
probability, so a model that has learned nothing answers BG/NBD's; labels are the stream's own
snapshots once their horizon has passed (:mod:`segstream.learning.labels`), each scored before
it is learned (progressive validation); small shops lean on their partition's shared prior.
Segments are risk bands (``low``, ``medium``, ``high``). Why, and the figures behind the
constants: ``docs/design/churn-risk.md``.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any, ClassVar, Self

from segstream.domain.features import CustomerSnapshot
from segstream.learning import retention
from segstream.learning.labels import DAY_SECONDS, Example, Labeller, LapseRule, Pending
from segstream.learning.logit import OnlineLogit
from segstream.learning.quality import ChurnQuality, DayFading
from segstream.learning.retention import FEATURES, HORIZONS, PRIOR_MEAN, features
from segstream.segments.base import ModelHooks, next_on_ladder
from segstream.settings import Settings

BANDS = ("low", "medium", "high")
MEMORY_EXAMPLES = 20_000
"""Settled windows the shop's model remembers, counted in whole horizons (older ones
fade): with overlapping windows, horizon / SNAPSHOT_EVERY_DAYS examples make one."""
PRIOR_PRECISION = 0.1
"""Pull of the weights towards BG/NBD's probability (less than one example: the shop's
labels decide; at 1.0 the simulator's cancelled subscribers, who never come back, kept a
10 % chance of ordering)."""
PLAN_FEATURES = (
    "subscribed",
    "cancelled",
    "renewal_due",
    "renewal_share",
    "plan_age",
    "plan_price",
)
PLAN_PRIOR_PRECISION = 0.01
"""... and of the plan's weights, which BG/NBD knows nothing of: weaker, so that the few
windows of subscribers a small shop has settled move them (at 0.1, the simulator's
subscribers whose renewals stretched out were given 0.90 of ordering within 90 days where
0.98 did; at 0.03 for every weight, CDNOW's forecasts drifted 9-11 % high). Always 0 for a
shop without plans: its figures do not depend on it."""
PRECISIONS = tuple(
    PLAN_PRIOR_PRECISION if name in PLAN_FEATURES else PRIOR_PRECISION for name in FEATURES
)
MIN_EXPECTED = 20.0
"""Expected orders the settled windows must add up to before ``orders_came`` says anything."""
SNAPSHOT_EVERY_DAYS = 10
"""Days between a customer's snapshots: the windows overlap, so labels come nine times as
soon as with one per horizon (``docs/design/churn-risk.md``)."""
QUALITY_TAU_DAYS = 15.0
"""Days over which the progressive validation fades (a prediction made 15 days before the
latest settled one counts 1/e as much), so the figures describe the model as it is now;
why 15 and not 30: ``docs/design/churn-risk.md``."""
ORDERS_TAU_DAYS = 30.0
"""Days over which the check of the expected orders (``orders_came``) fades."""


class ChurnRiskModel(ModelHooks):
    """Per-shop online churn probability with delayed, leak-free labels (module docstring)."""

    name: ClassVar[str] = "churn_risk"
    summary: ClassVar[str] = (
        "band of the learned probability of leaving (no order, renewals included, or a "
        "cancellation asked for) within 90 days (SEGSTREAM_CHURN_HORIZON_DAYS)"
    )
    segment_description: ClassVar[str] = (
        "Band of the predicted probability of leaving within the horizon (no order, "
        "renewals included, or a cancellation asked for) (90 days by default): low below "
        "0.2, medium below 0.5, high from 0.5 (configurable)."
    )
    segment_names: ClassVar[dict[str, Any]] = {"enum": list(BANDS)}
    uses_partition_prior: ClassVar[bool] = True

    def __init__(
        self,
        horizon_days: float = 90.0,
        lapse_multiple: float = 3.0,
        lapse_days: float = 90.0,
        max_pending: int = 20_000,
        bands: tuple[float, float] = (0.2, 0.5),
        band_margin: float = 0.02,
        min_dwell_days: float = 30.0,
        prior_weight_examples: int = 1000,
    ) -> None:
        self.horizon_days = horizon_days
        self.lapse = LapseRule(lapse_multiple, lapse_days)
        every = max(1, min(SNAPSHOT_EVERY_DAYS, round(horizon_days)))
        # snapshots that may wait per customer: the windows that overlap, and one more
        # for when the review that settles the oldest comes late
        per_customer = math.ceil(horizon_days / every) + 1
        self.labels = Labeller(horizon_days, every, per_customer, max_pending)
        self.bands = bands
        self.band_margin = band_margin
        self.min_dwell_days = min_dwell_days
        self.prior_weight_examples = prior_weight_examples
        self.overlap = horizon_days / every
        """Windows that overlap any one (each example counts 1 / overlap)."""
        self.classifier = OnlineLogit(PRIOR_MEAN, PRECISIONS, MEMORY_EXAMPLES * self.overlap)
        self.labelled = 0
        self.quality_meter = ChurnQuality(QUALITY_TAU_DAYS)
        self.orders = DayFading(2, ORDERS_TAU_DAYS)
        """Orders expected and orders that came in the settled windows (fading)."""
        self._prior: ChurnRiskModel | None = None

    @classmethod
    def create(cls, settings: Settings, seed: int) -> Self:
        """A fresh shop model, configured by :meth:`from_settings` (no randomness: seed unused)."""
        return cls.from_settings(settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """A model configured by ``settings``."""
        return cls(
            horizon_days=settings.churn_horizon_days,
            lapse_multiple=settings.churn_lapse_multiple,
            lapse_days=float(settings.lifecycle_churned_days),
            max_pending=settings.churn_max_pending,
            bands=(settings.churn_band_medium, settings.churn_band_high),
            band_margin=settings.churn_band_margin,
            min_dwell_days=settings.churn_min_dwell_days,
            prior_weight_examples=settings.churn_prior_weight_examples,
        )

    def attach_prior(self, prior: ChurnRiskModel) -> None:
        """Blend with ``prior`` (shared by the partition's shops) and feed it settled examples.

        Not pickled with this model: attach again after restoring a checkpoint.
        """
        self._prior = prior

    @property
    def prior(self) -> ChurnRiskModel | None:
        """The attached prior, if any."""
        return self._prior

    # ------------------------------------------------------------ learning

    def learn(self, customer: CustomerSnapshot) -> None:
        """Settle the customer's snapshots whose horizon has passed, then keep one if a grid
        day of theirs has come (the snapshots are kept in the customer's memory)."""
        if self._nothing_to_do(customer.memory.get(self.name), customer):
            return  # most looks: the memory stays as it is, neither decoded nor encoded
        rows = [row for row in customer.memory.get(self.name, []) if _current(row)]
        done = [row for row in rows if self.labels.settles(Pending.taken_at(row), customer)]
        waiting = rows[len(done) :]  # kept as they are: only the settled ones are decoded
        settled, _ = self.labels.settle([Pending.from_memory(row) for row in done], customer)
        for example in settled:
            self.learn_example(example)
        latest = Pending.taken_at(waiting[-1]) if waiting else None
        if self.labels.due_after(latest, len(waiting), customer):
            x = self.features(customer)
            predictions: tuple[float, ...] = (self.probability(x),)
            if self._prior is not None:
                predictions += (self._prior.probability(x),)
            expected = retention.expected_orders(
                customer, self.horizon_days, predictions[0], self.horizon_days
            )
            held = self.labels.hold(
                customer, x, predictions, math.nan if expected is None else expected
            )
            waiting.append(held.to_memory())
        if waiting:
            customer.memory[self.name] = waiting
        else:
            customer.memory.pop(self.name, None)

    def _nothing_to_do(self, kept: list[list[Any]] | None, customer: CustomerSnapshot) -> bool:
        """Whether the customer's snapshots (all of this model's format) are all waiting and
        no new one is due: read from their times alone. A refused snapshot is counted here
        (:meth:`Labeller.due_after`), and then not asked for again."""
        if not kept or not all(_current(row) for row in kept):
            return False
        oldest, latest = Pending.taken_at(kept[0]), Pending.taken_at(kept[-1])
        if self.labels.settles(oldest, customer):
            return False
        return not self.labels.due_after(latest, len(kept), customer)

    def pending(self, customer: CustomerSnapshot) -> list[Pending]:
        """The customer's snapshots still waiting for their label, oldest first (a customer
        memory of the model before issue 25, a different row, is dropped: see
        :meth:`forget`)."""
        kept = customer.memory.get(self.name, [])
        return [Pending.from_memory(row) for row in kept if _current(row)]

    def next_review(self, customer: CustomerSnapshot) -> datetime | None:
        """The quiet-days ladder (the risk rises with silence), the customer's next grid
        day (a snapshot), and the day the oldest waiting snapshot's horizon passes."""
        moments = [
            next_on_ladder(customer),
            self.labels.next_grid(customer),
            self.labels.next_settlement(customer.memory.get(self.name)),
        ]
        return min((m for m in moments if m is not None), default=None)

    def learn_example(self, example: Example) -> None:
        """Score the prediction made at the time (progressive validation), then learn."""
        day = example.as_of.timestamp() / DAY_SECONDS
        self.quality_meter.update(example.churned, example.predictions[0], day)
        if math.isfinite(example.expected) and example.expected > 0.0:
            self.orders.add(day, (example.expected, float(example.orders)))
        self.classifier.learn(example.features, example.churned, 1.0 / self.overlap)
        self.labelled += 1
        if self._prior is not None and len(example.predictions) > 1:
            forwarded = Example(
                example.features,
                example.predictions[1:],
                example.churned,
                example.as_of,
                example.orders,
                example.expected,
            )
            self._prior.learn_example(forwarded)

    # ------------------------------------------------------------ answering

    def assign(self, customer: CustomerSnapshot) -> str | None:
        """Risk band of a buyer; None before a first purchase."""
        probability = self.risk(customer)
        if probability is None:
            return None
        return self.band(probability, customer.segments.get(self.name))

    def band(self, probability: float, previous: str | None) -> str:
        """The band of ``probability``; a customer in band ``previous`` leaves it only once
        the probability is ``band_margin`` past its edge (hysteresis).

        >>> model = ChurnRiskModel(bands=(0.2, 0.5), band_margin=0.05)
        >>> model.band(0.22, "low"), model.band(0.26, "low"), model.band(0.16, "medium")
        ('low', 'medium', 'medium')
        """
        low, high = self.bands

        def index(p: float) -> int:
            return int(p >= low) + int(p >= high)

        found = index(probability)
        if previous not in BANDS or BANDS[found] == previous:
            return BANDS[found]
        before, margin = BANDS.index(previous), self.band_margin
        if found > before:
            return BANDS[max(before, index(probability - margin))]
        return BANDS[min(before, index(probability + margin))]

    def min_dwell(self) -> timedelta:
        """Days in a band before time alone moves a customer (``churn_min_dwell_days``)."""
        return timedelta(days=self.min_dwell_days)

    def explain(self, customer: CustomerSnapshot) -> dict[str, Any] | None:
        """The probability behind the band and what it is of (for the query API)."""
        return {"probability": self.risk(customer), "horizon_days": self.horizon_days}

    def change_details(self, customer: CustomerSnapshot) -> dict[str, float | None]:
        """The churn probability and the expected orders per horizon when a band changes
        (published on the change, see ``schemas/v1/segment_changed.json``)."""
        found: dict[str, float | None] = {"churn_probability": self.risk(customer)}
        for days in HORIZONS:
            found[f"expected_orders_{days}d"] = self.expected_orders(customer, days)
        return found

    def expected_orders(self, customer: CustomerSnapshot, days: int) -> float | None:
        """A buyer's expected orders (purchase days) in the next ``days`` days: BG/NBD's
        scaled to this model's chance of ordering within its horizon, one comeback at most
        for a subscriber whose renewals stopped
        (:func:`segstream.learning.retention.expected_orders`); None before a first purchase
        or a lifetime fit."""
        risk = self.risk(customer)
        if risk is None:
            return None
        return retention.expected_orders(customer, days, risk, self.horizon_days)

    def orders_came(self) -> float:
        """Orders that came / orders expected over the settled windows (fading), a check
        of the expected orders; NaN until MIN_EXPECTED orders were expected."""
        expected, came = self.orders.sums
        return came / expected if expected >= MIN_EXPECTED else math.nan

    def risk(self, customer: CustomerSnapshot) -> float | None:
        """P(leaving within the horizon) of a buyer or paying subscriber; None for others."""
        if not customer.is_customer:
            return None
        return self.probability(self.features(customer))

    def features(self, customer: CustomerSnapshot) -> tuple[float, ...]:
        """The customer's features (:mod:`segstream.learning.retention`)."""
        return features(customer, self.horizon_days, self.lapse)

    def probability(self, x: tuple[float, ...]) -> float:
        """The shop's learned probability blended with the prior's by experience."""
        own = self.classifier.probability(x)
        if self._prior is None:
            return own
        weight = self.weight()
        if weight >= 1.0:
            return own
        return weight * own + (1.0 - weight) * self._prior.probability(x)

    def weight(self) -> float:
        """The shop's own model's share against the prior: its settled windows (labelled
        snapshots over the overlap) over ``prior_weight_examples``, at most 1."""
        return min(1.0, self.labelled / self.overlap / self.prior_weight_examples)

    def quality(self) -> dict[str, float]:
        """Progressive-validation ``roc_auc``, ``log_loss``, ``brier`` (positive: churned);
        ``labelled``, ``positives``, ``pending`` and ``skipped`` snapshot counts, the
        ``sampled`` share of customers, the shop's ``weight`` against the prior,
        ``horizon_days``, and ``orders_came``: the orders that came in the settled windows
        over those expected then (fading like the rest)."""
        return {
            **self.quality_meter.as_dict(),
            "pending": float(self.labels.pending_count),
            "skipped": float(self.labels.skipped),
            "sampled": self.labels.share,
            "weight": self.weight(),
            "horizon_days": float(self.horizon_days),
            "orders_came": self.orders_came(),
        }

    def forget(self, customer: CustomerSnapshot) -> None:
        """The erased customer's waiting snapshots no longer count against the cap."""
        kept = customer.memory.get(self.name, [])
        self.labels.pending_count -= sum(1 for row in kept if _current(row))

    def __getstate__(self) -> dict[str, Any]:
        """Everything but the prior, which is checkpointed apart and attached again."""
        state = dict(self.__dict__)
        state["_prior"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint (no prior attached). A checkpoint of the model before issue
        25 (river's SGD logistic regression on another label) cannot be continued: it is
        refused, and the pipeline starts the model afresh (``Checkpoints.load`` logs
        ``checkpoint_unreadable``); it relearns from the stream, BG/NBD's probability
        standing in meanwhile."""
        if not isinstance(state.get("classifier"), OnlineLogit):
            raise TypeError("a churn_risk checkpoint from before issue 25: relearning")
        self.__dict__.update(state)
        self.quality_meter.retime(QUALITY_TAU_DAYS)


def _current(row: list[Any]) -> bool:
    """Whether a kept row is of this model's format (rows of the model before issue 25
    have another size, and are dropped)."""
    return Pending.fits(row, len(PRIOR_MEAN))


MODEL = ChurnRiskModel
