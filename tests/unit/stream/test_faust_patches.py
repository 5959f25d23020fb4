"""The producer-buffer drain waits for every record, including the one being handed over."""

from __future__ import annotations

import asyncio

from faust.transport.producer import ProducerBuffer

from service.stream import faust_patches as faust_fixes


class SlowBuffer:
    """Stands in for Faust's buffer: each flush_atmost call sends one record after a delay,
    and the last record stays 'in flight' for a while after the queue is empty."""

    def __init__(self, waiting: int) -> None:
        self.size = waiting
        self.segstream_in_flight = 0
        self.sent = 0

    async def flush_atmost(self, max_messages: int | None) -> int:
        await asyncio.sleep(0.01)
        self.size -= 1
        if self.size == 0:
            self.segstream_in_flight = 1
            asyncio.get_running_loop().call_later(0.05, self._delivered)
        return 1

    def _delivered(self) -> None:
        self.segstream_in_flight = 0
        self.sent += 1


async def test_drain_returns_only_when_buffer_and_hand_over_are_done() -> None:
    buffer = SlowBuffer(waiting=5)
    await faust_fixes._drain(buffer)
    assert (buffer.size, buffer.segstream_in_flight, buffer.sent) == (0, 0, 1)


def test_apply_installs_the_drain_on_fausts_buffer() -> None:
    faust_fixes.apply()
    assert ProducerBuffer.flush is faust_fixes._drain
    assert ProducerBuffer._send_pending is faust_fixes._counted_send_pending
