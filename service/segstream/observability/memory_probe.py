"""What a worker's Python heap holds, written to a file now and then: for soak runs.

Off unless ``SEGSTREAM_TEST_MEMORY_PROBE`` names a file (a harness variable, no setting:
``bench.soak --probe`` sets it). Every ``SEGSTREAM_TEST_MEMORY_PROBE_EVERY_S`` seconds
(default 300) a daemon thread appends one JSON line: live objects counted by type, the
largest containers (their length and a few keys, which say what they are keyed by) and,
when the worker runs with ``python -X tracemalloc``, the allocation sites that grew most
since the first snapshot. A structure that grows without bound shows as a count or a
container length that keeps rising from line to line.

Never in production: while a reading holds every object the collector tracks (for about
a second), a ``tuple(...)`` being built in another thread cannot be resized and fails
with ``SystemError: bad argument to internal function`` (CPython lets
``gc.get_objects`` see tuples under construction). A soak accepts that risk; the unit
tests stop the thread when they are done with it.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import sys
import threading
import time
import tracemalloc
from collections import Counter, deque
from pathlib import Path
from typing import Any

PROBE_VARIABLE = "SEGSTREAM_TEST_MEMORY_PROBE"
EVERY_VARIABLE = "SEGSTREAM_TEST_MEMORY_PROBE_EVERY_S"
TOP = 25
LARGE = 1_000
"""Containers with at least this many entries are listed."""
ROCKSDB_PROPERTIES = (
    "rocksdb.cur-size-all-mem-tables",
    "rocksdb.block-cache-usage",
    "rocksdb.block-cache-pinned-usage",
    "rocksdb.estimate-table-readers-mem",
)
"""Native memory of the open RocksDB databases, summed (their own readings: RSS is Python's
heap plus these)."""


def snapshot(baseline: tracemalloc.Snapshot | None = None) -> dict[str, Any]:
    """One reading of the heap (see the module's docstring)."""
    started = time.monotonic()
    types: Counter[str] = Counter()
    large: list[tuple[int, str, str]] = []
    tracked = gc.get_objects()
    # dicts of atomic values (str -> float) and extension objects (RocksDB's Rdict) are not
    # tracked by the collector: they are found as what tracked objects refer to
    referred = gc.get_referents(*tracked)
    untracked = {
        id(thing): thing
        for thing in referred
        if isinstance(thing, (dict, list, set)) and not gc.is_tracked(thing)
    }
    for thing in (*tracked, *untracked.values()):
        kind = type(thing)
        types[kind.__qualname__] += 1
        if isinstance(thing, (dict, list, set, deque)) and len(thing) >= LARGE:
            large.append((len(thing), kind.__qualname__, _sample(thing)))
    rocksdb: Counter[str] = Counter()
    databases = {
        id(thing): thing
        for thing in (*referred, *gc.get_referents(*untracked.values()))
        if type(thing).__qualname__ == "Rdict"
    }
    for db in databases.values():
        _add_rocksdb(rocksdb, db)
    large.sort(reverse=True)
    reading: dict[str, Any] = {
        "at": time.time(),
        "objects": sum(types.values()),
        "types": types.most_common(TOP),
        "large": large[:TOP],
        "python_blocks": sys.getallocatedblocks(),
        "malloc_mib": malloc_mib(),
        "rocksdb_databases": len(databases),
        "rocksdb_mib": {name: round(n / 2**20, 1) for name, n in sorted(rocksdb.items())},
    }
    if tracemalloc.is_tracing():
        current = tracemalloc.take_snapshot()
        if baseline is not None:
            grown = current.compare_to(baseline, "lineno")[:TOP]
            reading["grown"] = [
                [str(stat.traceback), stat.size_diff // 1024, stat.count_diff] for stat in grown
            ]
        reading["traced_mib"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
    reading["took_s"] = round(time.monotonic() - started, 2)
    return reading


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def malloc_mib() -> dict[str, float] | None:
    """glibc's heap (RocksDB's memory and Python's large objects; Python's small objects
    live in its own arenas): ``arena`` bytes taken from the system by the main and thread
    arenas, ``mmapped`` large blocks, ``in_use`` and ``free`` (held, not returned: what
    fragmentation keeps). None where ``mallinfo2`` does not exist (not glibc >= 2.33)."""
    try:
        function = ctypes.CDLL(None).mallinfo2
    except (AttributeError, OSError):
        return None
    function.restype = _MallInfo2
    info = function()
    mib = 2**20
    return {
        "arena": round(info.arena / mib, 1),
        "mmapped": round(info.hblkhd / mib, 1),
        "in_use": round(info.uordblks / mib, 1),
        "free": round(info.fordblks / mib, 1),
    }


def _add_rocksdb(totals: Counter[str], db: Any) -> None:
    """Add one open database's memory readings to ``totals`` (a closed one has none)."""
    try:
        for name in ROCKSDB_PROPERTIES:
            totals[name.removeprefix("rocksdb.")] += db.property_int_value(name) or 0
    except Exception:  # closed, or a build without the property
        return


def _sample(container: Any) -> str:
    """A few of a container's keys or items, short: what it is keyed by."""
    try:
        items = list(container)[:3]
    except Exception:  # pragma: no cover - a container refusing iteration
        return "?"
    return repr(items)[:160]


class Probe:
    """The probe's running thread; :meth:`stop` ends it (after a reading under way)."""

    def __init__(self, target: Path, every: float) -> None:
        self.stopped = threading.Event()
        self.thread = threading.Thread(
            target=_run, args=(target, every, self.stopped), name="memory-probe", daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()


def start_from_environment() -> Probe | None:
    """Start the probe's thread when ``SEGSTREAM_TEST_MEMORY_PROBE`` is set."""
    target = os.environ.get(PROBE_VARIABLE)
    if not target:
        return None
    return Probe(Path(target), float(os.environ.get(EVERY_VARIABLE, "300")))


def _run(target: Path, every: float, stopped: threading.Event) -> None:
    baseline = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
    while not stopped.wait(every):
        reading = snapshot(baseline)
        with target.open("a") as out:
            out.write(json.dumps(reading) + "\n")
