"""Input partitions left behind with nothing on the way: found from the lag, read again.

Records can fail to reach the agent and leave no trace the worker notices: Faust drops
the records it fetched while the flow is suspended for a rebalance (upstream
faust-streaming #216, #221), a seek the consumer refuses mid-rebalance is only logged,
and the gap guard (:mod:`segstream.stream.gaps`) learns of a hole only when a later record
arrives. The recovery's seek back covers the rebalances it knows of; at a partition's
tail, where no later record comes, whatever escapes it stays behind for good while every
health check passes. CI's short chaos run ended that way twice ("lag 164", then "lag 130
after 900 s": one topic partition behind, its worker ready, nothing stalled), and its
logs did not say which way the records were lost.

So the lag probe's figures are watched: an input topic partition that stays behind while
its committed offset does not move for ``patience_s``, with a record a reader sees
waiting past that offset, is sought back to the partition's committed offsets. Whatever
the cause, the records come again; a partition merely busy loses nothing by it (what is
already in the tables is skipped).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping

from segstream.observability import telemetry
from segstream.observability.logs import get_logger
from segstream.stream.lag import Partition
from segstream.stream.runner import BatchRunner

log = get_logger(__name__)


class StuckInput:
    """Remembers since when each lagging topic partition's committed offset stood still."""

    def __init__(self, patience_s: float) -> None:
        self.patience_s = patience_s
        self._still: dict[Partition, tuple[int, float]] = {}
        """Per lagging topic partition: its committed offset, and when it was first seen."""

    def stuck(
        self, lag: Mapping[Partition, int], committed: Mapping[Partition, int], now: float
    ) -> set[Partition]:
        """The topic partitions behind whose committed offset has not moved for the
        patience (each reported once per patience: the clock starts again).

        >>> watch = StuckInput(30.0)
        >>> watch.stuck({("orders", 4): 130}, {("orders", 4): 17}, now=0.0)
        set()
        >>> watch.stuck({("orders", 4): 130}, {("orders", 4): 17}, now=31.0)
        {('orders', 4)}
        """
        found = set()
        for pair, behind in lag.items():
            if behind <= 0:
                self._still.pop(pair, None)
                continue
            position = committed.get(pair, -1)
            seen = self._still.get(pair)
            if seen is None or seen[0] != position:
                self._still[pair] = (position, now)
            elif now - seen[1] >= self.patience_s:
                found.add(pair)
                self._still[pair] = (position, now)
        for pair in set(self._still) - set(lag):
            del self._still[pair]
        return found

    def forget(self) -> None:
        """Start every clock again (a rebalance: new owners, new recoveries)."""
        self._still.clear()


Waiting = Callable[[Partition], Awaitable[bool]]
"""Whether a visible record lies past the topic partition's committed offset."""


async def refetch_stuck(
    runner: BatchRunner,
    watch: StuckInput,
    lag: Mapping[Partition, int],
    committed: Mapping[Partition, int],
    waiting: Waiting,
) -> int:
    """Seek back the owned partitions with a topic behind whose committed offset stood
    still for the watch's patience, with a record waiting there (not only aborted records
    and transaction markers, which no reader is given); how many."""
    if not runner.ready:
        watch.forget()  # a rebalance: its recovery seeks every partition back anyway
        return 0
    owned = runner.checkpoint.partitions
    behind: dict[int, dict[str, int]] = defaultdict(dict)
    for topic, partition in watch.stuck(lag, committed, time.monotonic()):
        if partition in owned and await waiting((topic, partition)):
            behind[partition][topic] = lag[(topic, partition)]
    sought = 0
    for partition, topics in sorted(behind.items()):
        sought += await refetch(runner, partition, topics)
    return sought


async def refetch(runner: BatchRunner, partition: int, behind: Mapping[str, int]) -> bool:
    """Seek an owned partition's input back to where its tables end, because topics of it
    (``behind``: records per topic) stayed behind; whether it was sought. Not during
    recovery, nor for a stalled partition (its retry seeks) or one owned elsewhere."""
    async with runner.locks[partition]:
        owned = partition in runner.checkpoint.partitions
        if runner.guard is None or not runner.ready or not owned or partition in runner.stalls:
            return False
        log.warning("input_refetched", partition=partition, behind=dict(behind))
        telemetry.INPUT_REFETCHES.inc()
        await runner.seek_back(partition)
        return True
