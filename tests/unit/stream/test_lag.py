"""Consumer-lag arithmetic: end offset minus the position the group resumes from."""

from __future__ import annotations

import socket

import pytest
from aiokafka.errors import ConsumerStoppedError

from segstream.observability import telemetry
from segstream.stream.lag import LagProbe, lag_by_partition

T0, T1, T2 = ("orders", 0), ("orders", 1), ("orders", 2)


def test_lag_is_end_minus_committed() -> None:
    assert lag_by_partition({T0: 100}, {T0: 0}, {T0: 60}) == {T0: 40}


def test_uncommitted_partition_lags_by_all_retained_records() -> None:
    assert lag_by_partition({T0: 100, T1: 8}, {T0: 20, T1: 0}, {}) == {T0: 80, T1: 8}


def test_negative_committed_offset_means_none() -> None:
    assert lag_by_partition({T0: 100}, {T0: 30}, {T0: -1}) == {T0: 70}


def test_committed_offset_below_retention_counts_from_earliest() -> None:
    assert lag_by_partition({T0: 100}, {T0: 90}, {T0: 10}) == {T0: 10}


def test_caught_up_and_empty_partitions_have_no_lag() -> None:
    assert lag_by_partition({T0: 5, T1: 0, T2: 7}, {}, {T0: 5, T2: 9}) == {T0: 0, T1: 0, T2: 0}


def test_only_partitions_with_end_offsets_are_reported() -> None:
    assert lag_by_partition({T0: 5}, {T0: 0}, {T0: 2, T1: 1}) == {T0: 3}


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_unreachable_kafka_clears_the_lag_series_instead_of_raising() -> None:
    telemetry.set_consumer_lag({("orders", 0): 7})
    unreachable = {"bootstrap_servers": f"127.0.0.1:{closed_port()}", "request_timeout_ms": 2000}
    probe = LagProbe(unreachable, "group", ["orders"])

    await probe.update()

    assert (
        telemetry.REGISTRY.get_sample_value(
            "segstream_consumer_lag_records", {"topic": "orders", "partition": "0"}
        )
        is None
    )


async def test_a_probe_whose_clients_stop_under_it_does_not_raise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker shutting down closes the probe's clients while a measurement runs: the
    consumer's ConsumerStoppedError (not a KafkaError) used to crash the app."""
    telemetry.set_consumer_lag({("orders", 0): 7})
    probe = LagProbe({"bootstrap_servers": "127.0.0.1:9"}, "group", ["orders"])

    async def stopped() -> dict[tuple[str, int], int]:
        raise ConsumerStoppedError()

    monkeypatch.setattr(probe, "measure", stopped)
    await probe.update()
    labels = {"topic": "orders", "partition": "0"}
    assert telemetry.REGISTRY.get_sample_value("segstream_consumer_lag_records", labels) is None
