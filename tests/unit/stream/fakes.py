"""In-memory stand-ins for Faust's stores and events, and a checkpoint that can fail."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from faust.types import EventT

from harness.stores import DictStore
from segstream.settings import Settings
from segstream.stream.checkpoint import FencedError, RetryError, Work, Written
from segstream.stream.tables import CODECS, TableState
from tests.factories import encoded, order

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def order_value(shop_id: str, n: int, customer: str = "c-1") -> bytes:
    """The record value of an order of 10 EUR by ``customer`` at ``shop_id``, ``n`` days
    after :data:`T0` (event id ``<shop>-e<n>``)."""
    at = T0 + timedelta(days=n)
    payload = order(customer, at, f"{shop_id}-e{n}", 10.0, shop=shop_id, order_id=f"o{n}")
    return encoded(payload)


def table_state(name: str, store: DictStore, owned: set[int], partitions: int = 4) -> TableState:
    return TableState(name, lambda: store, partitions, lambda: owned, CODECS[name])


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class Event:
    message: Message
    value: bytes | None
    key: bytes | None = None


def batch(*events: Event) -> list[EventT[Any]]:
    """``events`` as the runner takes them: a fake carries all the runner reads of a Faust
    event (``message`` topic, partition, offset and headers, ``key``, ``value``)."""
    return cast("list[EventT[Any]]", list(events))


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

    def remind(self, after_s: float) -> None:
        return None

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
