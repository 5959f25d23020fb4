"""No record stops a partition, and a failure that is not a record's stops it loudly.

One real worker, started with the faults of :mod:`harness.faults` (the shipped code, one
call made to fail):

1. Among good orders of two shops that share a partition: an order of amount 1e308 (the
   record that used to stop its partition for good), an order whose customer's state
   cannot be stored (the failure comes after the record was handled, while the batch's
   writes are encoded) and an order the pipeline fails on. Each is dead-lettered with its
   reason and original bytes; every good order is in the tables; nothing is stalled.
2. Every order fails (a bug or outage no record explains): the partition stalls after
   fewer than ``MAX_ERROR_STREAK`` dead letters; ``/ready`` answers 503 naming it and
   why, the gauge names it, another partition's shop is still processed. Once the fault
   is gone the partition resumes by itself and every order is in the tables.
3. Stalled again, the worker ends within its shutdown bound on SIGTERM; its successor,
   without the fault, processes everything that was stalled: nothing was lost.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.kafka_io import consume_all, read_table, send_events
from harness.workers import WorkerProcess, faulty_env, isolated_settings, until, wait_consumed
from segstream.settings import Settings
from segstream.state.keyspace import shop_partition
from segstream.stream.poison import MAX_ERROR_STREAK
from segstream.stream.topics import ensure_topics
from segstream.stream.worker import SHUTDOWN_TIMEOUT_S
from segstream.tools.publish import publish
from tests import factories

SHOP = "roastery-1"
T = "2026-03-0{}T10:00:00Z"


def other_shop(partitions: int, same: bool) -> str:
    """A shop in the same partition as SHOP (or another one)."""
    wanted = shop_partition(SHOP, partitions)
    return next(
        shop
        for shop in (f"shop-{n}" for n in range(1000))
        if (shop_partition(shop, partitions) == wanted) is same
    )


def order(shop: str, customer: str, n: int) -> dict[str, Any]:
    """Order ``n`` of ``customer`` (12.5 EUR, on day ``1 + n % 9``)."""
    at, event_id = T.format(1 + n % 9), f"{shop}-{customer}-{n}"
    return factories.order(customer, at, event_id, 12.5, shop=shop, order_id=f"o-{n}")


def signup(shop: str, customer: str) -> dict[str, Any]:
    """A signup (not an order: every order fails while ``every-order`` is there)."""
    return factories.signup(customer, T.format(1), f"{shop}-{customer}-signup", shop=shop)


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str) -> Settings:
    return isolated_settings(kafka_bootstrap, "poison")


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def worker(
    settings: Settings, faults: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    asyncio.run(ensure_topics(settings))
    retries = {"SEGSTREAM_STALL_RETRY_MAX_S": "5"}  # a stalled partition retries often
    process = WorkerProcess.for_settings(
        settings, tmp_path_factory.mktemp("poison") / "w", faulty_env(faults) | retries
    )
    process.start()
    try:
        process.wait_ready(timeout_s=120)
        yield process
    finally:
        process.stop()


def letters(settings: Settings) -> list[dict[str, Any]]:
    found = asyncio.run(consume_all(settings.kafka_bootstrap, settings.topic("dead_letters")))
    return [json.loads(record.value) for record in found]


def orders_in_tables(settings: Settings) -> dict[str, int]:
    customers = asyncio.run(read_table(settings, "customers"))
    return {key: state["order_count"] for key, state in customers.items()}


def test_a_poison_record_is_dead_lettered_and_the_partition_goes_on(
    settings: Settings, worker: WorkerProcess
) -> None:
    neighbour = other_shop(settings.topic_partitions, same=True)
    poison = json.dumps(order(SHOP, "c-huge", 1)).replace("12.5", "1e308").encode()
    good = [order(shop, f"c-{n}", n) for n in range(6) for shop in (SHOP, neighbour)]
    asyncio.run(
        publish(
            [("orders", event) for event in good[:4]]
            + [("orders", poison)]
            + [("orders", order(SHOP, "fault-encode-1", 2))]
            + [("orders", event) for event in good[4:8]]
            + [("orders", order(neighbour, "fault-handle-1", 3))]
            + [("orders", event) for event in good[8:]],
            settings,
        )
    )
    asyncio.run(wait_consumed(settings, worker))
    found = {(letter["reason"], letter["detail"][:40]) for letter in letters(settings)}
    assert found == {
        ("schema_invalid", "$.amount: 1e+308 is greater than the max"),
        ("processing_error", "OverflowError: cannot convert float infi"),
        ("processing_error", "RuntimeError: injected fault while handl"),
    }
    for letter in letters(settings):
        if letter["reason"] == "schema_invalid":
            assert base64.b64decode(letter["original_value_b64"]) == poison
    counts = orders_in_tables(settings)
    assert {f"{e['shop_id']}/{e['customer_id']}" for e in good} == set(counts)
    assert set(counts.values()) == {1}
    status, ready = worker.get_json("/ready")
    assert (status, ready["stalled"]) == (200, [])


def test_a_failure_no_record_explains_stalls_the_partition_loudly_until_it_is_gone(
    settings: Settings, worker: WorkerProcess, faults: Path
) -> None:
    partition = shop_partition(SHOP, settings.topic_partitions)
    elsewhere = other_shop(settings.topic_partitions, same=False)
    lettered = dead_event_ids(settings)
    (faults / "every-order").touch()
    stalled = [order(SHOP, f"s-{n}", n) for n in range(3 * MAX_ERROR_STREAK)]
    send_events(settings, stalled)
    _, ready = until(
        lambda: worker.get_json("/ready"),
        lambda answer: answer[0] == 503 and answer[1]["stalled"],
        "the partition stalled",
    )
    (stall,) = ready["stalled"]
    assert stall["partition"] == partition
    assert "OSError: [Errno 28] No space left on device" in stall["reason"]
    assert worker.metric("segstream_partition_stalled_since_seconds", partition=str(partition)) > 0
    assert len(dead_event_ids(settings) - lettered) < MAX_ERROR_STREAK

    send_events(settings, [signup(elsewhere, "c-1")])  # another partition goes on
    until(
        lambda: worker.get_json(f"/shops/{elsewhere}/customers/c-1")[0],
        lambda status: status == 200,
        "a shop of another partition processed while this one is stalled",
    )
    assert worker.get_json("/ready")[0] == 503

    (faults / "every-order").unlink()  # the outage ends: the partition retries by itself
    until(
        lambda: worker.get_json("/ready"),
        lambda answer: answer[0] == 200,
        "the partition resumed",
        limit=60,
    )
    asyncio.run(wait_consumed(settings, worker))
    assert_nothing_lost(settings, stalled)
    assert worker.metric("segstream_partition_stalled_since_seconds") == 0


def test_a_stalled_worker_ends_on_sigterm_and_its_successor_loses_nothing(
    settings: Settings, worker: WorkerProcess, faults: Path, tmp_path: Path
) -> None:
    (faults / "every-order").touch()
    held = [order(SHOP, f"t-{n}", n) for n in range(3 * MAX_ERROR_STREAK)]
    send_events(settings, held)
    until(
        lambda: worker.get_json("/ready"),
        lambda answer: answer[0] == 503 and answer[1]["stalled"],
        "the partition stalled again",
    )
    took = worker.terminate(within_s=SHUTDOWN_TIMEOUT_S + 5)
    print(f"SIGTERM to exit: {took:.1f} s")
    successor = WorkerProcess.for_settings(settings, tmp_path / "successor")
    successor.start()
    try:
        successor.wait_ready(timeout_s=120)
        asyncio.run(wait_consumed(settings, successor))
    finally:
        successor.stop()
    assert_nothing_lost(settings, held)


def assert_nothing_lost(settings: Settings, sent: list[dict[str, Any]]) -> None:
    """Each of ``sent`` (one order per customer) is in the tables or dead-lettered, and
    fewer than MAX_ERROR_STREAK were dead-lettered."""
    counts = orders_in_tables(settings)
    dead = dead_event_ids(settings)
    for event in sent:
        if event["event_id"] not in dead:
            assert counts.get(f"{event['shop_id']}/{event['customer_id']}") == 1, event
    assert sum(1 for event in sent if event["event_id"] in dead) < MAX_ERROR_STREAK


def dead_event_ids(settings: Settings) -> set[str]:
    """The event ids of the dead-lettered JSON objects."""
    ids = set()
    for letter in letters(settings):
        try:
            event = json.loads(base64.b64decode(letter["original_value_b64"]))
        except ValueError:
            continue
        if isinstance(event, dict) and "event_id" in event:
            ids.add(str(event["event_id"]))
    return ids
