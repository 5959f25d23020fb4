"""A local store that refuses a committed batch (a full disk): the batch is held and read,
the partition stops with the reason, and once the store takes writes again the held
batch is written and the partition goes on where it stopped, committing nothing twice."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
from faust.types import TP

from harness.stores import DictStore
from segstream.engine.pipeline import Pipeline
from segstream.observability import telemetry
from segstream.state.codec import decode, encode
from segstream.state.keyspace import partition_of, progress_key
from segstream.stream.runner import BatchRunner
from segstream.stream.tables import StoreWriteError, free_bytes
from segstream.stream.topics import TABLES
from tests.unit.stream.fakes import FakeCheckpoint, table_state
from tests.unit.stream.test_runner import ORDERS, PARTITION, SETTINGS, SHOP, events

KEY = "tea-1"
KEY_PARTITION = partition_of(KEY, 4)


def full_table() -> tuple[Any, DictStore]:
    store = DictStore()
    table = table_state("shops", store, owned={0, 1, 2, 3})
    store.data[KEY_PARTITION][b"old"] = encode({"n": 0})
    return table, store


def test_a_refused_batch_is_held_and_read_until_the_store_takes_it() -> None:
    table, store = full_table()
    table[KEY] = {"n": 1}
    del table["old"]
    store.full = True
    with pytest.raises(StoreWriteError) as refused:
        table.apply(KEY_PARTITION, table.writes(KEY_PARTITION), TP("log", KEY_PARTITION), 9)
    assert refused.value.kind == "state_store_full"
    assert table.behind(KEY_PARTITION) and not table.behind((KEY_PARTITION + 1) % 4)
    table.discard(KEY_PARTITION)  # an aborted batch later: the held one is committed
    assert table[KEY] == {"n": 1} and "old" not in table
    assert list(table.keys_of(KEY_PARTITION)) == [KEY]
    assert store.get(KEY_PARTITION, KEY.encode()) is None
    with pytest.raises(StoreWriteError):
        table.catch_up(KEY_PARTITION)  # still full
    store.full = False  # space is back; the store still refuses until reopened
    assert store.refusing
    assert table.catch_up(KEY_PARTITION) is True
    assert not table.behind(KEY_PARTITION) and not store.refusing
    assert decode(store.get(KEY_PARTITION, KEY.encode()) or b"") == {"n": 1}
    assert store.get(KEY_PARTITION, b"old") is None
    assert store.offsets[TP("log", KEY_PARTITION)] == 9
    assert table.catch_up(KEY_PARTITION) is False  # nothing held any more


def test_held_batches_of_partitions_given_away_are_forgotten() -> None:
    table, store = full_table()
    table[KEY] = {"n": 1}
    store.full = True
    with pytest.raises(StoreWriteError):
        table.apply(KEY_PARTITION, table.writes(KEY_PARTITION), TP("log", KEY_PARTITION), 9)
    table.forget_held({KEY_PARTITION})
    assert table.behind(KEY_PARTITION)
    table.forget_held(set())
    assert not table.behind(KEY_PARTITION)


def test_the_reason_names_the_kind_the_place_and_the_room_left(tmp_path: Path) -> None:
    full = StoreWriteError(
        "customers",
        2,
        tmp_path / "not-yet" / "customers-2.db",
        Exception("IO error: No space left on device: While appending to file: x/000004.log"),
    )
    assert full.kind == "state_store_full"
    assert full.free_bytes == free_bytes(tmp_path) and full.free_bytes is not None
    assert full.reason.startswith(
        f"state_store_full: table customers partition 2 at {tmp_path}/not-yet/customers-2.db, "
        f"{full.free_bytes} bytes free: Exception: IO error: No space left"
    )
    assert "\n" not in full.reason
    assert StoreWriteError("t", 0, None, OSError(errno.ENOSPC, "x")).kind == "state_store_full"
    other = StoreWriteError("t", 0, None, OSError(errno.EIO, "Input/output error"))
    assert other.kind == "state_store_write_failed" and "(memory), ? bytes free" in other.reason


def full_runner() -> tuple[BatchRunner, dict[str, Any], dict[str, DictStore], FakeCheckpoint]:
    checkpoint = FakeCheckpoint(SETTINGS, assigned={PARTITION})
    stores = {name: DictStore() for name in TABLES}
    tables = {name: table_state(name, stores[name], {PARTITION}) for name in TABLES}
    pipeline = Pipeline(SETTINGS, *(tables[name] for name in TABLES))
    batches = BatchRunner(SETTINGS, pipeline, tables, checkpoint, {ORDERS: Any})  # type: ignore[arg-type,dict-item]
    batches.ready = True
    return batches, tables, stores, checkpoint


def failures(reason: str) -> float:
    value = telemetry.REGISTRY.get_sample_value(
        "segstream_state_store_write_failures_total", {"table": "customers", "reason": reason}
    )
    return value or 0.0


def progress_in_store(stores: dict[str, DictStore]) -> dict[str, int]:
    raw = stores["shops"].get(PARTITION, progress_key(PARTITION).encode())
    return {} if raw is None else dict(decode(raw)["offsets"])


async def test_a_full_store_stalls_the_partition_and_it_goes_on_once_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from segstream.domain.events import Order

    batches, tables, stores, checkpoint = full_runner()
    batches.expected = {ORDERS: Order}
    monkeypatch.setattr("segstream.stream.stalls.STALL_FIRST_RETRY_S", 0.0)
    await batches.run(events(0))
    before = failures("state_store_full")
    for store in stores.values():
        store.full = True
    await batches.run(events(1, 2))  # commits, then the stores refuse it
    assert len(checkpoint.committed) == 2
    assert batches.stalls[PARTITION].reason.startswith("state_store_full: table ")
    assert failures("state_store_full") == before + 1
    assert telemetry.REGISTRY.get_sample_value("segstream_state_store_behind_partitions") == 1
    assert progress_in_store(stores) == {ORDERS: 1}  # the store is behind the changelog,
    assert tables["customers"][f"{SHOP}/c-1"].order_count == 3  # the readers are not
    assert await batches.advance(PARTITION, lambda: pytest.fail("read a store behind")) == 0
    assert await batches.publish(PARTITION, lambda: pytest.fail("read a store behind")) == 0

    await batches.run(events(3))  # its retry is due, the disk still full: stalls again
    assert len(checkpoint.committed) == 2 and batches.stalls[PARTITION].attempts >= 2

    for store in stores.values():
        store.full = False
    await batches.run(events(3, 4))  # space is back: the held batch first, then these
    assert not batches.stalls and not batches.commits.behind(PARTITION)
    assert telemetry.REGISTRY.get_sample_value("segstream_state_store_behind_partitions") == 0
    assert progress_in_store(stores) == {ORDERS: 5}
    offsets = [work.offsets[ORDERS] for work in checkpoint.committed]
    assert offsets == [1, 3, 5]  # no batch committed twice, none skipped
    tables["customers"].discard(PARTITION)  # read the store itself, not the cache
    assert tables["customers"][f"{SHOP}/c-1"].order_count == 5


async def test_the_stalls_retry_writes_the_held_batch_without_new_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from segstream.domain.events import Order

    batches, _, stores, _ = full_runner()
    batches.expected = {ORDERS: Order}
    monkeypatch.setattr("segstream.stream.stalls.STALL_FIRST_RETRY_S", 3600.0)
    stores["customers"].full = True
    await batches.run(events(0))
    assert PARTITION in batches.stalls and batches.commits.behind(PARTITION)
    await batches._retry(PARTITION)  # still full: stalled again, still behind
    assert batches.stalls[PARTITION].attempts == 2 and batches.commits.behind(PARTITION)
    stores["customers"].full = False
    await batches._retry(PARTITION)
    assert not batches.stalls and not batches.commits.behind(PARTITION)
    assert stores["customers"].get(PARTITION, f"{SHOP}/c-1".encode()) is not None


async def test_a_partition_given_away_while_behind_is_its_new_owners() -> None:
    from segstream.domain.events import Order

    batches, _, stores, _ = full_runner()
    batches.expected = {ORDERS: Order}
    stores["customers"].full = True
    await batches.run(events(0))
    assert batches.commits.behind(PARTITION)
    await batches.assign(set())
    assert not batches.commits.behind(PARTITION) and not batches.stalls
