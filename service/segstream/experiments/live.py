"""A shop's live experiments: definitions, enrolments and per-arm figures.

A customer is *enrolled* the first time they are in the experiment's segment while it
runs: when they move into it, or, for the members already there when the experiment is
defined or starts, by the enrolment pass over the shop's customers (a cursor like the
re-evaluation of defined segments', queued in the experiments record). From enrolment on,
their orders and revenue count for their arm until the experiment ends, and the first
time the lifecycle model calls them ``churned`` counts as their churn. The per-arm sums
are kept in the shop's experiments record (a few numbers per arm, ``shop|experiments`` in
the ``shops`` table); each customer keeps their own :class:`Enrolment`, so a re-entry never
counts twice and a crash replays to the same figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from segstream.domain.changes import SegmentChange
from segstream.domain.customer import CustomerState
from segstream.experiments.readout import ArmFigures, compare
from segstream.experiments.splits import Experiment, validate_experiment
from segstream.state.keyspace import EXPERIMENT_KEY_PREFIX

MAX_EXPERIMENTS = 20
"""Experiments a shop may have defined at once."""
MAX_RETIRED = 1_000
CHURNED = ("lifecycle", "churned")
"""The segment whose entry counts as an enrolled member's churn."""


@dataclass(slots=True)
class Enrolling:
    """Enrolling the members an experiment's segment already has, for ``version`` of the
    experiment, ``after`` the last customer id done (None: not started)."""

    experiment_id: str
    version: int
    after: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"experiment_id": self.experiment_id, "version": self.version, "after": self.after}


@dataclass(frozen=True, slots=True)
class Enrolment:
    """One customer in one experiment: when they were enrolled (epoch seconds of stream
    time), their orders and revenue since, whether they churned since, and their arm (kept
    so the metrics ledger books them under it without the experiment's definition)."""

    at: float
    arm: str
    orders: int = 0
    revenue: float = 0.0
    churned: bool = False

    def to_row(self) -> list[Any]:
        return [self.at, self.orders, self.revenue, self.churned, self.arm]

    @classmethod
    def from_row(cls, row: list[Any]) -> Enrolment:
        return cls(float(row[0]), str(row[4]), int(row[1]), float(row[2]), bool(row[3]))


@dataclass(slots=True)
class ShopExperiments:
    """One shop's experiments, their per-arm figures and the versions of deleted ones."""

    experiments: dict[str, Experiment] = field(default_factory=dict)
    figures: dict[str, dict[str, ArmFigures]] = field(default_factory=dict)
    retired: dict[str, int] = field(default_factory=dict)
    pending: list[Enrolling] = field(default_factory=list)
    """Unfinished enrolment passes, oldest first."""

    @classmethod
    def load(cls, stored: dict[str, Any] | None) -> ShopExperiments:
        """From the shop's record in the ``shops`` table (None: no experiments)."""
        if stored is None:
            return cls()
        experiments = {e: validate_experiment(p) for e, p in stored["experiments"].items()}
        figures = {
            e: {arm: ArmFigures(*row) for arm, row in arms.items()}
            for e, arms in stored["figures"].items()
        }
        pending = [
            Enrolling(item["experiment_id"], item["version"], item["after"])
            for item in stored.get("pending", ())
        ]
        return cls(experiments, figures, dict(stored["retired"]), pending)

    def record(self) -> dict[str, Any]:
        """The shop's record of experiments (see :meth:`load`; ``pending`` only while
        there are unfinished passes)."""
        pending = {"pending": [item.to_json() for item in self.pending]} if self.pending else {}
        return {
            "experiments": {e: x.to_json() for e, x in self.experiments.items()},
            "figures": {
                e: {
                    arm: [f.members, f.churned, f.orders, f.revenue, f.revenue_squares]
                    for arm, f in arms.items()
                }
                for e, arms in self.figures.items()
            },
            "retired": self.retired,
        } | pending

    def queue(self, item: Enrolling) -> None:
        """A newer pass replaces one under way for the same experiment (started over)."""
        self.pending = [p for p in self.pending if p.experiment_id != item.experiment_id]
        self.pending.append(item)

    def adopt(self, passes: list[tuple[str, int, str | None]]) -> None:
        """Take over enrolment passes (name, version, cursor) queued, before experiments
        had their own queue, with the definitions' re-evaluations (named
        :func:`~segstream.state.keyspace.experiment_name`), ahead of any queued here."""
        adopted = [
            Enrolling(n.removeprefix(EXPERIMENT_KEY_PREFIX), v, after) for n, v, after in passes
        ]
        known = {item.experiment_id for item in self.pending}
        self.pending = [a for a in adopted if a.experiment_id not in known] + self.pending

    def last_version(self, experiment_id: str) -> int:
        """The highest version the experiment ever had here (0: never defined)."""
        live = self.experiments.get(experiment_id)
        return live.version if live is not None else self.retired.get(experiment_id, 0)

    def define(self, experiment: Experiment) -> None:
        """Make ``experiment`` live; a new version keeps the figures (the arms are the same
        hash), a new experiment starts from zero in every arm."""
        self.experiments[experiment.experiment_id] = experiment
        self.retired.pop(experiment.experiment_id, None)
        known = self.figures.get(experiment.experiment_id, {})
        self.figures[experiment.experiment_id] = {
            arm.name: known.get(arm.name, ArmFigures()) for arm in experiment.arms
        }

    def delete(self, experiment_id: str) -> bool:
        """Remove an experiment and its figures (False: it was not defined)."""
        experiment = self.experiments.pop(experiment_id, None)
        if experiment is None:
            return False
        self.figures.pop(experiment_id, None)
        self.retired[experiment_id] = experiment.version
        while len(self.retired) > MAX_RETIRED:
            del self.retired[next(iter(self.retired))]
        return True

    def on_segment(self, model: str, segment: str | None) -> list[Experiment]:
        """The experiments that run on ``model``'s ``segment``."""
        if segment is None:
            return []
        return [e for e in self.experiments.values() if e.model == model and e.segment == segment]

    def enrol(self, experiment: Experiment, customer_id: str, at: datetime) -> Enrolment:
        """Count a new member in their arm; their enrolment."""
        self._add(experiment, customer_id, members=1)
        return Enrolment(at.timestamp(), experiment.arm(customer_id))

    def order(
        self, experiment: Experiment, customer_id: str, enrolment: Enrolment, amount: float
    ) -> Enrolment:
        """Count an enrolled member's order for their arm; their updated enrolment."""
        revenue = enrolment.revenue + amount
        squares = revenue * revenue - enrolment.revenue * enrolment.revenue
        self._add(experiment, customer_id, orders=1, revenue=amount, squares=squares)
        return replace(enrolment, orders=enrolment.orders + 1, revenue=revenue)

    def churn(self, experiment: Experiment, customer_id: str, enrolment: Enrolment) -> Enrolment:
        """Count an enrolled member's churn for their arm (once); their updated enrolment."""
        if enrolment.churned:
            return enrolment
        self._add(experiment, customer_id, churned=1)
        return replace(enrolment, churned=True)

    def _add(
        self,
        experiment: Experiment,
        customer_id: str,
        members: int = 0,
        churned: int = 0,
        orders: int = 0,
        revenue: float = 0.0,
        squares: float = 0.0,
    ) -> None:
        arms = self.figures.setdefault(experiment.experiment_id, {})
        arm = experiment.arm(customer_id)
        now = arms.get(arm, ArmFigures())
        arms[arm] = ArmFigures(
            now.members + members,
            now.churned + churned,
            now.orders + orders,
            now.revenue + revenue,
            now.revenue_squares + squares,
        )

    def readout(self, experiment_id: str) -> dict[str, Any]:
        """Per-arm figures, and each other arm against the first (the control)."""
        experiment = self.experiments[experiment_id]
        figures = self.figures.get(experiment_id, {})
        arms = [figures.get(arm.name, ArmFigures()) for arm in experiment.arms]
        control = experiment.arms[0].name
        return {
            "experiment": experiment.to_json(),
            "arms": {
                arm.name: _arm_json(found) for arm, found in zip(experiment.arms, arms, strict=True)
            },
            "control": control,
            "comparisons": {
                arm.name: compare(found, arms[0])
                for arm, found in zip(experiment.arms[1:], arms[1:], strict=True)
            },
        }


def _arm_json(figures: ArmFigures) -> dict[str, Any]:
    return {
        "members": figures.members,
        "churned": figures.churned,
        "retention": None if figures.churn_rate is None else 1 - figures.churn_rate,
        "orders": figures.orders,
        "revenue": figures.revenue,
        "revenue_per_member": figures.revenue_per_member,
    }


def enrolment_of(state: CustomerState, experiment: Experiment) -> Enrolment | None:
    """The customer's enrolment in this definition of the experiment (a row from before its
    start belongs to a deleted experiment of the same id: not enrolled)."""
    row = state.enrolments.get(experiment.experiment_id)
    if row is None:
        return None
    enrolment = Enrolment.from_row(row)
    return enrolment if enrolment.at >= experiment.starts_at.timestamp() else None


def enrol(
    experiments: ShopExperiments, experiment: Experiment, state: CustomerState, now: datetime
) -> bool:
    """Enrol the customer if they are in the experiment's segment while it runs and not
    yet enrolled (False: nothing changed)."""
    if state.segments.get(experiment.model) != experiment.segment or not experiment.running(now):
        return False
    if enrolment_of(state, experiment) is not None:
        return False
    enrolment = experiments.enrol(experiment, state.customer_id, now)
    state.enrolments[experiment.experiment_id] = enrolment.to_row()
    return True


def follow(
    experiments: ShopExperiments, state: CustomerState, change: SegmentChange, now: datetime
) -> tuple[SegmentChange, bool]:
    """After a move: enrol a customer who entered an experiment's segment, count the churn
    of enrolled members, and give the change the arms of the segments it joins and leaves.
    The tagged change, and whether any figure changed."""
    if not experiments.experiments:
        return change, False
    entered = experiments.on_segment(change.model, change.current)
    left = experiments.on_segment(change.model, change.previous)
    counted = any([enrol(experiments, experiment, state, now) for experiment in entered])
    if (change.model, change.current) == CHURNED:
        counted |= _churned(experiments, state, now)
    if not entered and not left:
        return change, counted
    tagged = replace(
        change,
        arms=tuple((e.experiment_id, e.arm(state.customer_id)) for e in entered),
        arms_left=tuple((e.experiment_id, e.arm(state.customer_id)) for e in left),
    )
    return tagged, counted


def _churned(experiments: ShopExperiments, state: CustomerState, now: datetime) -> bool:
    counted = False
    for experiment, enrolment in _enrolled_running(experiments, state, now):
        if not enrolment.churned:
            churned = experiments.churn(experiment, state.customer_id, enrolment)
            state.enrolments[experiment.experiment_id] = churned.to_row()
            counted = True
    return counted


def count_order(
    experiments: ShopExperiments, state: CustomerState, amount: float, now: datetime
) -> bool:
    """Count an order for each running experiment the customer is enrolled in (False:
    none)."""
    counted = False
    for experiment, enrolment in _enrolled_running(experiments, state, now):
        updated = experiments.order(experiment, state.customer_id, enrolment, amount)
        state.enrolments[experiment.experiment_id] = updated.to_row()
        counted = True
    return counted


def _enrolled_running(
    experiments: ShopExperiments, state: CustomerState, now: datetime
) -> list[tuple[Experiment, Enrolment]]:
    """The running experiments the customer is enrolled in, with their enrolments."""
    found = []
    for experiment_id in state.enrolments:
        experiment = experiments.experiments.get(experiment_id)
        if experiment is None or not experiment.running(now):
            continue
        enrolment = enrolment_of(state, experiment)
        if enrolment is not None:
            found.append((experiment, enrolment))
    return found
