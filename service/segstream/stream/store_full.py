"""A local store that refuses writes (a full disk): the partition stops, says why, and
goes on by itself once the store takes writes again; the worker keeps running.

Two writers meet a full store:

- **The checkpoint** commits a batch to Kafka (changelog, outputs, input offsets) before
  its writes reach the local store (:meth:`segstream.stream.tables.TableState.apply`). A
  store that then refuses them (RocksDB's ``IO error: No space left on device``) is behind
  its changelog: the batch is held in memory (reads see it), the partition processes,
  advances and publishes nothing more, ``/ready`` names the reason, and each retry of the
  stall (:mod:`segstream.stream.stalls`, a doubling wait) writes the held batch again,
  reopening the store once there is room. A worker that dies or loses the partition
  meanwhile restores it from the changelog.
- **Faust's recovery** reads a changelog into the store at every assignment, and writes
  on revocation what it buffered. Faust lets a refused write end the worker (its revoke
  handler re-raises it, and a store it cannot open fails the assignment: upstream
  robinhood/faust #184, faust-streaming #91).
  :class:`RecoveryGuard` writes those records itself, each partition with its persisted
  offset in one write (Faust writes the offset after the data, and a batch spanning
  partitions could leave one's offset past records it never wrote). A refused partition
  is *unrecovered*: its recovery's later records are dropped, so the store's persisted
  offset stays where its contents end; a store that cannot be opened (no room for its
  files) is replaced by one that reads nothing and refuses writes, so its recovery's
  first write makes it unrecovered (an empty changelog has nothing to miss). An
  unrecovered partition stops like a held batch and the API answers 503 for its shops;
  once there is room for what it refused the worker rejoins its group (only for a full
  disk, and only between recoveries), and the new assignment's recovery reads on from
  the persisted offset. Records Faust buffered for an unrecovered partition are dropped
  before the assignment: written after it, one could move the persisted offset past the
  dropped ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import faust
from faust.stores import rocksdb as rocksdb_store
from faust.types import TP

from segstream.observability import telemetry
from segstream.observability.logs import get_logger
from segstream.stream.committer import Committer
from segstream.stream.tables import Pending, RecoveryNeededError, StoreWriteError, TableState

log = get_logger("segstream.stream.runner")  # the logger operators know stalls by


class StoreCatchUp:
    """Brings a partition's local stores up to its committed batches, or stalls it."""

    def __init__(
        self,
        commits: Committer,
        stall: Callable[[int, str], None],
        rejoin: Callable[[int], None] | None = None,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.commits = commits
        self.stall = stall
        """Stops a partition with a reason (it retries by itself after a growing wait)."""
        self.rejoin = rejoin
        """Asks the group for a new assignment (whose recovery reads a changelog again)."""
        self.ready = ready
        """Whether no recovery is under way (a rejoin would start it over)."""
        self.stalled: set[int] = set()
        """Partitions stalled here: a retry that finds one caught up (a new assignment
        recovered it) resumes it, though no batch of it commits (it may have none)."""

    def caught_up(self, partition: int) -> bool:
        """Whether the partition's stores hold every committed batch (a held one is
        written first); a store that still refuses stalls the partition again, and one
        whose recovery it refused, with room again, asks for a new assignment."""
        if not self.commits.behind(partition):
            self.stalled.discard(partition)
            return True
        try:
            if self.commits.catch_up(partition):
                log.warning("state_store_caught_up", partition=partition)
        except StoreWriteError as error:
            self.refused(error)
            return False
        except RecoveryNeededError as again:
            log.warning("state_store_recovering", table=again.table, partition=partition)
            self._stall(partition, str(again))
            if self.rejoin is not None and self.ready():  # else the stall's retry asks
                self.rejoin(partition)
            return False
        return True

    def refused_in_recovery(self, error: StoreWriteError, owned: set[int]) -> None:
        """Faust's recovery could not write a partition's store: an ``owned`` partition
        stops until it is recovered again; a standby's is only logged (the assignment
        that makes it active recovers it again)."""
        self.commits.show_behind()
        if error.partition in owned:
            self.refused(error)
        else:
            log.warning(error.kind, table=error.table, standby=error.partition, error=error.detail)

    def recovered(self, owned: set[int]) -> list[int]:
        """The ``owned`` partitions stalled here that a recovery brought up to date (to
        resume at once, not at the stall's next retry); forgets those not owned."""
        self.stalled &= owned
        done = sorted(p for p in self.stalled if not self.commits.behind(p))
        self.stalled -= set(done)
        return done

    def refused(self, error: StoreWriteError) -> None:
        """A store refused a committed batch: one structured error line, and the stall."""
        log.error(
            error.kind,
            table=error.table,
            partition=error.partition,
            path=None if error.path is None else str(error.path),
            free_bytes=error.free_bytes,
            error=error.detail,
        )
        self._stall(error.partition, error.reason)

    def _stall(self, partition: int, reason: str) -> None:
        self.stalled.add(partition)
        self.stall(partition, reason)


class _Exhausted:
    """A RocksDB raw iterator over nothing."""

    def seek_to_first(self) -> None:
        return None

    def seek(self, key: bytes) -> None:
        return None

    def valid(self) -> bool:
        return False


class Unopened:
    """A partition's RocksDB that could not be opened (no room for its files): it reads
    nothing and refuses every write, until the store is opened again."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def get(self, key: bytes) -> bytes | None:
        return None

    def key_may_exist(self, key: bytes) -> bool:
        return False

    def keys(self) -> Iterator[bytes]:
        return iter(())

    def items(self, from_key: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        return iter(())

    def iter(self) -> _Exhausted:
        return _Exhausted()

    def set_read_options(self, *args: Any, **kwargs: Any) -> None:
        return None

    def write(self, batch: Any) -> None:
        raise self.error

    def put(self, key: bytes, value: bytes) -> None:
        raise self.error

    def delete(self, key: bytes) -> None:
        raise self.error

    def close(self) -> None:
        return None


class RecoveryGuard:
    """Faust's recovery writes for the worker's tables, none of which can end the worker
    (see the module's docstring)."""

    def __init__(
        self,
        tables: dict[str, tuple[faust.types.TableT[Any, Any], TableState]],
        refused: Callable[[StoreWriteError], None],
    ) -> None:
        self.tables = tables
        self.refused = refused
        """Told of each refusal (the partition stops if this worker owns it)."""
        self._opening: set[int] = set()
        """The stores taken over (by id)."""

    def install(self) -> None:
        """Take over each RocksDB table's recovery writes and its store's opening (a
        memory store never refuses). Called at every rebalance, before Faust's: Faust
        makes a table's store when it is first used."""
        for table, state in self.tables.values():
            store: Any = table.data
            if isinstance(store, rocksdb_store.Store) and id(store) not in self._opening:
                patched: Any = table
                patched.apply_changelog_batch = changelog_writer(state, self._refusal)
                patched.persisted_offset = persisted_offset(store)
                opened: Any = store
                opened._open_for_partition = opener(store._open_for_partition, state.name)
                self._opening.add(id(store))

    def purge(self, buffers: Mapping[Any, list[Any]]) -> None:
        """Drop the changelog events Faust's recovery ``buffers`` hold for partitions
        whose recovery was refused (call before the assignment clears the marks)."""
        for table, state in self.tables.values():
            events = buffers.get(table)
            if events:
                events[:] = [e for e in events if not state.incomplete(e.message.partition)]

    def _refusal(self, error: StoreWriteError) -> None:
        telemetry.STATE_STORE_WRITE_FAILURES.labels(error.table, error.kind).inc()
        self.refused(error)


def changelog_writer(
    state: TableState, refused: Callable[[StoreWriteError], None]
) -> Callable[[Iterable[Any]], None]:
    """What Faust's recovery calls with a batch of changelog events: each partition's
    writes go to the store with its offset (:meth:`TableState.recover`); a refusal is
    told to ``refused``, never raised."""

    def apply_changelog_batch(events: Iterable[Any]) -> None:
        for partition, (items, tp, offset) in by_partition(events).items():
            try:
                state.recover(partition, items, tp, offset)
            except StoreWriteError as error:
                refused(error)

    return apply_changelog_batch


LOCK_ERRORS = ("While lock file", "lock hold by current process")
"""RocksDB's words for a database another handle still holds (Faust retries those)."""


def opener(original: Callable[[int], Any], table: str) -> Callable[[int], Any]:
    """Faust's opening of a partition's RocksDB, which on a failure other than a held lock
    gives an :class:`Unopened` store instead of failing the assignment (its recovery's
    first write then makes the partition unrecovered)."""

    def open_for_partition(partition: int) -> Any:
        try:
            return original(partition)
        except Exception as error:
            if any(words in str(error) for words in LOCK_ERRORS):
                raise
            detail = str(error)[:300]
            log.warning("state_store_unopened", table=table, partition=partition, error=detail)
            return Unopened(error)

    return open_for_partition


def persisted_offset(store: Any) -> Callable[[TP], int]:
    """The store's persisted offset, -1 (read from the start) where it has none.

    Faust keeps the offset a recovery reached in memory across rebalances and replaces it
    only with a persisted one: a store without one (empty, or not opened) would have the
    next recovery go on after the records an unrecovered partition dropped."""

    def read(tp: TP) -> int:
        offset: int | None = store.persisted_offset(tp)
        return -1 if offset is None else offset

    return read


def by_partition(events: Iterable[Any]) -> dict[int, tuple[Pending, TP, int]]:
    """Changelog events as each partition's writes (the last write of a key wins), with
    its topic partition and highest offset."""
    found: dict[int, tuple[Pending, TP, int]] = {}
    for event in events:
        message = event.message
        items, _, offset = found.get(message.partition, ({}, message.tp, -1))
        items[message.key] = message.value
        found[message.partition] = (items, message.tp, max(offset, message.offset))
    return found
