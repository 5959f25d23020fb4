"""The heap trim: glibc's free-but-held memory goes back to the system."""

from __future__ import annotations

import asyncio
import ctypes
import os
from pathlib import Path
from typing import Any

import pytest
import structlog

from segstream.observability import heap_trim, telemetry
from segstream.settings import Settings
from segstream.stream.timers import register_heap_trim

GLIBC_HEAP = (
    heap_trim.glibc_trim() is not None
    and Path("/proc/self/statm").exists()
    and not {"LD_PRELOAD", "MALLOC_MMAP_THRESHOLD_"} & set(os.environ)
)
"""glibc's own allocator with its default mmap threshold (not a preloaded one, nor an
environment that sends 64 KiB blocks to mmap), and a resident set to read."""


def _returned() -> float:
    return telemetry.REGISTRY.get_sample_value("segstream_heap_returned_bytes_total") or 0.0


@pytest.mark.skipif(not GLIBC_HEAP, reason="glibc's allocator on Linux only")
def test_freed_chunks_below_the_top_go_back_to_the_system() -> None:
    # many 64 KiB chunks (below glibc's mmap threshold, so in the heap), every other one
    # freed and a last one kept at the top: the freed pages cannot go back by shrinking
    # the top of the heap, only by the trim's walk
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    size, blocks = 64 * 1024, [libc.malloc(64 * 1024) for _ in range(1_600)]
    for block in blocks:
        libc.memset(block, 1, size)  # touched: resident
    for block in blocks[::2]:
        libc.free(block)
    trim, before = heap_trim.HeapTrim.from_system(), _returned()
    try:
        returned = trim.run()
    finally:
        for block in blocks[1::2]:
            libc.free(block)
    assert returned > 20 * 2**20  # of the 50 MiB freed
    assert _returned() - before == returned
    assert telemetry.REGISTRY.get_sample_value("segstream_heap_trim_seconds_count")


def test_a_library_without_the_function_does_nothing() -> None:
    trim = heap_trim.HeapTrim(None)
    assert not trim.available
    assert trim.run() == 0


def test_the_trim_runs_off_the_event_loop() -> None:
    threads: list[bool] = []

    def fake(pad: int) -> int:
        assert pad == 0
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            threads.append(True)  # no loop in this thread: not the event loop's
        return 1

    asyncio.run(heap_trim.HeapTrim(fake).run_in_thread())
    assert threads == [True]


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="Linux only")
def test_the_resident_set_is_read() -> None:
    assert heap_trim.resident_bytes() > 0


class Timers:
    """An app that records the timers declared on it."""

    def __init__(self) -> None:
        self.declared: list[tuple[float, Any]] = []

    def timer(self, interval: float) -> Any:
        return lambda function: self.declared.append((interval, function))


def test_the_timer_is_declared_every_interval_and_survives_a_failing_trim() -> None:
    def failing(pad: int) -> int:
        raise OSError("a trim that failed")

    app = Timers()
    assert register_heap_trim(app, Settings(heap_trim_interval_s=30), heap_trim.HeapTrim(failing))
    [(interval, trim)] = app.declared
    assert interval == 30
    with structlog.testing.capture_logs() as logged:
        asyncio.run(trim())  # logged, not raised: a timer's exception would end the worker
    assert [line["event"] for line in logged] == ["heap_trim_failed"]


def test_no_timer_when_off_or_without_the_function() -> None:
    app = Timers()
    assert not register_heap_trim(app, Settings(heap_trim_interval_s=0), heap_trim.HeapTrim(id))
    assert not register_heap_trim(app, Settings(), heap_trim.HeapTrim(None))
    assert app.declared == []


@pytest.mark.parametrize("interval", [0.001, 0.5, -1])
def test_a_busy_or_negative_interval_is_refused(interval: float) -> None:
    with pytest.raises(ValueError, match="heap_trim_interval_s"):
        Settings(heap_trim_interval_s=interval)
