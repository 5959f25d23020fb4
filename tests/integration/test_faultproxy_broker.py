"""The fault proxy in front of a real broker (issue 30, item 1): a ``WORKERS<n>`` listener
advertised at a proxy's port puts every byte of its clients through that proxy, while the
``PLAINTEXT`` listener (the harness's own reads) stays direct; clients live through the
proxy's latency, resets and a cut that heals, nothing sent is lost or doubled, and a cut of
one listener's proxy leaves the clients of another alone. (Workers cut off past their
session, with the group going on without them, are the chaos run's: tests/chaos.py.)
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaProducer

from harness.broker import Broker, fresh_broker
from harness.faultproxy import FaultProxy, workers_listeners
from harness.kafka_io import consume_all
from tests.integration.conftest import DEFAULT_TEST_PORT, XDIST_PORT_STEP, xdist_index

PORT_OFFSET = 200
"""This module's broker: the session broker's port plus this (controller on the next; then
two WORKERS listeners, each followed by its proxy's port). The session broker itself is
not started."""

Route = tuple[int, int]


@pytest.fixture(scope="module")
def port() -> int:
    base = int(os.environ.get("SEGSTREAM_TEST_KAFKA_PORT", str(DEFAULT_TEST_PORT)))
    return base + XDIST_PORT_STEP * xdist_index() + PORT_OFFSET


@pytest.fixture(scope="module")
def routes(port: int) -> list[Route]:
    return [(port + 2, port + 3), (port + 4, port + 5)]


@pytest.fixture(scope="module")
def broker(
    port: int, routes: list[Route], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Broker]:
    config = workers_listeners(tmp_path_factory.mktemp("net"), port, routes)
    with fresh_broker(port, "network-broker", (("KAFKA_EXTRA_CONFIG", str(config)),)) as broker:
        yield broker


@pytest.fixture
def proxies(broker: Broker, routes: list[Route]) -> Iterator[list[FaultProxy]]:
    with (
        FaultProxy([("127.0.0.1", routes[0][0])], [routes[0][1]], seed=3) as first,
        FaultProxy([("127.0.0.1", routes[1][0])], [routes[1][1]], seed=4) as second,
    ):
        yield [first, second]


def _producer(proxy: FaultProxy) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=proxy.address(), request_timeout_ms=10_000, enable_idempotence=True
    )


async def test_clients_of_the_workers_listener_go_through_the_proxy_and_survive_its_faults(
    broker: Broker, proxies: list[FaultProxy]
) -> None:
    proxy = proxies[0]
    producer = _producer(proxy)
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


async def test_a_cut_of_one_listener_leaves_the_clients_of_the_other_alone(
    broker: Broker, proxies: list[FaultProxy]
) -> None:
    cut_off, other = _producer(proxies[0]), _producer(proxies[1])
    await cut_off.start()
    await other.start()
    try:
        advertised = {(b.host, b.port) for b in other.client.cluster.brokers()}
        assert advertised == {("127.0.0.1", proxies[1].ports[0])}
        proxies[0].cut(3.0)
        held = asyncio.ensure_future(cut_off.send_and_wait("net-apart", b"held", partition=0))
        start = time.monotonic()
        await other.send_and_wait("net-apart", b"through", partition=1)
        assert time.monotonic() - start < 1.0, "the other listener's client is not held"
        assert not held.done()
        await held
    finally:
        await cut_off.stop()
        await other.stop()
    records = await consume_all(broker.bootstrap, "net-apart", complete=True)
    assert sorted(r.value for r in records) == [b"held", b"through"]
