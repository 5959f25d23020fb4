"""The heap trim: glibc's free-but-held memory goes back to the system."""

from __future__ import annotations

import asyncio
import ctypes

import pytest

from segstream.observability import heap_trim, telemetry


def _returned() -> float:
    return telemetry.REGISTRY.get_sample_value("segstream_heap_returned_bytes_total") or 0.0


@pytest.mark.skipif(heap_trim.glibc_trim() is None, reason="glibc only")
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


def test_the_resident_set_is_read() -> None:
    assert heap_trim.resident_bytes() > 0
