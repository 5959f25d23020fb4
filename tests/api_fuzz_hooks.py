"""Schemathesis hooks of the API property run (``tests/api_fuzz.py``): what JSON Schema
cannot say about a request, made true of the requests generated as valid.

The document states each of these in prose and the service refuses a request that breaks
one (400 or 422, unit-tested in ``tests/unit/api``); a generator that knows only the
schemas would call those refusals failures. Only positive cases are touched, so every
invalid request the generator makes still reaches the service as it was made:

- the body's ``shop_id``, ``segment_id`` and ``experiment_id`` are the path's;
- an experiment's arm names differ and its shares sum to 1; ``ends_at`` is after
  ``starts_at``; it runs on a built-in model (:data:`BUILT_IN_TARGET`), not on a
  ``defined:<id>`` one;
- ``between`` takes ``[low, high]`` with low <= high, a range's lower bound is at most
  its upper bound;
- a webhook's ``url`` names a public host (:data:`WEBHOOK_URL`): which hosts are loopback
  or private addresses, and that a URL has a host at all, the schema cannot say;
- a rule tree has at most ``MAX_DEPTH`` levels and ``MAX_NODES`` nodes (the schema's
  ``$ref`` recursion cannot bound either): deeper nodes become a leaf, children past the
  node budget are dropped.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import schemathesis
from schemathesis import Case, HookContext

from segstream.domain.events import format_time, parse_time
from segstream.segments.defined import MAX_DEPTH, MAX_NODES

BUILT_IN_TARGET = ("lifecycle", "at_risk")
"""What an experiment generated on a ``defined:<id>`` model runs on instead: whether a
defined segment exists depends on the run's own earlier requests (schemathesis reuses the
ids it saw in answers, and deletes them too), and an experiment on one that does not is
refused (422, unit-tested)."""
WEBHOOK_URL = "https://hooks.example.com/segstream"
"""The URL a webhook generated as valid gets (the service refuses private addresses)."""
RANGE_LOW, RANGE_HIGH = ("gt", "gte"), ("lt", "lte")
LEAF = {"field": "behaviour.order_count", "op": "exists"}
"""What a combinator past the depth limit becomes: a leaf valid on every shop."""


def _positive(case: Case[Any]) -> bool:
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive


def _ordered(node: Any) -> Any:
    """``node`` with every between pair and range put in order."""
    if isinstance(node, list):
        return [_ordered(item) for item in node]
    if not isinstance(node, dict):
        return node
    fixed = {key: _ordered(value) for key, value in node.items()}
    value = fixed.get("value")
    if fixed.get("op") == "between" and isinstance(value, list) and len(value) == 2:
        fixed["value"] = sorted(value)
    lows = [fixed[k] for k in RANGE_LOW if isinstance(fixed.get(k), int | float)]
    highs = [fixed[k] for k in RANGE_HIGH if isinstance(fixed.get(k), int | float)]
    if lows and highs and max(lows) >= min(highs):
        top = max(lows)
        top += max(1.0, abs(top) * 1e-9)  # above every lower bound, also past a float's step
        for key in RANGE_HIGH:
            if key in fixed:
                fixed[key] = top
    return fixed


def _bounded(rule: Any) -> Any:
    """``rule`` cut to at most MAX_DEPTH levels and MAX_NODES nodes, depth first."""
    budget = [MAX_NODES]

    def cut(node: Any, level: int) -> Any:
        if not isinstance(node, dict):
            return node
        budget[0] -= 1
        combinators = [key for key in ("all", "any", "not") if key in node]
        if not combinators:
            return node
        if level >= MAX_DEPTH or budget[0] < 1:
            return dict(LEAF)
        key = combinators[0]
        if key == "not":
            return {**node, "not": cut(node["not"], level + 1)}
        children = node[key] if isinstance(node[key], list) else []
        kept: list[Any] = []
        for child in children:
            if budget[0] < 1 and kept:
                break
            kept.append(cut(child, level + 1))
        return {**node, key: kept} if kept else node

    return cut(rule, 1)


def _arms(arms: Any) -> Any:
    if not isinstance(arms, list) or not arms:
        return arms
    total = sum(arm.get("share", 0) for arm in arms if isinstance(arm, dict))
    fixed = []
    for index, arm in enumerate(arms):
        if not isinstance(arm, dict):
            return arms
        fixed.append({**arm, "name": f"arm{index}", "share": 1 / len(arms)})
    return fixed if total > 0 else arms


def _times(body: dict[str, Any]) -> None:
    """``ends_at`` a day after ``starts_at`` when it is not after it."""
    try:
        start = parse_time(body["starts_at"])
        end = parse_time(body["ends_at"])
    except (KeyError, TypeError, ValueError, OverflowError):
        return
    if end <= start:
        body["ends_at"] = format_time(start + timedelta(days=1))


@schemathesis.hook
def map_case(context: HookContext, case: Case[Any]) -> Case[Any]:
    """Make the prose constraints of a positive case's body true (see the module)."""
    return _constrained(case)


@schemathesis.hook
def before_add_examples(context: HookContext, examples: list[Case[Any]]) -> None:
    """The same for the cases made of the document's examples (``map_case`` does not see
    them): an example body paired with another example's path ids."""
    examples[:] = [_constrained(case) for case in examples]


def _constrained(case: Case[Any]) -> Case[Any]:
    if not _positive(case) or not isinstance(case.body, dict):
        return case
    body = _ordered(case.body)
    if "rule" in body:
        body["rule"] = _bounded(body["rule"])
    path = case.path_parameters or {}
    for name in ("shop_id", "segment_id", "experiment_id"):
        if name in body and name in path:
            body[name] = path[name]
    if "url" in body:
        body["url"] = WEBHOOK_URL
    if "arms" in body:
        body["arms"] = _arms(body["arms"])
        _times(body)
    model = body.get("model")
    if isinstance(model, str) and model.startswith("defined:"):
        body["model"], body["segment"] = BUILT_IN_TARGET
    case.body = body
    return case
