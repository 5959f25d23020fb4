"""What happens to one input record, independent of Faust and Kafka.

The pipeline reads and writes four mappings that the worker backs with changelog-backed
tables (tests use plain dicts):

- ``customers``: ``"<shop_id>/<customer_id>"`` -> :class:`CustomerState`;
- ``shops``: ``shop_id`` -> the shop's stream time, partition and segment sizes;
- ``models``: ``shop_id`` -> the shop's segment models (:mod:`segstream.core.checkpoints`),
  and the models shared by a partition's shops;
- ``metrics``: per-day metric buckets (:mod:`segstream.metrics.ledger`).

Nothing in a shop's records grows with its customers: what a model keeps per customer is
in the customer's state (``memory``), a shop keeps counts. Per shop the pipeline keeps a
:class:`ShopBook` in memory: the models, the segment sizes and the review schedule (the
customers due for a look at a known stream time: a quiet customer turning "at risk").
:meth:`Pipeline.flush` writes the books that changed back to ``shops`` and ``models``;
the worker calls it once per batch, before the batch commits. A book is rebuilt from
those tables on first use, its schedule from the due times in its customers' states.
"""

from __future__ import annotations

import hashlib
import heapq
import zlib
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from segstream.core.changes import Cause, DeadLetter, Detour, SegmentChange, SegmentFormed, Source
from segstream.core.checkpoints import Checkpoints
from segstream.core.contracts import (
    DeadLetterReason,
    EventType,
    Rejection,
    parse_event,
    strict_json,
)
from segstream.core.customer import (
    PAYING_STATUSES,
    CustomerState,
    DedupPolicy,
    Silence,
    apply,
    day_number,
    subscription_status,
)
from segstream.core.events import (
    Cancellation,
    CustomerErased,
    Event,
    Order,
    event_type,
    from_payload,
)
from segstream.core.features import CustomerSnapshot, snapshot
from segstream.core.keys import (
    customer_key,
    partition_of,
    prior_key,
    shop_of,
    shop_partition,
    shop_record_key,
)
from segstream.experiments import (
    KEY_PREFIX,
    Experiment,
    ExperimentError,
    changed_fixed,
    validate_experiment,
)
from segstream.experiments.live import (
    MAX_EXPERIMENTS,
    ShopExperiments,
    count_order,
    enrol,
    experiments_key,
    follow,
)
from segstream.learning.lifetime import ShopLifetime, spend_trend
from segstream.learning.retention import OrdersForecast
from segstream.metrics.journey import ShopFunnel, journey_of
from segstream.metrics.ledger import MetricsLedger
from segstream.segments import SegmentModel, available_models
from segstream.segments.defined import Definition, DefinitionError, validate_definition
from segstream.segments.defined.live import (
    Reevaluation,
    ShopDefinitions,
    definitions_key,
    model_name,
    segment_of,
)
from segstream.settings import Settings

Status = Literal["processed", "duplicate", "dead_lettered", "rerouted"]
DEFINITION = "segment_definition"
"""The ``event_type`` of an :class:`Outcome` of a segment-definitions record."""
MAX_DEFINITIONS = 100
"""Most segments one shop defines (each is evaluated on every event of the shop's)."""
MAX_DEFINITION_BYTES = 64 * 1024
"""Largest definition record read (a rule of 64 nodes needs a few KB)."""
REHOMING_PREFIX = "model:"
"""Name of a pass that moves the customers of segments a learned model retired
(``model:<model name>``), queued with the shop's definition re-evaluations."""


@dataclass(slots=True)
class Outcome:
    """Result of handling one record: what to emit and how to count it."""

    status: Status
    event_type: str | None = None
    shop_id: str | None = None
    changes: list[SegmentChange] = field(default_factory=list)
    formed: list[SegmentFormed] = field(default_factory=list)
    dead_letter: DeadLetter | None = None
    detour: Detour | None = None
    too_late: bool = False


class Schedule:
    """Customers of one shop due for a review at a stream time (epoch seconds)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._due: dict[str, float] = {}

    def set(self, customer_id: str, due: datetime | None) -> None:
        """Review ``customer_id`` at ``due`` (None: not at all), replacing any earlier time."""
        if due is None:
            self._due.pop(customer_id, None)
            return
        moment = due.timestamp()
        if self._due.get(customer_id) == moment:
            return
        self._due[customer_id] = moment
        heapq.heappush(self._heap, (moment, customer_id))
        if len(self._heap) > 2 * len(self._due) + 1024:
            self._heap = [(m, c) for c, m in self._due.items()]
            heapq.heapify(self._heap)

    def pop_due(self, now: datetime) -> Iterator[str]:
        """The customers due at or before ``now``, earliest first (each removed)."""
        moment, heap = now.timestamp(), self._heap
        while heap and heap[0][0] <= moment:
            due, customer_id = heapq.heappop(heap)
            if self._due.get(customer_id) == due:
                del self._due[customer_id]
                yield customer_id

    def any_due(self, now: datetime) -> bool:
        """Whether some customer is due at or before ``now``."""
        heap = self._heap
        while heap and self._due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # replaced by a later time, or cancelled
        return bool(heap) and heap[0][0] <= now.timestamp()

    def __len__(self) -> int:
        return len(self._due)


@dataclass(slots=True)
class ShopBook:
    """One shop in memory: its models, record (stream time, partition, segment sizes) and
    review schedule."""

    shop_id: str
    models: dict[str, SegmentModel]
    stream_time: datetime | None
    partition: int
    sizes: dict[str, dict[str, int]]
    schedule: Schedule = field(default_factory=Schedule)
    definitions: ShopDefinitions = field(default_factory=ShopDefinitions)
    lifetime: ShopLifetime = field(default_factory=lambda: ShopLifetime({}))
    experiments: ShopExperiments = field(default_factory=ShopExperiments)
    funnel: ShopFunnel = field(default_factory=lambda: ShopFunnel({}))
    dirty: bool = False
    definitions_dirty: bool = False
    lifetime_dirty: bool = False
    experiments_dirty: bool = False
    funnel_dirty: bool = False

    def count(self, model: str, previous: str | None, current: str | None) -> None:
        """One customer moved from ``previous`` to ``current`` in ``model``."""
        counts = self.sizes.setdefault(model, {})
        if previous is not None:
            counts[previous] = counts.get(previous, 0) - 1
            if counts[previous] <= 0:
                del counts[previous]
        if current is not None:
            counts[current] = counts.get(current, 0) + 1

    def record(self) -> dict[str, Any]:
        """The shop's record in the ``shops`` table."""
        assert self.stream_time is not None
        return {
            "stream_time": self.stream_time.timestamp(),
            "partition": self.partition,
            "sizes": self.sizes,
        }


class Pipeline:
    """Validates, de-duplicates and folds events into state; (re-)evaluates segments."""

    def __init__(
        self,
        settings: Settings,
        customers: MutableMapping[str, Any],
        shops: MutableMapping[str, Any],
        models: MutableMapping[str, Any] | None = None,
        metrics: MutableMapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.silence = Silence.from_settings(settings)
        self.customers = customers
        self.shops = shops
        self.checkpoints = Checkpoints({} if models is None else models)
        self.ledger = MetricsLedger.from_settings({} if metrics is None else metrics, settings)
        self.dedup = DedupPolicy(settings.dedup_window, settings.dedup_horizon_days)
        self._books: dict[str, ShopBook] = {}
        self._priors: dict[int, dict[str, SegmentModel]] = {}
        self._reevaluating: set[str] | None = None
        """Shops with an unfinished re-evaluation (None: not known, read the tables)."""

    def forget_shops(self) -> None:
        """Drop the books (after a rebalance or an aborted batch: rebuilt from the tables)."""
        self._books.clear()
        self._priors.clear()
        self._reevaluating = None
        self.ledger.forget()

    # ------------------------------------------------------------ records

    def handle(
        self, raw: bytes | None, expected: EventType, source: Source, key: bytes | None
    ) -> Outcome:
        """Process one record from an input topic."""
        parsed = parse_event(
            raw,
            expected,
            schema_ids=self.settings.schema_registry_ids,
            earliest=self.settings.earliest_event_time,
        )
        if isinstance(parsed, Rejection):
            letter = DeadLetter(parsed.reason, parsed.detail, source, key, raw)
            return Outcome("dead_lettered", expected.type_name, dead_letter=letter)
        event = from_payload(parsed)
        misplaced = self._misplaced(event.shop_id, source, key, raw)
        if misplaced is not None:
            return Outcome("rerouted", expected.type_name, event.shop_id, detour=misplaced)
        outcome = Outcome("processed", event_type(event), event.shop_id)
        book = self.book(event.shop_id, source.partition)
        stored = self.customers.get(customer_key(event.shop_id, event.customer_id))
        if isinstance(event, CustomerErased):
            return self._erasure(book, event, stored, outcome)
        now = self._advance(book, event.occurred_at)
        if self._forgotten(event, stored):
            return self._after_event(book, outcome, now)
        state = stored or self._new_customer(event.shop_id, event.customer_id)
        before = state.copy()
        if apply(state, event, self.dedup):
            book.funnel_dirty |= book.funnel.move(
                journey_of(before), journey_of(state), self._oldest_cohort(now)
            )
            if state.is_prospect:  # only touchpoints so far: in the funnel, nowhere else
                self._save(state)
            else:
                outcome.changes, outcome.too_late = self._fold(book, event, before, state, now)
        else:
            outcome.status = "duplicate"
        return self._after_event(book, outcome, now)

    def _after_event(self, book: ShopBook, outcome: Outcome, now: datetime) -> Outcome:
        """After an event at the shop's stream time ``now``: review whoever is due by
        then, collect new groups."""
        outcome.changes += self._review_due(book, now)
        outcome.formed = self._formed(book, now)
        self._queue_rehoming(book)
        book.dirty = True
        return outcome

    def _erasure(
        self, book: ShopBook, event: CustomerErased, state: CustomerState | None, outcome: Outcome
    ) -> Outcome:
        """An erasure request is administrative: it takes effect at the shop's stream time
        and never moves it (a request dated today for a shop replayed up to last year
        would otherwise age every customer a year at once). A shop's first event sets its
        stream time, so a shop without one has nobody to forget: only the marker is left."""
        marker = erasure_key(event.shop_id, event.customer_id)
        known = self.shops.get(marker)
        at = event.occurred_at.timestamp()
        self.shops[marker] = {"at": at if known is None else max(at, known["at"])}
        now = book.stream_time
        if now is None or state is None:
            return outcome
        outcome.changes = self._erase(book, event, state, now)
        return self._after_event(book, outcome, now)

    def _erase(
        self, book: ShopBook, event: CustomerErased, state: CustomerState, now: datetime
    ) -> list[SegmentChange]:
        """Forget a customer at ``now``: out of every segment (cause ``erased``), a paying
        subscriber's churn booked now (reason ``erased``), out of the funnel and the
        lifetime sample, their state deleted (a tombstone on the changelog); the marker
        :meth:`_erasure` leaves (their id hashed) drops their events that occurred before
        and arrive later. Their referral is withdrawn from their referrer, and the
        referrals credited to them wait for their id on the shop's pending record (they
        are the referees' facts: see :meth:`_credit`)."""
        before = state.copy()
        cause = Cause("erased", event.event_id, event.type_name)
        changes = []
        for name in sorted(state.segments):
            defined = segment_of(name)
            version = None if defined is None else book.definitions.last_version(defined)
            changes += self._move(book, state, name, None, now, cause, version)
        view = self.view(before, now)
        for model in book.models.values():
            model.forget(view)
        request = replace(event, occurred_at=min(event.occurred_at, now))
        self.ledger.record(request, before, _leaving(state, event, now), now)
        book.funnel_dirty |= book.funnel.move(journey_of(before), None, self._oldest_cohort(now))
        book.lifetime_dirty |= book.lifetime.forget(event.customer_id)
        book.schedule.set(event.customer_id, None)
        del self.customers[customer_key(event.shop_id, event.customer_id)]
        if before.referrer is not None:  # the referrer's change is no erasure of theirs
            referee = Cause("event", event.event_id, event.type_name)
            changes += self._credit(book, before.referrer, -1, now, referee)
        self._pend(event.shop_id, event.customer_id, before.referral_count)
        return changes

    def _forgotten(self, event: Event, state: CustomerState | None) -> bool:
        """Whether the event occurred before an erasure of its customer (it belongs to
        the customer forgotten, whether it arrives before or after events of a new one).
        A state kept after an erasure holds only events after it, so an event no earlier
        than everything the state knows needs no look at the marker."""
        if state is not None and not _earlier_than_known(state, event.occurred_at):
            return False
        marker = self.shops.get(erasure_key(event.shop_id, event.customer_id))
        return marker is not None and event.occurred_at.timestamp() <= marker["at"]

    def _new_customer(self, shop_id: str, customer_id: str) -> CustomerState:
        """A customer's first state: with the referrals credited to them before segstream
        knew them (the pending record is picked up, and deleted)."""
        state = CustomerState(shop_id, customer_id)
        key = referrals_key(shop_id, customer_id)
        pending = self.shops.get(key)
        if pending is not None:
            state.referral_count = int(pending["count"])
            del self.shops[key]
        return state

    def _fold(
        self,
        book: ShopBook,
        event: Event,
        before: CustomerState,
        state: CustomerState,
        now: datetime,
    ) -> tuple[list[SegmentChange], bool]:
        """What an applied event of a customer (no prospect) moves: segments, experiment
        figures, the lifetime sample, the referrer, the metrics ledger; and whether the
        event came too late for the ledger."""
        if before.is_prospect:  # a new customer (or a prospect's first other event)
            book.lifetime_dirty |= book.lifetime.offer(event.customer_id)
        cause = Cause("event", event.event_id, event_type(event))
        if isinstance(event, Order):  # before the move it may cause: enrolled members'
            book.experiments_dirty |= count_order(book.experiments, state, event.amount, now)
        changes = self._evaluate(book, state, now, cause)
        self._save(state)
        if isinstance(event, Order):
            self._count_order(book, event.customer_id, now)
        if before.referrer != state.referrer:  # a signup named someone else (or nobody)
            if before.referrer is not None:
                changes += self._credit(book, before.referrer, -1, now, cause)
            if state.referrer is not None:
                changes += self._credit(book, state.referrer, 1, now, cause)
        return changes, self.ledger.record(event, before, state, now).too_late

    def _oldest_cohort(self, now: datetime) -> str:
        """The oldest journey cohort month still kept at ``now`` (the metrics retention)."""
        return (now - timedelta(days=self.settings.metrics_retention_days)).strftime("%Y-%m")

    def advance_clock(self, shop_id: str, now: datetime, live_s: float) -> Outcome | None:
        """Move a live shop's stream time to ``now`` (the wall clock) and review the
        customers due by then: time-driven moves of a quiet shop (a pending cancellation
        taking effect, a renewal going overdue) happen without waiting for its next event.
        A shop more than ``live_s`` seconds behind ``now`` (a replay of history) keeps its
        event time; a live shop with nobody due is moved once it is half that behind, so it
        stays live. None when the clock did not move."""
        book = self.book(shop_id)
        behind = None if book.stream_time is None else (now - book.stream_time).total_seconds()
        if behind is None or not 0 < behind <= live_s:
            return None
        if not book.schedule.any_due(now) and behind <= live_s / 2:
            return None  # nobody moves, and the shop stays live: its record is not rewritten
        book.stream_time = now
        book.dirty = True
        outcome = Outcome("processed", None, shop_id, self._review_due(book, now))
        outcome.formed = self._formed(book, now)
        self._queue_rehoming(book)
        return outcome

    # ------------------------------------------------------------ definitions

    def define(self, key: bytes | None, raw: bytes | None, source: Source) -> Outcome:
        """Apply one record of the segment-definitions topic (key ``<shop>|<segment>``,
        value a definition, or none to delete it): the segment goes live at once for the
        shop's events, and a re-evaluation of its existing customers is queued (see
        :meth:`reevaluate`). A record that breaks the contract, or whose version is not
        above the live one, is dead-lettered and changes nothing."""
        try:
            shop_id, segment_id = _definition_key(key)
            if segment_id.startswith(KEY_PREFIX):
                return self._define_experiment(shop_id, segment_id, key, raw, source)
            definition = None if raw is None else _definition(raw, shop_id, segment_id)
        except DefinitionError as error:
            letter = DeadLetter("invalid_definition", str(error), source, key, raw)
            return Outcome("dead_lettered", DEFINITION, dead_letter=letter)
        misplaced = self._misplaced(shop_id, source, key, raw)
        if misplaced is not None:
            return Outcome("rerouted", DEFINITION, shop_id, detour=misplaced)
        book = self.book(shop_id, source.partition)
        refused = self._refused(book, segment_id, definition)
        if refused is not None:
            reason, detail = refused
            letter = DeadLetter(reason, detail, source, key, raw)
            return Outcome("dead_lettered", DEFINITION, shop_id, dead_letter=letter)
        if definition is None:
            book.definitions.delete(segment_id)
        else:
            book.definitions.define(definition)
        book.definitions_dirty = True
        if self._reevaluating is not None and book.definitions.pending:
            self._reevaluating.add(shop_id)
        return Outcome("processed", DEFINITION, shop_id)

    def _define_experiment(
        self, shop_id: str, name: str, key: bytes | None, raw: bytes | None, source: Source
    ) -> Outcome:
        """Apply an experiment record (key ``<shop>|experiment:<id>``): it goes live at once,
        and a pass enrols the members its segment already has (see :meth:`reevaluate`). An
        invalid record raises :class:`ExperimentError`, which :meth:`define` dead-letters."""
        experiment_id = name.removeprefix(KEY_PREFIX)
        experiment = None if raw is None else _experiment(raw, shop_id, experiment_id)
        misplaced = self._misplaced(shop_id, source, key, raw)
        if misplaced is not None:
            return Outcome("rerouted", DEFINITION, shop_id, detour=misplaced)
        book = self.book(shop_id, source.partition)
        refused = _refused_experiment(book.experiments, experiment_id, experiment)
        if refused is not None:
            letter = DeadLetter(refused[0], refused[1], source, key, raw)
            return Outcome("dead_lettered", DEFINITION, shop_id, dead_letter=letter)
        if experiment is None:
            book.experiments.delete(experiment_id)
        else:
            book.experiments.define(experiment)
            book.definitions.queue(Reevaluation(name, experiment.version))
            book.definitions_dirty = True
            if self._reevaluating is not None:
                self._reevaluating.add(shop_id)
        book.experiments_dirty = True
        return Outcome("processed", DEFINITION, shop_id)

    def _refused(
        self, book: ShopBook, segment_id: str, definition: Definition | None
    ) -> tuple[DeadLetterReason, str] | None:
        if definition is None:
            return None  # deleting what is not defined deletes nothing
        rules = book.definitions.rules
        if segment_id not in rules and len(rules) >= MAX_DEFINITIONS:
            return "invalid_definition", f"a shop defines at most {MAX_DEFINITIONS} segments"
        last = book.definitions.last_version(segment_id)
        if definition.version <= last:
            return "stale_definition", (
                f"version {definition.version} of {segment_id!r} is not above its last "
                f"version {last}"
            )
        return None

    def reevaluating(self) -> list[str]:
        """The shops (of the partitions the tables hold) with an unfinished re-evaluation."""
        if self._reevaluating is None:
            self._reevaluating = {
                shop_of(key)
                for key in list(self.shops)
                if key == definitions_key(shop_of(key)) and self.shops[key]["pending"]
            }
        return sorted(self._reevaluating)

    def reevaluate(self, shop_id: str, limit: int) -> Outcome | None:
        """Put up to ``limit`` more of the shop's existing customers in or out of the
        segment of its oldest unfinished re-evaluation (None: nothing to do). The cursor
        moves with them, in the same commit."""
        book = self.book(shop_id)
        if not book.definitions.pending:
            return None
        item = book.definitions.pending[0]
        if item.segment_id.startswith(KEY_PREFIX):
            return self._enrolment_pass(book, item, limit)
        if item.segment_id.startswith(REHOMING_PREFIX):
            return self._rehoming_pass(book, item, limit)
        book.definitions_dirty = True
        outcome = Outcome("processed", None, shop_id)
        if book.stream_time is not None:
            outcome.changes, done = self._reevaluate(book, item, book.stream_time, limit)
            if done < limit:
                book.definitions.pending.pop(0)
            book.dirty = True
        else:  # no event yet: no customers
            book.definitions.pending.pop(0)
        if not book.definitions.pending and self._reevaluating is not None:
            self._reevaluating.discard(shop_id)
        return outcome

    def _queue_rehoming(self, book: ShopBook) -> None:
        """A pass over the shop's customers for each model that retired segments (see
        :meth:`_rehoming_pass`); one under way starts over, which covers both."""
        for name, model in book.models.items():
            if model.drain_pass_request():
                book.definitions.queue(Reevaluation(f"{REHOMING_PREFIX}{name}", 0))
                book.definitions_dirty = True
                if self._reevaluating is not None:
                    self._reevaluating.add(book.shop_id)

    def _rehoming_pass(self, book: ShopBook, item: Reevaluation, limit: int) -> Outcome:
        """Review up to ``limit`` more of the shop's customers with one model (learn and
        assign, as a review): whoever carries a segment it retired, or none though it can
        place them now, moves, with cause ``model``; the others stay as they are."""
        name = item.segment_id.removeprefix(REHOMING_PREFIX)
        model, now = book.models.get(name), book.stream_time
        outcome = Outcome("processed", None, book.shop_id)
        done = 0
        for state in self.shop_customers(book.shop_id, after=item.after):
            if done == limit or model is None or now is None:
                break
            if not state.is_prospect:
                outcome.changes += self._review_with(book, model, state, now)
            item.after, done = state.customer_id, done + 1
        if done < limit:
            book.definitions.pending.pop(0)
        if now is not None:
            outcome.formed = self._formed(book, now)
        self._queue_rehoming(book)
        book.definitions_dirty = book.dirty = True
        if not book.definitions.pending and self._reevaluating is not None:
            self._reevaluating.discard(book.shop_id)
        return outcome

    def _review_with(
        self, book: ShopBook, model: SegmentModel, state: CustomerState, now: datetime
    ) -> list[SegmentChange]:
        """One model's look at a customer in a pass: their segment moves only if the
        model retired it or can now place them (the state is saved when learning changed
        its memory or the segment moved)."""
        view = replace(self.view(state, now), review=True)
        memory = state.memory.get(model.name)
        model.learn(view)
        segments, enrolments = dict(state.segments), dict(state.enrolments)
        moved = self._move(book, state, model.name, model.assign(view), now, Cause("model"))
        if moved:
            self._book_moves(segments, enrolments, state, now)
        if moved or state.memory.get(model.name) is not memory:
            self._save(state)
        return moved

    def _enrolment_pass(self, book: ShopBook, item: Reevaluation, limit: int) -> Outcome | None:
        """Enrol up to ``limit`` more of the members an experiment's segment had when it
        was defined or started. A pass for an experiment that has not started yet waits
        (behind the others) until the shop's stream time reaches its start; one for a
        deleted or replaced experiment is dropped."""
        experiment = book.experiments.experiments.get(item.segment_id.removeprefix(KEY_PREFIX))
        now = book.stream_time
        if experiment is None or experiment.version != item.version:
            book.definitions.pending.pop(0)
        elif now is None or not experiment.starts_at <= now:
            book.definitions.pending.append(book.definitions.pending.pop(0))
            return None
        else:
            done = self._enrol_members(book, experiment, item, now, limit)
            if done < limit:
                book.definitions.pending.pop(0)
        book.definitions_dirty = True
        if not book.definitions.pending and self._reevaluating is not None:
            self._reevaluating.discard(book.shop_id)
        return Outcome("processed", None, book.shop_id)

    def _enrol_members(
        self, book: ShopBook, experiment: Experiment, item: Reevaluation, now: datetime, limit: int
    ) -> int:
        done = 0
        for state in self.shop_customers(book.shop_id, after=item.after):
            if done == limit:
                break
            enrolments = dict(state.enrolments)
            if enrol(book.experiments, experiment, state, now):
                self._save(state)
                self._book_moves(state.segments, enrolments, state, now)
                book.experiments_dirty = True
            item.after, done = state.customer_id, done + 1
        return done

    def _reevaluate(
        self, book: ShopBook, item: Reevaluation, now: datetime, limit: int
    ) -> tuple[list[SegmentChange], int]:
        rule = None if item.deleted else book.definitions.rules[item.segment_id]
        name, cause = model_name(item.segment_id), Cause("definition")
        changes: list[SegmentChange] = []
        done = 0
        for state in self.shop_customers(book.shop_id, after=item.after):
            if done == limit:
                break
            inside = (
                rule is not None and not state.is_prospect and rule(state, self.view(state, now))
            )
            segments, enrolments = dict(state.segments), dict(state.enrolments)
            current = item.segment_id if inside else None
            moved = self._move(book, state, name, current, now, cause, item.version)
            if moved:
                self._save(state)
                self._book_moves(segments, enrolments, state, now)
                changes += moved
            item.after, done = state.customer_id, done + 1
        return changes, done

    def _misplaced(
        self, shop_id: str, source: Source, key: bytes | None, raw: bytes | None
    ) -> Detour | None:
        """A record in a partition its shop does not hash to (the producer's partitioner is
        not murmur2 over the shop id) would split the shop's state: it takes a detour to
        the shop's partition of the repartition topic instead."""
        if source.partition < 0:
            return None
        home = shop_partition(shop_id, self.settings.topic_partitions)
        if home == source.partition:
            return None
        return Detour(home, source, key, raw)

    def flush(self) -> None:
        """Write every changed book's shop record and models (and the partition priors),
        and the metric buckets booked since the last flush."""
        self.ledger.flush()
        partitions = set()
        for book in self._books.values():
            if book.definitions_dirty:
                self.shops[definitions_key(book.shop_id)] = book.definitions.record()
                book.definitions_dirty = False
            if book.lifetime_dirty:
                self.shops[lifetime_key(book.shop_id)] = book.lifetime.record()
                book.lifetime_dirty = False
            if book.experiments_dirty:
                self.shops[experiments_key(book.shop_id)] = book.experiments.record()
                book.experiments_dirty = False
            if book.dirty and book.stream_time is not None:  # the clock may have moved
                oldest = self._oldest_cohort(book.stream_time)
                book.funnel_dirty |= book.funnel.expire(oldest)
            if book.funnel_dirty:  # cohorts older than the clock's are gone, whoever moved
                self.shops[funnel_key(book.shop_id)] = book.funnel.record()
                book.funnel_dirty = False
            if not book.dirty:
                continue
            self.shops[book.shop_id] = book.record()
            self.checkpoints.save(book.shop_id, book.models)
            partitions.add(book.partition)
            book.dirty = False
        for partition in sorted(partitions):
            if partition in self._priors:
                self.checkpoints.save(prior_key(partition), self._priors[partition])

    # ------------------------------------------------------------ state

    def book(self, shop_id: str, partition: int | None = None) -> ShopBook:
        """The shop's book, rebuilt from the tables when not in memory."""
        book = self._books.get(shop_id)
        if book is None:
            book = self._rebuild(shop_id, partition)
            self._books[shop_id] = book
        return book

    def load(self, shop_id: str, customer_id: str) -> CustomerState:
        """A customer's state, or a fresh one."""
        stored = self.customers.get(customer_key(shop_id, customer_id))
        return CustomerState(shop_id, customer_id) if stored is None else stored

    def stream_time(self, shop_id: str) -> datetime | None:
        """The shop's latest event time seen, if any."""
        book = self._books.get(shop_id)
        if book is not None:
            return book.stream_time
        shop = self.shops.get(shop_id)
        return None if shop is None else datetime.fromtimestamp(shop["stream_time"], UTC)

    def shop_customers(self, shop_id: str, after: str | None = None) -> Iterator[CustomerState]:
        """Every known customer of a shop in customer-id order (a scan of its key range),
        or those whose id follows ``after``."""
        prefix = customer_key(shop_id, "")
        start = None if after is None else customer_key(shop_id, after)
        keys = getattr(self.customers, "keys_of", None)
        if keys is not None:
            partition = partition_of(shop_id, self.settings.topic_partitions)
            found: Iterator[str] = keys(partition, prefix, start)
        else:
            found = iter(sorted(k for k in list(self.customers) if k.startswith(prefix)))
        for key in found:
            if start is None or key > start:
                yield self.customers[key]

    def view(self, state: CustomerState, now: datetime) -> CustomerSnapshot:
        """The snapshot segment models read, with this deployment's silence rule, the
        shop's lifetime model and what forecasts its customers' orders (a model that is an
        ``OrdersForecast``: the churn model)."""
        book = self._books.get(state.shop_id)
        if book is None:
            return snapshot(state, now, self.silence)
        forecast = next((m for m in book.models.values() if isinstance(m, OrdersForecast)), None)
        return snapshot(state, now, self.silence, book.lifetime.fit, forecast)

    def _count_order(self, book: ShopBook, customer_id: str, now: datetime) -> None:
        """An order of a sampled customer counts towards the next refit of the shop's
        lifetime model, which happens at once when due."""
        if book.lifetime.note_order(customer_id):
            book.lifetime_dirty = True
            if book.lifetime.due(day_number(now)):
                self._refit(book, now)

    def _refit(self, book: ShopBook, now: datetime) -> None:
        """Fit the shop's lifetime model on its sample of customers as they are ``now``."""
        states = (self.customers.get(customer_key(book.shop_id, c)) for c in book.lifetime.sample)
        book.lifetime.refit(
            day_number(now),
            (
                (snapshot(state, now, self.silence), spend_trend(state.purchase_days, now.date()))
                for state in states
                if state is not None
            ),
        )
        book.lifetime_dirty = True

    def _save(self, state: CustomerState) -> None:
        self.customers[customer_key(state.shop_id, state.customer_id)] = state

    def _advance(self, book: ShopBook, occurred_at: datetime) -> datetime:
        if book.stream_time is None or occurred_at > book.stream_time:
            book.stream_time = occurred_at
        return book.stream_time

    # ------------------------------------------------------------ segments

    def _evaluate(
        self, book: ShopBook, state: CustomerState, now: datetime, cause: Cause
    ) -> list[SegmentChange]:
        """Let every model learn from the customer, record changed assignments, and
        schedule the customer's next review. A review (no event of the customer's) leaves a
        customer in their segment until the model's minimum dwell there is over."""
        view = self.view(state, now)
        held = self._held(book, state, now) if cause.kind == "timer" else {}
        if cause.kind == "timer":
            view = replace(view, held=frozenset(held), review=True)
        for model in book.models.values():
            model.learn(view)
        changes = []
        for name, model in book.models.items():
            current = model.assign(view)
            if name in held and current is not None:
                continue
            details = None
            if current is not None and current != state.segments.get(name):
                details = model.change_details(view)
            why = cause if cause.kind != "timer" or model.time_moves else Cause("model")
            changes += self._move(book, state, name, current, now, why, details=details)
        changes += self._evaluate_defined(book, state, view, now, cause)
        reviews = [model.next_review(view) for model in book.models.values()]
        reviews += held.values()  # look again when the dwell is over
        state.due_at = min((r for r in reviews if r is not None), default=None)
        book.schedule.set(state.customer_id, state.due_at)
        return changes

    def _evaluate_defined(
        self,
        book: ShopBook,
        state: CustomerState,
        view: CustomerSnapshot,
        now: datetime,
        cause: Cause,
    ) -> list[SegmentChange]:
        """Put the customer in or out of each of the shop's defined segments."""
        changes = []
        for segment_id, rule in book.definitions.rules.items():
            inside = segment_id if rule(state, view) else None
            version = rule.definition.version
            changes += self._move(book, state, model_name(segment_id), inside, now, cause, version)
        return changes

    @staticmethod
    def _move(
        book: ShopBook,
        state: CustomerState,
        name: str,
        current: str | None,
        now: datetime,
        cause: Cause,
        version: int | None = None,
        details: Mapping[str, float | None] | None = None,
    ) -> list[SegmentChange]:
        """Put the customer in ``current`` of model ``name`` (None: in none): the change,
        if it is one (with the model's ``details`` of the new segment)."""
        previous = state.segments.get(name)
        if current == previous:
            return []
        model = book.models.get(name)
        if current is None:
            del state.segments[name]
            state.segment_since.pop(name, None)
        else:
            state.segments[name] = current
            state.segment_since[name] = now.timestamp()
        book.count(name, previous, current)
        change = SegmentChange(
            state.shop_id,
            state.customer_id,
            name,
            previous,
            current,
            now,
            cause,
            state.marketing_opt_in,
            version,
            predictions=tuple(sorted(details.items())) if details else (),
            previous_name=None if model is None or previous is None else model.label(previous),
            current_name=None if model is None or current is None else model.label(current),
        )
        change, counted = follow(book.experiments, state, change, now)
        book.experiments_dirty |= counted
        return [change]

    @staticmethod
    def _held(book: ShopBook, state: CustomerState, now: datetime) -> dict[str, datetime]:
        """Models whose minimum dwell holds the customer in their segment at ``now``, with
        the moment it ends."""
        held = {}
        for name, model in book.models.items():
            since = state.segment_since.get(name)
            if since is None or name not in state.segments:
                continue
            ends = datetime.fromtimestamp(since, UTC) + model.min_dwell()
            if ends > now:
                held[name] = ends
        return held

    def _credit(
        self, book: ShopBook, referrer_id: str, delta: int, now: datetime, cause: Cause
    ) -> list[SegmentChange]:
        """Count one referral more (``delta`` 1) or less (-1) for ``referrer_id``.

        A referral count is a fact of the referees: how many known customers name the
        referrer (:attr:`CustomerState.referrer`). It lives on the referrer's state when
        segstream knows them, else on a pending record of the shop's keyed by their id
        hashed, which their first event picks up (and an erasure of theirs refills). So
        it is the same whatever order the topics deliver signups in, also when the
        referrer comes later than the referee, or is erased and comes back. The
        referrer's defined segments may move; the models do not look: a referral is not
        the referrer's own behaviour, and an extra look would feed the learned models a
        sample they never saw before."""
        referrer = self.customers.get(customer_key(book.shop_id, referrer_id))
        if referrer is None:
            self._pend(book.shop_id, referrer_id, delta)
            return []
        before = referrer.copy()
        referrer.referral_count = max(0, referrer.referral_count + delta)
        changes = []
        if not referrer.is_prospect:  # a prospect is in no segment yet
            view = self.view(referrer, now)
            changes = self._evaluate_defined(book, referrer, view, now, cause)
        self._save(referrer)
        if changes:
            self.ledger.record(None, before, referrer, now)
        return changes

    def _pend(self, shop_id: str, referrer_id: str, delta: int) -> None:
        """Add ``delta`` to the referrals pending for a customer segstream does not know
        (a record exists only while some are: at most one per referrer named)."""
        key = referrals_key(shop_id, referrer_id)
        known = self.shops.get(key)
        count = (0 if known is None else int(known["count"])) + delta
        if count > 0:
            self.shops[key] = {"count": count}
        elif known is not None:
            del self.shops[key]

    def _review_due(self, book: ShopBook, now: datetime) -> list[SegmentChange]:
        """Review the customers whose time came: silence moves them (active -> at risk)
        although they send nothing."""
        changes: list[SegmentChange] = []
        for customer_id in list(book.schedule.pop_due(now)):
            state = self.load(book.shop_id, customer_id)
            # a review changes no facts: segments and enrolments are all "before" needs
            segments, enrolments = dict(state.segments), dict(state.enrolments)
            found = self._evaluate(book, state, now, Cause("timer"))
            self._save(state)
            if found:
                self._book_moves(segments, enrolments, state, now)
                changes += found
        return changes

    def _book_moves(
        self,
        segments: dict[str, str],
        enrolments: dict[str, list[Any]],
        state: CustomerState,
        now: datetime,
    ) -> None:
        """Book in the metrics the segment moves and enrolments that took ``state`` from
        ``segments`` and ``enrolments`` (no facts changed: a review, a re-evaluation)."""
        before = state.copy()
        before.segments, before.enrolments = segments, enrolments
        self.ledger.record(None, before, state, now)

    def _formed(self, book: ShopBook, now: datetime) -> list[SegmentFormed]:
        """New groups that learned models noticed."""
        return [
            SegmentFormed(
                book.shop_id, name, item.segment, item.description, item.size, now, item.name
            )
            for name, model in book.models.items()
            for item in model.drain_announcements()
        ]

    def _rebuild(self, shop_id: str, partition: int | None) -> ShopBook:
        stored = self.shops.get(shop_id)
        if partition is None or partition < 0:
            partition = stored["partition"] if stored else 0
        restored = self.checkpoints.load(shop_id)
        models = {
            name: restored.get(name) or model.create(self.settings, seed=_shop_seed(shop_id))
            for name, model in available_models().items()
        }
        self._attach_priors(models, partition)
        book = ShopBook(
            shop_id,
            models,
            None if stored is None else datetime.fromtimestamp(stored["stream_time"], UTC),
            partition,
            {} if stored is None else {m: dict(s) for m, s in stored["sizes"].items()},
        )
        book.definitions = ShopDefinitions.load(self.shops.get(definitions_key(shop_id)))
        book.lifetime = ShopLifetime.load(self.shops.get(lifetime_key(shop_id)))
        book.experiments = ShopExperiments.load(self.shops.get(experiments_key(shop_id)))
        book.funnel = ShopFunnel.load(self.shops.get(funnel_key(shop_id)))
        for state in self.shop_customers(shop_id) if stored is not None else ():
            book.schedule.set(state.customer_id, state.due_at)
        return book

    def _attach_priors(self, models: dict[str, SegmentModel], partition: int) -> None:
        """Give models that learn across shops the prior shared by their partition."""
        if partition not in self._priors:
            self._priors[partition] = self.checkpoints.load(prior_key(partition))
        priors = self._priors[partition]
        for name, model in models.items():
            if not model.uses_partition_prior:
                continue
            if name not in priors:
                priors[name] = type(model).create(self.settings, seed=partition)
            model.attach_prior(priors[name])


def lifetime_key(shop_id: str) -> str:
    """Key of a shop's lifetime model (sample and fit) in the ``shops`` table."""
    return shop_record_key(shop_id, "lifetime")


def funnel_key(shop_id: str) -> str:
    """Key of a shop's journey funnel in the ``shops`` table."""
    return shop_record_key(shop_id, "journey")


def erasure_key(shop_id: str, customer_id: str) -> str:
    """Key of the marker an erased customer leaves in the ``shops`` table: their id hashed
    (the id itself must not stay in a compacted changelog)."""
    return shop_record_key(shop_id, f"erased|{_id_digest(customer_id)}")


def referrals_key(shop_id: str, customer_id: str) -> str:
    """Key of the referrals pending in the ``shops`` table for a customer segstream does
    not know (yet, or any more after an erasure): their id hashed, as for the marker."""
    return shop_record_key(shop_id, f"referrals|{_id_digest(customer_id)}")


def _id_digest(customer_id: str) -> str:
    return hashlib.blake2b(customer_id.encode(), digest_size=16).hexdigest()


def _earlier_than_known(state: CustomerState, when: datetime) -> bool:
    """Whether ``when`` is earlier than every event the state holds (its first event,
    touchpoints included)."""
    known = [] if state.first_touch is None else [state.first_touch[0]]
    known += [] if state.first_seen_at is None else [state.first_seen_at]
    return not known or when < min(known)


def _leaving(state: CustomerState, erasure: CustomerErased, now: datetime) -> CustomerState:
    """``state`` as the metrics see an erased customer: a paying subscription ends now
    (a cancellation with reason ``erased``, folded like any other), so the ledger books
    their churn instead of unbooking history."""
    leaving = state.copy()
    if subscription_status(state, now) in PAYING_STATUSES:
        envelope = {
            "event_id": erasure.event_id,
            "shop_id": erasure.shop_id,
            "customer_id": erasure.customer_id,
        }
        apply(leaving, Cancellation(**envelope, occurred_at=now, reason="erased", effective_at=now))
    return leaving


def _definition_key(key: bytes | None) -> tuple[str, str]:
    """The shop and segment a definitions-topic key names."""
    try:
        shop_id, separator, segment_id = (key or b"").decode().partition("|")
    except UnicodeDecodeError:
        shop_id, separator, segment_id = "", "", ""
    if not (shop_id and separator and segment_id):
        raise DefinitionError("key", "the record key must be '<shop_id>|<segment_id>'")
    return shop_id, segment_id


def _json_record(raw: bytes, error: type[DefinitionError], what: str) -> Any:
    """The JSON a definitions-topic record holds (at most MAX_DEFINITION_BYTES), or
    ``error`` naming ``what`` the record should be."""
    if len(raw) > MAX_DEFINITION_BYTES:
        raise error(what, f"larger than {MAX_DEFINITION_BYTES} bytes")
    try:
        return strict_json(raw.decode("utf-8"))  # as events and the API read JSON
    except (ValueError, RecursionError) as problem:  # UnicodeDecodeError is a ValueError
        raise error(what, f"not JSON: {problem}") from None


def _definition(raw: bytes, shop_id: str, segment_id: str) -> Definition:
    """The valid definition ``raw`` holds, of the segment its key names."""
    definition = validate_definition(_json_record(raw, DefinitionError, "definition"))
    if (definition.shop_id, definition.segment_id) != (shop_id, segment_id):
        raise DefinitionError("segment_id", f"the key names {shop_id}|{segment_id}")
    return definition


def _experiment(raw: bytes, shop_id: str, experiment_id: str) -> Experiment:
    """The valid experiment ``raw`` holds, of the experiment its key names."""
    experiment = validate_experiment(_json_record(raw, ExperimentError, "experiment"))
    if (experiment.shop_id, experiment.experiment_id) != (shop_id, experiment_id):
        raise ExperimentError(
            "experiment_id", f"the key names {shop_id}|{KEY_PREFIX}{experiment_id}"
        )
    return experiment


def _refused_experiment(
    experiments: ShopExperiments, experiment_id: str, experiment: Experiment | None
) -> tuple[DeadLetterReason, str] | None:
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


def _shop_seed(shop_id: str) -> int:
    """A stable per-shop seed, so a rebuilt model starts as the first one did."""
    return zlib.crc32(shop_id.encode())
