"""What the query API reads: a shop's book, records, customers and metrics, read-only.

The API answers on the worker's event loop, between batches. Reading through the write
side (``Pipeline.book``) built a shop's book and kept it: the writer then held, and
flushed with every batch, a book nobody wrote to. A :class:`ReadView` reads the book the
writer has in memory when it has one (the shop's latest state, flushed with the next
batch), and otherwise builds one from the tables that it does not keep (nor the
partition's priors it loads, nor the review schedule, which no answer shows).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date, datetime
from typing import Any

from segstream.domain.customer import CustomerState
from segstream.domain.features import CustomerSnapshot
from segstream.engine.books import ShopBook, ShopBooks
from segstream.engine.customers import Customers
from segstream.engine.evaluation import Evaluation
from segstream.experiments.live import ShopExperiments
from segstream.metrics.cohorts import CohortRow
from segstream.metrics.flows import SegmentFlows
from segstream.metrics.ledger import MetricsLedger, UnknownShopError
from segstream.metrics.windows import WindowMetrics
from segstream.segments.defined.live import ShopDefinitions
from segstream.state.keyspace import definitions_key, experiments_key, is_shop_key
from segstream.state.model_store import Checkpoints


class ReadView:
    """Read-only access to the tables and the books the writer keeps (see module doc)."""

    def __init__(
        self,
        books: ShopBooks,
        customers: Customers,
        evaluation: Evaluation,
        ledger: MetricsLedger,
        shops: Mapping[str, Any],
        checkpoints: Checkpoints,
    ) -> None:
        self._books = books
        self._customers = customers
        self._evaluation = evaluation
        self._ledger = ledger
        self._shops = shops
        self._checkpoints = checkpoints

    def stream_time(self, shop_id: str) -> datetime | None:
        """The shop's latest event time seen, if any."""
        return self._books.stream_time(shop_id)

    def book(self, shop_id: str) -> ShopBook:
        """The shop's book: the writer's if in memory, else one built and not kept (the
        caller must not change it)."""
        return self._books.peek(shop_id)

    def customer(self, shop_id: str, customer_id: str) -> CustomerState | None:
        """A customer's state (None: not known)."""
        return self._customers.get(shop_id, customer_id)

    def customers(self, shop_id: str, after: str | None = None) -> Iterator[CustomerState]:
        """Every known customer of the shop in customer-id order, or those after ``after``."""
        return self._customers.of_shop(shop_id, after)

    def customer_ids(self, shop_id: str, prefix: str) -> Iterator[str]:
        """The shop's customer ids that start with ``prefix``, in order (keys only)."""
        return self._customers.ids(shop_id, prefix)

    def shop_ids(self) -> list[str]:
        """The shops whose records this worker's partitions hold, in id order."""
        return sorted(key for key in self._shops if is_shop_key(key))

    def flow_models(self, shop_id: str) -> list[str]:
        """The models with flows kept for the shop (none for a shop the ledger never saw)."""
        try:
            return self._ledger.flow_models(shop_id)
        except UnknownShopError:
            return []

    def flows(self, shop_id: str, model: str, grain: str, start: date) -> SegmentFlows:
        """One model's segment flows in one window (:meth:`MetricsLedger.flows`)."""
        return self._ledger.flows(shop_id, model, grain, start)

    def snapshot(self, book: ShopBook, state: CustomerState, now: datetime) -> CustomerSnapshot:
        """The snapshot of ``state`` the shop's models read, at ``now``."""
        return self._evaluation.snapshot(book, state, now)

    def shop_record(self, shop_id: str) -> dict[str, Any] | None:
        """The shop's main record in the ``shops`` table (None: never flushed)."""
        found: dict[str, Any] | None = self._shops.get(shop_id)
        return found

    def definitions(self, shop_id: str) -> ShopDefinitions:
        """The shop's definitions as the table holds them."""
        return ShopDefinitions.load(self._shops.get(definitions_key(shop_id)))

    def experiments(self, shop_id: str) -> ShopExperiments:
        """The shop's experiments as the table holds them."""
        return ShopExperiments.load(self._shops.get(experiments_key(shop_id)))

    def window(self, shop_id: str, grain: str, start: date, dimension: str) -> WindowMetrics:
        """Metrics of one window (:meth:`MetricsLedger.window`)."""
        return self._ledger.window(shop_id, grain, start, dimension)

    def cohort_table(self, shop_id: str, months: int) -> list[CohortRow]:
        """The cohort table (:meth:`MetricsLedger.cohort_table`)."""
        return self._ledger.cohort_table(shop_id, months)

    def model_sizes(self, shop_id: str) -> dict[str, int]:
        """Bytes of each of the shop's stored model checkpoints."""
        return self._checkpoints.sizes(shop_id)
