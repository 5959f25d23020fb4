"""In-memory stand-ins for Faust's stores and events, and a checkpoint that can fail."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP

from service.settings import Settings
from service.stream.checkpoint import FencedError, RetryError, Work, Written
from service.stream.tables import CODECS, Pending, TableState


class DictStore:
    """A LocalStore of plain dicts, one per partition."""

    def __init__(self) -> None:
        self.data: defaultdict[int, dict[bytes, bytes]] = defaultdict(dict)
        self.offsets: dict[TP, int] = {}

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self.data[partition].get(key)

    def write(self, partition: int, items: Pending, tp: TP, offset: int) -> None:
        for key, value in items.items():
            if value is None:
                self.data[partition].pop(key, None)
            else:
                self.data[partition][key] = value
        self.offsets[tp] = offset

    def keys(self, partition: int) -> Iterator[bytes]:
        yield from list(self.data[partition])

    def scan(self, partition: int, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key in sorted(self.data[partition]):
            if key.startswith(prefix):
                yield key, self.data[partition][key]


def table_state(name: str, store: DictStore, owned: set[int], partitions: int = 4) -> TableState:
    return TableState(name, lambda: store, partitions, lambda: owned, CODECS[name])


@dataclass
class Message:
    topic: str
    partition: int
    offset: int


@dataclass
class Event:
    message: Message
    value: bytes | None
    key: bytes | None = None


@dataclass
class FakeCheckpoint:
    """Commits into nothing; fails the next ``fail`` commits with ``error``."""

    settings: Settings
    assigned: set[int] = field(default_factory=set)
    fail: int = 0
    error: type[Exception] = RetryError
    committed: list[Work] = field(default_factory=list)
    fenced: set[int] = field(default_factory=set)

    @property
    def partitions(self) -> set[int]:
        return self.assigned - self.fenced

    async def assign(self, partitions: set[int]) -> None:
        self.assigned = set(partitions)
        self.fenced.clear()

    async def commit(self, work: Work) -> Written:
        if self.fail:
            self.fail -= 1
            if self.error is FencedError:
                self.fenced.add(work.partition)
            raise self.error("injected")
        self.committed.append(work)
        return {}

    async def publish(self, partition: int, outputs: list[Any]) -> None:
        self.committed.append(Work(partition, outputs=outputs))
