"""A worker whose transactional producer is fenced while the group still gives it the
partition takes the partition up again.

A fence without a rebalance happens when the transaction coordinator aborts a transaction
that outlived ``transaction.timeout.ms`` (it bumps the producer's epoch, exactly as a new
producer with the same transactional id does), or when two of the worker's own producers
for one partition race. The worker used to mark the partition fenced and wait for a
rebalance that never came: ``/ready`` said ready while the partition's records were
dropped for good (CI's short chaos run: "lag 130 after 900 s" on one partition). Here the
test itself fences the partition's producer, the way the coordinator's abort does.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from harness.kafka_io import read_table, send_events
from harness.workers import WorkerProcess, isolated_settings, wait_consumed
from segstream.settings import Settings
from tests.factories import order, signup

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str) -> Settings:
    return isolated_settings(kafka_bootstrap, "fence", topic_partitions=1)


async def fence(settings: Settings, partition: int) -> None:
    """Bump the epoch of the worker's transactional id for ``partition``."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        transactional_id=f"{settings.app_id}-p{partition}",
    )
    await producer.start()  # InitProducerId: the worker's producer is fenced
    await producer.stop()


async def test_a_fenced_partition_the_group_still_assigns_is_taken_up_again(
    settings: Settings, worker: WorkerProcess
) -> None:
    await asyncio.to_thread(
        send_events, settings, [signup("c-1", "2025-03-01T09:00:00Z", "e-1", shop="fenced-shop")]
    )
    await wait_consumed(settings, worker, timeout_s=60)

    await fence(settings, 0)
    await asyncio.to_thread(
        send_events,
        settings,
        [order("c-1", "2025-03-02T09:00:00Z", "e-2", 12.5, shop="fenced-shop")],
    )

    await wait_consumed(settings, worker, timeout_s=90)
    customers = await read_table(settings, "customers")
    (state,) = customers.values()
    assert state["order_count"] == 1
    assert worker.get_json("/ready")[1]["ready"] is True
