"""Real segstream worker processes for integration tests, benchmarks and the chaos run
(``python -m segstream worker``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from segstream.api.access import token_hash
from segstream.domain.contracts import INPUT_ROLES
from segstream.settings import REPARTITION_ROLE, Settings
from segstream.stream.lag import consumer_lag
from segstream.stream.topics import ensure_topics

REPO_ROOT = Path(__file__).resolve().parents[1]
PLATFORM_TOKEN = "sst_test-platform-token"
"""The query-API token every test worker accepts for every shop (the requests below send
it unless told otherwise)."""
SHOP_TOKENS = {"sst_test-shop-token": "shop:coffee-roaster-1"}
"""More tokens the test workers accept, with their scopes (one shop's)."""
FAULTS = REPO_ROOT / "harness" / "faults"
T = TypeVar("T")


def faulty_env(fault_dir: Path) -> dict[str, str]:
    """The environment of a worker started with the faults of :mod:`harness.faults`,
    switched by files in ``fault_dir``."""
    return {
        "PYTHONPATH": os.pathsep.join([str(FAULTS), str(REPO_ROOT)]),
        "FAULT_DIR": str(fault_dir),
    }


def _authorization(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


SESSION_TIMEOUT_S = 6
"""The workers' group session timeout: a worker silent longer is dropped from its group."""


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def unique_name(stem: str) -> str:
    """A name no earlier test run used (topics and consumer groups outlive a test)."""
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``SEGSTREAM_*`` variables that give a worker process ``settings`` (only the
    explicitly set fields; the others keep their defaults there too).

    >>> settings_env(Settings(app_id="a", topic_partitions=8))
    {'SEGSTREAM_APP_ID': 'a', 'SEGSTREAM_TOPIC_PARTITIONS': '8'}
    """
    return {
        f"SEGSTREAM_{name.upper()}": str(value)
        for name, value in settings.model_dump(exclude_unset=True).items()
    }


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


def isolated_settings(bootstrap: str, stem: str, **overrides: Any) -> Settings:
    """Settings with an app id and topic prefix of their own, on 4 partitions (unless
    ``overrides`` say otherwise)."""
    fields: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "app_id": unique_name(f"segstream-{stem}"),
        "topic_prefix": unique_name(stem) + ".",
        "topic_partitions": 4,
    }
    return Settings(**(fields | overrides))


@dataclass
class WorkerProcess:
    """One worker with its own web port and data directory, configured by environment."""

    bootstrap: str
    app_id: str
    topic_prefix: str
    web_port: int
    data_dir: Path
    partitions: int = 4
    extra_env: dict[str, str] = field(default_factory=dict)
    replication: int = 1
    command: tuple[str, ...] = (sys.executable, "-m", "segstream", "worker")
    """How the worker is run (the checkout's package; a test may run an installed one)."""
    cwd: Path = REPO_ROOT
    process: subprocess.Popen[bytes] | None = None
    scrape_timeout_s: float = 5.0
    """How long a GET of a view may take."""

    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        data_dir: Path,
        extra_env: dict[str, str] | None = None,
        scrape_timeout_s: float = 5.0,
    ) -> WorkerProcess:
        """A worker of the app ``settings`` describe, on a free port."""
        return cls(
            settings.kafka_bootstrap,
            settings.app_id,
            settings.topic_prefix,
            free_port(),
            data_dir,
            partitions=settings.topic_partitions,
            extra_env=dict(extra_env or {}),
            replication=settings.topic_replication,
            scrape_timeout_s=scrape_timeout_s,
        )

    @property
    def log_path(self) -> Path:
        return self.data_dir.with_suffix(".log")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEGSTREAM_")}
        env.update(
            SEGSTREAM_KAFKA_BOOTSTRAP=self.bootstrap,
            SEGSTREAM_APP_ID=self.app_id,
            SEGSTREAM_TOPIC_PREFIX=self.topic_prefix,
            SEGSTREAM_TOPIC_PARTITIONS=str(self.partitions),
            SEGSTREAM_TOPIC_REPLICATION=str(self.replication),
            SEGSTREAM_WEB_PORT=str(self.web_port),
            SEGSTREAM_DATA_DIR=str(self.data_dir),
            SEGSTREAM_BROKER_SESSION_TIMEOUT_S=str(SESSION_TIMEOUT_S),
            SEGSTREAM_BROKER_REQUEST_TIMEOUT_S="20",
            SEGSTREAM_LOG_LEVEL=os.environ.get("SEGSTREAM_TEST_WORKER_LOG_LEVEL", "warning"),
            SEGSTREAM_API_RATE_PER_S="10000",  # tests poll fast; the rate has unit tests
            SEGSTREAM_API_BURST="10000",
            SEGSTREAM_API_TOKENS=json.dumps(
                {
                    token_hash(token): scope
                    for token, scope in {PLATFORM_TOKEN: "platform", **SHOP_TOKENS}.items()
                }
            ),
        )
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        """Spawn the worker; its output goes to :attr:`log_path`."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            list(self.command),
            cwd=self.cwd,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web_port}{path}"

    def get_json(self, path: str, token: str | None = PLATFORM_TOKEN) -> tuple[int, Any]:
        """GET a JSON view with ``token`` (None: no token); (status, body)."""
        request = urllib.request.Request(self.url(path), headers=_authorization(token))
        try:
            with urllib.request.urlopen(request, timeout=self.scrape_timeout_s) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def post(self, path: str, body: bytes) -> tuple[int, str, bytes]:
        """POST ``body`` as JSON; (status, content type, body) of the answer."""
        return self.request("POST", path, body)

    def request(
        self, method: str, path: str, body: bytes | None = None, token: str | None = PLATFORM_TOKEN
    ) -> tuple[int, str, bytes]:
        """``method`` on ``path`` with an optional JSON ``body`` and ``token``; (status,
        content type, body) of the answer. Writes of definitions wait for the worker to
        apply them."""
        headers = {} if body is None else {"Content-Type": "application/json"}
        headers.update(_authorization(token))
        request = urllib.request.Request(self.url(path), data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers.get_content_type(), response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get_content_type(), error.read()

    def request_json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """``method`` on a JSON view with ``body`` as JSON (None: no body); (status, answer)."""
        raw = None if body is None else json.dumps(body).encode()
        status, _, answer = self.request(method, path, raw)
        return status, json.loads(answer or b"null")

    def post_json(self, path: str, body: bytes) -> tuple[int, Any]:
        """POST ``body`` to a JSON view; (status, parsed answer)."""
        status, _, answer = self.post(path, body)
        return status, json.loads(answer or b"null")

    def get_text(self, path: str) -> str:
        with urllib.request.urlopen(self.url(path), timeout=self.scrape_timeout_s) as response:
            return str(response.read().decode())

    def ready(self) -> bool:
        """Whether ``/ready`` says ready now; fails with the log tail if the worker exited."""
        self.assert_running()
        try:
            status, _ = self.get_json("/ready")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False
        return bool(status == 200)

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Block until ``/ready`` says ready; fail with the log tail otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ready():
                return
            time.sleep(0.5)
        raise AssertionError(f"worker not ready after {timeout_s} s\n{self.log_tail()}")

    def running(self) -> bool:
        """Whether the worker process is alive."""
        return self.process is not None and self.process.poll() is None

    def assert_running(self) -> None:
        assert self.running(), (
            f"worker exited with {self.process.returncode if self.process else None}\n"
            f"{self.log_tail()}"
        )

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a Prometheus sample's values over series matching ``labels``."""
        return metric_sum(self.get_text("/metrics"), name, **labels)

    def events_handled(self) -> float | None:
        """``segstream_events_total``, or None when the scrape timed out (see
        :meth:`metric_or_none`)."""
        return self.metric_or_none("segstream_events_total")

    def metric_or_none(self, name: str, **labels: str) -> float | None:
        """:meth:`metric`, or None when the scrape timed out: the worker answers
        ``/metrics`` from the event loop that folds the backlog, and on a loaded machine one
        batch can hold it past ``scrape_timeout_s``. A wait for progress reads that as
        "not yet", and keeps its own deadline (CI's loaded run lost test_pipeline's whole
        module to one slow scrape inside such a wait)."""
        try:
            return self.metric(name, **labels)
        except TimeoutError:  # the answer came too slowly
            return None
        except urllib.error.URLError as error:  # the connection was accepted too slowly
            if isinstance(error.reason, TimeoutError):
                return None
            raise

    def kill(self) -> None:
        """SIGKILL: a crash, no clean shutdown, no final commit."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def terminate(self, within_s: float) -> float:
        """SIGTERM; the seconds until the process ended, failing (and killing it) when it
        takes longer than ``within_s``."""
        assert self.process is not None and self.process.poll() is None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=within_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"still running {within_s} s after SIGTERM\n{self.log_tail()}"
            ) from None
        return time.monotonic() - started

    def stop(self) -> None:
        """SIGTERM and wait (kill after 30 s)."""
        stop_all([self])

    def signal_stop(self) -> None:
        """SIGTERM if it still runs, without waiting."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait_or_kill(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the process to end, then SIGKILL it."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_notable(self, lines: int = 40) -> str:
        """The last ``lines`` warnings and errors of the worker's log, each run of one
        event collapsed into its last line and a count: a stuck run's story, which a plain
        tail of a periodic warning hides (CI's "lag 130 after 900 s" printed only that)."""
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(notable(self.log_path.read_text(errors="replace").splitlines())[-lines:])


NOTABLE_LEVELS = frozenset({"warning", "error", "critical"})


def notable(lines: Sequence[str]) -> list[str]:
    """Warning and error lines (JSON or not), a run of one event as its last line with
    ``(xN)``; a line that is not a log record (a traceback's) is kept as it is."""
    kept: list[tuple[str, str, int]] = []  # (event, line, repeats)
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            if str(record.get("level", "")).lower() not in NOTABLE_LEVELS:
                continue
            event = str(record.get("event", ""))[:60]
        else:
            event = line
        if kept and kept[-1][0] == event:
            kept[-1] = (event, line, kept[-1][2] + 1)
        else:
            kept.append((event, line, 1))
    return [line if n == 1 else f"{line} (x{n})" for _, line, n in kept]


def stop_all(workers: Sequence[WorkerProcess], timeout_s: float = 30.0) -> None:
    """SIGTERM every worker at once (no rebalance after each one leaves), then SIGKILL
    those still running after ``timeout_s``."""
    for worker in workers:
        worker.signal_stop()
    for worker in workers:
        worker.wait_or_kill(timeout_s)


async def wait_consumed(settings: Settings, worker: WorkerProcess, timeout_s: float = 120) -> None:
    """Until the group committed every input record (Faust commits only what it processed,
    after flushing the changelog writes), so the tables' changelogs are complete."""
    topics = [settings.topic(role) for role in (*INPUT_ROLES, REPARTITION_ROLE)]
    deadline = time.monotonic() + timeout_s
    while True:
        worker.assert_running()
        lag = await consumer_lag(settings, settings.app_id, topics)
        if lag and sum(lag.values()) == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"lag {lag} after {timeout_s} s\n{worker.log_tail()}")
        await asyncio.sleep(0.5)


def until(read: Callable[[], T], done: Callable[[T], bool], what: str, limit: float = 90) -> T:
    """Poll ``read`` every 0.5 s until ``done`` holds for its value (returned), or fail
    after ``limit`` seconds naming ``what`` and the last value read."""
    deadline = time.monotonic() + limit
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {limit} s: {what}; last read {value!r}"[:2000])
        time.sleep(0.5)


@contextmanager
def worker_group(
    settings: Settings, data_dir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[list[WorkerProcess]]:
    """Topics created and a first worker running (data in ``data_dir / "a"``); the list is
    the group, to which a test may add successors; every worker is stopped at the end."""
    asyncio.run(ensure_topics(settings))
    first = WorkerProcess.for_settings(settings, data_dir / "a", extra_env)
    started = [first]
    try:
        first.start()
        first.wait_ready(timeout_s=120)
        yield started
    finally:
        for worker in started:
            worker.stop()
