"""Rehoming: when a learned model retires segments (or can now place customers it could
not), a pass over the shop's customers lets that model look at each again, as a review:
whoever carries a retired segment, or none though the model can place them now, moves
(cause ``model``); the others stay as they are. It is queued with the shop's definition
re-evaluations, named ``model:<model name>``."""

from __future__ import annotations

from segstream.engine.books import ShopBook
from segstream.engine.customers import Customers
from segstream.engine.evaluation import Evaluation, formed
from segstream.engine.outcome import Outcome
from segstream.engine.passes import Backlog
from segstream.segments.defined.live import Reevaluation
from segstream.state.keyspace import REHOMING_PREFIX


class Rehoming:
    """Queues and runs the passes of models that retired segments."""

    def __init__(self, customers: Customers, evaluation: Evaluation, backlog: Backlog) -> None:
        self.customers = customers
        self.evaluation = evaluation
        self.backlog = backlog

    def queue(self, book: ShopBook) -> None:
        """A pass over the shop's customers for each model that asked for one; one under
        way starts over, which covers both."""
        for name, model in book.models.items():
            if model.drain_pass_request():
                book.definitions.queue(Reevaluation(f"{REHOMING_PREFIX}{name}", 0))
                book.definitions_dirty = True
                self.backlog.add(book.shop_id)

    def run(self, book: ShopBook, item: Reevaluation, limit: int) -> Outcome:
        """Review up to ``limit`` more of the shop's customers with the pass's model."""
        name = item.segment_id.removeprefix(REHOMING_PREFIX)
        model, now = book.models.get(name), book.stream_time
        outcome = Outcome("processed", None, book.shop_id)
        done = 0
        for state in self.customers.of_shop(book.shop_id, after=item.after):
            if done == limit or model is None or now is None:
                break
            if not state.is_prospect:
                outcome.changes += self.evaluation.review_with(book, model, state, now)
            item.after, done = state.customer_id, done + 1
        if done < limit:
            book.definitions.pending.pop(0)
        if now is not None:
            outcome.formed = formed(book, now)
        self.queue(book)
        book.definitions_dirty = book.dirty = True
        return outcome
