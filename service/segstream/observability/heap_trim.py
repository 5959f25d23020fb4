"""Give glibc's free-but-held heap back to the system on a timer.

A worker that falls behind works larger batches; the memory those took is freed
afterwards, but glibc keeps most of it (free chunks below the top of an arena, and
in every thread arena that RocksDB's and the client's threads use), so RSS stays at
the highest peak a burst reached and rises with each larger one: the 2-hour soak's
held memory went 17 -> 119 MiB after its bursts while the heap in use stayed level.
``malloc_trim(0)`` walks every arena and returns its free pages (glibc >= 2.8
releases whole free pages anywhere in a heap, not only at its top). Others who met
the same: irrdnet/irrd #571, amun-ai/hypha #976, DataDog/integrations-core #24553.

The walk can take tens of milliseconds on a large fragmented heap, so it runs in a
thread (``ctypes`` releases the GIL during the call), never on the event loop; it still
holds each arena's lock while it walks it, so the loop's own allocations may wait
(``segstream_heap_trim_seconds`` shows how long). Off glibc (musl, macOS) there is no
such function and nothing is done; under a preloaded allocator (jemalloc) glibc's
function is found but has nothing to trim.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import time
from collections.abc import Callable
from typing import Final

from segstream.observability import telemetry
from segstream.observability.logs import get_logger

log = get_logger(__name__)
PAGE: Final = os.sysconf("SC_PAGE_SIZE")


def glibc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    try:
        function = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


def resident_bytes() -> int:
    """This process's resident set, from ``/proc/self/statm`` (0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


class HeapTrim:
    """Trims the heap, timing each trim and counting the resident memory that went
    (the process's RSS before and after: approximate, as other threads run meanwhile)."""

    def __init__(self, trim: Callable[[int], int] | None) -> None:
        self.trim = trim

    @classmethod
    def from_system(cls) -> HeapTrim:
        return cls(glibc_trim())

    @property
    def available(self) -> bool:
        return self.trim is not None

    def run(self) -> int:
        """Trim now (blocking); the resident bytes that went back to the system."""
        if self.trim is None:
            return 0
        before, started = resident_bytes(), time.monotonic()
        self.trim(0)
        took = time.monotonic() - started
        returned = max(0, before - resident_bytes())
        telemetry.HEAP_RETURNED_BYTES.inc(returned)
        telemetry.HEAP_TRIM_SECONDS.observe(took)
        log.debug("heap_trimmed", returned_mib=round(returned / 2**20, 1), seconds=round(took, 3))
        return returned

    async def run_in_thread(self) -> int:
        """:meth:`run` off the event loop."""
        return await asyncio.to_thread(self.run)
