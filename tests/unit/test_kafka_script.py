"""deploy/kafka/kafka.sh refuses what it cannot run with one clear line, before any Java or
Maven: a KAFKA_VERSION that is no 3.x or 4.x release, and a data dir another version formatted
(Kafka 4.x rewrites a 3.x data dir's metadata beyond what 3.x reads back)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_SCRIPT = REPO_ROOT / "deploy" / "kafka" / "kafka.sh"


def kafka_sh(command: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    env.update(settings)
    return subprocess.run(
        [str(KAFKA_SCRIPT), command],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("version", ["5.0.0", "2.8.1", "4.0", "4.4.0; rm -rf /", "latest"])
@pytest.mark.parametrize("command", ["fetch", "start"])
def test_a_version_that_is_no_3x_or_4x_release_is_refused(
    command: str, version: str, tmp_path: Path
) -> None:
    result = kafka_sh(command, KAFKA_VERSION=version, KAFKA_DATA_DIR=str(tmp_path / "data"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "kafka.sh: ERROR: KAFKA_VERSION must be an Apache Kafka 3.x or 4.x release such as "
        f"3.9.1 or 4.4.0, got '{version}'"
    ]
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(("formatted", "asked"), [("4.4.0", "3.9.1"), ("3.9.1", "4.4.0")])
def test_a_data_dir_is_started_only_by_the_version_that_formatted_it(
    formatted: str, asked: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    (data / "kraft-data").mkdir(parents=True)
    (data / "kraft-data" / "meta.properties").write_text("node.id=1\n")
    (data / "kafka.version").write_text(f"{formatted}\n")

    result = kafka_sh("start", KAFKA_VERSION=asked, KAFKA_DATA_DIR=str(data))

    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert f"formatted by Kafka {formatted}, not KAFKA_VERSION={asked}" in line
    assert f"start it with KAFKA_VERSION={formatted}" in line
    assert not (data / "logs").exists(), "refused before anything was started"
