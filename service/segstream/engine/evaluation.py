"""Segments of one customer: every model learns from them and places them, the shop's
defined segments take them in or out, and the customer's next review is scheduled; the
reviews of quiet customers whose time came (silence moves them, active -> at risk)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from segstream.domain.changes import Cause, SegmentChange, SegmentFormed
from segstream.domain.customer import CustomerState, Silence
from segstream.domain.features import CustomerSnapshot, later, snapshot
from segstream.engine.books import ShopBook, ShopBooks
from segstream.engine.customers import Customers
from segstream.experiments.live import follow
from segstream.learning.retention import forecast_of
from segstream.metrics.ledger import MetricsLedger
from segstream.segments import SegmentModel
from segstream.segments.defined.live import model_name
from segstream.segments.defined.rules import CompiledRule
from segstream.segments.defined.timing import Looks, OutOfLooksError, soonest


class Evaluation:
    """Puts customers in and out of a shop's segments, learned and defined."""

    def __init__(
        self, silence: Silence, books: ShopBooks, customers: Customers, ledger: MetricsLedger
    ) -> None:
        self.silence = silence
        self.books = books
        self.customers = customers
        self.ledger = ledger

    def view(
        self,
        state: CustomerState,
        now: datetime,
        review: bool = False,
        held: frozenset[str] = frozenset(),
    ) -> CustomerSnapshot:
        """The snapshot segment models read, with this deployment's silence rule, the
        shop's lifetime model and what forecasts its customers' orders (a model that is an
        ``OrdersForecast``: the churn model)."""
        book = self.books.find(state.shop_id)
        if book is None:
            return snapshot(state, now, self.silence, review=review, held=held)
        return self.snapshot(book, state, now, review, held)

    def snapshot(
        self,
        book: ShopBook,
        state: CustomerState,
        now: datetime,
        review: bool = False,
        held: frozenset[str] = frozenset(),
    ) -> CustomerSnapshot:
        """The snapshot of ``state`` the models of ``book`` read."""
        forecast = forecast_of(book.models.values())
        fit = book.lifetime.fit
        return snapshot(state, now, self.silence, fit, forecast, review, held)

    def evaluate(
        self, book: ShopBook, state: CustomerState, now: datetime, cause: Cause
    ) -> list[SegmentChange]:
        """Let every model learn from the customer, record changed assignments, and
        schedule the customer's next review. A review (no event of the customer's) leaves a
        customer in their segment until the model's minimum dwell there is over."""
        review = cause.kind == "timer"
        held = _held(book, state, now) if review else {}
        view = self.view(state, now, review, frozenset(held))
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
            changes += move(book, state, name, current, now, why, details=details)
        changes += self.evaluate_defined(book, state, view, now, cause)
        reviews = [model.next_review(view) for model in book.models.values()]
        reviews += held.values()  # look again when the dwell is over
        reviews.append(self.defined_review(book, state, view))
        state.due_at = min((r for r in reviews if r is not None), default=None)
        book.schedule.set(state.customer_id, state.due_at)
        return changes

    @staticmethod
    def evaluate_defined(
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
            changes += move(book, state, model_name(segment_id), inside, now, cause, version)
        return changes

    def defined_review(
        self,
        book: ShopBook,
        state: CustomerState,
        view: CustomerSnapshot,
        rules: Collection[CompiledRule] | None = None,
    ) -> datetime | None:
        """The first moment one of the shop's defined segments (or of ``rules``) may take
        the customer in or out although they send nothing (None: none can)."""
        rules = book.definitions.rules.values() if rules is None else rules
        if not rules:
            return None
        ahead = Looks(lambda at: later(view, state, at))
        found = []
        try:
            for rule in rules:
                found.append(rule.next_change(state, view, ahead))
        except OutOfLooksError:  # rules too many or too costly to look ahead: look again soon
            found.append(soonest(view))
        return min((when for when in found if when is not None), default=None)

    def review_sooner(
        self,
        book: ShopBook,
        state: CustomerState,
        view: CustomerSnapshot,
        rules: Collection[CompiledRule] | None = None,
    ) -> bool:
        """Bring the customer's next review forward to their defined segments' next moment
        (after a look by the definitions alone: a re-evaluation, a referral); True if it
        moved (the state must then be saved)."""
        when = self.defined_review(book, state, view, rules)
        if when is None or (state.due_at is not None and state.due_at <= when):
            return False
        state.due_at = when
        book.schedule.set(state.customer_id, when)
        return True

    def review_due(self, book: ShopBook, now: datetime) -> list[SegmentChange]:
        """Review the customers whose time came: silence moves them (active -> at risk)
        although they send nothing."""
        changes: list[SegmentChange] = []
        for customer_id in list(book.schedule.pop_due(now)):
            state = self.customers.load(book.shop_id, customer_id)
            # a review changes no facts: segments and enrolments are all "before" needs
            segments, enrolments = dict(state.segments), dict(state.enrolments)
            found = self.evaluate(book, state, now, Cause("timer"))
            self.customers.save(state)
            if found:
                self.book_moves(segments, enrolments, state, now)
                changes += found
        return changes

    def review_with(
        self, book: ShopBook, model: SegmentModel, state: CustomerState, now: datetime
    ) -> list[SegmentChange]:
        """One model's look at a customer in a pass: their segment moves only if the
        model retired it or can now place them (the state is saved when learning changed
        its memory or the segment moved)."""
        view = self.view(state, now, review=True)
        memory = state.memory.get(model.name)
        model.learn(view)
        segments, enrolments = dict(state.segments), dict(state.enrolments)
        moved = move(book, state, model.name, model.assign(view), now, Cause("model"))
        if moved:
            self.book_moves(segments, enrolments, state, now)
        if moved or state.memory.get(model.name) is not memory:
            self.customers.save(state)
        return moved

    def book_moves(
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


def move(
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
    since = state.segment_since.get(name)
    model = book.models.get(name)
    if current is None:
        del state.segments[name]
    else:
        state.segments[name] = current
    state.segment_since[name] = now.timestamp()  # a stay in no segment has a start too
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
        previous_since=since,
    )
    change, counted = follow(book.experiments, state, change, now)
    book.experiments_dirty |= counted
    return [change]


def formed(book: ShopBook, now: datetime) -> list[SegmentFormed]:
    """New groups that learned models noticed."""
    return [
        SegmentFormed(book.shop_id, name, item.segment, item.description, item.size, now, item.name)
        for name, model in book.models.items()
        for item in model.drain_announcements()
    ]


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
