"""One wait for a broker that cannot be reached, shared by the bootstrap, Faust's topic
declarations and the partitions' producers (they had three loops with two different tests
of "unreachable")."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    NodeNotReadyError,
    TopicAuthorizationFailedError,
)

from segstream.stream import kafka
from segstream.stream.kafka import unreachable, wait_for_broker


def test_unreachable_reads_the_cause_chain() -> None:
    closed = KafkaConnectionError("Connection at 127.0.0.1:41485 closed")
    wrapped = KafkaError(repr(closed))  # as aiokafka's Sender._find_coordinator raises it
    wrapped.__cause__ = closed
    assert unreachable(closed) and unreachable(wrapped) and unreachable(NodeNotReadyError())
    assert not unreachable(KafkaError("TransactionalIdAuthorizationFailed"))


def attempts_of(*failures: Exception) -> tuple[list[int], Callable[[], Awaitable[str]]]:
    calls: list[int] = []

    async def call() -> str:
        calls.append(len(calls))
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        return "done"

    return calls, call


def test_a_broker_that_comes_back_within_the_wait_is_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kafka, "RETRY_S", 0.01)
    closed = KafkaConnectionError("Connection at 127.0.0.1:1 closed")
    calls, call = attempts_of(closed, NodeNotReadyError())
    assert asyncio.run(wait_for_broker(call, 5.0, "test")) == "done"
    assert len(calls) == 3


@pytest.mark.parametrize("wait_s, stopping", [(0.0, False), (5.0, True)])
def test_no_wait_left_or_a_stopping_owner_raises_the_first_failure(
    monkeypatch: pytest.MonkeyPatch, wait_s: float, stopping: bool
) -> None:
    monkeypatch.setattr(kafka, "RETRY_S", 0.01)
    calls, call = attempts_of(KafkaConnectionError("refused"))
    with pytest.raises(KafkaConnectionError):
        asyncio.run(wait_for_broker(call, wait_s, "test", lambda: stopping))
    assert len(calls) == 1


def test_another_error_is_not_waited_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka, "RETRY_S", 0.01)
    calls, call = attempts_of(TopicAuthorizationFailedError())
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(wait_for_broker(call, 5.0, "test"))
    assert len(calls) == 1
