"""Backoff with full jitter, the token bucket, and which offsets may be committed."""

from __future__ import annotations

import random

import pytest

from segstream.webhooks.pacing import PartitionProgress, TokenBucket, backoff_s


def test_backoff_doubles_up_to_its_cap_and_is_drawn_below_the_ceiling() -> None:
    ceilings = [backoff_s(n, 0.5, 10.0, lambda: 1.0) for n in range(1, 8)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    draws = random.Random(7)
    waits = [backoff_s(4, 0.5, 10.0, draws.random) for _ in range(2000)]
    assert min(waits) >= 0 and max(waits) <= 4.0
    assert 1.8 < sum(waits) / len(waits) < 2.2  # uniform on [0, 4]: full jitter, mean 2
    assert len({round(w, 6) for w in waits}) > 1900  # not in lock-step


def test_backoff_of_a_huge_retry_number_stays_at_the_cap() -> None:
    assert backoff_s(10_000, 0.5, 60.0, lambda: 1.0) == 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_allows_its_burst_then_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate_per_s=10.0, burst=3, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert [bucket.reserve() for _ in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    clock.now += 10.0  # long idle: back to the burst, not more
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() > 0


def test_progress_commits_up_to_the_oldest_unfinished_change() -> None:
    progress = PartitionProgress()
    assert progress.committable() is None
    progress.add(10, 2)  # two endpoints
    progress.add(11, 0)  # matched none: finished at once
    progress.add(12, 1)
    assert progress.committable() == 10
    progress.finish(12)
    assert progress.committable() == 10  # 12 is done, 10 is not: nothing past 10
    progress.finish(10)
    assert progress.committable() == 10  # one endpoint of two
    progress.finish(10)
    assert progress.committable() == 13
    progress.finish(10)  # a late repeat changes nothing
    assert progress.committable() == 13


def test_progress_keeps_only_unfinished_changes_in_memory() -> None:
    progress = PartitionProgress()
    progress.add(0, 1)  # stuck at the head, e.g. an endpoint retrying
    for offset in range(1, 100_001):
        progress.add(offset, 1)
        progress.finish(offset)
    assert len(progress.pending) == 1 and progress.committable() == 0
