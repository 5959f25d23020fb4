"""What happens to one input record, independent of Faust and Kafka.

:class:`Pipeline` works in :class:`~segstream.state.store.Tables` (changelog-backed in the
worker, dicts in tests): ``customers`` (:mod:`.customers`), ``shops`` (a shop's records:
:mod:`.books`), ``models`` (its models' checkpoints) and ``metrics`` (the ledger's buckets).
It tells one record's story and hands the work to a collaborator per job: the books (a shop
in memory: loaded, cached, flushed), :mod:`.evaluation` (segments and reviews of quiet
customers), :mod:`.referrals`, :mod:`.erasure`, :mod:`.controls` (definitions, experiments
and the passes over a shop's customers), refits (:mod:`segstream.learning.refits`).
:meth:`Pipeline.flush` writes what changed, once per batch, before the batch commits.
The query API reads through :attr:`Pipeline.reader` (:mod:`.view`), which fills no cache.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, MutableMapping
from datetime import datetime
from typing import Any

from segstream.domain.changes import Cause, DeadLetter, SegmentChange, Source
from segstream.domain.contracts import EventType, Rejection, parse_event
from segstream.domain.customer import CustomerState, DedupPolicy, Silence, apply
from segstream.domain.events import CustomerErased, Event, Order, event_type, from_payload
from segstream.domain.features import CustomerSnapshot
from segstream.engine.books import Schedule, ShopBook, ShopBooks, oldest_cohort
from segstream.engine.controls import Controls
from segstream.engine.customers import Customers
from segstream.engine.definitions import MAX_DEFINITIONS, DefinitionControl
from segstream.engine.erasure import Erasure
from segstream.engine.evaluation import Evaluation, formed
from segstream.engine.experiments import ExperimentControl
from segstream.engine.outcome import DEFINITION, Outcome, misplaced
from segstream.engine.passes import Backlog
from segstream.engine.referrals import Referrals
from segstream.engine.rehoming import Rehoming
from segstream.engine.view import ReadView
from segstream.experiments.live import count_order
from segstream.learning import refits
from segstream.metrics.journey import journey_of
from segstream.metrics.ledger import MetricsLedger
from segstream.settings import Settings
from segstream.state.model_store import Checkpoints
from segstream.state.store import Tables, tables_of

__all__ = [
    "DEFINITION",
    "MAX_DEFINITIONS",
    "Outcome",
    "Pipeline",
    "Schedule",
    "ShopBook",
]


class Pipeline:
    """Validates, de-duplicates and folds events into state; (re-)evaluates segments."""

    def __init__(
        self,
        settings: Settings,
        tables: Tables | MutableMapping[str, Any],
        *older: MutableMapping[str, Any] | None,
    ) -> None:
        """Over ``tables``; or, as older callers do, the four mappings in order
        (:meth:`Tables.of`)."""
        self.settings = settings
        self.silence = Silence.from_settings(settings)
        self.tables = tables_of(tables, *older)
        self.customers = self.tables.customers
        self.shops = shops = self.tables.shops
        self.checkpoints = Checkpoints(self.tables.models)
        self.ledger = MetricsLedger.from_settings(self.tables.metrics, settings)
        self.dedup = DedupPolicy(settings.dedup_window, settings.dedup_horizon_days)
        self.records = Customers(self.customers, settings.topic_partitions)
        self.books = ShopBooks(settings, shops, self.checkpoints, self.records)
        self._books = self.books.cached
        self.segments = Evaluation(self.silence, self.books, self.records, self.ledger)
        self.referrals = Referrals(shops, self.records, self.segments, self.ledger)
        self.erasure = Erasure(settings, shops, self.records, self.segments, self.referrals)
        self.backlog = Backlog(shops)
        self.definitions = DefinitionControl(self.records, self.segments, self.backlog)
        self.experiments = ExperimentControl(self.records, self.segments, self.backlog)
        self.rehoming = Rehoming(self.records, self.segments, self.backlog)
        self.controls = Controls(
            self.definitions,
            self.experiments,
            self.rehoming,
            self.backlog,
            self.book,
            settings.topic_partitions,
        )
        self.reader = ReadView(
            self.books, self.records, self.segments, self.ledger, shops, self.checkpoints
        )

    def forget_shops(self) -> None:
        """Drop the books (after a rebalance or an aborted batch: rebuilt from the tables)."""
        self.books.forget()
        self.backlog.forget()
        self.ledger.forget()

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
        detour = misplaced(event.shop_id, source, key, raw, self.settings.topic_partitions)
        if detour is not None:
            return Outcome("rerouted", expected.type_name, event.shop_id, detour=detour)
        outcome = Outcome("processed", event_type(event), event.shop_id)
        book = self.book(event.shop_id, source.partition)
        stored = self.records.get(event.shop_id, event.customer_id)
        if isinstance(event, CustomerErased):
            return self._erase(book, event, stored, outcome)
        now = book.advance(event.occurred_at)
        if self.erasure.forgotten(event, stored):
            return self._after_event(book, outcome, now)
        state = stored or self.referrals.new_customer(event.shop_id, event.customer_id)
        before = state.copy()
        if not apply(state, event, self.dedup):
            outcome.status = "duplicate"
            return self._after_event(book, outcome, now)
        oldest = oldest_cohort(self.settings, now)
        book.funnel_dirty |= book.funnel.move(journey_of(before), journey_of(state), oldest)
        if state.is_prospect:  # only touchpoints so far: in the funnel, nowhere else
            self.records.save(state)
        else:
            outcome.changes, outcome.too_late = self._fold(book, event, before, state, now)
        return self._after_event(book, outcome, now)

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
        changes = self.segments.evaluate(book, state, now, cause)
        self.records.save(state)
        if isinstance(event, Order):
            sampled, fit = functools.partial(self.records.get, book.shop_id), book.lifetime.fit
            book.lifetime_dirty |= refits.count_order(
                book.lifetime, event.customer_id, now, sampled, self.silence
            )
            if book.lifetime.fit is not fit:
                self.definitions.refitted(book)
        if before.referrer != state.referrer:  # a signup named someone else (or nobody)
            if before.referrer is not None:
                changes += self.referrals.credit(book, before.referrer, -1, now, cause)
            if state.referrer is not None:
                changes += self.referrals.credit(book, state.referrer, 1, now, cause)
        return changes, self.ledger.record(event, before, state, now).too_late

    def _erase(
        self, book: ShopBook, event: CustomerErased, state: CustomerState | None, outcome: Outcome
    ) -> Outcome:
        """An erasure leaves its marker; it forgets the customer at the shop's stream time,
        which it never moves (see :mod:`.erasure`)."""
        self.erasure.mark(event)
        now = book.stream_time
        if now is None or state is None:
            return outcome
        outcome.changes = self.erasure.erase(book, event, state, now)
        return self._after_event(book, outcome, now)

    def _after_event(self, book: ShopBook, outcome: Outcome, now: datetime) -> Outcome:
        """After an event at the shop's stream time ``now``: review whoever is due by
        then, collect new groups."""
        outcome.changes += self.segments.review_due(book, now)
        outcome.formed = formed(book, now)
        self.rehoming.queue(book)
        self.ledger.advance(book.shop_id, now)  # also when the event booked nothing
        book.dirty = True
        return outcome

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
        outcome = Outcome("processed", None, shop_id, self.segments.review_due(book, now))
        outcome.formed = formed(book, now)
        self.rehoming.queue(book)
        self.ledger.advance(shop_id, now)
        return outcome

    def define(self, key: bytes | None, raw: bytes | None, source: Source) -> Outcome:
        """Apply one record of the segment-definitions topic (key ``<shop>|<segment>``,
        value a definition, or none to delete it; ``<shop>|experiment:<id>`` for an
        experiment): it goes live at once for the shop's events, and a pass over its
        existing customers is queued (see :meth:`reevaluate`). A record that breaks the
        contract, or whose version is not above the live one, is dead-lettered and
        changes nothing."""
        return self.controls.define(key, raw, source)

    def reevaluating(self) -> list[str]:
        """The shops (of the partitions the tables hold) with an unfinished pass."""
        return self.backlog.shop_ids()

    def reevaluate(self, shop_id: str, limit: int) -> Outcome | None:
        """Run up to ``limit`` more customers of the shop's oldest unfinished pass (None:
        nothing to do, or a pass waits). The cursor moves with them, in the same commit."""
        return self.controls.step(self.book(shop_id), limit)

    def flush(self) -> None:
        """Write every changed book's shop record and models (and the partition priors),
        and the metric buckets booked since the last flush."""
        self.ledger.flush()
        self.books.flush()

    def book(self, shop_id: str, partition: int | None = None) -> ShopBook:
        """The shop's book, rebuilt from the tables when not in memory."""
        return self.books.get(shop_id, partition)

    def load(self, shop_id: str, customer_id: str) -> CustomerState:
        """A customer's state, or a fresh one."""
        return self.records.load(shop_id, customer_id)

    def stream_time(self, shop_id: str) -> datetime | None:
        """The shop's latest event time seen, if any."""
        return self.books.stream_time(shop_id)

    def shop_customers(self, shop_id: str, after: str | None = None) -> Iterator[CustomerState]:
        """Every known customer of a shop in customer-id order (a scan of its key range),
        or those whose id follows ``after``."""
        return self.records.of_shop(shop_id, after)

    def view(self, state: CustomerState, now: datetime) -> CustomerSnapshot:
        """The snapshot segment models read (see :meth:`Evaluation.view`)."""
        return self.segments.view(state, now)
