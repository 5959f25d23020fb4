"""The customers table as the engine uses it: one customer's state by shop and id, and a
shop's customers in id order (a scan of the shop's key range)."""

from __future__ import annotations

from collections.abc import Iterator

from segstream.domain.customer import CustomerState
from segstream.state.keyspace import customer_key, partition_of
from segstream.state.store import ScanTable


class Customers:
    """``"<shop_id>/<customer_id>"`` -> :class:`CustomerState`, in a table the worker
    backs with a changelog-backed table (tests: a :class:`~segstream.state.store.MemoryTable`)."""

    def __init__(self, table: ScanTable, partitions: int) -> None:
        self.table = table
        self.partitions = partitions

    def get(self, shop_id: str, customer_id: str) -> CustomerState | None:
        """A customer's state (None: not known)."""
        found: CustomerState | None = self.table.get(customer_key(shop_id, customer_id))
        return found

    def load(self, shop_id: str, customer_id: str) -> CustomerState:
        """A customer's state, or a fresh one."""
        stored = self.get(shop_id, customer_id)
        return CustomerState(shop_id, customer_id) if stored is None else stored

    def ids(self, shop_id: str, prefix: str = "") -> Iterator[str]:
        """The shop's customer ids that start with ``prefix``, in order (keys only: no
        state is read)."""
        start = len(customer_key(shop_id, ""))
        partition = partition_of(shop_id, self.partitions)
        for key in self.table.keys_of(partition, customer_key(shop_id, prefix)):
            yield key[start:]

    def save(self, state: CustomerState) -> None:
        """Store ``state`` (the changelog gets it with the batch)."""
        self.table[customer_key(state.shop_id, state.customer_id)] = state

    def delete(self, shop_id: str, customer_id: str) -> None:
        """Forget a known customer (a tombstone on the changelog)."""
        del self.table[customer_key(shop_id, customer_id)]

    def of_shop(self, shop_id: str, after: str | None = None) -> Iterator[CustomerState]:
        """Every known customer of a shop in customer-id order (a scan of its key range),
        or those whose id follows ``after``."""
        prefix = customer_key(shop_id, "")
        start = None if after is None else customer_key(shop_id, after)
        partition = partition_of(shop_id, self.partitions)
        for key in self.table.keys_of(partition, prefix, start):
            if start is None or key > start:
                yield self.table[key]
