"""The shop's controls: a record of the segment-definitions topic goes to its kind's
control (a segment definition, key ``<shop>|<segment>``; an experiment, key
``<shop>|experiment:<id>``), and one step of the shop's oldest unfinished pass runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from segstream.domain.changes import DeadLetter, Source
from segstream.engine.books import ShopBook
from segstream.engine.definitions import DefinitionControl, definition_key
from segstream.engine.experiments import ExperimentControl
from segstream.engine.outcome import DEFINITION, Outcome, misplaced
from segstream.engine.passes import Backlog, Refusal
from segstream.engine.rehoming import Rehoming
from segstream.segments.defined import DefinitionError
from segstream.state.keyspace import EXPERIMENT_KEY_PREFIX, REHOMING_PREFIX

R = TypeVar("R")
BookOf = Callable[[str, int | None], ShopBook]
"""The book of a shop (rebuilt from the tables when not in memory), given its partition."""


class Control(Protocol[R]):
    """A kind of record of the segment-definitions topic (a definition, an experiment)."""

    def parse(self, shop_id: str, name: str, raw: bytes | None) -> R | None:
        """The record's content (None: a deletion); raises :class:`DefinitionError`."""

    def apply(self, book: ShopBook, name: str, record: R | None) -> Refusal | None:
        """Apply it to the shop (None), or why it changes nothing."""


class Controls:
    """Applies control records and runs the passes they (and learned models) queue."""

    def __init__(
        self,
        definitions: DefinitionControl,
        experiments: ExperimentControl,
        rehoming: Rehoming,
        backlog: Backlog,
        book_of: BookOf,
        partitions: int,
    ) -> None:
        self.definitions = definitions
        self.experiments = experiments
        self.rehoming = rehoming
        self.backlog = backlog
        self.book_of = book_of
        self.partitions = partitions

    def define(self, key: bytes | None, raw: bytes | None, source: Source) -> Outcome:
        """Apply one record (see :meth:`segstream.engine.pipeline.Pipeline.define`)."""
        try:
            shop_id, name = definition_key(key)
        except DefinitionError as error:
            letter = DeadLetter("invalid_definition", str(error), source, key, raw)
            return Outcome("dead_lettered", DEFINITION, dead_letter=letter)
        if name.startswith(EXPERIMENT_KEY_PREFIX):
            return self._define(self.experiments, shop_id, name, key, raw, source)
        return self._define(self.definitions, shop_id, name, key, raw, source)

    def _define(
        self,
        control: Control[R],
        shop_id: str,
        name: str,
        key: bytes | None,
        raw: bytes | None,
        source: Source,
    ) -> Outcome:
        try:
            record = control.parse(shop_id, name, raw)
        except DefinitionError as error:
            letter = DeadLetter("invalid_definition", str(error), source, key, raw)
            return Outcome("dead_lettered", DEFINITION, dead_letter=letter)
        detour = misplaced(shop_id, source, key, raw, self.partitions)
        if detour is not None:
            return Outcome("rerouted", DEFINITION, shop_id, detour=detour)
        refused = control.apply(self.book_of(shop_id, source.partition), name, record)
        if refused is not None:
            letter = DeadLetter(refused[0], refused[1], source, key, raw)
            return Outcome("dead_lettered", DEFINITION, shop_id, dead_letter=letter)
        return Outcome("processed", DEFINITION, shop_id)

    def step(self, book: ShopBook, limit: int) -> Outcome | None:
        """Up to ``limit`` more customers of the shop's oldest unfinished pass (None:
        nothing to do, or a pass waits). Enrolment passes run once the re-evaluations are
        done: the segments have settled."""
        if book.definitions.pending:
            item = book.definitions.pending[0]
            rehoming = item.segment_id.startswith(REHOMING_PREFIX)
            runner = self.rehoming if rehoming else self.definitions
            outcome: Outcome | None = runner.run(book, item, limit)
        elif book.experiments.pending:
            outcome = self.experiments.run(book, limit)
        else:
            return None
        self.backlog.settle(book)
        return outcome
