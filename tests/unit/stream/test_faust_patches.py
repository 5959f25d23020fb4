"""The Faust patches: refused on versions they were not written for; Faust's own commit
keeps nothing that grows."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace

import pytest
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from segstream.stream import faust_patches, kafka


def test_other_library_versions_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    faust_patches.check_versions()
    monkeypatch.setitem(faust_patches.TESTED_VERSIONS, "aiokafka", "0.0.1")
    with pytest.raises(faust_patches.UnsupportedVersionError, match="aiokafka"):
        faust_patches.check_versions()


def test_a_missing_compression_codec_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    # without cramjam a producer's snappy batch ended the worker in aiokafka's fetcher
    monkeypatch.setitem(faust_patches.CODECS, "snappy", lambda: False)
    with pytest.raises(faust_patches.UnsupportedVersionError, match="decompress snappy"):
        faust_patches.check_versions()


def test_faust_commits_nothing_and_forgets_its_acked_offsets() -> None:
    consumer = SimpleNamespace(
        _acked=defaultdict(list, {("t", 0): [1, 2, 3]}),
        _acked_index=defaultdict(set, {("t", 0): {1, 2, 3}}),
        _gap={("t", 0): object()},
    )
    assert asyncio.run(faust_patches._no_commit(consumer)) is False
    assert consumer._acked[("t", 0)] == [] and consumer._acked_index[("t", 0)] == set()
    assert consumer._gap == {}


def test_faust_drops_no_record_as_already_read() -> None:
    read = faust_patches.NoReadOffsets()
    read[("t", 0)] = 300  # what Faust's fetch loop records after delivering offset 300
    read.update({("t", 0): 300})  # what its seek to committed offsets records
    assert read[("t", 0)] is None  # so a record at offset 0, fetched again, is delivered


def test_a_client_waits_for_a_broker_that_comes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # a worker starting while the broker restarts (chaos seed 471760) exited "Unable to
    # bootstrap"; the bootstrap is retried each second until the wait is over
    attempts: list[float] = []

    async def flaky(self: object) -> None:
        attempts.append(asyncio.get_running_loop().time())
        if len(attempts) < 3:
            raise KafkaConnectionError("Unable to bootstrap")

    monkeypatch.setattr(faust_patches, "_bootstrap", flaky)
    monkeypatch.setattr(kafka, "RETRY_S", 0.01)
    monkeypatch.setitem(faust_patches._state, "wait_s", 5.0)
    asyncio.run(faust_patches._patient_bootstrap(object()))
    assert len(attempts) == 3
    attempts.clear()
    monkeypatch.setitem(faust_patches._state, "wait_s", 0.0)  # no wait: the first failure
    with pytest.raises(KafkaConnectionError):
        asyncio.run(faust_patches._patient_bootstrap(object()))
    assert len(attempts) == 1


def test_a_topic_declaration_outlives_a_connection_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    # a worker whose leader topic declaration met a reset exited (network chaos seed 908039)
    attempts: list[str] = []

    async def flaky(self: object, owner: object, client: object, topic: str, *a: object) -> None:
        attempts.append(topic)
        if len(attempts) == 1:
            raise KafkaConnectionError("Connection at 127.0.0.1:34021 closed")
        if topic == "refused":
            raise TopicAuthorizationFailedError()

    monkeypatch.setattr(faust_patches, "_create_topic", flaky)
    monkeypatch.setattr(kafka, "RETRY_S", 0.01)
    monkeypatch.setitem(faust_patches._state, "wait_s", 5.0)
    asyncio.run(faust_patches._patient_create_topic(object(), object(), object(), "leader", 1, 1))
    assert attempts == ["leader", "leader"]
    with pytest.raises(TopicAuthorizationFailedError):  # another error: not waited out
        asyncio.run(faust_patches._patient_create_topic(object(), object(), object(), "refused"))
    assert attempts == ["leader", "leader", "refused"]
