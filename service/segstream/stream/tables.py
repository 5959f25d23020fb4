"""The worker's tables: committed values in Faust's local store, a batch's writes in memory.

Faust keeps each table in a local store (RocksDB or memory), fills it from the table's
changelog topic on assignment (recovery) and keeps standby copies warm. segstream does
not write through Faust's table API: a batch's writes stay in :class:`TableState`'s
pending map until the checkpoint (:mod:`segstream.stream.checkpoint`) has committed them
to the changelog together with the batch's outputs and input offsets; only then are they
applied to the local store. So the local store never holds an uncommitted value, and an
aborted batch is undone by dropping its pending writes.

Keys are UTF-8 strings routed to their partition by :func:`segstream.state.keyspace.partition_of`;
values are stored in the table's codec (:data:`CODECS`).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import heapq
import shutil
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import faust
from faust.stores import memory as memory_store
from faust.types import TP

from segstream.state.codec import decode, decode_state, encode, encode_state
from segstream.state.keyspace import partition_of
from segstream.state.store import Tables

Pending = dict[bytes, bytes | None]
"""A partition's uncommitted writes: key -> value, None deletes."""
REOPEN_MARGIN_BYTES = 1 << 20
"""Free bytes beyond a held batch's own size before its store is reopened to write it
again (reopening replays the store's log and starts a new one: it needs room too)."""


class RecoveryNeededError(Exception):
    """A partition whose recovery the local store refused has room again: the worker must
    rejoin its group so that Faust reads the changelog into the store again."""

    def __init__(self, table: str, partition: int) -> None:
        self.table, self.partition = table, partition
        super().__init__(
            f"state_store_recovering: table {table} partition {partition} has room again; "
            "rejoining the group to read its changelog again"
        )


class StoreWriteError(Exception):
    """A committed batch could not be written to a table's local store (a full disk,
    most often): the store is behind its changelog until the batch is written again."""

    def __init__(self, table: str, partition: int, path: Path | None, cause: BaseException):
        self.table, self.partition, self.path = table, partition, path
        self.free_bytes = free_bytes(path)
        text = str(cause).replace("\n", " ")
        self.no_space = "No space left on device" in text or (
            isinstance(cause, OSError) and cause.errno == errno.ENOSPC
        )
        self.detail = f"{type(cause).__name__}: {text}"[:300]
        super().__init__(self.reason)

    @property
    def kind(self) -> str:
        """``state_store_full`` (ENOSPC) or ``state_store_write_failed`` (anything else)."""
        return "state_store_full" if self.no_space else "state_store_write_failed"

    @property
    def reason(self) -> str:
        """One line for ``/ready`` and the logs: what, where, how much room is left."""
        free = "?" if self.free_bytes is None else str(self.free_bytes)
        return (
            f"{self.kind}: table {self.table} partition {self.partition} at "
            f"{self.path or '(memory)'}, {free} bytes free: {self.detail}"
        )


def free_bytes(path: Path | None) -> int | None:
    """Free bytes on the filesystem holding ``path`` (or its nearest existing parent)."""
    while path is not None and not path.exists() and path.parent != path:
        path = path.parent
    if path is None:
        return None
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


@dataclass(slots=True)
class Held:
    """A committed batch of one partition that its local store refused: the encoded
    writes to write again, and their values as the readers see them meanwhile."""

    writes: Pending
    values: dict[str, Any]
    tp: TP
    offset: int


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

    def scan(
        self, partition: int, prefix: bytes, start: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Every key and value of the partition whose key starts with ``prefix``, in key
        order, from ``start`` on (``start`` not below ``prefix``)."""
        ...

    def where(self, partition: int) -> Path | None:
        """The partition's files (None: it keeps none)."""
        ...

    def reopen(self, partition: int) -> None:
        """Close and open the partition's store again (RocksDB refuses every write after
        one failed, until it is opened again)."""
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

    def scan(
        self, partition: int, prefix: bytes, start: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        db = self.store._db_for_partition(partition)
        for key, value in db.items(from_key=start or prefix):
            if not key.startswith(prefix):
                return
            yield key, value

    def where(self, partition: int) -> Path | None:
        path: Path = self.store.partition_path(partition)
        return path

    def reopen(self, partition: int) -> None:
        db = self.store._dbs.pop(partition, None)
        if db is not None:
            with contextlib.suppress(Exception):  # it closes with the error that stopped it
                db.close()
            del db
            gc.collect()  # the last reference goes: RocksDB releases its lock file
        self.store._db_for_partition(partition)


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

    def scan(
        self, partition: int, prefix: bytes, start: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        first = start or prefix
        for key in sorted(k for k in self.keys(partition) if k.startswith(prefix)):
            if key >= first:
                yield key, self.store.data[key]

    def where(self, partition: int) -> Path | None:
        return None

    def reopen(self, partition: int) -> None:
        """Nothing to reopen: memory never refuses a write."""


def local_store(table: faust.types.TableT[Any, Any]) -> LocalStore:
    """The adapter for the table's Faust store."""
    store = table.data
    if isinstance(store, memory_store.Store):
        return MemoryStore(store)
    return RocksStore(store)


class Codec(Protocol):
    """How one table's values become bytes and back (the key may carry part of a value)."""

    def encode(self, key: str, value: Any) -> bytes:
        """The stored bytes of ``value``."""
        ...

    def decode(self, key: str, raw: bytes) -> Any:
        """The value stored as ``raw``."""
        ...


_DELETED = object()


class TableState(MutableMapping[str, Any]):
    """One table as the pipeline reads and writes it (a
    :class:`~segstream.state.store.ScanTable`).

    Reads see this batch's pending writes first, then a cache of decoded committed values,
    then the local store. Values read may be changed in place by their reader, who writes
    them back; dropping a batch (:meth:`discard`) therefore also drops the cache.
    ``owned`` lists the partitions this worker processes (iteration covers only those).
    """

    def __init__(
        self,
        name: str,
        store: Callable[[], LocalStore],
        partitions: int,
        owned: Callable[[], set[int]],
        codec: Codec,
        cache_size: int = 10_000,
    ) -> None:
        self.name = name
        self.codec = codec
        self._store = store
        self._partitions = partitions
        self._owned = owned
        self._pending: dict[int, dict[str, Any]] = {}
        self._cache: dict[str, Any] = {}
        self._cache_size = cache_size
        self._held: dict[int, Held] = {}
        """Committed batches the local store refused (:meth:`apply`), by partition."""
        self._unrecovered: dict[int, tuple[StoreWriteError, int]] = {}
        """Partitions whose changelog records the store refused during Faust's recovery
        (:meth:`recover`), with the first refusal and the bytes it wrote: their later
        records are not written."""

    # ------------------------------------------------------------ mapping

    def __getitem__(self, key: str) -> Any:
        partition = partition_of(key, self._partitions)
        for written in (self._pending.get(partition), self._held_values(partition)):
            if written is not None and key in written:
                value = written[key]
                if value is _DELETED:
                    raise KeyError(key)
                return value
        cached = self._cache.get(key, _DELETED)
        if cached is not _DELETED:
            return cached
        raw = self._store().get(partition, key.encode())
        if raw is None:
            raise KeyError(key)
        value = self.codec.decode(key, raw)
        self._remember(key, value)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self._pending.setdefault(partition_of(key, self._partitions), {})[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._pending.setdefault(partition_of(key, self._partitions), {})[key] = _DELETED

    def __iter__(self) -> Iterator[str]:
        for partition in sorted(self._owned()):
            yield from self.keys_of(partition)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def keys_of(self, partition: int, prefix: str = "", start: str | None = None) -> Iterator[str]:
        """The keys of one partition (this batch's writes included) starting with
        ``prefix``, in order, from ``start`` on (the whole prefix when None)."""
        pending = {**(self._held_values(partition) or {}), **self._pending.get(partition, {})}
        first = prefix if start is None or start < prefix else start
        stored = (
            key.decode()
            for key, _ in self._store().scan(partition, prefix.encode(), first.encode())
        )
        written = sorted(k for k in pending if k.startswith(prefix) and k >= first)
        previous = None
        for key in heapq.merge(stored, written):  # a key in both comes twice, side by side
            if key != previous and pending.get(key) is not _DELETED:
                yield key
            previous = key

    # ------------------------------------------------------------ batches

    def writes(self, partition: int) -> Pending:
        """The partition's pending writes, encoded (None deletes)."""
        return {
            key.encode(): None if value is _DELETED else self.codec.encode(key, value)
            for key, value in self._pending.get(partition, {}).items()
        }

    def discard(self, partition: int) -> None:
        """Forget the partition's pending writes (its batch was aborted), and every cached
        value (a reader may have changed one in place)."""
        self._pending.pop(partition, None)
        self._cache.clear()

    def apply(self, partition: int, writes: Pending, tp: TP, offset: int) -> None:
        """The partition's batch committed: write it to the local store. When the store
        refuses (a full disk) the batch is held: reads see it, :meth:`catch_up` writes it
        again, and :class:`StoreWriteError` says why (the caller stops the partition)."""
        pending = self._pending.pop(partition, {})
        if partition in self._held:  # a caller went on while behind: keep the order
            held = self._held[partition]
            held.writes.update(writes)
            held.values.update(pending)
            held.offset = offset if writes else held.offset
            raise self._refused(partition, RuntimeError("an earlier batch is not written yet"))
        if writes:
            try:
                self._store().write(partition, writes, tp, offset)
            except Exception as error:
                self._held[partition] = Held(writes, pending, tp, offset)
                raise self._refused(partition, error) from error
        self._settle(pending)

    def behind(self, partition: int) -> bool:
        """Whether a committed batch of ``partition`` is not in the local store yet."""
        return partition in self._held or partition in self._unrecovered

    def recover(self, partition: int, items: Pending, tp: TP, offset: int) -> None:
        """Write changelog records Faust's recovery read (up to ``offset``) to the store,
        the offset in the same write. A store that refuses (a full disk) leaves the
        partition unrecovered: this write and every later one of its recovery are
        dropped, so the store's persisted offset stays where its contents end, and the
        next assignment's recovery reads on from there. Raises :class:`StoreWriteError`
        at the first refusal."""
        if partition in self._unrecovered:
            return
        try:
            self._write_reopening(partition, items, tp, offset)
        except StoreWriteError as error:
            self._unrecovered[partition] = (error, _size(items))
            raise

    def incomplete(self, partition: int) -> bool:
        """Whether the partition's store misses changelog records its recovery refused
        (reads would answer from an older state)."""
        return partition in self._unrecovered

    def catch_up(self, partition: int) -> bool:
        """Write the partition's held batch, if any, reopening the store when there seems
        room for it (a RocksDB that failed a write refuses every later one until then).
        True when a held batch was written; raises :class:`StoreWriteError` when the
        store still refuses it, and :class:`RecoveryNeededError` when a partition whose recovery
        it refused has room again."""
        unrecovered = self._unrecovered.get(partition)
        if unrecovered is not None:
            error, needed = unrecovered
            if not error.no_space or not self._room_for(partition, needed):
                raise self._refused(partition, error.__cause__ or error)
            raise RecoveryNeededError(self.name, partition)
        held = self._held.get(partition)
        if held is None:
            return False
        self._write_reopening(partition, held.writes, held.tp, held.offset)
        del self._held[partition]
        self._settle(held.values)
        return True

    def forget_held(self, kept: set[int]) -> None:
        """At an assignment: drop the held batches of partitions not in ``kept`` (their new
        owner restores them from the changelog, where they are), and every unrecovered
        mark (the assignment's recovery reads on from each store's persisted offset,
        which the dropped writes never moved)."""
        for partition in set(self._held) - kept:
            del self._held[partition]
        self._unrecovered.clear()

    def _held_values(self, partition: int) -> dict[str, Any] | None:
        held = self._held.get(partition)
        return None if held is None else held.values

    def _write_reopening(self, partition: int, items: Pending, tp: TP, offset: int) -> None:
        """Write to the store, reopening it once when the write fails with room for it
        (a RocksDB that failed a write refuses every later one until then); raises
        :class:`StoreWriteError` when it still refuses."""
        store = self._store()
        try:
            store.write(partition, items, tp, offset)
        except Exception as error:
            if not self._room_for(partition, _size(items)):
                raise self._refused(partition, error) from error
            try:
                store.reopen(partition)
                store.write(partition, items, tp, offset)
            except Exception as again:
                raise self._refused(partition, again) from again

    def _room_for(self, partition: int, size: int) -> bool:
        """Whether the store's filesystem has ``size`` bytes free beyond the margin."""
        free = free_bytes(self._store().where(partition))
        return free is None or free >= size + REOPEN_MARGIN_BYTES

    def _refused(self, partition: int, error: BaseException) -> StoreWriteError:
        return StoreWriteError(self.name, partition, self._store().where(partition), error)

    def _settle(self, values: dict[str, Any]) -> None:
        """Values now in the local store: cache them (a deleted key leaves the cache)."""
        for key, value in values.items():
            if value is _DELETED:
                self._cache.pop(key, None)
            else:
                self._remember(key, value)

    def _remember(self, key: str, value: Any) -> None:
        cache = self._cache
        if len(cache) >= self._cache_size:
            for old in list(cache)[: self._cache_size // 2]:
                del cache[old]
        cache[key] = value


def _size(items: Pending) -> int:
    """Bytes of the keys and values of a write."""
    return sum(len(k) + len(v or b"") for k, v in items.items())


class PlainCodec:
    """Dicts, lists, strings and numbers as MessagePack."""

    def encode(self, key: str, value: Any) -> bytes:
        return encode(value)

    def decode(self, key: str, raw: bytes) -> Any:
        return decode(raw)


class StateCodec:
    """Customer states (keys ``shop/customer``) in :func:`segstream.state.codec.encode_state`."""

    def encode(self, key: str, value: Any) -> bytes:
        return encode_state(value)

    def decode(self, key: str, raw: bytes) -> Any:
        shop_id, _, customer_id = key.partition("/")
        return decode_state(shop_id, customer_id, raw)


class BytesCodec:
    """Values that are bytes already (model checkpoints)."""

    def encode(self, key: str, value: Any) -> bytes:
        return bytes(value)

    def decode(self, key: str, raw: bytes) -> Any:
        return raw


CODECS: dict[str, Codec] = {
    "customers": StateCodec(),
    "shops": PlainCodec(),
    "models": BytesCodec(),
    "metrics": PlainCodec(),
}
"""Each table's value codec."""


def engine_tables(tables: Mapping[str, TableState]) -> Tables:
    """The worker's tables by name (those of :data:`CODECS`) as the engine takes them:
    a :class:`TableState` is a :class:`~segstream.state.store.ScanTable` (the customers
    table's scans are those of its partitions' local stores)."""
    return Tables(tables["customers"], tables["shops"], tables["models"], tables["metrics"])
