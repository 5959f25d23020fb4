"""A fix for a faust-streaming 0.15 at-least-once hole, applied once at start.

Before committing offsets Faust flushes its producer, but the buffer of table
changelog writes is flushed with ``ProducerBuffer.flush_atmost``, which returns
after 0.1 s without a send even when records are still waiting. Under load ("producer
buffer full") offsets were then committed ahead of their changelog writes, and a
worker killed at that moment lost those state updates for good: its successor
skipped the events (committed) and recovered a table without them. Our crash test
(tests/integration/test_recovery.py) caught it. The fix makes ``flush`` wait until the
buffer is empty and no record is still being handed to the Kafka client.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.transport.producer import ProducerBuffer

_original_send_pending = ProducerBuffer._send_pending


async def _counted_send_pending(self: Any, fut: Any) -> None:
    self.segstream_in_flight = getattr(self, "segstream_in_flight", 0) + 1
    try:
        await _original_send_pending(self, fut)
    finally:
        self.segstream_in_flight -= 1


async def _drain(self: Any) -> None:
    """Wait until every buffered record has reached the Kafka client."""
    while self.size or getattr(self, "segstream_in_flight", 0):
        if self.size:
            await self.flush_atmost(None)
        else:
            await asyncio.sleep(0.001)


def apply() -> None:
    """Install the fix (idempotent)."""
    ProducerBuffer._send_pending = _counted_send_pending  # type: ignore[method-assign]
    ProducerBuffer.flush = _drain  # type: ignore[method-assign]
