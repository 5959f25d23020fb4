"""A partition's producer is started only at an assignment. A new producer takes the
transactional id over, and the worker may no longer own the partition: in a chaos run
(seed 13896) a worker cut off past its session timeout came back, restarted its producer
after a failed commit, fenced the partition's new owner and committed batches from its own
stale tables. So a transaction that fails before its commit is aborted on the same
producer (the batch runs again), and one whose commit's outcome is unknown, or whose abort
fails, parks the partition until its next assignment."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, ProducerFenced

from segstream.observability import telemetry
from segstream.settings import Settings
from segstream.stream import checkpoint as module
from segstream.stream.checkpoint import (
    Checkpoint,
    FencedError,
    ProducerRecord,
    RetryError,
    Work,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

CLOSED = KafkaConnectionError("Connection at 127.0.0.1:1 closed")


class Producer:
    """A transactional producer whose steps raise the class's failures when set."""

    send_failure: Exception | None = None
    commit_failure: Exception | None = None
    abort_failure: Exception | None = None
    started: ClassVar[list[Producer]] = []

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.stopped = False
        self.committed = 0
        self.aborted = 0

    async def start(self) -> None:  # InitProducerId: takes the transactional id over
        Producer.started.append(self)

    async def stop(self) -> None:
        self.stopped = True

    async def begin_transaction(self) -> None:
        return None

    async def send(self, topic: str, value: bytes | None, **options: Any) -> asyncio.Future[Any]:
        if Producer.send_failure is not None:
            raise Producer.send_failure
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(type("Metadata", (), {"topic": topic, "partition": 0, "offset": 0}))
        return future

    async def send_offsets_to_transaction(self, offsets: Any, group_id: str) -> None:
        return None

    async def commit_transaction(self) -> None:
        if Producer.commit_failure is not None:
            raise Producer.commit_failure
        self.committed += 1

    async def abort_transaction(self) -> None:
        if Producer.abort_failure is not None:
            raise Producer.abort_failure
        self.aborted += 1


@pytest.fixture
def producers(monkeypatch: pytest.MonkeyPatch) -> type[Producer]:
    monkeypatch.setattr(module, "AIOKafkaProducer", Producer)
    Producer.started = []
    Producer.send_failure = Producer.commit_failure = Producer.abort_failure = None
    return Producer


def parked() -> float | None:
    return telemetry.REGISTRY.get_sample_value("segstream_partitions_parked")


async def no_offsets(offsets: Any) -> None:
    return None


def work() -> Work:
    return Work(3, outputs=[ProducerRecord("out", b"k", b"v")], offsets={"in": 7})


def snapshot() -> list[ProducerRecord]:
    return [ProducerRecord("out", b"k", b"snapshot")]


async def owner(asked: list[int]) -> Checkpoint:
    checkpoint = Checkpoint(Settings(retry_backoff_s=0.01), no_offsets, asked.append)
    await checkpoint.assign({3})
    return checkpoint


@pytest.mark.parametrize(
    "failure", [CLOSED, TimeoutError()], ids=["connection closed", "no answer in time"]
)
async def test_a_commit_of_unknown_outcome_parks_the_partition_until_its_next_assignment(
    producers: type[Producer], failure: Exception
) -> None:
    asked: list[int] = []
    checkpoint = await owner(asked)
    first = producers.started[0]
    producers.commit_failure = failure
    with pytest.raises(FencedError):
        await checkpoint.commit(work())
    assert first.stopped and asked == [3], "the producer goes, the worker asks to rejoin"
    assert checkpoint.partitions == set()

    producers.commit_failure = None
    with pytest.raises(FencedError):
        await checkpoint.commit(work())
    await checkpoint.publish(3, snapshot())
    assert producers.started == [first], "no new producer before the next assignment"

    await checkpoint.assign({3})
    assert len(producers.started) == 2 and checkpoint.partitions == {3}
    await checkpoint.commit(work())
    assert producers.started[1].committed == 1


@pytest.mark.parametrize("failure", [CLOSED, MessageSizeTooLargeError()])
async def test_a_failure_before_the_commit_is_aborted_on_the_same_producer(
    producers: type[Producer], failure: Exception
) -> None:
    asked: list[int] = []
    checkpoint = await owner(asked)
    producers.send_failure = failure
    with pytest.raises(RetryError):  # run the batch again; one that keeps failing stalls
        await checkpoint.commit(work())
    producers.send_failure = None
    await checkpoint.commit(work())
    only = producers.started[0]
    assert producers.started == [only] and (only.aborted, only.committed) == (1, 1)
    assert asked == [] and checkpoint.partitions == {3}


async def test_an_abort_that_fails_too_parks_the_partition(producers: type[Producer]) -> None:
    asked: list[int] = []
    checkpoint = await owner(asked)
    producers.send_failure, producers.abort_failure = CLOSED, CLOSED
    with pytest.raises(FencedError):
        await checkpoint.commit(work())
    assert checkpoint.partitions == set() and asked == [3] and len(producers.started) == 1
    assert parked() == 1, "operators see it: segstream_partitions_parked"
    await checkpoint.assign({3})
    assert parked() == 0


async def test_snapshots_abort_a_failed_send_and_park_a_commit_of_unknown_outcome(
    producers: type[Producer],
) -> None:
    asked: list[int] = []
    checkpoint = await owner(asked)
    producers.send_failure = CLOSED
    await checkpoint.publish(3, snapshot())
    assert checkpoint.partitions == {3} and producers.started[0].aborted == 1
    producers.send_failure, producers.commit_failure = None, CLOSED
    await checkpoint.publish(3, snapshot())
    assert checkpoint.partitions == set() and asked == [3]
    producers.commit_failure = None
    with pytest.raises(FencedError):
        await checkpoint.commit(work())
    assert len(producers.started) == 1


async def test_a_fence_parks_the_partition_as_before(producers: type[Producer]) -> None:
    asked: list[int] = []
    checkpoint = await owner(asked)
    producers.commit_failure = ProducerFenced()
    with pytest.raises(FencedError):
        await checkpoint.commit(work())
    assert checkpoint.partitions == set() and asked == [3] and len(producers.started) == 1


async def test_a_commit_that_outlived_a_rebalance_leaves_the_new_producer_alone(
    producers: type[Producer], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[int] = []
    checkpoint = await owner(asked)
    gate = asyncio.Event()

    async def slow_commit(self: Producer) -> None:
        await gate.wait()
        raise CLOSED  # the rebalance stopped this producer under its commit

    monkeypatch.setattr(producers, "commit_transaction", slow_commit)
    commit = asyncio.create_task(checkpoint.commit(work()))
    await asyncio.sleep(0.01)
    await checkpoint.assign({3})  # the rebalance's wait for the commit ran out
    gate.set()
    with pytest.raises(FencedError):
        await commit
    new = producers.started[-1]
    assert len(producers.started) == 2 and not new.stopped
    assert checkpoint.partitions == {3} and asked == []


async def test_a_partition_still_parked_asks_again(producers: type[Producer]) -> None:
    asked: list[int] = []
    checkpoint = await owner(asked)
    producers.commit_failure = CLOSED
    with pytest.raises(FencedError):
        await checkpoint.commit(work())
    checkpoint.remind(after_s=60.0)
    assert asked == [3], "not yet"
    await asyncio.sleep(0.02)
    checkpoint.remind(after_s=0.01)
    assert asked == [3, 3]
    await checkpoint.assign({3})
    checkpoint.remind(after_s=0.0)
    assert asked == [3, 3], "an assignment ends the wait"
