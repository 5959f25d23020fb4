"""A real Apache Kafka broker run by ``deploy/kafka/kafka.sh`` on a port of its own.

Tests, benchmarks and the chaos run each start their own broker (KRaft, one node, the
controller on the next port) with a data directory under ``deploy/kafka/.cache``; the
chaos run also kills and restarts it while workers run. The Kafka release is
``SEGSTREAM_TEST_KAFKA_VERSION`` (default 3.9.1; ``make test-kafka4`` runs the suite on 4.x).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT = REPO_ROOT / "deploy" / "kafka" / "kafka.sh"
KAFKA_CACHE = REPO_ROOT / "deploy" / "kafka" / ".cache"
SCRIPT_TIMEOUT_S = 300
"""A first start may run Maven (fetch) and format storage; kafka.sh waits up to 60 s."""
DEFAULT_KAFKA_VERSION = "3.9.1"
KAFKA_VERSION_ENV = "SEGSTREAM_TEST_KAFKA_VERSION"


def kafka_version() -> str:
    """The Apache Kafka release test brokers run: ``SEGSTREAM_TEST_KAFKA_VERSION``, else
    kafka.sh's own ``KAFKA_VERSION`` (so ``KAFKA_VERSION=4.4.0 make chaos`` or ``cluster-up``
    runs 4.4.0), else 3.9.1 (kafka.sh's default)."""
    return (
        os.environ.get(KAFKA_VERSION_ENV)
        or os.environ.get("KAFKA_VERSION")
        or DEFAULT_KAFKA_VERSION
    )


class BrokerError(RuntimeError):
    """kafka.sh failed; the message carries its output."""


@dataclass(frozen=True)
class Broker:
    """One broker: its port and data directory (``stem`` names the directory)."""

    port: int
    stem: str = "test-broker"
    extra_env: tuple[tuple[str, str], ...] = ()
    """More ``kafka.sh`` settings (``KAFKA_EXTRA_CONFIG``, ``KAFKA_SCRAM_USERS``)."""
    version: str = field(default_factory=kafka_version)
    """The Apache Kafka release (``KAFKA_VERSION`` of ``kafka.sh``)."""

    @property
    def data_dir(self) -> Path:
        return KAFKA_CACHE / f"{self.stem}-{self.port}"

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
        env["KAFKA_VERSION"] = self.version
        env.pop("KAFKA_CONTROLLER_PORT", None)  # follows KAFKA_PORT (+1)
        env.update(self.extra_env)
        return env

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        """Run ``kafka.sh <command>`` for this broker (start / stop / status / logs)."""
        try:
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
        except subprocess.TimeoutExpired as error:
            raise BrokerError(
                f"kafka.sh {command} did not return in {SCRIPT_TIMEOUT_S} s"
            ) from error

    def start(self) -> None:
        """Start the broker (no-op when it runs); :class:`BrokerError` with the output."""
        result = self.run("start")
        if result.returncode != 0:
            raise BrokerError(
                f"could not start the Kafka {self.version} broker on {self.bootstrap} "
                f"(kafka.sh start exited {result.returncode}):\n--- stdout ---\n{result.stdout}"
                f"--- stderr ---\n{result.stderr}"
            )

    def stop(self) -> None:
        """Stop the broker cleanly (no-op when it is not running)."""
        result = self.run("stop")
        if result.returncode != 0:
            raise BrokerError(f"kafka.sh stop failed:\n{result.stdout}{result.stderr}")

    def kill(self) -> None:
        """SIGKILL the broker process: a crash, no controlled shutdown."""
        pid_file = self.data_dir / "kafka.pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text().strip())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)

    def wipe(self) -> None:
        """Stop the broker and delete its data: the next start begins empty."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


@contextlib.contextmanager
def exclusive(broker: Broker) -> Iterator[None]:
    """Hold a lock on the broker's port for as long as the block runs, so two sessions in
    one checkout never wipe and restart each other's broker (the lock goes with the
    process, so an interrupted session never blocks the next one)."""
    KAFKA_CACHE.mkdir(parents=True, exist_ok=True)
    with open(KAFKA_CACHE / f"{broker.stem}-{broker.port}.lock", "w") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BrokerError(
                f"another session uses the Kafka broker on {broker.bootstrap}; wait for it "
                "or choose another port (its controller uses the next port too)"
            ) from None
        yield


@contextlib.contextmanager
def fresh_broker(
    port: int, stem: str = "test-broker", extra_env: tuple[tuple[str, str], ...] = ()
) -> Iterator[Broker]:
    """A broker on an empty data directory for the length of the block, stopped after."""
    broker = Broker(port, stem, extra_env)
    with exclusive(broker):
        broker.wipe()
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()


CLUSTER_SIZE = 3


@dataclass(frozen=True)
class BrokerCluster:
    """Three KRaft nodes on loopback (each broker and controller), replication factor 3,
    ``min.insync.replicas=2``: node ``n`` listens on ``base_port + 2n`` (its controller on
    the next port). One node may be down and every write still commits."""

    brokers: tuple[Broker, ...]

    @classmethod
    def on(cls, base_port: int, stem: str = "cluster-broker") -> BrokerCluster:
        """The cluster at ``base_port``; its id is derived from the stem and port, so its
        nodes agree on it across starts."""
        name = uuid.uuid5(uuid.NAMESPACE_URL, f"segstream/{stem}/{base_port}")
        cluster_id = base64.urlsafe_b64encode(name.bytes).decode().rstrip("=")
        ports = [base_port + 2 * n for n in range(CLUSTER_SIZE)]
        voters = ",".join(f"{n + 1}@127.0.0.1:{port + 1}" for n, port in enumerate(ports))
        shared = (
            ("KAFKA_VOTERS", voters),
            ("KAFKA_CLUSTER_ID", cluster_id),
            ("KAFKA_REPLICATION", str(CLUSTER_SIZE)),
            ("KAFKA_MIN_ISR", "2"),
        )
        return cls(
            tuple(
                Broker(port, stem, (("KAFKA_NODE_ID", str(n + 1)), *shared))
                for n, port in enumerate(ports)
            )
        )

    @property
    def bootstrap(self) -> str:
        return ",".join(broker.bootstrap for broker in self.brokers)

    def start(self) -> None:
        """Start every node at once (a node alone waits for the quorum to form)."""
        with ThreadPoolExecutor(len(self.brokers)) as pool:
            for started in [pool.submit(broker.start) for broker in self.brokers]:
                started.result()

    def stop(self) -> None:
        with ThreadPoolExecutor(len(self.brokers)) as pool:
            for stopped in [pool.submit(broker.stop) for broker in self.brokers]:
                stopped.result()

    def wipe(self) -> None:
        self.stop()
        for broker in self.brokers:
            shutil.rmtree(broker.data_dir, ignore_errors=True)


@contextlib.contextmanager
def fresh_cluster(base_port: int, stem: str = "cluster-broker") -> Iterator[BrokerCluster]:
    """A three-node cluster on empty data directories for the block, stopped after."""
    cluster = BrokerCluster.on(base_port, stem)
    with contextlib.ExitStack() as locks:
        for broker in cluster.brokers:
            locks.enter_context(exclusive(broker))
        cluster.wipe()
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
