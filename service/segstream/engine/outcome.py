"""What handling one record gives the stream: what to emit and how to count it, and the
detour of a record read in a partition its shop does not hash to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from segstream.domain.changes import DeadLetter, Detour, SegmentChange, SegmentFormed, Source
from segstream.state.keyspace import shop_partition

Status = Literal["processed", "duplicate", "dead_lettered", "rerouted"]
DEFINITION = "segment_definition"
"""The ``event_type`` of an :class:`Outcome` of a segment-definitions record."""


@dataclass(slots=True)
class Outcome:
    """Result of handling one record: what to emit and how to count it."""

    status: Status
    event_type: str | None = None
    shop_id: str | None = None
    changes: list[SegmentChange] = field(default_factory=list)
    formed: list[SegmentFormed] = field(default_factory=list)
    dead_letter: DeadLetter | None = None
    detour: Detour | None = None
    too_late: bool = False


def misplaced(
    shop_id: str, source: Source, key: bytes | None, raw: bytes | None, partitions: int
) -> Detour | None:
    """A record in a partition its shop does not hash to (the producer's partitioner is
    not murmur2 over the shop id) would split the shop's state: it takes a detour to the
    shop's partition of the repartition topic instead."""
    if source.partition < 0:
        return None
    home = shop_partition(shop_id, partitions)
    if home == source.partition:
        return None
    return Detour(home, source, key, raw)
