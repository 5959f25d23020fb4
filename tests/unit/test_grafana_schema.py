"""The Grafana dashboard fits Grafana's own dashboard schema.

No Grafana server can be installed on the project's machines, so the dashboard is checked by
``grafana-dashboard-check`` (``deploy/grafana/check``, built into ``.venv/bin`` by
``make setup``): Grafana's dashboard, panel-type and data-source schemas as compiled into the
Grafana Foundation SDK, decoding strictly. These tests fail, not skip, when it is missing.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "segstream-dashboard.json"
CHECK = Path(sys.executable).parent / "grafana-dashboard-check"


def check(path: Path) -> subprocess.CompletedProcess[str]:
    """Run the schema check on one dashboard file."""
    if not CHECK.exists():
        pytest.fail(f"{CHECK} missing: `make setup` builds it (needs Go)", pytrace=False)
    return subprocess.run(
        [str(CHECK), str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def check_variant(tmp_path: Path, board: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Run the schema check on a changed copy of the dashboard."""
    path = tmp_path / "variant.json"
    path.write_text(json.dumps(board))
    return check(path)


def test_dashboard_fits_grafanas_schema() -> None:
    result = check(DASHBOARD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{DASHBOARD}: valid"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b["panels"][1].update(gridPoss={}), "unexpected field 'gridPoss'"),
        (lambda b: b["panels"][1].update(type="timeseriez"), 'panel type "timeseriez"'),
        (lambda b: b["panels"][1]["datasource"].update(type="promethus"), "promethus"),
        (lambda b: b["panels"][1]["options"]["legend"].pop("calcs"), "legend.calcs: required"),
        (lambda b: b["panels"][1]["targets"][0].update(exprr="up"), "unexpected field 'exprr'"),
        (lambda b: b["panels"][1]["fieldConfig"]["defaults"].update(unitt="s"), "'unitt'"),
        (lambda b: b["panels"][1]["gridPos"].update(w=30), "gridPos.w: must be <= 24"),
        (lambda b: b["templating"]["list"][1].update(refersh=2), "unexpected field 'refersh'"),
    ],
    ids=["field", "panel-type", "datasource", "required", "query", "field-config", "range", "var"],
)
def test_the_check_rejects_what_grafanas_schema_rejects(
    tmp_path: Path, change: Callable[[dict[str, Any]], object], message: str
) -> None:
    board = copy.deepcopy(json.loads(DASHBOARD.read_text()))
    change(board)
    result = check_variant(tmp_path, board)
    assert result.returncode == 1, result.stdout
    assert message in result.stdout
