"""Reading PromQL just enough to know which metrics an expression selects.

Shared by the unit checks of the deploy files against the exported families and by the
integration test that runs the dashboard's queries against a real Prometheus.
"""

from __future__ import annotations

import re

PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENTIFIER = re.compile(r"(?<![\w.$])[A-Za-z_:][\w:]*")


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: identifiers that are not functions,
    keywords, label names in matchers or grouping clauses, strings or durations."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = GROUPING.sub("", expr)
    return {
        match.group()
        for match in IDENTIFIER.finditer(expr)
        if match.group() not in PROMQL_KEYWORDS and not expr[match.end() :].lstrip().startswith("(")
    }
