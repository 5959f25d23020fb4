"""Integration test fixtures: a dedicated, real Apache Kafka broker for the test session.

The broker is started with ``deploy/kafka/kafka.sh`` on 127.0.0.1:19092 (controller on the next
port; override with ``SEGSTREAM_TEST_KAFKA_PORT``), separate from the dev broker on 9092. Its
data dir ``deploy/kafka/.cache/test-broker-<port>`` is wiped at session start so every run
begins from an empty cluster, and the broker is stopped at session end. If it cannot start,
every test that needs it fails with the script's output: integration tests never skip for a
missing broker.

Every test collected under ``tests/integration`` gets the ``integration`` marker, so
``pytest -m "not integration"`` runs without a broker.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
KAFKA_SCRIPT = REPO_ROOT / "deploy" / "kafka" / "kafka.sh"
KAFKA_CACHE = REPO_ROOT / "deploy" / "kafka" / ".cache"
DEFAULT_TEST_PORT = 19092
# First start may run Maven (fetch) and format storage; kafka.sh itself waits up to 60 s.
SCRIPT_TIMEOUT_S = 300


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees the items of the whole session: mark only the ones in this folder.
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


@dataclass(frozen=True)
class TestBroker:
    """The session's Kafka broker, with the kafka.sh settings that address it."""

    __test__ = False  # not a test class despite the name

    port: int
    data_dir: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def server_log(self) -> Path:
        return self.data_dir / "logs" / "server.log"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KAFKA_PORT"] = str(self.port)
        env["KAFKA_DATA_DIR"] = str(self.data_dir)
        # The controller port follows KAFKA_PORT (+1); never inherit a dev setting for it.
        env.pop("KAFKA_CONTROLLER_PORT", None)
        return env

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        """Run ``kafka.sh <command>`` for this broker (start / stop / status / logs)."""
        return subprocess.run(
            [str(KAFKA_SCRIPT), command],
            env=self.env(),
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT_S,
            check=False,
        )

    def start(self) -> None:
        """Start the broker (no-op when it runs); ``pytest.fail`` with the output if it cannot."""
        try:
            result = self.run("start")
        except subprocess.TimeoutExpired as exc:
            pytest.fail(
                f"kafka.sh start for the test broker on {self.bootstrap} did not return within "
                f"{SCRIPT_TIMEOUT_S} s\n{_text(exc.stdout)}{_text(exc.stderr)}",
                pytrace=False,
            )
        if result.returncode != 0:
            pytest.fail(
                f"could not start the test Kafka broker on {self.bootstrap} "
                f"(kafka.sh start exited {result.returncode}):\n"
                f"--- stdout ---\n{result.stdout}--- stderr ---\n{result.stderr}",
                pytrace=False,
            )

    def stop(self) -> subprocess.CompletedProcess[str]:
        return self.run("stop")


def _text(output: str | bytes | None) -> str:
    if output is None:
        return ""
    return output.decode(errors="replace") if isinstance(output, bytes) else output


@contextlib.contextmanager
def _exclusive_use(port: int) -> Iterator[None]:
    """Hold a lock on the test broker's port for the whole session.

    Two pytest sessions in one checkout (say two engineers, or make test next to an editor's
    test run) would otherwise wipe and restart each other's broker mid-run. The lock goes
    away with the process, so an interrupted session never blocks the next one.
    """
    KAFKA_CACHE.mkdir(parents=True, exist_ok=True)
    with open(KAFKA_CACHE / f"test-broker-{port}.lock", "w") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except BlockingIOError:
            locked = False
        if not locked:
            pytest.fail(
                f"another pytest session uses the test Kafka broker on 127.0.0.1:{port}; "
                "wait for it to finish or set SEGSTREAM_TEST_KAFKA_PORT to a free port "
                "(its controller uses the next port too)",
                pytrace=False,
            )
        yield


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[TestBroker]:
    """A dedicated Kafka broker for this test session, started on a fresh data dir."""
    port = int(os.environ.get("SEGSTREAM_TEST_KAFKA_PORT", str(DEFAULT_TEST_PORT)))
    broker = TestBroker(port=port, data_dir=KAFKA_CACHE / f"test-broker-{port}")
    with _exclusive_use(port):
        # A broker left over from an interrupted session would hold old data: stop it first.
        broker.stop()
        shutil.rmtree(broker.data_dir, ignore_errors=True)
        broker.start()
        try:
            yield broker
        finally:
            result = broker.stop()
            if result.returncode != 0:
                print(f"kafka.sh stop for the test broker failed:\n{result.stdout}{result.stderr}")


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: TestBroker) -> str:
    """Bootstrap address ``"127.0.0.1:PORT"`` of the session's test broker."""
    return kafka_broker.bootstrap
