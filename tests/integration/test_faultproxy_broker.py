"""The fault proxy in front of a real broker (issue 30, item 1): a ``WORKERS`` listener
advertised at the proxy's port puts every byte of its clients through the proxy, while the
``PLAINTEXT`` listener (the harness's own reads) stays direct; clients live through the
proxy's latency, resets and a cut that heals, and nothing sent is lost or doubled.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaProducer

from harness.broker import Broker, fresh_broker
from harness.faultproxy import FaultProxy, workers_listener
from harness.kafka_io import consume_all

PORT_OFFSET = 200
"""This module's broker: the session broker's port plus this (controller on the next, the
WORKERS listener on the one after, the proxy on the one after that). The session broker
itself is not started."""


@pytest.fixture(scope="module")
def ports() -> tuple[int, int, int]:
    base = int(os.environ.get("SEGSTREAM_TEST_KAFKA_PORT", "19092")) + PORT_OFFSET
    return base, base + 2, base + 3


@pytest.fixture(scope="module")
def broker(
    ports: tuple[int, int, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Broker]:
    port, workers, proxied = ports
    config = workers_listener(tmp_path_factory.mktemp("net"), port, workers, proxied)
    with fresh_broker(port, "network-broker", (("KAFKA_EXTRA_CONFIG", str(config)),)) as broker:
        yield broker


@pytest.fixture
def proxy(broker: Broker, ports: tuple[int, int, int]) -> Iterator[FaultProxy]:
    _, workers, proxied = ports
    with FaultProxy([("127.0.0.1", workers)], [proxied], seed=3) as running:
        yield running


async def test_clients_of_the_workers_listener_go_through_the_proxy_and_survive_its_faults(
    broker: Broker, proxy: FaultProxy
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=proxy.address(), request_timeout_ms=10_000, enable_idempotence=True
    )
    await producer.start()
    try:
        advertised = {(b.host, b.port) for b in producer.client.cluster.brokers()}
        assert advertised == {("127.0.0.1", proxy.ports[0])}, "only the proxy is advertised"
        await producer.send_and_wait("net-probe", b"0", partition=0)
        assert proxy.accepted >= 1

        proxy.latency(0.2)
        start = time.monotonic()
        await producer.send_and_wait("net-probe", b"1", partition=0)
        assert time.monotonic() - start >= 0.4, "0.2 s each way"
        proxy.clear()

        proxy.reset()
        await producer.send_and_wait("net-probe", b"2", partition=0)

        proxy.cut(2.0)
        start = time.monotonic()
        await producer.send_and_wait("net-probe", b"3", partition=0)
        assert time.monotonic() - start >= 1.5, "held until the cut healed"
    finally:
        await producer.stop()

    records = await consume_all(broker.bootstrap, "net-probe", complete=True)
    assert [r.value for r in records] == [b"0", b"1", b"2", b"3"]
