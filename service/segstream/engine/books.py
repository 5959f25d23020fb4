"""A shop in memory (its :class:`ShopBook`) and the store of books: built from the tables
on first use, kept while the worker owns the shop, written back when they changed.

Nothing in a shop's records grows with its customers: what a model keeps per customer is
in the customer's state (``memory``), a shop keeps counts. A book holds the models, the
segment sizes and the review schedule (the customers due for a look at a known stream
time: a quiet customer turning "at risk"). :meth:`ShopBooks.flush` writes the books that
changed back to ``shops`` and ``models``; the worker flushes once per batch, before the
batch commits. A book is rebuilt from those tables on first use, its schedule from the
due times in its customers' states; the schedule keeps at most
``review_schedule_entries`` of them in memory (fewer when the worker's shops together
keep over ``review_schedule_worker_entries``: the largest are cut to what the others
leave, :func:`water_level`) and reads the later ones again from there when their time
comes (docs/design/review-schedule.md).
"""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from segstream.engine.customers import Customers
from segstream.experiments.live import ShopExperiments
from segstream.learning.lifetime import ShopLifetime
from segstream.metrics.journey import ShopFunnel
from segstream.segments import SegmentModel, available_models
from segstream.segments.defined.live import ShopDefinitions
from segstream.settings import Settings
from segstream.state.keyspace import (
    EXPERIMENT_KEY_PREFIX,
    definitions_key,
    experiments_key,
    funnel_key,
    lifetime_key,
    prior_key,
)
from segstream.state.model_store import Checkpoints

SCHEDULE_FLOOR = 256
"""Fewest due times a shop's schedule keeps when the worker's are shared (a smaller one
would read its customers' states again every few reviews)."""
DueTimes = Callable[[], Iterable[tuple[str, float]]]
"""A shop's customers with a review due, and when (epoch seconds): their saved states."""


class Schedule:
    """Customers of one shop due for a review at a stream time (epoch seconds).

    At most ``limit`` due times are kept in memory (0: all), the earliest, so a shop's
    schedule does not grow with its customers: a customer's due time is also in their
    saved state (``due_at``), and ``reload`` reads those. When more are due, the latest
    are dropped and :attr:`horizon` marks the earliest dropped (due time, customer id):
    every review before it is in memory. A question about a time at or past the horizon
    first refills the schedule from ``reload``, taking only reviews after the last one
    handed out (the customers just handed out are reviewed from their states next).
    Reviews come out in (due time, customer id) order whatever the limit.
    """

    def __init__(self, limit: int = 0, reload: DueTimes | None = None) -> None:
        if limit and reload is None:
            raise ValueError("a bounded schedule needs the due times to reload")
        self._heap: list[tuple[float, str]] = []
        self._due: dict[str, float] = {}
        self.limit = limit
        self._reload = reload
        self.horizon: tuple[float, str] | None = None
        self.reloads = 0

    def set(self, customer_id: str, due: datetime | None) -> None:
        """Review ``customer_id`` at ``due`` (None: not at all), replacing any earlier time."""
        if due is None:
            self._due.pop(customer_id, None)
            return
        moment = due.timestamp()
        if self.horizon is not None and (moment, customer_id) >= self.horizon:
            self._due.pop(customer_id, None)  # past the horizon: a reload finds it
            return
        if self._due.get(customer_id) == moment:
            return
        self._due[customer_id] = moment
        heapq.heappush(self._heap, (moment, customer_id))
        if self.limit and len(self._due) > self.limit:
            self._keep(sorted((m, c) for c, m in self._due.items()))
        elif len(self._heap) > 2 * len(self._due) + 1024:
            self._heap = [(m, c) for c, m in self._due.items()]
            heapq.heapify(self._heap)

    def resize(self, limit: int) -> None:
        """Keep at most ``limit`` due times from now on (the latest go past the horizon
        when more are kept)."""
        self.limit = limit
        if len(self._due) > limit:
            self._keep(sorted((m, c) for c, m in self._due.items()))

    def pop_due(self, now: datetime) -> Iterator[str]:
        """The customers due at or before ``now``, earliest first (each removed)."""
        moment, last = now.timestamp(), None
        while True:
            heap = self._heap
            while heap and heap[0][0] <= moment:
                due, customer_id = heapq.heappop(heap)
                if self._due.get(customer_id) == due:
                    del self._due[customer_id]
                    last = (due, customer_id)
                    yield customer_id
            if self.horizon is None or self.horizon[0] > moment:
                return
            self.refill(after=last)

    def any_due(self, now: datetime) -> bool:
        """Whether some customer is due at or before ``now``."""
        if self.horizon is not None and self.horizon[0] <= now.timestamp():
            self.refill()
        heap = self._heap
        while heap and self._due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # replaced by a later time, or cancelled
        return bool(heap) and heap[0][0] <= now.timestamp()

    def refill(self, after: tuple[float, str] | None = None) -> None:
        """Read the due times again (those after ``after`` only) and keep the earliest."""
        if self._reload is None:
            self.horizon = None
            return
        self.reloads += 1
        found = sorted(
            (moment, customer_id)
            for customer_id, moment in self._reload()
            if after is None or (moment, customer_id) > after
        )
        self._due.clear()
        self._keep(found)

    def _keep(self, ordered: list[tuple[float, str]]) -> None:
        """Keep the first ``limit`` of ``ordered`` (all when unbounded): the horizon is
        the first one left out. After a drop a quarter of the room stays free, so the
        next drop is ``limit / 4`` new reviews away."""
        room = len(ordered)
        if self.limit and room > self.limit:
            room = max(1, self.limit * 3 // 4)
        kept = ordered[:room]
        self.horizon = ordered[room] if room < len(ordered) else None
        self._due = {customer_id: moment for moment, customer_id in kept}
        self._heap = kept  # sorted: a heap already

    def __len__(self) -> int:
        return len(self._due)


def water_level(demands: list[int], budget: int) -> int:
    """The largest cap ``c`` with ``sum(min(d, c) for d in demands) <= budget`` (a
    very large one when they all fit): the small keep what they need, the large share
    the rest evenly.

    >>> water_level([10, 10, 100, 1000], 500), water_level([10, 20], 500) >= 20
    (380, True)
    """
    if sum(demands) <= budget:
        return max(demands, default=0) + budget
    left, count = budget, len(demands)
    for demand in sorted(demands):
        if demand * count > left:
            break
        left, count = left - demand, count - 1
    return left // count


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

    def advance(self, occurred_at: datetime) -> datetime:
        """The shop's stream time after an event that occurred at ``occurred_at`` (it
        never goes back)."""
        if self.stream_time is None or occurred_at > self.stream_time:
            self.stream_time = occurred_at
        return self.stream_time


class ShopBooks:
    """The books of the shops this worker has seen since it last forgot them, and the
    segment-model priors their partitions share."""

    def __init__(
        self,
        settings: Settings,
        shops: MutableMapping[str, Any],
        checkpoints: Checkpoints,
        customers: Customers,
    ) -> None:
        self.settings = settings
        self.shops = shops
        self.checkpoints = checkpoints
        self.customers = customers
        self.cached: dict[str, ShopBook] = {}
        self._priors: dict[int, dict[str, SegmentModel]] = {}

    def get(self, shop_id: str, partition: int | None = None) -> ShopBook:
        """The shop's book, rebuilt from the tables when not in memory."""
        book = self.cached.get(shop_id)
        if book is None:
            book = self._rebuild(shop_id, partition)
            self.cached[shop_id] = book
        return book

    def fit_schedules(self) -> None:
        """Share the worker's review times among its shops' schedules: a shop that keeps
        fewer than its share leaves the rest to the others (:func:`water_level`); each
        keeps at most the per-shop limit, and at least :data:`SCHEDULE_FLOOR`."""
        per_shop = self.settings.review_schedule_entries
        demands = [
            per_shop if book.schedule.horizon is not None else len(book.schedule)
            for book in self.cached.values()
        ]
        level = water_level(demands, self.settings.review_schedule_worker_entries)
        limit = min(per_shop, max(min(per_shop, SCHEDULE_FLOOR), level))
        for book in self.cached.values():
            book.schedule.resize(limit)

    def peek(self, shop_id: str) -> ShopBook:
        """The shop's book for a reader: the one in memory, or one built from the tables
        that is not kept (nor are the priors it loads), without its review schedule."""
        book = self.cached.get(shop_id)
        if book is not None:
            return book
        return self._build(shop_id, self.shops.get(shop_id), None, self._priors_copy)

    def find(self, shop_id: str) -> ShopBook | None:
        """The shop's book if it is in memory (None: not built since the last forget)."""
        return self.cached.get(shop_id)

    def forget(self) -> None:
        """Drop the books and priors (they are rebuilt from the tables)."""
        self.cached.clear()
        self._priors.clear()

    def stream_time(self, shop_id: str) -> datetime | None:
        """The shop's latest event time seen, if any."""
        book = self.cached.get(shop_id)
        if book is not None:
            return book.stream_time
        shop = self.shops.get(shop_id)
        return None if shop is None else datetime.fromtimestamp(shop["stream_time"], UTC)

    def flush(self) -> None:
        """Write every changed book's records and models, and the priors of their
        partitions; fit the schedules to the worker's budget."""
        self.fit_schedules()
        partitions = set()
        for book in self.cached.values():
            self._flush_records(book)
            if not book.dirty:
                continue
            self.shops[book.shop_id] = book.record()
            self.checkpoints.save(book.shop_id, book.models)
            partitions.add(book.partition)
            book.dirty = False
        for partition in sorted(partitions):
            if partition in self._priors:
                self.checkpoints.save(prior_key(partition), self._priors[partition])

    def _flush_records(self, book: ShopBook) -> None:
        """Write the shop's definitions, lifetime model, experiments and funnel if they
        changed (cohorts older than the clock's leave the funnel, whoever moved)."""
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
            oldest = oldest_cohort(self.settings, book.stream_time)
            book.funnel_dirty |= book.funnel.expire(oldest)
        if book.funnel_dirty:
            self.shops[funnel_key(book.shop_id)] = book.funnel.record()
            book.funnel_dirty = False

    def _rebuild(self, shop_id: str, partition: int | None) -> ShopBook:
        stored = self.shops.get(shop_id)
        book = self._build(shop_id, stored, partition, self._priors_kept)
        book.schedule = Schedule(self.settings.review_schedule_entries, self._due_times(shop_id))
        if stored is not None:
            book.schedule.refill()
        return book

    def _due_times(self, shop_id: str) -> DueTimes:
        """The due times in the saved states of the shop's customers (this batch's too)."""

        def read() -> Iterator[tuple[str, float]]:
            for state in self.customers.of_shop(shop_id):
                if state.due_at is not None:
                    yield state.customer_id, state.due_at.timestamp()

        return read

    def _build(
        self,
        shop_id: str,
        stored: dict[str, Any] | None,
        partition: int | None,
        priors: Callable[[int], dict[str, SegmentModel]],
    ) -> ShopBook:
        """The shop's book from its records, models and ``priors`` of its partition (no
        review schedule)."""
        if partition is None or partition < 0:
            partition = stored["partition"] if stored else 0
        restored = self.checkpoints.load(shop_id)
        models = {
            name: restored.get(name) or model.create(self.settings, seed=_shop_seed(shop_id))
            for name, model in available_models().items()
        }
        self._attach_priors(models, priors(partition), partition)
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
        _adopt_enrolments(book)
        return book

    def _priors_kept(self, partition: int) -> dict[str, SegmentModel]:
        """The partition's priors, loaded once and kept (the writer's)."""
        if partition not in self._priors:
            self._priors[partition] = self.checkpoints.load(prior_key(partition))
        return self._priors[partition]

    def _priors_copy(self, partition: int) -> dict[str, SegmentModel]:
        """The partition's priors for a reader: a copy of the kept ones, or loaded and not
        kept."""
        kept = self._priors.get(partition)
        return dict(kept) if kept is not None else self.checkpoints.load(prior_key(partition))

    def _attach_priors(
        self, models: dict[str, SegmentModel], priors: dict[str, SegmentModel], partition: int
    ) -> None:
        """Give models that learn across shops the prior shared by their partition (one
        created in ``priors`` when it has none yet)."""
        for name, model in models.items():
            if not model.uses_partition_prior:
                continue
            if name not in priors:
                priors[name] = type(model).create(self.settings, seed=partition)
            model.attach_prior(priors[name])


def _adopt_enrolments(book: ShopBook) -> None:
    """Move the enrolment passes a record written before experiments had their own queue
    holds among the definitions' re-evaluations (named ``experiment:<id>``) to the
    experiments' queue; both records are rewritten with the next flush."""
    adopted = [
        p for p in book.definitions.pending if p.segment_id.startswith(EXPERIMENT_KEY_PREFIX)
    ]
    if not adopted:
        return
    book.definitions.pending = [p for p in book.definitions.pending if p not in adopted]
    book.experiments.adopt([(p.segment_id, p.version, p.after) for p in adopted])
    book.definitions_dirty = book.experiments_dirty = True


def oldest_cohort(settings: Settings, now: datetime) -> str:
    """The oldest journey cohort month still kept at ``now`` (the metrics retention)."""
    return (now - timedelta(days=settings.metrics_retention_days)).strftime("%Y-%m")


def _shop_seed(shop_id: str) -> int:
    """A stable per-shop seed, so a rebuilt model starts as the first one did."""
    return zlib.crc32(shop_id.encode())
