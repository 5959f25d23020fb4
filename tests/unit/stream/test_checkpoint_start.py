"""A partition assigned while the broker cannot be reached waits for it (up to
SEGSTREAM_KAFKA_WAIT_S) instead of crashing the worker: the short chaos run with seed
969525 rebalanced during its broker restart, and the worker exited; with seed 908039 (and
network faults) a connection reset during the transaction coordinator lookup, which
aiokafka reports as a bare KafkaError caused by the connection error, did the same."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaError

from segstream.settings import Settings
from segstream.stream import checkpoint as module
from segstream.stream.checkpoint import Checkpoint

pytestmark = pytest.mark.asyncio(loop_scope="session")


class Producer:
    """A producer whose first ``failures`` starts find no broker."""

    failures = 0
    failure: Exception | None = None
    """What a failed start raises (None: the bootstrap's connection error)."""
    started: ClassVar[list[Producer]] = []
    stopped: ClassVar[list[Producer]] = []

    def __init__(self, **options: Any) -> None:
        self.options = options

    async def start(self) -> None:
        if Producer.failures:
            Producer.failures -= 1
            if Producer.failure is None:
                raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 1)]")
            raise Producer.failure
        Producer.started.append(self)

    async def stop(self) -> None:
        Producer.stopped.append(self)


@pytest.fixture
def producers(monkeypatch: pytest.MonkeyPatch) -> type[Producer]:
    monkeypatch.setattr(module, "AIOKafkaProducer", Producer)
    Producer.started, Producer.stopped = [], []
    Producer.failure = None
    return Producer


async def no_offsets(offsets: Any) -> None:
    return None


async def test_an_assignment_waits_for_the_broker_to_come_back(producers: type[Producer]) -> None:
    producers.failures = 1
    checkpoint = Checkpoint(Settings(kafka_wait_s=30), no_offsets)
    await checkpoint.assign({3})
    assert len(producers.started) == 1
    assert producers.started[0].options["transactional_id"] == "segstream-p3"
    assert len(producers.stopped) == 1, "the failed producer is closed"
    assert checkpoint.partitions == {3}


async def test_a_broker_gone_for_longer_than_the_wait_still_stops_the_worker(
    producers: type[Producer],
) -> None:
    producers.failures = 1
    checkpoint = Checkpoint(Settings(kafka_wait_s=0), no_offsets)
    with pytest.raises(KafkaConnectionError):
        await checkpoint.assign({3})
    assert producers.started == [] and len(producers.stopped) == 1


async def test_a_connection_closed_during_the_coordinator_lookup_is_waited_out(
    producers: type[Producer],
) -> None:
    closed = KafkaConnectionError("Connection at 127.0.0.1:41485 closed")
    wrapped = KafkaError(repr(closed))  # as aiokafka's Sender._find_coordinator raises it
    wrapped.__cause__ = closed
    producers.failures, producers.failure = 1, wrapped
    checkpoint = Checkpoint(Settings(kafka_wait_s=30), no_offsets)
    await checkpoint.assign({3})
    assert len(producers.started) == 1 and checkpoint.partitions == {3}


async def test_another_error_of_the_start_is_not_waited_out(producers: type[Producer]) -> None:
    producers.failures, producers.failure = 1, KafkaError("TransactionalIdAuthorizationFailed")
    checkpoint = Checkpoint(Settings(kafka_wait_s=30), no_offsets)
    with pytest.raises(KafkaError, match="TransactionalIdAuthorizationFailed"):
        await checkpoint.assign({3})
