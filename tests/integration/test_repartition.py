"""Re-partitioning, the procedure of ``deploy/README.md``: 4 -> 8 partitions.

An app on 4 partitions processes six shops' three months and a shop-defined segment; the
input and definition topics are copied to new topics of 8 partitions
(``segstream.tools.repartition``), and a new app rebuilds its tables from them. Expected:
every customer's facts and the defined segment's members equal the old app's, and every
shop's records landed in the partition its id hashes to under 8.
"""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from harness.kafka_io import consume_all, read_table, send_events
from harness.workers import isolated_settings, unique_name, until, wait_consumed, worker_group
from segstream.settings import Settings
from segstream.state.keyspace import shop_partition
from segstream.tools.repartition import copy_topics
from segstream.tools.simulation.generator import SimulationConfig, generate

RULE = {"field": "behaviour.order_count", "op": "gte", "value": 3}


def facts(table: dict[str, Any]) -> dict[str, Any]:
    """Each customer's facts (segments apart: learned ones depend on arrival order)."""
    return {key: {**state, "segments": None} for key, state in table.items()}


def books(settings: Settings, data: Path, shop: str, define: bool, events: list[Any]) -> Any:
    """Run one app over its topics; the customers table and the defined members."""
    with worker_group(settings, data) as workers:
        worker = workers[0]
        if define:
            body = {"segment_id": "repeat", "name": "Repeat", "rule": RULE}
            status, answer = worker.request_json("POST", f"/shops/{shop}/definitions", body)
            assert status == 201, answer
            send_events(settings, events)
        asyncio.run(wait_consumed(settings, worker))
        defined = until(
            lambda: worker.get_json(f"/shops/{shop}/definitions/repeat"),
            lambda reply: reply[0] == 200 and not reply[1]["reevaluating"],
            "the defined segment, evaluated",
        )[1]
        return asyncio.run(read_table(settings, "customers")), defined["members"]


def test_a_rebuild_on_twice_the_partitions_keeps_every_fact_and_member(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    events = generate(
        SimulationConfig(seed=7, customers_per_shop=15, start=date(2025, 4, 1), days=90)
    ).events
    shop = events[0]["shop_id"]
    four = isolated_settings(kafka_bootstrap, "rep", topic_partitions=4)
    data = tmp_path_factory.mktemp("repartition")
    old_table, old_members = books(four, data / "four", shop, True, events)

    prefix = unique_name("rep8") + "."
    eight = four.model_copy(
        update={
            "app_id": unique_name("segstream-rep8"),
            "topic_prefix": prefix,
            "topic_partitions": 8,
        }
    )
    copied = asyncio.run(copy_topics(four, eight))
    assert sum(copied.values()) == len(events) + 1  # and the definition
    assert sum(asyncio.run(copy_topics(four, eight)).values()) == 0, "a rerun copies only news"
    orders = asyncio.run(consume_all(kafka_bootstrap, eight.topic("orders"), timeout_s=20))
    assert orders and all(
        record.partition == shop_partition(record.key.decode(), 8) for record in orders
    )
    new_table, new_members = books(eight, data / "eight", shop, False, events)

    assert (
        len(new_table) == len(old_table) == len({(e["shop_id"], e["customer_id"]) for e in events})
    )
    assert facts(new_table) == facts(old_table)
    assert new_members == old_members > 0
