"""Real segstream worker processes for integration tests (``python -m segstream worker``)."""

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segstream.api.access import token_hash
from segstream.core.contracts import INPUT_ROLES
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


def faulty_env(fault_dir: Path) -> dict[str, str]:
    """The environment of a worker started with the faults of :mod:`harness.faults`,
    switched by files in ``fault_dir``."""
    return {
        "PYTHONPATH": os.pathsep.join([str(FAULTS), str(REPO_ROOT)]),
        "FAULT_DIR": str(fault_dir),
    }


def _authorization(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def unique_name(stem: str) -> str:
    """A name no earlier test run used (topics and consumer groups outlive a test)."""
    return f"{stem}-{uuid.uuid4().hex[:8]}"


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

    @classmethod
    def for_settings(
        cls, settings: Settings, data_dir: Path, extra_env: dict[str, str] | None = None
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
            SEGSTREAM_BROKER_SESSION_TIMEOUT_S="6",
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
            with urllib.request.urlopen(request, timeout=5) as response:
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
        with urllib.request.urlopen(self.url(path), timeout=5) as response:
            return str(response.read().decode())

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Block until ``/ready`` says ready; fail with the log tail otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.assert_running()
            try:
                status, _ = self.get_json("/ready")
                if status == 200:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
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
        total = 0.0
        for line in self.get_text("/metrics").splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            series, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
        return total

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
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


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


def until(
    read: Callable[[], Any], done: Callable[[Any], bool], what: str, limit: float = 90
) -> Any:
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
