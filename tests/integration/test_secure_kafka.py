"""A worker that talks to Kafka only through SASL (SCRAM-SHA-512) over TLS.

A broker of its own with a SASL_SSL listener (a CA and certificate made in the test,
a SCRAM user created when its storage is formatted). The worker, the topic setup, the
publisher, the lag probe and the test's own reads all connect through that listener
with the CA, user and password from the settings; a worker with a wrong password stops
at once with a clear message instead of retrying.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from harness.broker import Broker, fresh_broker
from harness.kafka_io import send_events
from harness.secure import MECHANISM, SecureListener, secure_listener
from harness.workers import REPO_ROOT, WorkerProcess, isolated_settings, wait_consumed, worker_group
from segstream.settings import Settings
from segstream.tools.simulation.generator import SimulationConfig, generate
from segstream.tools.simulation.shops import shops_per_kind

PORT_OFFSET = 300
"""The secure broker's port: the session broker's plus this (controller on the next, the
SASL_SSL listener on the one after)."""


@pytest.fixture(scope="module")
def listener(
    kafka_broker: Broker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureListener]:
    port = kafka_broker.port + PORT_OFFSET
    secure = secure_listener(tmp_path_factory.mktemp("tls"), port, port + 2)
    with fresh_broker(port, "secure-broker", secure.broker_env()):
        yield secure


def security_env(listener: SecureListener, password: str) -> dict[str, str]:
    return {
        "SEGSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "SEGSTREAM_KAFKA_SASL_MECHANISM": MECHANISM,
        "SEGSTREAM_KAFKA_USERNAME": listener.username,
        "SEGSTREAM_KAFKA_PASSWORD": password,
        "SEGSTREAM_KAFKA_SSL_CAFILE": str(listener.cafile),
    }


@pytest.fixture(scope="module")
def settings(listener: SecureListener) -> Settings:
    return isolated_settings(
        listener.bootstrap,
        "secure",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=MECHANISM,
        kafka_username=listener.username,
        kafka_password=listener.password,
        kafka_ssl_cafile=listener.cafile,
    )


def test_the_worker_runs_through_sasl_ssl(
    settings: Settings, listener: SecureListener, tmp_path_factory: pytest.TempPathFactory
) -> None:
    events = generate(
        SimulationConfig(
            seed=4,
            shops=tuple(shops_per_kind(1)[:1]),
            customers_per_shop=20,
            start=date(2025, 5, 1),
            days=60,
        )
    ).events
    env = security_env(listener, listener.password)
    with worker_group(settings, tmp_path_factory.mktemp("secure"), env) as workers:
        send_events(settings, events)
        asyncio.run(wait_consumed(settings, workers[0]))
        status, sizes = workers[0].get_json(f"/shops/{events[0]['shop_id']}/segments")
    assert status == 200
    customers = {e["customer_id"] for e in events}
    assert sum(sizes["models"]["lifecycle"].values()) == len(customers)


def test_a_wrong_password_stops_the_worker_at_once_with_a_clear_message(
    settings: Settings, listener: SecureListener, tmp_path: Path
) -> None:
    worker = WorkerProcess.for_settings(settings, tmp_path / "w", security_env(listener, "wrong"))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "segstream", "worker"],
        cwd=REPO_ROOT,
        env=worker.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert time.monotonic() - started < settings.kafka_wait_s / 2, "no retrying"
    message = result.stderr.strip().splitlines()[-1]
    assert "authentication" in message.lower() and listener.username in message, message
    assert "Traceback" not in result.stderr
