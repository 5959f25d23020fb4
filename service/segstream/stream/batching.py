"""Input records in batches that form while the previous batch is processed.

Faust's ``stream.take_events(max, within)`` waits ``within`` after every batch and holds
back what arrives while a batch is processed, so at low rates each record waited for the
timer, the batch before it and its commit in turn. Here the next batch fills meanwhile and
starts when the previous one is done, but not sooner than ``interval_s`` after it started:
under load that gives fewer, larger transactions; an idle worker starts on a record at once.
A worker behind its input (the last record taken in is below its partition's high
watermark) waits up to ``interval_s`` more for a full batch: records reach the buffer only
while the event loop is free, and a backlog drained in small batches costs a transaction
per partition each time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import faust
from faust.types import TP

from segstream.observability import telemetry

Highwater = Callable[[TP], int | None]
"""A partition's high watermark as the consumer last saw it (None: not known yet)."""


class _Buffer:
    """The next batch, filled by a stream processor (Faust's passive consumption)."""

    def __init__(self, stream: Any, max_events: int, highwater: Highwater) -> None:
        self.stream = stream
        self.max_events = max_events
        self.highwater = highwater
        self.events: list[faust.types.EventT[Any]] = []
        self.arrivals: list[tuple[float, float]] = []
        """When each of :attr:`events` reached the buffer: epoch seconds (to compare with
        the producer's timestamp) and the monotonic clock (for the waits here)."""
        self.arrived, self.room = asyncio.Event(), asyncio.Event()
        self.room.set()
        self.behind: dict[TP, bool] = {}
        """Per input partition: whether records beyond the last one taken in exist."""

    async def add(self, value: Any) -> Any:
        """Stream processor: take the current event in; wait while the buffer is full."""
        event = self.stream.current_event
        if event is None:
            raise RuntimeError("batch buffer found no current event")
        message = event.message
        end = self.highwater(message.tp)
        self.behind[message.tp] = end is not None and message.offset + 1 < end
        self.events.append(event)
        self.arrivals.append((time.time(), time.monotonic()))
        self.arrived.set()
        if len(self.events) >= self.max_events:
            self.room.clear()
            await self.stream.wait(self.room)  # backpressure: the consumer stops reading
        return value

    @property
    def full(self) -> bool:
        """Whether the buffer holds a whole batch."""
        return len(self.events) >= self.max_events

    async def fill(self, most_s: float) -> None:
        """While some partition is behind, wait (at most ``most_s``) for a full batch."""
        deadline = self.stream.loop.time() + most_s
        while not self.full and any(self.behind.values()):
            left = deadline - self.stream.loop.time()
            if left <= 0:
                return
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except TimeoutError:
                return
            finally:
                self.arrived.set()

    def take(self) -> list[faust.types.EventT[Any]]:
        """The next batch (oldest events first), and room for more; the time each of its
        records took to reach the buffer and waited in it is observed."""
        batch = self.events[: self.max_events]
        arrivals = self.arrivals[: len(batch)]
        del self.events[: len(batch)], self.arrivals[: len(batch)]
        _observe_arrivals(batch, arrivals, time.monotonic())
        if not self.events:
            self.arrived.clear()
        self.room.set()
        return batch


async def batches(
    stream: Any, max_events: int, interval_s: float, highwater: Highwater
) -> AsyncIterator[list[faust.types.EventT[Any]]]:
    """Yield the stream's events in arrival order, at most ``max_events`` at a time; each
    batch's events are acknowledged to Faust after the consumer of the batch returns.
    ``highwater`` is the consumer's (``app.consumer.highwater``)."""
    buffer = _Buffer(stream, max_events, highwater)
    stream.enable_acks = False  # acknowledged below, after the batch is processed
    stream.add_processor(buffer.add)
    stream._enable_passive(aiter(stream.channel))  # as take_events does
    started = -interval_s
    while not stream.should_stop:
        if not buffer.events:
            await stream.wait_for_stopped(buffer.arrived)
        wait = started + interval_s - stream.loop.time()
        if not buffer.full and wait > 0:
            await stream.sleep(wait)  # not sooner than ``interval_s`` after the last batch
        await buffer.fill(interval_s)
        started = stream.loop.time()
        batch = buffer.take()
        if not batch:
            continue
        begun = time.monotonic()
        try:
            yield batch
        finally:
            _observe("batch", [time.monotonic() - begun] * len(batch))
            for event in batch:
                await stream.ack(event)


def _observe_arrivals(
    batch: Sequence[faust.types.EventT[Any]],
    arrivals: Sequence[tuple[float, float]],
    now: float,
) -> None:
    """``fetched``: each record's producer timestamp (when it has one: Kafka's -1 is none)
    to its arrival in the buffer; ``queued``: its arrival to ``now`` (monotonic), its
    batch's start. Timing only: lists of unequal length are cut, never raised on."""
    sent = [event.message.timestamp for event in batch]
    fetched = [at - ts for (at, _), ts in zip(arrivals, sent, strict=False) if ts and ts > 0]
    _observe("fetched", [max(seconds, 0.0) for seconds in fetched])
    _observe("queued", [max(now - at, 0.0) for _, at in arrivals])


def _observe(stage: str, seconds: Sequence[float]) -> None:
    histogram = telemetry.RECORD_STAGE_SECONDS.labels(stage=stage)
    for value in seconds:
        histogram.observe(value)
