"""A partition whose transaction failed waits for its next assignment and is never given
a new producer before it. A new producer takes the transactional id over, and the worker
may no longer own the partition: in a chaos run (seed 13896) a worker cut off past its
session timeout came back, restarted its producer after a failed commit, fenced the
partition's new owner and committed batches from its own stale tables."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest
from aiokafka.errors import KafkaConnectionError, ProducerFenced

from segstream.settings import Settings
from segstream.stream import checkpoint as module
from segstream.stream.checkpoint import Checkpoint, FencedError, ProducerRecord, Work

pytestmark = pytest.mark.asyncio(loop_scope="session")


class Producer:
    """A transactional producer whose commit raises ``Producer.failure`` when set."""

    failure: Exception | None = None
    started: ClassVar[list[Producer]] = []

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.stopped = False
        self.committed = 0

    async def start(self) -> None:  # InitProducerId: takes the transactional id over
        Producer.started.append(self)

    async def stop(self) -> None:
        self.stopped = True

    async def begin_transaction(self) -> None:
        return None

    async def send(self, topic: str, value: bytes | None, **options: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(type("Metadata", (), {"topic": topic, "partition": 0, "offset": 0}))
        return future

    async def send_offsets_to_transaction(self, offsets: Any, group_id: str) -> None:
        return None

    async def commit_transaction(self) -> None:
        if Producer.failure is not None:
            raise Producer.failure
        self.committed += 1


@pytest.fixture
def producers(monkeypatch: pytest.MonkeyPatch) -> type[Producer]:
    monkeypatch.setattr(module, "AIOKafkaProducer", Producer)
    Producer.started, Producer.failure = [], None
    return Producer


async def no_offsets(offsets: Any) -> None:
    return None


def work() -> Work:
    return Work(3, outputs=[ProducerRecord("out", b"k", b"v")], offsets={"in": 7})


@pytest.mark.parametrize(
    "failure",
    [KafkaConnectionError("Connection at 127.0.0.1:1 closed"), TimeoutError()],
    ids=["connection closed", "commit outcome unknown"],
)
async def test_a_failed_transaction_parks_the_partition_until_its_next_assignment(
    producers: type[Producer], failure: Exception
) -> None:
    asked: list[int] = []
    checkpoint = Checkpoint(Settings(), no_offsets, asked.append)
    await checkpoint.assign({3})
    first = producers.started[0]
    producers.failure = failure
    with pytest.raises(FencedError):
        await checkpoint.commit(work())
    assert first.stopped and asked == [3], "the producer goes, the worker asks to rejoin"
    assert checkpoint.partitions == set()

    producers.failure = None
    with pytest.raises(FencedError):
        await checkpoint.commit(work())
    await checkpoint.publish(3, [ProducerRecord("out", b"k", b"snapshot")])
    assert producers.started == [first], "no new producer before the next assignment"

    await checkpoint.assign({3})
    assert len(producers.started) == 2 and checkpoint.partitions == {3}
    await checkpoint.commit(work())
    assert producers.started[1].committed == 1


async def test_a_failed_snapshot_transaction_parks_the_partition_too(
    producers: type[Producer],
) -> None:
    asked: list[int] = []
    checkpoint = Checkpoint(Settings(), no_offsets, asked.append)
    await checkpoint.assign({3})
    producers.failure = KafkaConnectionError("Connection at 127.0.0.1:1 closed")
    await checkpoint.publish(3, [ProducerRecord("out", b"k", b"snapshot")])
    assert checkpoint.partitions == set() and asked == [3]
    producers.failure = None
    with pytest.raises(FencedError):
        await checkpoint.commit(work())
    assert len(producers.started) == 1


async def test_a_fence_parks_the_partition_as_before(producers: type[Producer]) -> None:
    asked: list[int] = []
    checkpoint = Checkpoint(Settings(), no_offsets, asked.append)
    await checkpoint.assign({3})
    producers.failure = ProducerFenced()
    with pytest.raises(FencedError):
        await checkpoint.commit(work())
    assert checkpoint.partitions == set() and asked == [3] and len(producers.started) == 1
