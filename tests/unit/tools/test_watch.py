"""``segstream watch`` stops once its topic stays silent, also before any change came: a
second ``make demo`` (every event a duplicate) printed nothing for ten minutes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from segstream.settings import Settings
from segstream.tools import watch


class SilentConsumer:
    """An aiokafka consumer of a topic where nothing arrives."""

    def __init__(self, *topics: str, **options: Any) -> None:
        self.stopped = False

    async def start(self) -> None:
        return None

    async def getmany(self, timeout_ms: int) -> dict[Any, list[Any]]:
        await asyncio.sleep(timeout_ms / 1000 / 10)
        return {}

    async def stop(self) -> None:
        self.stopped = True


def test_a_silent_topic_ends_the_watch_after_idle_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch, "AIOKafkaConsumer", SilentConsumer)
    monkeypatch.setattr(watch, "FIRST_CHANGE_WAIT_S", 1.0)
    started = time.monotonic()
    counts = asyncio.run(watch.watch(Settings(), 60.0, 1, False, 0.5))
    assert not counts
    assert time.monotonic() - started < 5.0
