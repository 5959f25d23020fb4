"""The fault proxy in front of a real broker (issue 30, item 1): a ``WORKERS<n>`` listener
advertised at a proxy's port puts every byte of its clients through that proxy, while the
``PLAINTEXT`` listener (the harness's own reads) stays direct; clients live through the
proxy's latency, resets and a cut that heals, nothing sent is lost or doubled, and a cut of
one listener's proxy leaves the clients of another alone.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from harness.broker import Broker, fresh_broker
from harness.faultproxy import FaultProxy, workers_listeners
from harness.kafka_io import consume_all, send_events
from harness.workers import WorkerProcess, isolated_settings, wait_consumed
from segstream.stream.topics import ensure_topics
from segstream.tools.simulation.generator import SimulationConfig, generate
from segstream.tools.simulation.shops import shops_per_kind

PORT_OFFSET = 200
"""This module's broker: the session broker's port plus this (controller on the next; then
two WORKERS listeners, each followed by its proxy's port). The session broker itself is
not started."""

Route = tuple[int, int]

DROPPED = ("partition_fenced", "member_id was not recognized")
"""What a worker's log shows when the group went on without it."""


@pytest.fixture(scope="module")
def port() -> int:
    return int(os.environ.get("SEGSTREAM_TEST_KAFKA_PORT", "19092")) + PORT_OFFSET


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


def test_a_worker_cut_off_past_its_session_is_fenced_when_it_comes_back(
    broker: Broker, port: int, proxies: list[FaultProxy], tmp_path: Path
) -> None:
    """Two workers, each through a proxy of its own; the first is cut off (stall) for longer
    than its session timeout while events arrive: the second takes its partitions, and the
    first, healed, finds itself dropped from the group (its producer fenced, when it had a
    transaction open) and rejoins; everything is consumed and both still run. (That what the
    zombie sent never lands is for the chaos run's change chains to show.)"""
    direct = isolated_settings(broker.bootstrap, "zombie")
    asyncio.run(ensure_topics(direct))
    env = {"SEGSTREAM_BROKER_SESSION_TIMEOUT_S": "6", "SEGSTREAM_BROKER_REQUEST_TIMEOUT_S": "10"}
    workers = []
    for n, proxy in enumerate(proxies):
        through = direct.model_copy(update={"kafka_bootstrap": proxy.address()})
        worker = WorkerProcess.for_settings(through, tmp_path / f"w{n + 1}", env)
        worker.web_port = port + 6 + n  # the module's port block, not a free port
        workers.append(worker)
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.wait_ready(timeout_s=120)
        events = generate(
            SimulationConfig(
                seed=5,
                shops=tuple(shops_per_kind(1)[:2]),
                customers_per_shop=40,
                start=date(2025, 5, 1),
                days=90,
            )
        ).events
        send_events(direct, events[: len(events) // 2])
        time.sleep(2)
        proxies[0].cut(20.0)
        send_events(direct, events[len(events) // 2 :])
        time.sleep(21)
        asyncio.run(wait_consumed(direct, workers[1], timeout_s=120))
        # The group dropped it: its heartbeat is refused (not a member any more), or, when it
        # had a transaction open across the cut, its producer is fenced (either may come
        # after the second worker has consumed everything).
        deadline = time.monotonic() + 30
        while not any(mark in workers[0].log_path.read_text() for mark in DROPPED):
            assert time.monotonic() < deadline, workers[0].log_tail()
            time.sleep(0.5)
        for worker in workers:
            worker.assert_running()
    finally:
        for worker in workers:
            worker.stop()
