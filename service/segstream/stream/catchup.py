"""A worker behind on its input says so: records behind, the rate it folds them at and the
time left, in its log (``catching_up``, then ``caught_up``) and in ``/metrics``.

Read from the lag timer's figures for the partitions this worker owns: the records behind
are the lag, the rate is how fast the group's committed offsets of those partitions moved
over the last ``window_s``, and the time left is the records behind over how fast the lag
shrank (new records arriving count against it; none when it does not shrink). A backlog is
reported from its first measurement (rate and time left unknown, null, until a second);
``caught_up`` gives how long it took and its average rate. A worker
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
    rate: float | None
    """Records per second folded (committed) over the window; None: one measurement yet."""
    remaining_s: float | None
    """Seconds until caught up at the lag's pace over the window; None: it does not shrink
    (or one measurement yet)."""
    folded: int = 0
    """Records folded since the first measurement (the average of a whole backlog)."""


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float
    behind: int
    committed: dict[Partition, int]


class CatchUp:
    """Progress from successive lag measurements; says when a backlog starts (at its first
    measurement), how it goes (every ``report_every_s``) and when it is done, with the
    backlog's average rate."""

    def __init__(self, threshold: int, report_every_s: float, window_s: float = 60.0) -> None:
        self.threshold = threshold
        self.report_every_s = report_every_s
        self.window_s = window_s
        self._samples: deque[_Sample] = deque()
        self._folded = 0
        """Records folded over all measurements (consecutive samples' committed offsets)."""
        self._since: tuple[float, int] | None = None
        """When the current backlog was first seen and ``_folded`` then (None: caught up)."""
        self._reported = 0.0

    def measure(
        self,
        lag: Mapping[Partition, int],
        committed: Mapping[Partition, int],
        owned: Collection[int],
        now: float,
    ) -> Progress:
        """Take one lag measurement of the owned ``partitions``: the progress over the
        window (no rate at the first measurement)."""
        mine = {pair: n for pair, n in lag.items() if pair[1] in owned}
        positions = {pair: committed.get(pair, -1) for pair in mine}
        sample = _Sample(now, sum(mine.values()), positions)
        if self._samples:
            self._folded += _moved(self._samples[-1], sample)
        self._samples.append(sample)
        while len(self._samples) > 2 and now - self._samples[1].at >= self.window_s:
            self._samples.popleft()
        first = self._samples[0]
        took = now - first.at
        if took <= 0:
            return Progress(sample.behind, None, 0.0 if sample.behind == 0 else None, self._folded)
        shrank = (first.behind - sample.behind) / took
        remaining = sample.behind / shrank if shrank > 0 else None
        rate = _moved(first, sample) / took
        return Progress(sample.behind, rate, 0.0 if sample.behind == 0 else remaining, self._folded)

    def report(self, progress: Progress, now: float) -> str | None:
        """Log and publish ``progress``; the log line's name, if one was written."""
        telemetry.set_catch_up(progress.rate, progress.behind, progress.remaining_s)
        if progress.behind >= self.threshold:
            if self._since is None:
                self._since, self._reported = (now, progress.folded), now - self.report_every_s
            if now - self._reported < self.report_every_s:
                return None
            self._reported = now
            remaining = None if progress.remaining_s is None else round(progress.remaining_s)
            log.info(
                "catching_up",
                behind=progress.behind,
                rate=_rounded(progress.rate),
                remaining_s=remaining,
            )
            return "catching_up"
        if self._since is None:
            return None
        (began, folded), self._since = self._since, None
        took = now - began
        rate = (progress.folded - folded) / took if took > 0 else None
        log.info("caught_up", took_s=round(took, 1), rate=_rounded(rate))
        return "caught_up"

    def forget(self) -> None:
        """Start over (a rebalance: other partitions, other offsets)."""
        self._samples.clear()


def _moved(first: _Sample, last: _Sample) -> int:
    """Records committed between two samples on the partitions both know."""
    return sum(
        max(0, position - first.committed[pair])
        for pair, position in last.committed.items()
        if pair in first.committed and first.committed[pair] >= 0
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
