"""The tables as one typed object, and the path older callers keep (issue 27, item 3)."""

from __future__ import annotations

from collections import UserDict
from datetime import UTC, datetime
from typing import Any

import pytest

from harness.stores import InProcessPipeline, feed
from segstream.engine.pipeline import Pipeline
from segstream.settings import Settings
from segstream.state.keyspace import customer_key
from segstream.state.store import MemoryTable, ScanTable, Tables, scan_table, tables_of
from tests.factories import SHOP, order, signup

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)


def test_the_pipeline_works_in_the_tables_it_is_given() -> None:
    tables = Tables(MemoryTable({}), shops={}, models={}, metrics={})
    pipeline = Pipeline(Settings(), tables)
    feed(pipeline, [("signups", signup("c-1", T0, "e-1")), ("orders", order("c-1", T0, "e-2"))])
    assert pipeline.tables is tables
    assert customer_key(SHOP, "c-1") in tables.customers
    assert SHOP in tables.shops and SHOP in tables.models
    assert any(key.startswith(f"{SHOP}|") for key in tables.metrics)


def test_older_callers_pass_the_four_mappings_and_keep_them() -> None:
    given: tuple[dict[str, Any], ...] = ({}, {}, {}, {})
    tables = Pipeline(Settings(), *given).tables
    assert isinstance(tables.customers, MemoryTable)
    assert [id(table) for table in given] == [
        id(tables.customers.data),  # the customers dict, in a table that scans it
        id(tables.shops),
        id(tables.models),
        id(tables.metrics),
    ], "an empty mapping given is the one used, not a new one"
    fresh = Pipeline(Settings(), {}, {}).tables
    assert fresh.models == {} and fresh.metrics == {} and fresh.models is not fresh.metrics


def test_tables_are_named_as_the_worker_names_them() -> None:
    by_name: dict[str, dict[str, Any]] = {
        name: {} for name in ("metrics", "models", "shops", "customers")
    }
    tables = Tables.named(by_name)
    assert isinstance(tables.customers, MemoryTable)
    assert tables.customers.data is by_name["customers"] and tables.metrics is by_name["metrics"]
    with pytest.raises(KeyError, match="models"):
        Tables.named({"customers": {}, "shops": {}})


@pytest.mark.parametrize(
    "mappings",
    [({},), ({}, {}, {}, {}, {}), ({}, None), (None, {})],
    ids=["one", "five", "no shops", "no customers"],
)
def test_a_wrong_set_of_mappings_is_refused(mappings: tuple[dict[str, Any] | None, ...]) -> None:
    with pytest.raises(TypeError, match="customers and shops"):
        Tables.of(*mappings)


def test_tables_and_more_mappings_are_refused() -> None:
    with pytest.raises(TypeError, match="alone"):
        tables_of(Tables(MemoryTable({}), {}), {})


def test_the_worker_tables_and_the_memory_table_are_store_tables() -> None:
    worker = InProcessPipeline(Settings())
    tables = worker.pipeline.tables
    assert tables.customers is worker.tables["customers"]  # scanned as it is, not wrapped
    assert isinstance(tables.customers, ScanTable) and isinstance(MemoryTable({}), ScanTable)
    assert not isinstance({}, ScanTable)


def test_a_customers_table_that_neither_is_a_dict_nor_scans_is_refused() -> None:
    with pytest.raises(TypeError, match="customers table must be a dict or scan"):
        scan_table(UserDict())


def test_a_memory_table_scans_what_its_dict_holds_now() -> None:
    data = {customer_key(SHOP, c): c for c in ("c-3", "c-1")} | {customer_key("other", "c-2"): 0}
    table = MemoryTable(data)
    data[customer_key(SHOP, "c-2")] = "c-2"
    del table[customer_key(SHOP, "c-3")]
    prefix = customer_key(SHOP, "")
    assert list(table.keys_of(0, prefix)) == [customer_key(SHOP, c) for c in ("c-1", "c-2")]
    assert list(table.keys_of(0, prefix, customer_key(SHOP, "c-2"))) == [customer_key(SHOP, "c-2")]
    assert list(table.keys_of(0, prefix, customer_key("a", "z"))) == list(table.keys_of(0, prefix))


def test_the_worker_and_memory_tables_give_the_same_shop_scan() -> None:
    records = [("signups", signup(f"c-{n}", T0, f"e-{n}")) for n in (5, 1, 3, 2, 4)]
    over_dicts = Pipeline(Settings(), {}, {})
    feed(over_dicts, records)
    worker = InProcessPipeline(Settings())
    feed(worker.pipeline, records)
    for after in (None, "c-2", "c-5"):
        expected = [s.customer_id for s in over_dicts.records.of_shop(SHOP, after)]
        assert [s.customer_id for s in worker.pipeline.records.of_shop(SHOP, after)] == expected
    assert expected == [] and len(list(over_dicts.records.of_shop(SHOP))) == 5
