"""Experiments as a shop sends them (records of the segment-definitions topic, key
``<shop>|experiment:<id>``): an experiment goes live at once, and an enrolment pass
(queued in the experiments' own record) enrols the members its segment already has once
it starts."""

from __future__ import annotations

from datetime import datetime

from segstream.engine.books import ShopBook
from segstream.engine.customers import Customers
from segstream.engine.definitions import json_record
from segstream.engine.evaluation import Evaluation
from segstream.engine.outcome import Outcome
from segstream.engine.passes import Backlog, Refusal
from segstream.experiments import (
    Experiment,
    ExperimentError,
    changed_fixed,
    validate_experiment,
)
from segstream.experiments.live import MAX_EXPERIMENTS, Enrolling, ShopExperiments, enrol
from segstream.state.keyspace import EXPERIMENT_KEY_PREFIX, experiment_name


class ExperimentControl:
    """Applies a shop's experiments and runs their enrolment passes."""

    def __init__(self, customers: Customers, evaluation: Evaluation, backlog: Backlog) -> None:
        self.customers = customers
        self.evaluation = evaluation
        self.backlog = backlog

    @staticmethod
    def parse(shop_id: str, name: str, raw: bytes | None) -> Experiment | None:
        """The valid experiment ``raw`` holds, of the experiment its key names
        (``experiment:<id>``; None: a deletion); raises :class:`ExperimentError`."""
        if raw is None:
            return None
        experiment_id = name.removeprefix(EXPERIMENT_KEY_PREFIX)
        experiment = validate_experiment(json_record(raw, ExperimentError, "experiment"))
        if (experiment.shop_id, experiment.experiment_id) != (shop_id, experiment_id):
            raise ExperimentError(
                "experiment_id", f"the key names {shop_id}|{experiment_name(experiment_id)}"
            )
        return experiment

    def apply(self, book: ShopBook, name: str, experiment: Experiment | None) -> Refusal | None:
        """Make ``experiment`` live (None: delete it) and queue its enrolment pass; or why
        not."""
        experiment_id = name.removeprefix(EXPERIMENT_KEY_PREFIX)
        refused = _refused(book.experiments, experiment_id, experiment)
        if refused is not None:
            return refused
        if experiment is None:
            book.experiments.delete(experiment_id)
        else:
            book.experiments.define(experiment)
            book.experiments.queue(Enrolling(experiment_id, experiment.version))
            self.backlog.add(book.shop_id)
        book.experiments_dirty = True
        return None

    def run(self, book: ShopBook, limit: int) -> Outcome | None:
        """Enrol up to ``limit`` more of the members an experiment's segment had when it
        was defined or started (the oldest unfinished pass). A pass for an experiment that
        has not started yet waits (behind the others) until the shop's stream time reaches
        its start; one for a deleted or replaced experiment is dropped."""
        pending = book.experiments.pending
        item = pending[0]
        experiment = book.experiments.experiments.get(item.experiment_id)
        now = book.stream_time
        if experiment is None or experiment.version != item.version:
            pending.pop(0)
        elif now is None or not experiment.starts_at <= now:
            pending.append(pending.pop(0))
            return None
        else:
            done = self._enrol_members(book, experiment, item, now, limit)
            if done < limit:
                pending.pop(0)
        book.experiments_dirty = True
        return Outcome("processed", None, book.shop_id)

    def _enrol_members(
        self, book: ShopBook, experiment: Experiment, item: Enrolling, now: datetime, limit: int
    ) -> int:
        done = 0
        for state in self.customers.of_shop(book.shop_id, after=item.after):
            if done == limit:
                break
            enrolments = dict(state.enrolments)
            if enrol(book.experiments, experiment, state, now):
                self.customers.save(state)
                self.evaluation.book_moves(state.segments, enrolments, state, now)
                book.experiments_dirty = True
            item.after, done = state.customer_id, done + 1
        return done


def _refused(
    experiments: ShopExperiments, experiment_id: str, experiment: Experiment | None
) -> Refusal | None:
    if experiment is None:
        return None
    if experiment_id not in experiments.experiments and (
        len(experiments.experiments) >= MAX_EXPERIMENTS
    ):
        return "invalid_definition", f"a shop runs at most {MAX_EXPERIMENTS} experiments"
    current = experiments.experiments.get(experiment_id)
    refused = None if current is None else changed_fixed(current, experiment)
    if refused is not None:
        return "invalid_definition", str(refused)
    last = experiments.last_version(experiment_id)
    if experiment.version <= last:
        return "stale_definition", (
            f"version {experiment.version} of experiment {experiment_id!r} is not above its "
            f"last version {last}"
        )
    return None
