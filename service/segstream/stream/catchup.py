"""A worker behind on its input says so: records behind, the rate it folds them at and the
time left, in its log (``catching_up``, then ``caught_up``) and in ``/metrics``.

Read from the lag timer's figures for the partitions this worker owns: the records behind
are the lag, the rate is how fast the group's committed offsets of those partitions moved
over the last ``window_s``, and the time left is the records behind over how fast the lag
shrank (new records arriving count against it; none when it does not shrink). A worker
replaying a shop's history, or back after an outage, shows where it stands without anyone
reading offsets by hand; one keeping up logs nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from segstream.observability import telemetry
from segstream.observability.logs import PROGRESS, get_logger
from segstream.stream.lag import Partition

log = get_logger(PROGRESS)


@dataclass(frozen=True, slots=True)
class Progress:
    """Where the worker stands on its input."""

    behind: int
    """Records behind on the owned input partitions."""
    rate: float
    """Records per second folded (committed) over the window."""
    remaining_s: float | None
    """Seconds until caught up at the lag's pace over the window; None: it does not shrink."""


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float
    behind: int
    committed: dict[Partition, int]


class CatchUp:
    """Progress from successive lag measurements; says when a backlog starts, how it goes
    (every ``report_every_s``) and when it is done."""

    def __init__(self, threshold: int, report_every_s: float, window_s: float = 60.0) -> None:
        self.threshold = threshold
        self.report_every_s = report_every_s
        self.window_s = window_s
        self._samples: deque[_Sample] = deque()
        self._since: float | None = None
        """When the current backlog was first seen (None: caught up)."""
        self._reported = 0.0

    def measure(
        self,
        lag: Mapping[Partition, int],
        committed: Mapping[Partition, int],
        owned: Collection[int],
        now: float,
    ) -> Progress | None:
        """Take one lag measurement of the owned ``partitions``; the progress over the
        window (None until there are two measurements)."""
        mine = {pair: n for pair, n in lag.items() if pair[1] in owned}
        positions = {pair: committed.get(pair, -1) for pair in mine}
        sample = _Sample(now, sum(mine.values()), positions)
        self._samples.append(sample)
        while len(self._samples) > 2 and now - self._samples[1].at >= self.window_s:
            self._samples.popleft()
        first = self._samples[0]
        took = now - first.at
        if took <= 0:
            return None
        moved = sum(
            max(0, position - first.committed[pair])
            for pair, position in positions.items()
            if pair in first.committed and first.committed[pair] >= 0
        )
        shrank = (first.behind - sample.behind) / took
        remaining = sample.behind / shrank if shrank > 0 else None
        return Progress(sample.behind, moved / took, 0.0 if sample.behind == 0 else remaining)

    def report(self, progress: Progress | None, now: float) -> str | None:
        """Log and publish ``progress``; the log line's name, if one was written."""
        if progress is None:
            return None
        telemetry.set_catch_up(progress.rate, progress.behind, progress.remaining_s)
        if progress.behind >= self.threshold:
            if self._since is None:
                self._since, self._reported = now, now - self.report_every_s
            if now - self._reported < self.report_every_s:
                return None
            self._reported = now
            remaining = None if progress.remaining_s is None else round(progress.remaining_s)
            log.info(
                "catching_up",
                behind=progress.behind,
                rate=round(progress.rate, 1),
                remaining_s=remaining,
            )
            return "catching_up"
        if self._since is None:
            return None
        log.info("caught_up", took_s=round(now - self._since, 1), rate=round(progress.rate, 1))
        self._since = None
        return "caught_up"

    def forget(self) -> None:
        """Start over (a rebalance: other partitions, other offsets)."""
        self._samples.clear()
