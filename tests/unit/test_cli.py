"""The one command: every subcommand answers --help in plain words, errors are one line,
exit codes are 0/1/2/130 everywhere, and ``python -m segstream`` is the same command."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from harness.workers import REPO_ROOT
from segstream import cli
from segstream.tools import erase


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_command_explains_itself_in_plain_text(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([name, "--help"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"usage: segstream {name}") or "usage: segstream " in shown
    assert "``" not in shown and ":func:" not in shown and ":mod:" not in shown, shown


def test_the_overview_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    overview = capsys.readouterr().out
    assert all(f"segstream {name}" in overview for name in cli.COMMANDS)
    assert cli.main([]) == 2, "no command is a usage error, with the overview"


def test_an_unknown_command_or_option_is_one_line_and_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["replya"]) == 2
    assert cli.main(["token", "--nope"]) == 2
    assert cli.main(["erase", "tea-1", "c\x01"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3, errors


def test_ctrl_c_is_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(argv: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr("segstream.tools.watch.main", interrupted)
    assert cli.main(["watch"]) == 130


def test_python_dash_m_service_is_the_same_command() -> None:
    found = subprocess.run(
        [sys.executable, "-m", "segstream", "token", "platform", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert found.returncode == 0, found.stderr
    assert '"token": "sst_' in found.stdout


def read_one_byte(*command: str) -> tuple[int, bytes]:
    """Run ``command`` (Python arguments), read one byte of its output and go away, as
    ``| head -c 1`` does; its exit status and what it wrote to stderr."""
    process = subprocess.Popen(
        [sys.executable, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.read(1)
    process.stdout.close()
    error = process.stderr.read()
    return process.wait(timeout=120), error


FLOOD = (
    "import sys\n"
    "import segstream.tools.token as token\n"
    "from segstream import cli\n"
    "token.main = lambda argv: [print('x' * 99) for _ in range(10_000)] and 0\n"
    "sys.exit(cli.main(['token']))\n"
)
"""A subcommand that writes about 1 MB, far more than a pipe holds."""


def test_a_reader_that_stops_early_ends_a_command_quietly() -> None:
    """No traceback when the reader goes away, and status 1 (the output was cut short)
    whether ``segstream`` or the subcommand meets the closed pipe (``simulate
    --dry-run``: its events here are more than a pipe holds)."""
    assert read_one_byte("-c", FLOOD) == (1, b"")
    simulate = ["simulate", "--dry-run", "--shops-per-kind", "1", "--customers", "20"]
    assert read_one_byte("-m", "segstream", *simulate, "--days", "60") == (1, b"")


def test_an_erasure_request_is_a_valid_event_of_the_contract() -> None:
    from datetime import UTC, datetime

    from segstream.domain.contracts import parse_event
    from segstream.domain.events import CustomerErased
    from segstream.tools.publish import encode

    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    event = erase.erasure("tea-1", "c-7", now)
    assert parse_event(encode(event), CustomerErased, now) == event
