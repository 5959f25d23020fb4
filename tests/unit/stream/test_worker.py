"""A worker that cannot reach Kafka says so clearly (after waiting the configured time)."""

from __future__ import annotations

import time

import pytest

from harness.workers import free_port
from service.settings import Settings
from service.stream.worker import StartupError, prepare_topics


def test_an_unreachable_broker_is_waited_for_then_reported() -> None:
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", kafka_wait_s=0.5)
    started = time.monotonic()
    with pytest.raises(StartupError, match=r"cannot reach Kafka at 127\.0\.0\.1"):
        prepare_topics(settings)
    assert time.monotonic() - started >= 0.5
