"""How often and how soon: retry backoff with full jitter, a token bucket per endpoint, and
which offsets of a partition may be committed.

Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"): retry ``n`` waits a
uniformly random time from 0 to ``min(cap, base * 2**(n-1))``, so the retries of many
changes to an endpoint that came back do not arrive in lock-step.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable


def backoff_s(
    retry: int, base_s: float, cap_s: float, draw: Callable[[], float] = random.random
) -> float:
    """The wait before retry number ``retry`` (1: the first retry).

    >>> backoff_s(1, 0.5, 60, lambda: 1.0), backoff_s(4, 0.5, 60, lambda: 1.0)
    (0.5, 4.0)
    >>> backoff_s(20, 0.5, 60, lambda: 1.0), backoff_s(3, 0.5, 60, lambda: 0.0)
    (60.0, 0.0)
    """
    ceiling = min(cap_s, base_s * 2.0 ** min(retry - 1, 60))
    return draw() * ceiling


class TokenBucket:
    """At most ``burst`` at once, ``rate_per_s`` sustained. :meth:`reserve` takes a token
    and says how long to wait before using it (the bucket may go negative: waiting callers
    are served in the order they reserved)."""

    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.clock = clock
        self.tokens = float(burst)
        self.at = clock()

    def reserve(self) -> float:
        """Take one token; the seconds until it is there (0: now)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class PartitionProgress:
    """The changes of one partition not finished yet (delivered or dead-lettered for every
    endpoint they matched), in offset order: the offset to commit is the oldest of them, or
    past the last one read when none is left. Memory: one entry per unfinished change."""

    def __init__(self) -> None:
        self.pending: dict[int, int] = {}
        """offset -> endpoints still to finish it; insertion order is offset order."""
        self.read_through: int | None = None
        """One past the last offset read (None: nothing read yet)."""

    def add(self, offset: int, endpoints: int) -> None:
        """A change read at ``offset``, matching ``endpoints`` endpoints."""
        if endpoints > 0:
            self.pending[offset] = endpoints
        self.read_through = offset + 1

    def finish(self, offset: int) -> None:
        """One endpoint is done with the change at ``offset``."""
        left = self.pending.get(offset)
        if left is None:
            return
        if left <= 1:
            del self.pending[offset]
        else:
            self.pending[offset] = left - 1

    def committable(self) -> int | None:
        """The offset to commit: every change before it is finished."""
        if self.pending:
            return next(iter(self.pending))
        return self.read_through
