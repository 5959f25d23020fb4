"""Settings errors are one line each, for every setting; unknown SEGSTREAM_* variables are
reported (an error in check-config, a warning at worker start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from segstream.__main__ import main
from segstream.domain.contracts import EARLIEST_EVENT_TIME
from segstream.settings import ConfigError, Settings, load_settings, unknown_variables

SUSPECT: tuple[str, ...] = ("", " ", "not a value", "{not json", "[]", "-1", "0", "nan")
SUSPECT += ("inf", "1e999", "9" * 30, "x" * 300, "a b|c/d")
"""Values to try on every setting (each is wrong for some settings)."""
NEVER_ECHOED = ("a b|c/d", "x" * 300)
"""Values no message may repeat (a setting's value may be a secret)."""
BOUNDS = {"minimum": -1, "exclusiveMinimum": 0, "maximum": 1, "exclusiveMaximum": 0}
"""How far past each bound a setting's JSON schema states to try."""
HEADER = "invalid segstream settings:"


def tried(name: str) -> list[str]:
    """The suspect values, and the values just past the bounds the field's schema states."""
    schema = Settings.model_json_schema()["properties"][name]
    values = list(SUSPECT)
    for branch in schema.get("anyOf", [schema]):
        values += [str(branch[key] + step) for key, step in BOUNDS.items() if key in branch]
    return values


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for variable in list(os.environ):
        if variable.upper().startswith("SEGSTREAM_"):
            monkeypatch.delenv(variable)
    return monkeypatch


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_a_bad_value_of_any_setting_is_one_line_naming_it(
    name: str, clean_environment: pytest.MonkeyPatch
) -> None:
    """Whatever value a variable holds, settings load or fail with a header and one line
    about that variable (no traceback, no value echoed); and every setting has values it
    refuses."""
    variable = f"SEGSTREAM_{name.upper()}"
    refused = []
    for value in tried(name):
        clean_environment.setenv(variable, value)
        try:
            load_settings()
        except ConfigError as error:
            header, *lines = str(error).split("\n")
            assert header == HEADER and len(lines) == 1, (value, str(error))
            assert lines[0].startswith(f"  {variable}: ") or (
                lines[0].startswith("  settings: ") and variable in lines[0]
            ), (value, lines)
            assert value not in NEVER_ECHOED or value not in lines[0], "the value is echoed"
            refused.append(value)
    assert refused, f"{variable} takes every value tried"


@pytest.mark.parametrize("value", ["{not json", "", "[]", '{"abc": "platform"}'])
def test_bad_tokens_are_one_line_that_says_the_format(
    value: str, clean_environment: pytest.MonkeyPatch
) -> None:
    clean_environment.setenv("SEGSTREAM_API_TOKENS", value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert refused.value.problems.keys() == {"SEGSTREAM_API_TOKENS"}
    assert "abc" not in str(refused.value), "a token (or what may be one) is never printed"


def test_tokens_are_read_from_json(clean_environment: pytest.MonkeyPatch) -> None:
    tokens = {"a" * 64: "platform", "b" * 64: "shop:tea-1"}
    clean_environment.setenv("SEGSTREAM_API_TOKENS", json.dumps(tokens))
    assert load_settings().api_tokens == tokens


def test_the_earliest_event_time_defaults_to_the_contracts_and_reads_rfc3339(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    """The worker and the replay tool share one bound; a bare number (which pydantic would
    read as seconds since 1970) or a time without an offset is refused."""
    assert Settings().earliest_event_time == EARLIEST_EVENT_TIME
    clean_environment.setenv("SEGSTREAM_EARLIEST_EVENT_TIME", "1995-01-01T01:00:00+01:00")
    assert load_settings().earliest_event_time == datetime(1995, 1, 1, tzinfo=UTC)
    for value in (
        "0",
        "1995-01-01",
        "1995-01-01T00:00:00",
        "1899-12-31T23:59:59Z",
        "2999-01-01T00:00:00Z",
    ):
        clean_environment.setenv("SEGSTREAM_EARLIEST_EVENT_TIME", value)
        with pytest.raises(ConfigError) as refused:
            load_settings()
        assert refused.value.problems.keys() == {"SEGSTREAM_EARLIEST_EVENT_TIME"}, value


def test_unknown_variables_are_named_with_the_setting_they_may_misspell() -> None:
    environ = {
        "SEGSTREAM_WEB_PROT": "7000",
        "segstream_web_port": "7000",  # pydantic-settings reads names in any case
        "SEGSTREAM_TEST_KAFKA_PORT": "19092",  # the test harness's
        "SEGSTREAM_NOTHING_LIKE_IT": "1",
        "PATH": "/bin",
    }
    assert unknown_variables(environ) == {
        "SEGSTREAM_NOTHING_LIKE_IT": ["not a segstream setting"],
        "SEGSTREAM_WEB_PROT": ["not a segstream setting (did you mean SEGSTREAM_WEB_PORT?)"],
    }


def test_check_config_refuses_an_unknown_variable_in_one_line(
    clean_environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_environment.setenv("SEGSTREAM_WEB_PROT", "7000")
    assert main(["check-config"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        HEADER,
        "  SEGSTREAM_WEB_PROT: not a segstream setting (did you mean SEGSTREAM_WEB_PORT?)",
    ]
    clean_environment.delenv("SEGSTREAM_WEB_PROT")
    assert main(["check-config"]) == 0


def test_a_worker_warns_about_an_unknown_variable_in_a_structured_line(tmp_path: Path) -> None:
    """The worker starts anyway (here it stops at once: no API tokens)."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SEGSTREAM_")}
    env |= {"SEGSTREAM_WEB_PROT": "7000", "SEGSTREAM_DATA_DIR": str(tmp_path)}
    found = subprocess.run(
        [sys.executable, "-m", "segstream", "worker"], capture_output=True, text=True, env=env
    )
    assert found.returncode == 2
    lines = found.stderr.splitlines()
    warning = json.loads(lines[0])
    assert warning["event"] == "unknown_setting" and warning["level"] == "warning"
    assert warning["variable"] == "SEGSTREAM_WEB_PROT"
    assert "SEGSTREAM_WEB_PORT" in warning["problem"]
    assert lines[1].startswith("segstream: the query API needs tokens")
