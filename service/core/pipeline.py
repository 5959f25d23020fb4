"""What happens to one input record, independent of Faust and Kafka.

The pipeline reads and writes two mappings that the worker backs with
changelog-backed Faust tables (tests use plain dicts):

- ``customers``: ``"<shop_id>/<customer_id>"`` -> :class:`CustomerState` JSON;
- ``shops``: ``shop_id`` -> the shop's stream time, last full re-evaluation, partition;
- ``models``: checkpoints of learned models (:mod:`service.core.checkpoints`);
- ``metrics``: per-day metric buckets (:mod:`service.metrics.ledger`).

Per-shop segment models whose state is derived from the customers (RFM, rules)
live in :class:`ShopBook` caches rebuilt from ``customers`` on first use; learned
models are restored from their last checkpoint. A restarted or rebalanced worker
thus recovers everything from the changelogs alone.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from service.core.changes import Cause, DeadLetter, SegmentChange, SegmentFormed, Source
from service.core.checkpoints import Checkpoints
from service.core.contracts import EventType, Rejection, parse_event
from service.core.customer import CustomerState, apply
from service.core.events import Event, event_type, format_time, from_payload, parse_time
from service.core.features import CustomerSnapshot, snapshot
from service.core.keys import customer_key, prior_key
from service.metrics.ledger import MetricsLedger
from service.segments import SegmentModel, available_models
from service.settings import Settings

Status = Literal["processed", "duplicate", "dead_lettered"]


@dataclass(slots=True)
class Outcome:
    """Result of handling one record: what to emit and how to count it."""

    status: Status
    event_type: str | None = None
    shop_id: str | None = None
    changes: list[SegmentChange] = field(default_factory=list)
    formed: list[SegmentFormed] = field(default_factory=list)
    dead_letter: DeadLetter | None = None
    too_late: bool = False


class ShopBook:
    """One shop's segment models and the ids of its customers."""

    def __init__(self, shop_id: str, models: dict[str, SegmentModel]) -> None:
        self.shop_id = shop_id
        self.models = models
        self.customer_ids: set[str] = set()
        self.events_since_checkpoint = 0

    @property
    def learned(self) -> dict[str, SegmentModel]:
        """The models that need checkpoints (not derivable from the customers)."""
        return {n: m for n, m in self.models.items() if not m.derived_from_customers}

    def learn(self, view: CustomerSnapshot) -> None:
        """Let every model take in ``view``."""
        for model in self.models.values():
            model.learn(view)

    def evaluate(
        self, state: CustomerState, view: CustomerSnapshot, cause: Cause, learn: bool = True
    ) -> list[SegmentChange]:
        """Let every model learn from ``view`` (unless told not to) and record changed
        assignments in ``state``."""
        if learn:
            self.learn(view)
        changes = []
        for name, model in self.models.items():
            current = model.assign(view)
            previous = state.segments.get(name)
            if current == previous:
                continue
            if current is None:
                del state.segments[name]
            else:
                state.segments[name] = current
            changes.append(
                SegmentChange(
                    state.shop_id, state.customer_id, name, previous, current, view.as_of, cause
                )
            )
        return changes

    def drain_formed(self, now: datetime) -> list[SegmentFormed]:
        """New groups that learned models noticed since the last call."""
        formed = []
        for name, model in self.models.items():
            drain = getattr(model, "drain_announcements", None)
            if drain is None:
                continue
            formed += [
                SegmentFormed(self.shop_id, name, item.segment, item.description, item.size, now)
                for item in drain()
            ]
        return formed


class Pipeline:
    """Validates, de-duplicates and folds events into state; re-evaluates segments."""

    def __init__(
        self,
        settings: Settings,
        customers: MutableMapping[str, Any],
        shops: MutableMapping[str, Any],
        models: MutableMapping[str, Any] | None = None,
        metrics: MutableMapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.customers = customers
        self.shops = shops
        self.checkpoints = Checkpoints({} if models is None else models)
        self.ledger = MetricsLedger.from_settings({} if metrics is None else metrics, settings)
        self._books: dict[str, ShopBook] = {}
        self._priors: dict[int, dict[str, Any]] = {}
        self._index: dict[str, set[str]] | None = None
        self._rescore_every = timedelta(hours=settings.rescore_interval_hours)

    def forget_shops(self) -> None:
        """Drop the derived caches (after a rebalance the owned partitions changed)."""
        self._books.clear()
        self._priors.clear()
        self._index = None

    def handle(
        self, raw: bytes | None, expected: EventType, source: Source, key: bytes | None
    ) -> Outcome:
        """Process one record from an input topic."""
        parsed = parse_event(raw, expected)
        if isinstance(parsed, Rejection):
            letter = DeadLetter(parsed.reason, parsed.detail, source, key, raw)
            return Outcome("dead_lettered", dead_letter=letter)
        event = from_payload(parsed)
        outcome = Outcome("processed", event_type(event), event.shop_id)
        now = self._advance_stream_time(event, source.partition)
        book = self.book(event.shop_id)
        state = self.load(event.shop_id, event.customer_id)
        before = state.copy()
        if apply(state, event, self.settings.dedup_window):
            book.customer_ids.add(event.customer_id)
            cause = Cause("event", event.event_id, event_type(event))
            outcome.changes = book.evaluate(state, self.view(state, now), cause)
            self._save(state)
            outcome.too_late = self.ledger.record(event, before, state, now).too_late
        else:
            outcome.status = "duplicate"
        outcome.changes += self._rescore_if_due(book, now)
        outcome.formed = book.drain_formed(now)
        self._checkpoint_if_due(book)
        return outcome

    def book(self, shop_id: str) -> ShopBook:
        """The shop's models, rebuilt from the customers table when not cached."""
        book = self._books.get(shop_id)
        if book is None:
            book = self._rebuild(shop_id)
            self._books[shop_id] = book
        return book

    def load(self, shop_id: str, customer_id: str) -> CustomerState:
        """A customer's state, or a fresh one."""
        stored = self.customers.get(customer_key(shop_id, customer_id))
        if stored is None:
            return CustomerState(shop_id, customer_id)
        return CustomerState.from_json(stored)

    def stream_time(self, shop_id: str) -> datetime | None:
        """The shop's latest event time seen, if any."""
        shop = self.shops.get(shop_id)
        return None if shop is None else parse_time(shop["stream_time"])

    def shop_customers(self, shop_id: str) -> Iterator[CustomerState]:
        """Every known customer of a shop."""
        return self._states(self.book(shop_id))

    def _states(self, book: ShopBook) -> Iterator[CustomerState]:
        for customer_id in sorted(book.customer_ids):
            yield self.load(book.shop_id, customer_id)

    def view(self, state: CustomerState, now: datetime) -> CustomerSnapshot:
        """The snapshot segment models read, with this deployment's churn gap."""
        return snapshot(state, now, self.settings.lifecycle_churned_days)

    def _save(self, state: CustomerState) -> None:
        self.customers[customer_key(state.shop_id, state.customer_id)] = state.to_json()

    def _advance_stream_time(self, event: Event, partition: int) -> datetime:
        shop = self.shops.get(event.shop_id)
        if shop is None:
            shop = {
                "stream_time": format_time(event.occurred_at),
                "rescored_at": None,
                "partition": partition,
            }
        elif event.occurred_at <= parse_time(shop["stream_time"]):
            return parse_time(shop["stream_time"])
        else:
            shop = {**shop, "stream_time": format_time(event.occurred_at)}
        if shop["rescored_at"] is None:
            shop["rescored_at"] = shop["stream_time"]
        self.shops[event.shop_id] = shop
        return parse_time(shop["stream_time"])

    def _rescore_if_due(self, book: ShopBook, now: datetime) -> list[SegmentChange]:
        """Re-evaluate the whole shop when enough stream time passed since the last time:
        inactivity moves customers (active -> at risk) even when they send nothing.

        Models first learn every customer as of ``now``, then assign: the result does not
        depend on the order customers are visited in."""
        shop = self.shops[book.shop_id]
        if now - parse_time(shop["rescored_at"]) < self._rescore_every:
            return []
        self.shops[book.shop_id] = {**shop, "rescored_at": format_time(now)}
        for state in self._states(book):
            book.learn(self.view(state, now))
        changes: list[SegmentChange] = []
        for state in self._states(book):
            before = replace(state, segments=dict(state.segments))
            found = book.evaluate(state, self.view(state, now), Cause("timer"), learn=False)
            if found:
                self._save(state)
                self.ledger.record(None, before, state, now)
                changes += found
        book.events_since_checkpoint = self.settings.model_checkpoint_every
        return changes

    def _checkpoint_if_due(self, book: ShopBook) -> None:
        book.events_since_checkpoint += 1
        if book.events_since_checkpoint < self.settings.model_checkpoint_every:
            return
        book.events_since_checkpoint = 0
        if book.learned:
            self.checkpoints.save(book.shop_id, book.learned)
        partition = self.shops[book.shop_id].get("partition")
        if partition in self._priors:
            self.checkpoints.save(prior_key(partition), self._priors[partition])

    def _rebuild(self, shop_id: str) -> ShopBook:
        restored = self.checkpoints.load(shop_id)
        models = {
            name: restored.get(name) or model.create(self.settings, seed=_shop_seed(shop_id))
            for name, model in available_models().items()
        }
        partition = (self.shops.get(shop_id) or {}).get("partition")
        if partition is not None:
            self._attach_priors(models, partition)
        book = ShopBook(shop_id, models)
        book.customer_ids = set(self._customer_index().get(shop_id, ()))
        now = self.stream_time(shop_id)
        derived = [m for m in models.values() if m.derived_from_customers]
        if now is not None and derived:
            for state in self._states(book):
                view = self.view(state, now)
                for model in derived:
                    model.learn(view)
        return book

    def _attach_priors(self, models: dict[str, SegmentModel], partition: int) -> None:
        """Give models that learn across shops the prior shared by their partition."""
        if partition not in self._priors:
            self._priors[partition] = self.checkpoints.load(prior_key(partition))
        priors = self._priors[partition]
        for name, model in models.items():
            attach = getattr(model, "attach_prior", None)
            if attach is None:
                continue
            if name not in priors:
                priors[name] = type(model).create(self.settings, seed=partition)
            attach(priors[name])

    def _customer_index(self) -> dict[str, set[str]]:
        """Customer ids per shop, from one scan of the local customers table."""
        if self._index is None:
            index: dict[str, set[str]] = defaultdict(set)
            for key in list(self.customers.keys()):
                shop_id, _, customer_id = str(key).partition("/")
                index[shop_id].add(customer_id)
            self._index = index
        return self._index


def _shop_seed(shop_id: str) -> int:
    """A stable per-shop seed, so a rebuilt model starts as the first one did."""
    return zlib.crc32(shop_id.encode())
