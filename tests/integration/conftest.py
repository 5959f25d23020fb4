"""Integration test fixtures: a dedicated, real Apache Kafka broker for the test session.

The broker is started with ``deploy/kafka/kafka.sh`` on 127.0.0.1:19092 (controller on the next
port; override with ``SEGSTREAM_TEST_KAFKA_PORT``), separate from the dev broker on 9092;
under ``pytest -n`` each test process has its own, 1000 ports further per process. Its
data dir ``deploy/kafka/.cache/test-broker-<port>`` is wiped at session start so every run
begins from an empty cluster, and the broker is stopped at session end. If it cannot start,
every test that needs it fails with the script's output: integration tests never skip for a
missing broker.

The broker runs Apache Kafka ``SEGSTREAM_TEST_KAFKA_VERSION`` (default 3.9.1). ``make test``
runs the whole suite on 3.9.1, then the ``broker_compat`` subset (:data:`COMPAT_MODULES`) on
4.x; ``make test-kafka4`` runs the whole suite on 4.x.

Every test collected under ``tests/integration`` gets the ``integration`` marker, so
``pytest -m "not integration"`` runs without a broker.

A module that defines a ``settings`` fixture gets its running ``worker`` (and ``workers``,
the list a test adds successors to) from here; it overrides ``worker_env`` to give its
workers more settings, or defines its own ``worker`` when it starts one differently.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from harness.broker import Broker, BrokerError, fresh_broker
from harness.workers import WorkerProcess, worker_group
from segstream.settings import Settings

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TEST_PORT = 19092
COMPAT_MODULES = frozenset(
    {
        "test_broker.py",
        "test_checkpoint.py",
        "test_pipeline.py",
        "test_recovery.py",
    }
)
"""The ``broker_compat`` subset, what ``make test`` also runs on Kafka 4.x (under two minutes
with the broker's start): raw client round trips and transactions, the transactional
checkpoint and the fencing of a previous owner, the whole pipeline with its read_committed
outputs and dead letters, and a SIGKILLed worker replaced and its tables recovered from the
changelogs (a rebalance). ``make test-kafka4`` runs everything."""


XDIST_PORT_STEP = 1000
"""How far apart the brokers of parallel test processes listen (each process of
``pytest -n`` has a broker of its own; tests add up to 305 to its port)."""


def xdist_index() -> int:
    """This test process's number under ``pytest -n`` (0 without it)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "broker_compat: the integration subset make test also runs on Kafka 4.x"
    )
    # A renamed module would shrink the 4.x run silently.
    missing = sorted(name for name in COMPAT_MODULES if not os.path.isfile(f"{HERE}/{name}"))
    if missing:
        raise pytest.UsageError(f"COMPAT_MODULES names test files that do not exist: {missing}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees the items of the whole session: mark only the ones in this folder.
    for item in items:
        if str(item.path).startswith(HERE):
            item.add_marker(pytest.mark.integration)
            if item.path.name in COMPAT_MODULES:
                item.add_marker(pytest.mark.broker_compat)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Broker]:
    """A dedicated Kafka broker for this test session, started on a fresh data dir."""
    port = int(os.environ.get("SEGSTREAM_TEST_KAFKA_PORT", str(DEFAULT_TEST_PORT)))
    port += XDIST_PORT_STEP * xdist_index()
    try:
        with fresh_broker(port) as broker:
            yield broker
    except BrokerError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: Broker) -> str:
    """Bootstrap address ``"127.0.0.1:PORT"`` of the session's test broker."""
    return kafka_broker.bootstrap


@pytest.fixture(scope="module")
def worker_env() -> dict[str, str]:
    """Environment added to the module's workers (none unless the module overrides this)."""
    return {}


@pytest.fixture(scope="module")
def workers(
    settings: Settings, worker_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[WorkerProcess]]:
    """The module's first worker, on its topics (created) with the module's ``settings`` and
    ``worker_env``, in a list a test may add successors to; all are stopped at the end."""
    with worker_group(settings, tmp_path_factory.mktemp("workers"), worker_env) as group:
        yield group


@pytest.fixture(scope="module")
def worker(workers: list[WorkerProcess]) -> WorkerProcess:
    """The module's first worker (see :func:`workers`)."""
    return workers[0]
