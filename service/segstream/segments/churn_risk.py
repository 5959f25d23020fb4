"""Churn risk: the probability that a customer cancels or lapses within a horizon, learned online.

Per shop, an online logistic regression (river: ``StandardScaler | LogisticRegression``)
over the :func:`~segstream.learning.vectors.behaviour_vector`. Labels come from the
stream itself (:mod:`segstream.learning.labels`): a snapshot of the customer's
features and of the probability published then is kept at most every
``snapshot_every_days``; a cancellation or lapse within ``horizon_days`` labels it
churned, surviving the horizon labels it not churned. Each settled snapshot is
first scored with the probability published when it was taken (progressive
validation, :class:`~segstream.learning.quality.ChurnQuality`), then learned.

Small shops borrow strength: the published probability is
``w * shop + (1 - w) * fallback`` with ``w = min(1, labelled / prior_weight_examples)``.
The fallback is the prior shared by all shops of a Kafka partition
(:meth:`ChurnRiskModel.attach_prior`, itself a ChurnRiskModel that learns every
shop's settled examples), or, without one, a cold-start rule: the share of the way
to a lapse the customer's silence has gone.

Segments are risk bands: ``low`` below 0.2, ``medium`` below 0.5, ``high`` above
(configurable). A customer who already cancelled or lapsed is out of scope (None):
they are no longer at risk of leaving, they have left (see the lifecycle model).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar, Self

from river import linear_model as river_linear_model
from river import optim as river_optim
from river import preprocessing as river_preprocessing

from segstream.core.features import CustomerSnapshot
from segstream.learning.labels import Example, Labeller, LapseRule, Pending
from segstream.learning.quality import ChurnQuality
from segstream.learning.vectors import Vector, behaviour_vector
from segstream.segments.base import ModelHooks, next_on_ladder
from segstream.settings import Settings

linear_model: Any = river_linear_model  # river has no type hints
optim: Any = river_optim
preprocessing: Any = river_preprocessing

BANDS = ("low", "medium", "high")


class ChurnRiskModel(ModelHooks):
    """Per-shop online churn classifier with delayed, leak-free labels (see module docstring)."""

    name: ClassVar[str] = "churn_risk"
    segment_names: ClassVar[dict[str, Any]] = {"enum": list(BANDS)}
    uses_partition_prior: ClassVar[bool] = True

    def __init__(
        self,
        horizon_days: float = 60.0,
        lapse_multiple: float = 3.0,
        lapse_days: float = 90.0,
        snapshot_every_days: float = 7.0,
        per_customer: int = 8,
        max_pending: int = 20_000,
        bands: tuple[float, float] = (0.2, 0.5),
        band_margin: float = 0.02,
        min_dwell_days: float = 30.0,
        prior_weight_examples: int = 200,
        learning_rate: float = 0.05,
        l2: float = 0.001,
    ) -> None:
        self.lapse = LapseRule(lapse_multiple, lapse_days)
        self.labels = Labeller(horizon_days, snapshot_every_days, per_customer, max_pending)
        self.bands = bands
        self.band_margin = band_margin
        self.min_dwell_days = min_dwell_days
        self.prior_weight_examples = prior_weight_examples
        self.classifier = preprocessing.StandardScaler() | linear_model.LogisticRegression(
            optimizer=optim.SGD(learning_rate), l2=l2
        )
        self.labelled = 0
        self.quality_meter = ChurnQuality()
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

    def learn(self, customer: CustomerSnapshot) -> None:
        """Settle the customer's pending snapshots the stream now answers, then maybe keep one
        (the snapshots are kept in the customer's memory)."""
        churned_at = self.lapse.churned_at(customer)
        settled, waiting = self.labels.settle(self.pending(customer), customer.as_of, churned_at)
        for example in settled:
            self.learn_example(example)
        if churned_at is None and self.labels.due(waiting, customer.as_of):
            x = behaviour_vector(customer)
            cold = self.cold_start(customer)
            predictions: tuple[float, ...] = (self.probability(x, cold),)
            if self._prior is not None:
                predictions += (self._prior.probability(x, cold),)
            waiting.append(self.labels.hold(customer.as_of, x, predictions))
        if waiting:
            customer.memory[self.name] = [pending.to_memory() for pending in waiting]
        else:
            customer.memory.pop(self.name, None)

    def pending(self, customer: CustomerSnapshot) -> list[Pending]:
        """The customer's snapshots still waiting for their label, oldest first."""
        return [Pending.from_memory(kept) for kept in customer.memory.get(self.name, [])]

    def next_review(self, customer: CustomerSnapshot) -> datetime | None:
        """The quiet-days ladder (the risk rises with silence), the day a silence becomes
        a lapse, and the day the oldest waiting snapshot's horizon passes."""
        moments = [
            next_on_ladder(customer),
            self.lapse.lapses_at(customer),
            self.labels.next_settlement(customer.memory.get(self.name)),
        ]
        return min((m for m in moments if m is not None), default=None)

    def learn_example(self, example: Example) -> None:
        """Score the prediction made at the time (progressive validation), then learn."""
        self.quality_meter.update(example.churned, example.predictions[0])
        self.classifier.learn_one(example.features, example.churned)
        self.labelled += 1
        if self._prior is not None and len(example.predictions) > 1:
            self._prior.learn_example(
                Example(example.features, example.predictions[1:], example.churned, example.as_of)
            )

    def assign(self, customer: CustomerSnapshot) -> str | None:
        """Risk band of the customer; None once they cancelled or lapsed."""
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
        """The probability behind the band (for the query API)."""
        return {"probability": self.risk(customer)}

    def risk(self, customer: CustomerSnapshot) -> float | None:
        """P(cancel or lapse within the horizon); None once they cancelled or lapsed."""
        if self.lapse.churned_at(customer) is not None:
            return None
        return self.probability(behaviour_vector(customer), self.cold_start(customer))

    def probability(self, x: Vector, cold: float) -> float:
        """The shop's learned probability blended with the prior (or ``cold``) by experience."""
        weight = min(1.0, self.labelled / self.prior_weight_examples)
        fallback = cold if self._prior is None else self._prior.probability(x, cold)
        if weight <= 0.0:
            return fallback
        learned = float(self.classifier.predict_proba_one(x).get(True, 0.0))
        return weight * learned + (1.0 - weight) * fallback

    def cold_start(self, customer: CustomerSnapshot) -> float:
        """Share of the way to a lapse the customer's silence has gone (0..1)."""
        return min(1.0, customer.last_activity_days / self.lapse.gap_days(customer))

    def quality(self) -> dict[str, float]:
        """Progressive-validation ``roc_auc``, ``log_loss``, ``brier``; ``labelled``,
        ``positives``, ``pending`` and ``skipped`` snapshot counts, shop ``weight``."""
        return {
            **self.quality_meter.as_dict(),
            "pending": float(self.labels.pending_count),
            "skipped": float(self.labels.skipped),
            "weight": min(1.0, self.labelled / self.prior_weight_examples),
        }

    def forget(self, customer: CustomerSnapshot) -> None:
        """The erased customer's waiting snapshots no longer count against the cap."""
        self.labels.pending_count -= len(customer.memory.get(self.name, []))

    def __getstate__(self) -> dict[str, Any]:
        """Everything but the prior, which is checkpointed apart and attached again."""
        state = dict(self.__dict__)
        state["_prior"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint (no prior attached)."""
        self.__dict__.update(state)


MODEL = ChurnRiskModel
