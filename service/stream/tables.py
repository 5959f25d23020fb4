"""The worker's tables: committed values in Faust's local store, a batch's writes in memory.

Faust keeps each table in a local store (RocksDB or memory), fills it from the table's
changelog topic on assignment (recovery) and keeps standby copies warm. segstream does
not write through Faust's table API: a batch's writes stay in :class:`TableState`'s
pending map until the checkpoint (:mod:`service.stream.checkpoint`) has committed them
to the changelog together with the batch's outputs and input offsets; only then are they
applied to the local store. So the local store never holds an uncommitted value, and an
aborted batch is undone by dropping its pending writes.

Keys are UTF-8 strings routed to their partition by :func:`service.core.keys.partition_of`;
values are bytes in the table's codec.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any, Protocol

import faust
from faust.stores import memory as memory_store
from faust.types import TP

from service.core.keys import partition_of

Pending = dict[bytes, bytes | None]
"""A partition's uncommitted writes: key -> value, None deletes."""


class LocalStore(Protocol):
    """Per-partition access to the bytes Faust keeps for one table."""

    def get(self, partition: int, key: bytes) -> bytes | None:
        """The committed value of ``key``."""
        ...

    def write(self, partition: int, items: Pending, tp: TP, offset: int) -> None:
        """Apply committed writes, remembering the changelog ``offset`` they reach."""
        ...

    def keys(self, partition: int) -> Iterator[bytes]:
        """Every key of the partition."""
        ...


class RocksStore:
    """A Faust RocksDB store: one database per partition."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def get(self, partition: int, key: bytes) -> bytes | None:
        value: bytes | None = self.store._db_for_partition(partition).get(key)
        return value

    def write(self, partition: int, items: Pending, tp: TP, offset: int) -> None:
        import rocksdict

        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in items.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        batch.put(self.store.offset_key, str(offset).encode())
        self.store._db_for_partition(partition).write(batch)

    def keys(self, partition: int) -> Iterator[bytes]:
        db = self.store._db_for_partition(partition)
        for key in db.keys():  # noqa: SIM118 (rocksdict iterates items)
            if key != self.store.offset_key:
                yield key


class MemoryStore:
    """A Faust memory store: one dict, with each key's partition remembered beside it."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def get(self, partition: int, key: bytes) -> bytes | None:
        value: bytes | None = self.store.data.get(key)
        return value

    def write(self, partition: int, items: Pending, tp: TP, offset: int) -> None:
        for key, value in items.items():
            if value is None:
                self.store.data.pop(key, None)
                self.store._key_partition.pop(key, None)
            else:
                self.store.data[key] = value
                self.store._key_partition[key] = partition

    def keys(self, partition: int) -> Iterator[bytes]:
        for key, owner in list(self.store._key_partition.items()):
            if owner == partition:
                yield key


def local_store(table: faust.types.TableT[Any, Any]) -> LocalStore:
    """The adapter for the table's Faust store."""
    store = table.data
    if isinstance(store, memory_store.Store):
        return MemoryStore(store)
    return RocksStore(store)


class TableState(MutableMapping[str, Any]):
    """One table as the pipeline reads and writes it (values JSON-encoded).

    ``owned`` lists the partitions this worker processes (iteration covers only those).
    """

    def __init__(
        self,
        name: str,
        store: Callable[[], LocalStore],
        partitions: int,
        owned: Callable[[], set[int]],
    ) -> None:
        self.name = name
        self._store = store
        self._partitions = partitions
        self._owned = owned
        self._pending: dict[int, Pending] = {}

    # ------------------------------------------------------------ mapping

    def __getitem__(self, key: str) -> Any:
        raw = self.raw(key)
        if raw is None:
            raise KeyError(key)
        return json.loads(raw)

    def __setitem__(self, key: str, value: Any) -> None:
        encoded = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        self._pending_for(key)[key.encode()] = encoded

    def __delitem__(self, key: str) -> None:
        if self.raw(key) is None:
            raise KeyError(key)
        self._pending_for(key)[key.encode()] = None

    def __iter__(self) -> Iterator[str]:
        for partition in sorted(self._owned()):
            pending = self._pending.get(partition, {})
            for key in self._store().keys(partition):
                if key not in pending:
                    yield key.decode()
            for key, value in list(pending.items()):
                if value is not None:
                    yield key.decode()

    def __len__(self) -> int:
        return sum(1 for _ in self)

    # ------------------------------------------------------------ batches

    def raw(self, key: str) -> bytes | None:
        """The value's bytes: this batch's write if any, else the committed value."""
        partition = partition_of(key, self._partitions)
        encoded = key.encode()
        pending = self._pending.get(partition)
        if pending is not None and encoded in pending:
            return pending[encoded]
        return self._store().get(partition, encoded)

    def take(self, partition: int) -> Pending:
        """The partition's pending writes (removed from this state)."""
        return self._pending.pop(partition, {})

    def peek(self, partition: int) -> Mapping[bytes, bytes | None]:
        """The partition's pending writes (left in place)."""
        return self._pending.get(partition, {})

    def discard(self, partition: int) -> None:
        """Forget the partition's pending writes (its batch was aborted)."""
        self._pending.pop(partition, None)

    def apply(self, partition: int, writes: Pending, tp: TP, offset: int) -> None:
        """Write committed values to the local store."""
        if writes:
            self._store().write(partition, writes, tp, offset)

    def _pending_for(self, key: str) -> Pending:
        return self._pending.setdefault(partition_of(key, self._partitions), {})
