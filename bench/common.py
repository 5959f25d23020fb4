"""What both benchmarks share: the simulated stream, statistics, tables, progress lines,
the bench broker and real worker processes.

Statistics are plain nearest-rank percentiles; ratios compare variants measured in the same
run, since absolute numbers on shared machines move with whatever else runs.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from segstream.settings import Settings
from segstream.tools.publish import Record
from segstream.tools.simulation.generator import SimulationConfig, generate
from segstream.tools.simulation.shops import shops_per_kind

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT = REPO_ROOT / "deploy" / "kafka" / "kafka.sh"
KAFKA_CACHE = REPO_ROOT / "deploy" / "kafka" / ".cache"
RUNS_DIR = REPO_ROOT / "var" / "bench"
PERCENTILES = (50, 95, 99)
EVENTS_PER_SHOP = 1100
"""Roughly how many events a simulated shop of 100 customers yields over a year."""


# ---------------------------------------------------------------- the simulated stream


def simulated_records(events: int, seed: int = 1) -> list[Record]:
    """The first ``events`` records of a simulated year of shops with 100 customers each,
    in send order; just enough shops (of every kind) are simulated to have that many."""
    kinds = len(shops_per_kind(1))
    per_kind = max(1, math.ceil(events / (EVENTS_PER_SHOP * kinds)))
    while True:
        config = SimulationConfig(
            seed=seed, shops_per_kind=per_kind, customers_per_shop=100, days=365
        )
        outbox = generate(config).outbox()
        if len(outbox) >= events:
            return outbox[:events]
        per_kind += 1


# ---------------------------------------------------------------- statistics


def percentile(samples: Sequence[float], rank: float) -> float:
    """Nearest-rank percentile (``rank`` in 0..100) of non-empty ``samples``.

    >>> percentile([5, 1, 4, 2, 3], 50), percentile([5, 1, 4, 2, 3], 99)
    (3, 5)
    """
    ordered = sorted(samples)
    index = max(math.ceil(rank / 100 * len(ordered)) - 1, 0)
    return ordered[index]


def summary(samples: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and max of non-empty ``samples``.

    >>> summary(range(1, 101))
    {'p50': 50, 'p95': 95, 'p99': 99, 'max': 100}
    """
    ordered = sorted(samples)
    stats = {f"p{rank}": percentile(ordered, rank) for rank in PERCENTILES}
    stats["max"] = ordered[-1]
    return stats


def median_of(rounds: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per statistic, the median over rounds (robust to a round that noise hit hard).

    >>> median_of([{"p50": 1.0}, {"p50": 9.0}, {"p50": 2.0}])
    {'p50': 2.0}
    """
    return {name: statistics.median(stats[name] for stats in rounds) for name in rounds[0]}


def paired(values: Sequence[float], baselines: Sequence[float]) -> float:
    """Median over rounds of ``value / baseline`` measured in the same round (noise that hit
    a whole round cancels out).

    >>> paired([2.0, 9.0, 3.0], [1.0, 3.0, 1.0])
    3.0
    """
    return statistics.median(v / b for v, b in zip(values, baselines, strict=True))


def rotated(items: Sequence[T], by: int) -> list[T]:
    """``items`` rotated left by ``by``: each round starts with another variant.

    >>> rotated("abc", 4)
    ['b', 'c', 'a']
    """
    shift = by % len(items)
    return [*items[shift:], *items[:shift]]


def times(value: float) -> str:
    """A ratio as ``1.23x``.

    >>> times(0.5)
    '0.50x'
    """
    return f"{value:.2f}x"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table with aligned columns (first column left, the others right).

    >>> print(table(["variant", "n"], [["a", "1"], ["bb", "10"]]))
    | variant |  n |
    |:--------|---:|
    | a       |  1 |
    | bb      | 10 |
    """
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|".join(
        ":" + "-" * (w + 1) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)
    )
    return "\n".join([line(headers), f"|{rule}|", *(line(row) for row in rows)])


# ---------------------------------------------------------------- progress


class Progress:
    """A short progress line on stderr at most every ``every_s`` seconds."""

    def __init__(self, label: str, total: int | None = None, every_s: float = 3.0) -> None:
        self.label = label
        self.total = total
        self.every_s = every_s
        self.started = time.monotonic()
        self._last = self.started

    def update(self, done: int, detail: str = "") -> None:
        """Report ``done`` units (and ``detail``) if the last line is old enough."""
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        of = f"/{self.total}" if self.total is not None else ""
        elapsed = now - self.started
        parts = [f"{self.label}: {done}{of}", detail, f"({elapsed:.0f} s)"]
        say(" ".join(part for part in parts if part))


def code_version() -> str:
    """The commit the run measured, marked ``+dirty`` when the tree has local changes."""
    commit = _git("rev-parse", "--short", "HEAD") or "unknown commit"
    return commit + ("+dirty" if _git("status", "--porcelain", "--untracked-files=no") else "")


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)
    return done.stdout.strip()


def say(message: str) -> None:
    """One line on stderr (progress and status, kept apart from the results on stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the bench broker


@dataclass(frozen=True)
class BenchBroker:
    """A broker of ``deploy/kafka/kafka.sh`` on ``port`` with its own data dir."""

    port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return KAFKA_CACHE / f"bench-broker-{self.port}"

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        """``kafka.sh <command>`` for this broker."""
        env = {k: v for k, v in os.environ.items() if k != "KAFKA_CONTROLLER_PORT"}
        env.update(KAFKA_PORT=str(self.port), KAFKA_DATA_DIR=str(self.data_dir))
        return subprocess.run(
            [str(KAFKA_SCRIPT), command],
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )


@contextmanager
def bench_broker(port: int) -> Iterator[str]:
    """Yield the bootstrap address of the bench broker on ``port``: reused when it runs,
    otherwise started on a wiped data dir and stopped again at exit."""
    broker = BenchBroker(port)
    if broker.run("status").returncode == 0:
        say(f"reusing the bench broker on {broker.bootstrap}")
        yield broker.bootstrap
        return
    shutil.rmtree(broker.data_dir, ignore_errors=True)
    say(f"starting a bench broker on {broker.bootstrap} (data {broker.data_dir})")
    started = broker.run("start")
    if started.returncode != 0:
        raise RuntimeError(f"kafka.sh start failed:\n{started.stdout}{started.stderr}")
    try:
        yield broker.bootstrap
    finally:
        say(f"stopping the bench broker on {broker.bootstrap}")
        broker.run("stop")


# ---------------------------------------------------------------- worker processes


class WorkerError(RuntimeError):
    """A worker exited or never became ready; the message carries its log tail."""


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``SEGSTREAM_*`` variables that give a worker process ``settings``
    (only the explicitly set fields; the others keep their defaults there too).

    >>> settings_env(Settings(app_id="a", topic_partitions=8))
    {'SEGSTREAM_APP_ID': 'a', 'SEGSTREAM_TOPIC_PARTITIONS': '8'}
    """
    return {
        f"SEGSTREAM_{name.upper()}": str(value)
        for name, value in settings.model_dump(exclude_unset=True).items()
    }


@dataclass
class Worker:
    """One ``python -m segstream worker`` process; output goes to ``log_path``."""

    settings: Settings
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        """Spawn the worker with exactly ``settings`` (inherited SEGSTREAM_* are dropped)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEGSTREAM_")}
        env.update(settings_env(self.settings))
        env.setdefault("SEGSTREAM_API_OPEN", "true")  # the bench reads /ready and /metrics only
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "segstream", "worker"],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}{path}"

    def assert_running(self) -> None:
        """Raise :class:`WorkerError` (with the log tail) if the process has exited."""
        if self.process is None or self.process.poll() is not None:
            raise WorkerError(f"worker exited\n{self.log_tail()}")

    def ready(self) -> bool:
        """True when ``/ready`` answers 200; raises :class:`WorkerError` if it exited."""
        self.assert_running()
        try:
            with urllib.request.urlopen(self.url("/ready"), timeout=5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def metrics(self) -> str:
        """The Prometheus text of ``/metrics``."""
        with urllib.request.urlopen(self.url("/metrics"), timeout=10) as response:
            return str(response.read().decode())

    def terminate(self) -> None:
        """Ask for a clean shutdown (SIGTERM) if it still runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait_or_kill(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the exit, then SIGKILL."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def stop_all(workers: Sequence[Worker], timeout_s: float = 30.0) -> None:
    """SIGTERM every worker at once (no rebalance storm), then SIGKILL the stragglers."""
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait_or_kill(timeout_s)


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``, in Prometheus text.

    >>> text = 'a_total{t="x"} 2.0\\na_total{t="y"} 3.0\\nab 1\\n'
    >>> metric_sum(text, "a_total"), metric_sum(text, "a_total", t="y")
    (5.0, 3.0)
    """
    total = 0.0
    for line in text.splitlines():
        if not line.startswith((name + "{", name + " ")):
            continue
        series, _, value = line.rpartition(" ")
        if all(f'{key}="{wanted}"' in series for key, wanted in labels.items()):
            total += float(value)
    return total
