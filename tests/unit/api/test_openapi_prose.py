"""The figures deploy/openapi.json's prose quotes are the code's.

test_openapi.py checks the document's structure, routes and schemas against the code; this
checks its sentences: every setting the prose names exists, every default it quotes beside
a setting is that setting's default, and the limits and thresholds it states are the
constants and defaults the code uses. (The prose once said shops were re-evaluated "every 24
hours", an interval no code had.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from segstream.api.definitions import APPLY_WAIT_S
from segstream.api.edge import DETAIL_MAX_CHARS, SHOWN_CHARS
from segstream.engine.pipeline import MAX_DEFINITIONS
from segstream.experiments.live import MAX_EXPERIMENTS
from segstream.learning.lifetime import SAMPLE_SIZE
from segstream.segments.defined.rules import MAX_DEPTH, MAX_NODES
from segstream.settings import Settings

SPEC = json.loads((Path(__file__).resolve().parents[3] / "deploy" / "openapi.json").read_text())
DEFAULTS = Settings.model_construct()
NUMBER = r"(?<![\w-])(\d[\d,]*(?:\.\d+)?)"
SETTING = r"`?(SEGSTREAM_[A-Z_]+|[a-z]+(?:_[a-z]+)+)`?"
BESIDE = [
    re.compile(rf"{NUMBER} (?:seconds|days) \({SETTING}\)"),
    re.compile(rf"{NUMBER} seconds behind the wall clock: {SETTING}"),
    re.compile(rf"labelled / {NUMBER} \({SETTING}\)"),
    re.compile(rf"\({SETTING}, {NUMBER} days by default"),
    re.compile(rf"{SETTING} buying customers \({NUMBER} by default"),
]
"""A figure quoted beside the setting it is the default of (either order)."""


def descriptions(node: Any) -> list[str]:
    """Every ``description`` string of the document, depth first."""
    if isinstance(node, dict):
        own = [node["description"]] if isinstance(node.get("description"), str) else []
        return own + [text for value in node.values() for text in descriptions(value)]
    if isinstance(node, list):
        return [text for value in node for text in descriptions(value)]
    return []


PROSE = "\n".join(descriptions(SPEC))
SEGMENTS = SPEC["components"]["schemas"]["Segments"]["properties"]


def field_of(name: str) -> str:
    """The Settings field a variable (``SEGSTREAM_X``) or a bare field name refers to."""
    return name.removeprefix("SEGSTREAM_").lower()


def number(text: str) -> float:
    return float(text.replace(",", ""))


def numbers(text: str) -> list[float]:
    return [number(found) for found in re.findall(r"\d+(?:\.\d+)?", text)]


def test_every_setting_the_prose_names_exists() -> None:
    named = set(re.findall(r"SEGSTREAM_[A-Z_]+", PROSE))
    named -= {"SEGSTREAM_LIFECYCLE_"}  # the family, SEGSTREAM_LIFECYCLE_*
    assert named
    unknown = {name for name in named if field_of(name) not in Settings.model_fields}
    assert unknown == set()


def test_every_default_quoted_beside_its_setting_is_the_settings_default() -> None:
    quoted: list[tuple[str, float]] = []
    for pattern in BESIDE:
        for first, second in pattern.findall(PROSE):
            value, name = (first, second) if first[0].isdigit() else (second, first)
            if field_of(name) in Settings.model_fields:
                quoted.append((field_of(name), number(value)))
    assert {name for name, _ in quoted} >= {
        "wall_clock_interval_s",
        "wall_clock_live_s",
        "metrics_allowed_lateness_days",
        "churn_horizon_days",
        "metrics_retention_days",
        "rfm_min_customers",
        "churn_prior_weight_examples",
    }
    for name, value in quoted:
        assert value == getattr(DEFAULTS, name), name


def test_no_whole_shop_re_evaluation_interval_is_promised() -> None:
    assert not re.search(r"every \d+ hours", PROSE)
    assert "re-evaluates all of a shop's customers" not in PROSE


@pytest.mark.parametrize(
    ("pattern", "value"),
    [
        (r"(?:202 after|not applied within|did not apply it within) (\d+) seconds", APPLY_WAIT_S),
        (r"the (\d+) segments a shop may define", MAX_DEFINITIONS),
        (r"a shop runs at most (\d+)", MAX_EXPERIMENTS),
        (r"at most (\d+) levels", MAX_DEPTH),
        (r"levels and (\d+) nodes", MAX_NODES),
        (r"a sample of at most ([\d,]+) of its customers", SAMPLE_SIZE),
        (r"quoting at most (\d+) characters", SHOWN_CHARS),
        (r"of it; at most (\d+) characters", DETAIL_MAX_CHARS),
    ],
)
def test_every_limit_the_prose_states_is_the_codes(pattern: str, value: float) -> None:
    found = re.findall(pattern, PROSE)
    assert found, pattern
    assert {number(text) for text in found} == {value}


def test_the_lifecycle_thresholds_are_the_settings_defaults() -> None:
    described = numbers(SEGMENTS["lifecycle"]["description"])
    assert described == [
        DEFAULTS.lifecycle_churned_days,
        DEFAULTS.lifecycle_won_back_days,
        DEFAULTS.lifecycle_cadence_multiple,
        DEFAULTS.lifecycle_at_risk_days,
        DEFAULTS.lifecycle_new_days,
        DEFAULTS.lifecycle_loyal_min_repeat_days,
    ]


def test_the_churn_risk_bands_are_the_settings_defaults() -> None:
    described = numbers(SEGMENTS["churn_risk"]["description"])
    assert described == [
        DEFAULTS.churn_horizon_days,
        DEFAULTS.churn_band_medium,
        DEFAULTS.churn_band_high,
        DEFAULTS.churn_band_high,
    ]
