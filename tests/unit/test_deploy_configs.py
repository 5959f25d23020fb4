"""The operations files in deploy/ are valid and reference only metrics the service exports.

``promtool`` (Debian's ``prometheus`` package, installed by ``.ci/run``) is part of the test
setup: these tests fail, not skip, when it is missing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from segstream.observability import telemetry
from tests.promql import metric_names

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "segstream-dashboard.json"

SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
}


def exported_sample_names() -> set[str]:
    """Every sample name the registry's families can produce (labelled or not, set or not)."""
    names = set()
    for family in telemetry.REGISTRY.collect():
        names |= {family.name + suffix for suffix in SAMPLE_SUFFIXES[family.type]}
    return names


def rule_expressions(text: str) -> list[str]:
    """The ``expr`` of every rule in a rules file: inline, or a ``|`` block scalar."""
    lines = text.splitlines()
    found = []
    for number, line in enumerate(lines):
        key, _, value = line.strip().removeprefix("- ").partition(":")
        if key != "expr":
            continue
        if value.strip() != "|":
            found.append(value.strip())
            continue
        indent = line.index("expr")
        block = []
        for following in lines[number + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            block.append(following.strip())
        found.append(" ".join(block))
    return found


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_expressions(board: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in board["panels"] for target in panel.get("targets", [])]


def variable_metrics(board: dict[str, Any]) -> set[str]:
    """Metrics the template variables' ``label_values(metric{...}, label)`` queries read."""
    definitions = [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]
    return {re.findall(r"label_values\(\s*([A-Za-z_:][\w:]*)", d)[0] for d in definitions}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail(
            "promtool not found: install Debian's prometheus package (.ci/run does)",
            pytrace=False,
        )
    return subprocess.run(
        [binary, *args],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_metric_names_finds_selectors_only() -> None:
    expr = (
        'sum by (le) (rate(a_bucket{job="x", b=~"c_d"}[5m])) > 2 * avg_over_time(b_total[7d])'
        " and on (shop) c offset 5m unless histogram_quantile(0.5, d) > bool 1e3"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c", "d"}


def test_rule_expressions_reads_inline_and_block_expressions() -> None:
    text = (
        "rules:\n  - expr: up == 0\n    for: 1m\n  - expr: |\n      a > 1\n      and b\n    x: y\n"
    )
    assert rule_expressions(text) == ["up == 0", "a > 1 and b"]


def test_exported_names_expand_families_by_type() -> None:
    names = exported_sample_names()
    assert {
        "segstream_events_total",
        "segstream_processing_seconds_bucket",
        "segstream_processing_seconds_count",
        "segstream_consumer_lag_records",
    } <= names
    assert "segstream_events" not in names
    assert "segstream_consumer_lag_records_total" not in names


def test_prometheus_config_is_valid() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_are_valid() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_use_only_exported_metrics_and_up() -> None:
    text = (PROMETHEUS_DIR / "alerts.yml").read_text()
    expressions = rule_expressions(text)
    assert len(expressions) == text.count("- alert:")
    used = set().union(*(metric_names(expr) for expr in expressions))
    assert used - exported_sample_names() == {"up"}


def test_alerts_cover_the_operations_issue() -> None:
    text = (PROMETHEUS_DIR / "alerts.yml").read_text()
    alerts = set(re.findall(r"- alert: (\w+)", text))
    assert alerts >= {
        "SegstreamWorkerDown",
        "SegstreamConsumerLagGrowing",
        "SegstreamDeadLettersHigh",
        "SegstreamChurnSpike",
    }


def test_dashboard_uses_only_exported_metrics() -> None:
    board = dashboard()
    used = set().union(*(metric_names(e) for e in dashboard_expressions(board)))
    used |= variable_metrics(board)
    assert used - {"up"} <= exported_sample_names(), used - exported_sample_names()


def test_dashboard_shows_every_exported_family() -> None:
    used = set().union(*(metric_names(e) for e in dashboard_expressions(dashboard())))
    families = {family.name for family in telemetry.REGISTRY.collect()}
    families -= {f.name for f in telemetry.PROCESS.collect()}  # the client's standard ones
    shown = {
        family.name
        for family in telemetry.REGISTRY.collect()
        for suffix in SAMPLE_SUFFIXES[family.type]
        if family.name + suffix in used
    }
    assert families - shown == set()


def test_dashboard_is_portable() -> None:
    board = dashboard()
    assert 36 <= board["schemaVersion"] <= 41
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["shop"]["type"] == "query"
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert all(t["datasource"]["uid"] == "${DS_PROMETHEUS}" for t in panel["targets"])
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
