"""The chaos run's worker network: each worker holds a slot (a proxy in front of a broker
listener of its own) while it runs, a slot given back is free again and no longer cut off,
and the broker's extra listeners name each proxy's port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.network import WorkerNetwork, worker_network


@pytest.fixture
def network(tmp_path: Path) -> Iterator[WorkerNetwork]:
    with worker_network(19_000, 2, tmp_path, seed=3) as running:
        yield running


def test_each_worker_holds_its_own_proxy_until_it_gives_it_back(network: WorkerNetwork) -> None:
    first, second = network.take("w1"), network.take("w2")
    assert first != second
    assert {first, second} == {proxy.address() for proxy in network.proxies}
    with pytest.raises(RuntimeError, match="no free network slot for w3"):
        network.take("w3")
    network.give_back("w1")
    assert network.take("w3") == first


def test_a_slot_given_back_is_no_longer_cut_off(network: WorkerNetwork) -> None:
    network.take("w1")
    network.cut("w1", 60.0, "refuse")
    proxy = network.proxy_of("w1")
    assert proxy.faults.cut == "refuse"
    network.give_back("w1")
    assert proxy.faults.cut is None
    network.latency(0.5)
    network.give_back("w2")  # not a holder: nothing happens
    assert all(p.faults.fixed == 0.5 for p in network.proxies), "latency is everyone's"


def test_the_broker_listeners_advertise_each_proxy(network: WorkerNetwork) -> None:
    ((name, path),) = network.broker_env()
    assert name == "KAFKA_EXTRA_CONFIG"
    config = Path(path).read_text()
    for n, (port, proxy) in enumerate(zip(network.listeners, network.proxies, strict=True), 1):
        assert f"WORKERS{n}://127.0.0.1:{port}" in config
        assert f"WORKERS{n}://127.0.0.1:{proxy.ports[0]}" in config
