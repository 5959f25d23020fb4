"""``make demo`` as a user runs it: the script ends with a worker that keeps running, a
token and curl lines that answer when pasted (deploy/demo.sh, on the test broker, with a
smaller stream and its own directory and port)."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

from harness.broker import Broker
from harness.workers import REPO_ROOT, free_port


def test_the_demo_leaves_a_worker_to_explore(kafka_broker: Broker, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGSTREAM_")}
    env |= {
        "SEGSTREAM_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "DEMO_DIR": str(tmp_path / "demo"),
        "DEMO_WEB_PORT": str(port),
        "DEMO_CUSTOMERS": "6",
        "DEMO_RATE": "2000",
    }
    script = REPO_ROOT / "deploy" / "demo.sh"
    try:
        done = subprocess.run(
            [str(script)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
        shown = done.stdout
        assert "the worker and the broker keep running" in shown
        token = re.search(r"TOKEN=(\S+)", shown)
        assert token is not None, shown[-2000:]
        lines = [line.strip() for line in shown.splitlines() if line.strip().startswith("curl ")]
        assert len(lines) == 4, shown[-2000:]  # segments, metrics, a customer, a CSV export
        for line in lines:  # as pasted into a shell with TOKEN set
            pasted = shlex.split(line.replace("$TOKEN", token.group(1)))
            command = [*pasted, "-f", "-o", "/dev/null"]
            assert subprocess.run(command, timeout=30).returncode == 0, line
    finally:
        pid_file = tmp_path / "demo" / "worker.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
