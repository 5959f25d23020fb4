"""segstream as a user installs it: the wheel built from this checkout (``uv build``: an
sdist, then the wheel from the sdist), installed with the pinned versions of
``constraints.txt`` into a fresh virtualenv outside the repository, runs ``segstream
worker`` against the test broker from a directory with nothing of the checkout in it.

The installed worker validates events against the schemas it ships (a 1e308 order is
dead-lettered ``schema_invalid``, a good one is processed), serves the OpenAPI document and
the console's page and files it ships, and ``segstream check-config`` works.
``SEGSTREAM_TEST_PYTHONS`` (``make test-pythons``) names more interpreters to run the same
test with; by default the project's own (the one running the tests).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.workers import REPO_ROOT, WorkerProcess, isolated_settings, until
from segstream.settings import Settings
from segstream.stream.topics import ensure_topics
from segstream.tools.publish import publish
from tests.factories import order

UV = Path(sys.executable).with_name("uv")
PYTHONS = [p for p in os.environ.get("SEGSTREAM_TEST_PYTHONS", sys.executable).split(",") if p]


def run(*command: str | Path, cwd: Path) -> str:
    """Run ``command`` (nothing of the checkout on its path, no SEGSTREAM_* settings); its
    output, or a failure showing what it printed."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and "SEGSTREAM_" not in k}
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``uv build`` makes from this checkout (through its sdist)."""
    out = tmp_path_factory.mktemp("dist")
    run(UV, "build", "-q", "-o", out, REPO_ROOT, cwd=out)
    (found,) = out.glob("segstream-*.whl")
    assert len(list(out.glob("segstream-*.tar.gz"))) == 1
    return found


def installed(wheel: Path, python: str, home: Path) -> Path:
    """A fresh virtualenv in ``home`` with the wheel and its pinned dependencies; its bin."""
    venv = home / "venv"
    run(UV, "venv", "-q", "--python", python, venv, cwd=home)
    constraints = REPO_ROOT / "constraints.txt"
    run(UV, "pip", "install", "-q", "--python", venv / "bin" / "python", "-c", constraints,
        wheel, cwd=home)  # fmt: skip
    return venv / "bin"


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str) -> Settings:
    return isolated_settings(kafka_bootstrap, "wheel", topic_partitions=1)


@pytest.fixture(params=PYTHONS, ids=lambda p: Path(p).name)
def worker(
    request: pytest.FixtureRequest, wheel: Path, settings: Settings, tmp_path: Path
) -> Iterator[WorkerProcess]:
    python = str(request.param)
    assert shutil.which(python), f"no interpreter {python}"
    home = tmp_path / "home"
    home.mkdir()
    bin_dir = installed(wheel, python, home)
    shown = run(bin_dir / "segstream", "check-config", cwd=home)
    assert "kafka_bootstrap" in json.loads(shown)
    asyncio.run(ensure_topics(settings))
    worker = WorkerProcess.for_settings(settings, home / "data", {"PYTHONPATH": ""})
    worker.command, worker.cwd = (str(bin_dir / "segstream"), "worker"), home
    worker.start()
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


def test_the_installed_wheel_runs_a_worker(worker: WorkerProcess, settings: Settings) -> None:
    at = "2026-03-15T07:02:00Z"
    events = [
        ("orders", order("c-1", at, event_id, amount, shop="wheel-shop", order_id=event_id))
        for event_id, amount in (("w-1", 12.5), ("w-2", 1e308))
    ]
    asyncio.run(publish(events, settings))
    answer = until(
        lambda: worker.get_json("/shops/wheel-shop/customers/c-1"),
        lambda got: got[0] == 200,
        "the installed worker's answer for c-1",
    )[1]
    assert answer["state"]["total_spend"] == 12.5
    until(
        lambda: worker.metric("segstream_dead_letters_total", reason="schema_invalid"),
        lambda count: count == 1,
        "the 1e308 order dead-lettered schema_invalid by the shipped schemas",
    )
    status, served = worker.get_json("/openapi.json", token=None)
    assert status == 200
    assert served == json.loads((REPO_ROOT / "deploy" / "openapi.json").read_text())
    assets = REPO_ROOT / "service" / "segstream" / "api" / "console_assets"
    for path, name in (
        ("/console", "index.html"),
        ("/console/chart.umd.min.js", "chart.umd.min.js"),
    ):
        assert worker.get_text(path) == (assets / name).read_text(), path
