"""Segment flows: the ledger counts each segment change on its day, per model, and a
window's flows are the sum of its days (the recount of the change topic's changes)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from segstream.domain.contracts import validate_output
from segstream.metrics.flows import flows_of, move_name
from segstream.metrics.ledger import MetricsLedger, UnknownShopError
from segstream.metrics.snapshot import snapshot_payload
from segstream.metrics.windows import BadWindowError
from tests.unit.metrics.builders import SHOP, Shop, at, cancel, order, plan, signup, tier_and_status


def _shop(buckets: dict[str, dict[str, Any]] | None = None) -> tuple[MetricsLedger, Shop]:
    ledger = MetricsLedger({} if buckets is None else buckets, retention_days=60)
    return ledger, Shop(ledger, tier_and_status)


def _pairs(ledger: MetricsLedger, model: str, first: str, grain: str = "month") -> set[Any]:
    flows = ledger.flows(SHOP, model, grain, date.fromisoformat(first))
    return {(f.source, f.target, f.customers) for f in flows.flows}


def test_each_change_counts_on_its_day_in_its_model() -> None:
    ledger, shop = _shop()
    shop.send(
        signup("c1", at("2025-03-01"), tier="basic"),
        signup("c2", at("2025-03-02"), tier="basic"),
        order("c1", at("2025-03-10"), new_plan=plan(50.0, tier="premium")),
        cancel("c2", at("2025-03-12")),
        order("c1", at("2025-04-02")),
    )
    assert _pairs(ledger, "tier", "2025-03-01") == {(None, "basic", 2), ("basic", "premium", 1)}
    status = {(None, "active", 2), ("active", "cancelled", 1)}
    assert _pairs(ledger, "status", "2025-03-01") == status
    march = ledger.flows(SHOP, "tier", "month", date(2025, 3, 1))
    assert (march.entered, march.left) == ({"basic": 2, "premium": 1}, {"basic": 1})
    assert (march.start, march.end, march.complete) == (date(2025, 3, 1), date(2025, 4, 1), True)
    assert _pairs(ledger, "tier", "2025-03-10", grain="day") == {("basic", "premium", 1)}
    assert _pairs(ledger, "tier", "2025-04-01") == set()
    assert not ledger.flows(SHOP, "tier", "month", date(2025, 4, 1)).complete


def test_flows_expire_with_the_other_day_buckets() -> None:
    buckets: dict[str, dict[str, Any]] = {}
    ledger, shop = _shop(buckets)
    shop.send(signup("c1", at("2025-01-05"), tier="basic"), order("c1", at("2025-04-10")))
    assert not [key for key in buckets if "|day|2025-01-05|flow:" in key]
    with pytest.raises(BadWindowError, match="oldest kept day"):
        ledger.flows(SHOP, "tier", "month", date(2025, 1, 1))


def test_an_unknown_shop_has_no_flows() -> None:
    with pytest.raises(UnknownShopError):
        MetricsLedger({}).flows("nowhere", "tier", "month", date(2025, 1, 1))


def test_the_snapshot_carries_every_models_running_month() -> None:
    ledger, shop = _shop()
    shop.send(signup("c1", at("2025-03-01"), tier="basic"), cancel("c1", at("2025-03-05")))
    payload = snapshot_payload(SHOP, at("2025-03-05"), ledger)
    validate_output("metrics_snapshot", payload)
    by_model = {flows["model"]: flows for flows in payload["flows"]}
    assert by_model["status"]["flows"] == [
        {"from": None, "to": "active", "customers": 1},
        {"from": "active", "to": "cancelled", "customers": 1},
    ]
    assert by_model["tier"]["entered"] == {"basic": 1}
    assert by_model["tier"]["left"] == {}


def test_moves_name_both_sides_and_sort_largest_first() -> None:
    moves = {move_name("a", "b"): 1, move_name(None, "a"): 3, move_name("b", None): 0}
    assert [(f.source, f.target, f.customers) for f in flows_of(moves)] == [
        (None, "a", 3),
        ("a", "b", 1),
    ]


def test_state_from_a_release_before_flows_counts_from_its_next_record() -> None:
    buckets: dict[str, dict[str, Any]] = {}
    ledger, shop = _shop(buckets)
    shop.send(signup("c1", at("2025-03-01"), tier="basic"))
    for key in [k for k in buckets if "|day|" in k and "|flow:" in k]:
        del buckets[key]  # what an older release kept: no flow buckets,
    index = next(k for k in buckets if k.endswith("|index"))
    del buckets[index]["flows_since"]  # and an index without the day
    shop.send(cancel("c1", at("2025-04-10")))
    april = ledger.flows(SHOP, "status", "month", date(2025, 4, 1))
    assert (
        april.counted_from == date(2025, 4, 10) and april.to_json()["counted_from"] == "2025-04-10"
    )
    assert {(f.source, f.target) for f in april.flows} == {("active", "cancelled")}
    with pytest.raises(BadWindowError, match="counted from 2025-04-10"):
        ledger.flows(SHOP, "status", "month", date(2025, 3, 1))
