"""TableState: a batch's writes stay pending until applied; discarding them undoes them."""

from __future__ import annotations

from faust.types import TP

from harness.stores import DictStore
from segstream.state.codec import decode, encode
from segstream.state.keyspace import partition_of, progress_key
from tests.unit.stream.fakes import table_state


def test_writes_are_pending_until_applied_and_then_committed() -> None:
    store = DictStore()
    table = table_state("shops", store, owned={0, 1, 2, 3})
    table["tea-1"] = {"n": 1}
    partition = partition_of("tea-1", 4)
    assert table["tea-1"] == {"n": 1}
    assert store.get(partition, b"tea-1") is None
    writes = table.writes(partition)
    table.apply(partition, writes, TP("changelog", partition), 7)
    assert decode(store.get(partition, b"tea-1") or b"") == {"n": 1}
    assert store.offsets[TP("changelog", partition)] == 7
    assert table.writes(partition) == {}


def test_discard_restores_the_committed_value() -> None:
    store = DictStore()
    table = table_state("shops", store, owned={0, 1, 2, 3})
    partition = partition_of("tea-1", 4)
    store.data[partition][b"tea-1"] = encode({"n": 1})
    table["tea-1"]["n"] = 3  # changed in place by a reader, then dropped with the batch
    table["tea-1"] = {"n": 2}
    del table["tea-1"]
    assert "tea-1" not in table
    table.discard(partition)
    assert table["tea-1"] == {"n": 1}


def test_iteration_covers_owned_partitions_and_pending_keys_once() -> None:
    store = DictStore()
    owned = {partition_of("tea-1", 4)}
    table = table_state("shops", store, owned=owned)
    table["tea-1"] = {"a": 1}
    table[progress_key(next(iter(owned)))] = {"offsets": {}}
    other = next(p for p in range(4) if p not in owned)
    store.data[other][b"elsewhere"] = encode({})
    assert sorted(table) == sorted(["tea-1", progress_key(next(iter(owned)))])
    assert len(table) == 2
