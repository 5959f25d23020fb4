"""Integration test fixtures: a dedicated, real Apache Kafka broker for the test session.

The broker is started with ``deploy/kafka/kafka.sh`` on 127.0.0.1:19092 (controller on the next
port; override with ``SEGSTREAM_TEST_KAFKA_PORT``), separate from the dev broker on 9092. Its
data dir ``deploy/kafka/.cache/test-broker-<port>`` is wiped at session start so every run
begins from an empty cluster, and the broker is stopped at session end. If it cannot start,
every test that needs it fails with the script's output: integration tests never skip for a
missing broker.

Every test collected under ``tests/integration`` gets the ``integration`` marker, so
``pytest -m "not integration"`` runs without a broker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from harness.broker import Broker, BrokerError, fresh_broker

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TEST_PORT = 19092


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees the items of the whole session: mark only the ones in this folder.
    for item in items:
        if str(item.path).startswith(HERE):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Broker]:
    """A dedicated Kafka broker for this test session, started on a fresh data dir."""
    port = int(os.environ.get("SEGSTREAM_TEST_KAFKA_PORT", str(DEFAULT_TEST_PORT)))
    try:
        with fresh_broker(port) as broker:
            yield broker
    except BrokerError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: Broker) -> str:
    """Bootstrap address ``"127.0.0.1:PORT"`` of the session's test broker."""
    return kafka_broker.bootstrap
