"""Segment definitions as a shop sends them (records of the segment-definitions topic,
key ``<shop>|<segment>``): a definition goes live at once for the shop's events, and a
re-evaluation pass puts the shop's existing customers in or out of its segment. A record
that breaks the contract, or whose version is not above the live one, changes nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from segstream.domain.changes import Cause, SegmentChange
from segstream.domain.contracts import strict_json
from segstream.engine.books import ShopBook
from segstream.engine.customers import Customers
from segstream.engine.evaluation import Evaluation, move
from segstream.engine.outcome import Outcome
from segstream.engine.passes import Backlog, Refusal
from segstream.segments.defined import Definition, DefinitionError, validate_definition
from segstream.segments.defined.live import Reevaluation, model_name
from segstream.state.keyspace import parse_definition_record_key

MAX_DEFINITIONS = 100
"""Most segments one shop defines (each is evaluated on every event of the shop's)."""
MAX_DEFINITION_BYTES = 64 * 1024
"""Largest definition record read (a rule of 64 nodes needs a few KB)."""


class DefinitionControl:
    """Applies a shop's segment definitions and runs their re-evaluation passes."""

    def __init__(self, customers: Customers, evaluation: Evaluation, backlog: Backlog) -> None:
        self.customers = customers
        self.evaluation = evaluation
        self.backlog = backlog

    @staticmethod
    def parse(shop_id: str, segment_id: str, raw: bytes | None) -> Definition | None:
        """The valid definition ``raw`` holds, of the segment its key names (None: a
        deletion); raises :class:`DefinitionError`."""
        if raw is None:
            return None
        definition = validate_definition(json_record(raw, DefinitionError, "definition"))
        if (definition.shop_id, definition.segment_id) != (shop_id, segment_id):
            raise DefinitionError("segment_id", f"the key names {shop_id}|{segment_id}")
        return definition

    def apply(
        self, book: ShopBook, segment_id: str, definition: Definition | None
    ) -> Refusal | None:
        """Make ``definition`` live (None: delete the segment) and queue its pass; or why
        not."""
        refused = _refused(book, segment_id, definition)
        if refused is not None:
            return refused
        if definition is None:
            book.definitions.delete(segment_id)
        else:
            book.definitions.define(definition)
        book.definitions_dirty = True
        if book.definitions.pending:
            self.backlog.add(book.shop_id)
        return None

    def refitted(self, book: ShopBook) -> None:
        """The shop's lifetime model was refitted: its predictions moved for every customer
        at once, so each rule that reads one re-evaluates the shop (same version; a pass
        under way starts over)."""
        for segment_id, rule in book.definitions.rules.items():
            if rule.predictions:
                book.definitions.queue(Reevaluation(segment_id, rule.definition.version))
                book.definitions_dirty = True
        if book.definitions.pending:
            self.backlog.add(book.shop_id)

    def run(self, book: ShopBook, item: Reevaluation, limit: int) -> Outcome:
        """Put up to ``limit`` more of the shop's customers in or out of the segment."""
        book.definitions_dirty = True
        outcome = Outcome("processed", None, book.shop_id)
        if book.stream_time is not None:
            outcome.changes, done = self._reevaluate(book, item, book.stream_time, limit)
            if done < limit:
                book.definitions.pending.pop(0)
            book.dirty = True
        else:  # no event yet: no customers
            book.definitions.pending.pop(0)
        return outcome

    def _reevaluate(
        self, book: ShopBook, item: Reevaluation, now: datetime, limit: int
    ) -> tuple[list[SegmentChange], int]:
        rule = None if item.deleted else book.definitions.rules[item.segment_id]
        name, cause = model_name(item.segment_id), Cause("definition")
        changes: list[SegmentChange] = []
        done = 0
        for state in self.customers.of_shop(book.shop_id, after=item.after):
            if done == limit:
                break
            look = rule is not None and not state.is_prospect
            view = self.evaluation.view(state, now) if look else None
            inside = rule is not None and view is not None and rule(state, view)
            segments, enrolments = dict(state.segments), dict(state.enrolments)
            current = item.segment_id if inside else None
            moved = move(book, state, name, current, now, cause, item.version)
            sooner = (
                rule is not None
                and view is not None
                and self.evaluation.review_sooner(book, state, view, [rule])
            )
            if moved or sooner:
                self.customers.save(state)
            if moved:
                self.evaluation.book_moves(segments, enrolments, state, now)
                changes += moved
            item.after, done = state.customer_id, done + 1
        return changes, done


def definition_key(key: bytes | None) -> tuple[str, str]:
    """The shop and segment (or ``experiment:<id>``) a definitions-topic key names."""
    parsed = parse_definition_record_key(key)
    if parsed is None:
        raise DefinitionError("key", "the record key must be '<shop_id>|<segment_id>'")
    return parsed


def json_record(raw: bytes, error: type[DefinitionError], what: str) -> Any:
    """The JSON a definitions-topic record holds (at most MAX_DEFINITION_BYTES), or
    ``error`` naming ``what`` the record should be."""
    if len(raw) > MAX_DEFINITION_BYTES:
        raise error(what, f"larger than {MAX_DEFINITION_BYTES} bytes")
    try:
        return strict_json(raw.decode("utf-8"))  # as events and the API read JSON
    except (ValueError, RecursionError) as problem:  # UnicodeDecodeError is a ValueError
        raise error(what, f"not JSON: {problem}") from None


def _refused(book: ShopBook, segment_id: str, definition: Definition | None) -> Refusal | None:
    if definition is None:
        return None  # deleting what is not defined deletes nothing
    rules = book.definitions.rules
    if segment_id not in rules and len(rules) >= MAX_DEFINITIONS:
        return "invalid_definition", f"a shop defines at most {MAX_DEFINITIONS} segments"
    last = book.definitions.last_version(segment_id)
    if definition.version <= last:
        return "stale_definition", (
            f"version {definition.version} of {segment_id!r} is not above its last version {last}"
        )
    return None
