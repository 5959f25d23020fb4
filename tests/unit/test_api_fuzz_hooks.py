"""The API property run's hooks keep a generated rule inside the limits the service states."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from segstream.segments.defined import MAX_DEPTH, MAX_NODES
from segstream.segments.defined.rules import _check_size
from tests.api_fuzz_hooks import _bounded, _ordered

LEAVES = st.just({"count": "feedback", "op": "in", "value": [0.0, 0.0]})
RULES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.builds(lambda c: {"all": c}, st.lists(children, min_size=1, max_size=32)),
        st.builds(lambda c: {"any": c}, st.lists(children, min_size=1, max_size=32)),
        st.builds(lambda c: {"not": c}, children),
    ),
    max_leaves=400,
)


def _chain(levels: int) -> dict[str, Any]:
    rule: dict[str, Any] = {"count": "feedback", "op": "in", "value": [0.0, 0.0]}
    for _ in range(levels):
        rule = {"all": [rule]}
    return rule


def test_the_tree_schemathesis_made_in_ci_is_cut_to_the_depth_limit() -> None:
    _check_size(_bounded(_chain(9)), "rule")


def test_a_rule_inside_the_limits_is_left_as_it_is() -> None:
    rule = _chain(MAX_DEPTH - 1)
    assert _bounded(rule) == rule


@given(RULES)
def test_every_generated_rule_ends_inside_the_limits(rule: dict[str, Any]) -> None:
    _check_size(_bounded(rule), "rule")


def test_a_wide_tree_keeps_at_most_the_node_budget() -> None:
    rule = {"all": [{"any": [_chain(0)] * 32}] * 32}
    _check_size(_bounded(rule), "rule")
    assert MAX_NODES < 32 * 33


BOUNDS = st.dictionaries(
    st.sampled_from(["gt", "gte", "lt", "lte"]),
    st.floats(min_value=-1e300, max_value=1e300, allow_nan=False),
    min_size=2,
)


@given(BOUNDS)
def test_every_generated_range_is_put_in_order(bounds: dict[str, float]) -> None:
    """The range the contract run's seed hit once the webhook routes were added: every
    lower bound at most every upper bound, as the service requires."""
    fixed = _ordered({"amount": bounds})["amount"]
    lows = [fixed[k] for k in ("gt", "gte") if k in fixed]
    highs = [fixed[k] for k in ("lt", "lte") if k in fixed]
    assert not lows or not highs or max(lows) <= min(highs)


def test_the_range_the_contract_run_found_is_put_in_order() -> None:
    found = {
        "lt": -8478714632046607.0,
        "lte": 5.595054329550277e16,
        "gte": 5.595054329550277e16,
        "gt": -8478714632046608.0,
    }
    fixed = _ordered({"amount": found})["amount"]
    assert min(fixed["lt"], fixed["lte"]) > max(fixed["gt"], fixed["gte"])
