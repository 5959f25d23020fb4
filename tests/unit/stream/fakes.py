"""In-memory stand-ins for Faust's stores and events, and a checkpoint that can fail."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.stores import DictStore
from service.settings import Settings
from service.stream.checkpoint import FencedError, RetryError, Work, Written
from service.stream.tables import CODECS, TableState


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
