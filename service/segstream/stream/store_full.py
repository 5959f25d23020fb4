"""A local store that refuses a committed batch (a full disk): the partition stops, says
why, and writes the batch again on its retries until the store takes it.

The checkpoint commits a batch to Kafka (changelog, outputs, input offsets) before its
writes reach the local store (:meth:`segstream.stream.tables.TableState.apply`). A store
that then refuses them (RocksDB's ``IO error: No space left on device``) is behind its
changelog: the batch is held in memory (reads see it), the partition processes, advances
and publishes nothing more, ``/ready`` names the reason, and each retry of the stall
(:mod:`segstream.stream.stalls`, a doubling wait) writes the held batch again, reopening
the store once there is room. Nothing is lost meanwhile: the input offsets committed are
those of the batches committed, and those are in the changelog; a worker that dies or
loses the partition meanwhile restores it from there.
"""

from __future__ import annotations

from collections.abc import Callable

from segstream.observability.logs import get_logger
from segstream.stream.committer import Committer
from segstream.stream.tables import StoreWriteError

log = get_logger("segstream.stream.runner")  # the logger operators know stalls by


class StoreCatchUp:
    """Brings a partition's local stores up to its committed batches, or stalls it."""

    def __init__(self, commits: Committer, stall: Callable[[int, str], None]) -> None:
        self.commits = commits
        self.stall = stall
        """Stops a partition with a reason (it retries by itself after a growing wait)."""

    def caught_up(self, partition: int) -> bool:
        """Whether the partition's stores hold every committed batch (a held one is
        written first); a store that still refuses stalls the partition again."""
        if not self.commits.behind(partition):
            return True
        try:
            if self.commits.catch_up(partition):
                log.warning("state_store_caught_up", partition=partition)
        except StoreWriteError as error:
            self.refused(error)
            return False
        return True

    def refused(self, error: StoreWriteError) -> None:
        """A store refused a committed batch: one structured error line, and the stall."""
        log.error(
            error.kind,
            table=error.table,
            partition=error.partition,
            path=None if error.path is None else str(error.path),
            free_bytes=error.free_bytes,
            error=error.detail,
        )
        self.stall(error.partition, error.reason)
