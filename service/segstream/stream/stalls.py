"""Partitions stopped by a failure that is not one record's (a full disk, a bug every
record meets, commits the broker keeps refusing): why and since when (``/ready`` and a
gauge name them), and when each tries again, after a wait that doubles each time.

The batch runner (:mod:`segstream.stream.runner`) decides when to stall a partition and how
to read it again; this keeps the stalls and schedules the retries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from segstream.observability import telemetry
from segstream.observability.logs import get_logger

log = get_logger("segstream.stream.runner")  # the lines operators know stalls by
STALL_FIRST_RETRY_S = 5.0
"""The first wait before a stalled partition tries again; each next one doubles, up to
``Settings.stall_retry_max_s``."""

Retry = Callable[[int], Coroutine[Any, Any, None]]
"""Reads a stalled partition again from its committed offsets (its wait is over)."""


@dataclass(slots=True)
class Stall:
    """Why a partition stopped, since when (epoch seconds), and when it tries again
    (event-loop time)."""

    reason: str
    since: float
    attempts: int
    retry_at: float

    def report(self) -> dict[str, Any]:
        """The stall as ``/ready`` shows it."""
        return {"reason": self.reason, "since": self.since, "attempts": self.attempts}


class Stalls:
    """The stalled partitions of one worker, each with its retry scheduled."""

    def __init__(self, longest_wait_s: float, retry: Retry) -> None:
        self.longest_wait_s = longest_wait_s
        self.retry = retry
        self.stalled: dict[int, Stall] = {}
        """Partition -> why it stopped (what ``/ready`` lists)."""
        self._retries: dict[int, asyncio.Task[None]] = {}

    def waiting(self, partition: int) -> bool:
        """Whether ``partition`` is stalled and its next try has not come."""
        stall = self.stalled.get(partition)
        return stall is not None and asyncio.get_running_loop().time() < stall.retry_at

    def stall(self, partition: int, reason: str) -> None:
        """Stop the partition loudly: ``/ready`` and a gauge name it, and it tries again
        (:attr:`retry`) after a growing wait."""
        loop = asyncio.get_running_loop()
        previous = self.stalled.get(partition)
        attempts = 1 if previous is None else previous.attempts + 1
        wait = min(STALL_FIRST_RETRY_S * 2 ** (attempts - 1), self.longest_wait_s)
        since = time.time() if previous is None else previous.since
        self.stalled[partition] = Stall(reason, since, attempts, loop.time() + wait)
        self._show()
        log.error("partition_stalled", partition=partition, reason=reason, retry_in_s=wait)
        running = self._retries.get(partition)
        if running is None or running.done():
            self._retries[partition] = loop.create_task(self._retry_after(partition, wait))

    def resume(self, partition: int) -> None:
        """A batch of the partition committed: it is no longer stalled."""
        stall = self.stalled.pop(partition, None)
        if stall is not None:
            self._show()
            log.warning("partition_resumed", partition=partition, stalled_for=stall.reason)

    def keep_only(self, kept: set[int]) -> set[int]:
        """Forget the stalls of partitions this worker no longer owns (they are their new
        owner's now); returns the partitions forgotten."""
        gone = set(self.stalled) - kept
        for partition in gone:
            del self.stalled[partition]
        self._show()
        return gone

    async def _retry_after(self, partition: int, after_s: float) -> None:
        await asyncio.sleep(after_s)
        self._retries.pop(partition, None)  # a stall the retry meets schedules the next
        await self.retry(partition)

    def _show(self) -> None:
        telemetry.set_stalled({p: s.since for p, s in self.stalled.items()})
