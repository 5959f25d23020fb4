"""Records the pipeline fails on, per partition: which ones (so a batch's re-run
dead-letters them), how many in a row (a streak too long is the worker's own bug, not the
records'), and, for a batch that fails only once its records were handled, which record
is to blame (a bisection of the batch).

The batch runner (:mod:`segstream.stream.runner`) runs the batches; this keeps what their
failures say about the records.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from segstream.domain.changes import Source
from segstream.engine.pipeline import Outcome
from segstream.observability.logs import get_logger

log = get_logger("segstream.stream.runner")  # the lines operators know failures by
MAX_ERROR_STREAK = 10
"""Consecutive records of one partition the pipeline may fail on before the failure is
taken for the worker's own (a bug every record meets) rather than the records': the
partition then stalls instead of dead-lettering its whole input."""


class Poison:
    """The failed records of each partition since its last commit, and its failure streak."""

    def __init__(self) -> None:
        self._failed: defaultdict[int, dict[tuple[str, int], str]] = defaultdict(dict)
        """Per partition: the records (topic, offset) the pipeline failed on, and why."""
        self._streaks: dict[int, int] = {}
        """Per partition: how many of its last committed records in a row failed."""

    def why(self, source: Source) -> str | None:
        """Why the record at ``source`` failed (None: it did not)."""
        return self._failed[source.partition].get((source.topic, source.offset))

    def add(self, source: Source, error: Exception) -> None:
        """Remember that the record at ``source`` fails, so its re-run dead-letters it."""
        log.error(
            "processing_error",
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
            error=describe(error),
            exc_info=error,
        )
        self._failed[source.partition][(source.topic, source.offset)] = describe(error)

    def clear(self, partition: int) -> None:
        """Forget the partition's failed records (a retry tries every record again)."""
        self._failed.pop(partition, None)

    def streaks(self, partition: int, outcomes: Sequence[tuple[Outcome, float]]) -> tuple[int, int]:
        """The longest run of failed records the batch's ``outcomes`` make, counting the
        partition's committed streak ahead of them, and the run the batch ends with."""
        return _streaks(self._streaks.get(partition, 0), outcomes)

    def committed(self, partition: int, trailing: int) -> None:
        """A batch of the partition committed, ending with ``trailing`` failed records
        (the next batch's streak continues it); its failed records are dead-lettered."""
        self._streaks[partition] = trailing
        self._failed.pop(partition, None)

    def forget(self, partitions: set[int]) -> None:
        """The worker no longer owns ``partitions``: their streaks are their new owner's."""
        for partition in partitions:
            self._streaks.pop(partition, None)

    def blame(
        self,
        partition: int,
        batch: Sequence[tuple[str, int]],
        fails: Callable[[int], bool],
        error: Exception,
    ) -> bool:
        """Find the record of ``batch`` ((topic, offset) each) whose effects made it fail
        with ``error`` after its records were handled (flushing books, encoding states):
        the shortest prefix for which ``fails`` (a probe, undone) is true ends with it.
        True when a record was blamed (or the failure did not come again): run the batch
        again; False when even no record fails, which is not any record's fault."""
        if fails(0):
            return False
        low, high = 0, len(batch)  # the first ``low`` records pass; all ``high`` fail
        if not fails(high):
            log.warning("batch_failure_not_repeated", partition=partition, error=describe(error))
            return True
        while high - low > 1:
            middle = (low + high) // 2
            if fails(middle):
                high = middle
            else:
                low = middle
        topic, offset = batch[high - 1]
        if (topic, offset) in self._failed[partition]:
            return False  # it fails although that record is dead-lettered: not its fault
        self.add(Source(topic, partition, offset), error)
        return True


def describe(error: BaseException) -> str:
    """An exception in one bounded line, for a dead letter or a stall."""
    return f"{type(error).__name__}: {error}"[:500]


def failed(outcome: Outcome) -> bool:
    """Whether the pipeline failed on the outcome's record (it was dead-lettered for it)."""
    letter = outcome.dead_letter
    return letter is not None and letter.reason == "processing_error"


def _streaks(before: int, outcomes: Sequence[tuple[Outcome, float]]) -> tuple[int, int]:
    """The longest run of failed records, counting ``before`` failed ones ahead of the
    batch, and the run the batch ends with (what the next batch continues)."""
    longest = current = before
    for outcome, _ in outcomes:
        current = current + 1 if failed(outcome) else 0
        longest = max(longest, current)
    return longest, current
