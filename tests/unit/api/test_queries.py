"""Query answers computed from a pipeline fed in-process with a simulated shop."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache

import pytest

from service.api import queries
from service.core.pipeline import Pipeline
from service.settings import Settings
from service.tools.simulation.generator import SimulationConfig, generate
from service.tools.simulation.shops import shops_per_kind
from tests.feed import feed

SHOP = "coffee-roaster-1"


@cache
def fed() -> tuple[Pipeline, dict[str, str]]:
    coffee = tuple(shop for shop in shops_per_kind(1) if shop.shop_id == SHOP)
    simulation = generate(SimulationConfig(seed=3, shops=coffee, customers_per_shop=60, days=300))
    pipeline = Pipeline(Settings(), {}, {}, {}, {})
    feed(pipeline, simulation.outbox())
    personas = {t.customer_id: t.persona for t in simulation.truth if t.shop_id == SHOP}
    return pipeline, personas


def lifetimes_by_persona(persona: str) -> list[dict[str, object]]:
    pipeline, personas = fed()
    answers = [queries.customer(pipeline, SHOP, c) for c, p in personas.items() if p == persona]
    return [a["lifetime"] for a in answers if a["lifetime"] is not None]  # type: ignore[misc]


def test_declining_big_spenders_are_flagged_cant_lose_and_loyal_customers_are_not() -> None:
    declining, loyal = lifetimes_by_persona("declining_big_spender"), lifetimes_by_persona("loyal")
    assert declining and loyal
    assert sum(bool(x["cant_lose"]) for x in declining) / len(declining) > 0.5
    assert not any(x["cant_lose"] for x in loyal)


def test_p_alive_is_high_for_loyal_customers_and_low_for_declining_ones() -> None:
    def mean(rows: list[dict[str, object]]) -> float:
        return sum(float(r["p_alive"]) for r in rows) / len(rows)  # type: ignore[arg-type]

    assert mean(lifetimes_by_persona("loyal")) > 0.8
    assert mean(lifetimes_by_persona("declining_big_spender")) < 0.3


def test_unknown_customer_and_shop_are_not_found() -> None:
    pipeline, _ = fed()
    with pytest.raises(queries.NotFoundError, match="nobody"):
        queries.customer(pipeline, SHOP, "nobody")
    with pytest.raises(queries.NotFoundError, match="no-shop"):
        queries.segment_sizes(pipeline, "no-shop")


def test_a_shops_lifetime_fit_is_reused_within_a_stream_day(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipeline, _ = fed()
    fits: list[datetime] = []
    real = queries._fit_shop

    def counting(pipeline: Pipeline, shop_id: str, now: datetime) -> object:
        fits.append(now)
        return real(pipeline, shop_id, now)

    monkeypatch.setattr(queries, "_fit_shop", counting)
    monkeypatch.setattr(queries, "_LIFETIME_FITS", {})
    now = queries.shop_now(pipeline, SHOP)
    for moment in (now, now + timedelta(hours=23), now + timedelta(hours=25), now):
        assert queries._shop_lifetime(pipeline, SHOP, moment) is not None
    # fitted at now, reused 23 h later, refitted after a day, refitted when time went back
    assert fits == [now, now + timedelta(hours=25), now]
