"""Faust's recovery writing into a store that refuses it (a full disk): the worker never
ends, the partition is unrecovered (its later records dropped, its persisted offset where
its contents end), it stops, and with room again it asks for a new assignment whose
recovery reads on from that offset."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
from faust.types import TP

from harness.stores import DictStore
from segstream.observability import telemetry
from segstream.stream import tables as tables_module
from segstream.stream.store_full import (
    RecoveryGuard,
    Unopened,
    by_partition,
    changelog_writer,
    opener,
    persisted_offset,
)
from segstream.stream.tables import Pending, RecoveryNeededError, StoreWriteError, TableState
from tests.unit.stream.fakes import Event, Message, table_state
from tests.unit.stream.test_runner import PARTITION
from tests.unit.stream.test_store_full import full_runner

TOPIC = "app-shops-changelog"


class PartlyFull(DictStore):
    """Refuses writes to the partitions in ``full`` (and, as RocksDB, every later write to
    them until reopened)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.full_partitions: set[int] = set()
        self.refusing_partitions: set[int] = set()

    def write(self, partition: int, items: Pending, tp: TP, offset: int) -> None:
        if partition in self.full_partitions | self.refusing_partitions:
            self.refusing_partitions.add(partition)
            raise OSError(errno.ENOSPC, "No space left on device")
        super().write(partition, items, tp, offset)

    def where(self, partition: int) -> Path | None:
        return self.path

    def reopen(self, partition: int) -> None:
        self.refusing_partitions.discard(partition)


def changelog(partition: int, offset: int, key: bytes, value: bytes | None) -> Any:
    event = Event(Message(TOPIC, partition, offset), value)
    event.message.tp = TP(TOPIC, partition)  # type: ignore[attr-defined]
    event.message.key = key  # type: ignore[attr-defined]
    event.message.value = value  # type: ignore[attr-defined]
    return event


def setup(tmp_path: Path) -> tuple[TableState, PartlyFull, list[StoreWriteError]]:
    store = PartlyFull(tmp_path)
    return table_state("shops", store, owned={0, 1}), store, []


@pytest.fixture
def free(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    room = {"bytes": 0}
    monkeypatch.setattr(tables_module, "free_bytes", lambda path: room["bytes"])
    return room


def test_events_become_each_partitions_last_writes_and_highest_offset() -> None:
    events = [
        changelog(0, 5, b"a", b"1"),
        changelog(1, 9, b"b", b"2"),
        changelog(0, 6, b"a", None),
        changelog(0, 7, b"c", b"3"),
    ]
    assert by_partition(events) == {
        0: ({b"a": None, b"c": b"3"}, TP(TOPIC, 0), 7),
        1: ({b"b": b"2"}, TP(TOPIC, 1), 9),
    }


def test_a_refused_partition_drops_its_later_records_and_the_others_go_on(
    tmp_path: Path, free: dict[str, int]
) -> None:
    state, store, refused = setup(tmp_path)
    write = changelog_writer(state, refused.append)
    store.full_partitions = {1}
    write([changelog(0, 1, b"a", b"1"), changelog(1, 1, b"b", b"1")])
    assert [(e.partition, e.kind) for e in refused] == [(1, "state_store_full")]
    store.full_partitions = set()  # room again: still nothing of partition 1 is written
    free["bytes"] = 1 << 30
    write([changelog(0, 2, b"a", b"2"), changelog(1, 2, b"b", b"2")])
    assert store.data[0] == {b"a": b"2"} and store.offsets[TP(TOPIC, 0)] == 2
    assert store.data[1] == {} and TP(TOPIC, 1) not in store.offsets
    assert len(refused) == 1 and state.behind(1) and not state.behind(0)


def test_an_unrecovered_partition_waits_for_room_then_asks_to_be_recovered_again(
    tmp_path: Path, free: dict[str, int]
) -> None:
    state, store, refused = setup(tmp_path)
    store.full_partitions = {1}
    changelog_writer(state, refused.append)([changelog(1, 3, b"b", b"1")])
    with pytest.raises(StoreWriteError) as still:
        state.catch_up(1)
    assert still.value.kind == "state_store_full" and " 0 bytes free: OSError" in str(still.value)
    free["bytes"] = 1 << 30
    with pytest.raises(RecoveryNeededError):
        state.catch_up(1)
    state.forget_held({0, 1})  # the new assignment: its recovery reads on from the offset
    assert not state.behind(1)
    store.full_partitions = set()
    changelog_writer(state, refused.append)([changelog(1, 3, b"b", b"1")])
    assert store.data[1] == {b"b": b"1"} and store.offsets[TP(TOPIC, 1)] == 3


def test_a_store_that_failed_a_write_is_reopened_when_there_is_room(
    tmp_path: Path, free: dict[str, int]
) -> None:
    state, store, refused = setup(tmp_path)
    store.refusing_partitions = {0}  # an earlier write failed; the disk has room now
    free["bytes"] = 1 << 30
    changelog_writer(state, refused.append)([changelog(0, 4, b"a", b"1")])
    assert refused == [] and store.data[0] == {b"a": b"1"}


def test_a_store_that_cannot_be_opened_reads_nothing_and_its_first_write_is_refused(
    tmp_path: Path, free: dict[str, int]
) -> None:
    full = Exception("IO error: No space left on device: While appending to file: x/MANIFEST")

    def fails(partition: int) -> Any:
        raise full

    db = opener(fails, "shops")(1)
    assert isinstance(db, Unopened) and db.get(b"k") is None and list(db.items()) == []
    assert not db.iter().valid()
    with pytest.raises(Exception, match="No space left"):
        db.write(object())

    class Unopenable(PartlyFull):
        def write(self, partition: int, items: Pending, tp: TP, offset: int) -> None:
            db.write(items)

    store = Unopenable(tmp_path)
    state = table_state("shops", store, owned={0, 1})
    refused: list[StoreWriteError] = []
    changelog_writer(state, refused.append)([changelog(1, 0, b"k", b"v")])
    assert state.behind(1) and state.incomplete(1)  # its recovery's first write made it so

    def locked(partition: int) -> Any:
        raise Exception("IO error: While lock file: /data/blockstore/shops-0.db/LOCK: busy")

    with pytest.raises(Exception, match="lock"):
        opener(locked, "shops")(0)  # Faust retries a held lock itself

    def not_a_lock(partition: int) -> Any:
        raise Exception("IO error: No space left on device: /data/blockstore/x")

    assert isinstance(opener(not_a_lock, "shops")(0), Unopened)  # "lock" in its path


def test_only_a_full_disk_with_room_for_what_was_refused_asks_to_recover_again(
    tmp_path: Path, free: dict[str, int]
) -> None:
    state, store, refused = setup(tmp_path)
    store.full_partitions = {1}
    big = b"x" * 5_000_000
    changelog_writer(state, refused.append)([changelog(1, 3, b"b", big)])
    free["bytes"] = 2 << 20  # room for a reopen, not for what was refused
    with pytest.raises(StoreWriteError):
        state.catch_up(1)
    free["bytes"] = 8 << 20
    with pytest.raises(RecoveryNeededError):
        state.catch_up(1)

    class Broken(PartlyFull):
        def write(self, partition: int, items: Pending, tp: TP, offset: int) -> None:
            raise OSError(errno.EIO, "Input/output error")

    broken = table_state("shops", Broken(tmp_path), owned={0})
    changelog_writer(broken, refused.append)([changelog(0, 3, b"b", b"v")])
    with pytest.raises(StoreWriteError) as still:  # not a full disk: no rejoin, a stall
        broken.catch_up(0)
    assert still.value.kind == "state_store_write_failed"


def test_events_buffered_for_an_unrecovered_partition_are_dropped_before_the_assignment(
    tmp_path: Path,
) -> None:
    state, store, refused = setup(tmp_path)
    store.full_partitions = {1}
    changelog_writer(state, refused.append)([changelog(1, 3, b"b", b"v")])
    table = object()
    guard = RecoveryGuard({"shops": (table, state)}, refused.append)  # type: ignore[dict-item]
    buffered = [changelog(0, 4, b"a", b"v"), changelog(1, 4, b"b", b"w")]
    guard.purge({table: buffered})
    assert [e.message.partition for e in buffered] == [0]


def test_a_store_without_a_persisted_offset_is_read_from_the_start() -> None:
    offsets: dict[TP, int | None] = {TP(TOPIC, 0): None, TP(TOPIC, 1): 41}

    class Store:
        def persisted_offset(self, tp: TP) -> int | None:
            return offsets[tp]

    read = persisted_offset(Store())
    assert (read(TP(TOPIC, 0)), read(TP(TOPIC, 1))) == (-1, 41)


async def test_an_unrecovered_partition_stops_asks_for_an_assignment_and_resumes_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batches, tables, stores, _ = full_runner()
    rejoins: list[int] = []
    batches.stores.rejoin = rejoins.append
    monkeypatch.setattr("segstream.stream.stalls.STALL_FIRST_RETRY_S", 3600.0)
    stores["customers"].full = True

    def refused(error: StoreWriteError) -> None:
        batches.stores.refused_in_recovery(error, batches.checkpoint.partitions)

    write = changelog_writer(tables["customers"], refused)
    write([changelog(PARTITION, 3, b"k", b"v"), changelog(PARTITION + 1, 3, b"s", b"v")])
    assert list(batches.stalls) == [PARTITION]  # a standby's refusal is only logged
    assert batches.stalls[PARTITION].reason.startswith("state_store_full: table customers")
    assert telemetry.REGISTRY.get_sample_value("segstream_state_store_behind_partitions") == 2
    assert await batches.advance(PARTITION, lambda: pytest.fail("read a store behind")) == 0

    await batches._retry(PARTITION)  # room (the fake store has no files): recover again
    assert batches.stalls[PARTITION].reason.startswith("state_store_recovering: ")
    assert rejoins == [PARTITION]
    await batches.assign({PARTITION})  # the new assignment; its recovery writes
    stores["customers"].full = False
    write([changelog(PARTITION, 3, b"k", b"v")])
    await batches._retry(PARTITION)
    assert not batches.stalls and not batches.commits.behind(PARTITION)
    assert stores["customers"].get(PARTITION, b"k") == b"v"
