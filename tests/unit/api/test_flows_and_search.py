"""Segment flows, customer search and the shop list, answered from a pipeline fed
in-process with simulated shops; flows checked against a recount of the changes the
pipeline emitted (what the change topic carries)."""

from __future__ import annotations

from collections import Counter
from datetime import date
from functools import cache

import pytest

from harness.stores import through_codecs
from segstream.api import queries
from segstream.domain.changes import Source
from segstream.domain.contracts import EVENT_TYPES
from segstream.engine.pipeline import Pipeline
from segstream.settings import Settings
from segstream.state.keyspace import shop_partition
from segstream.tools.publish import encode
from segstream.tools.simulation.generator import SimulationConfig, generate
from segstream.tools.simulation.shops import shops_per_kind

Moves = Counter[tuple[str, str, str | None, str | None, date]]


@cache
def fed() -> tuple[Pipeline, Moves]:
    """Two shops' 200 days, and every change the pipeline emitted, by shop, model,
    previous, current and day."""
    shops = tuple(shops_per_kind(1))[:2]
    simulation = generate(SimulationConfig(seed=5, shops=shops, customers_per_shop=50, days=200))
    pipeline = Pipeline(Settings(), {}, {}, {}, {})
    moves: Moves = Counter()
    partitions = pipeline.settings.topic_partitions
    for offset, (role, value) in enumerate(simulation.outbox()):
        if isinstance(value, bytes):
            continue  # the simulation's malformed records: dead letters, no change
        source = Source(role, shop_partition(value["shop_id"], partitions), offset)
        outcome = pipeline.handle(encode(value), EVENT_TYPES[role], source, None)
        for c in outcome.changes:
            moves[c.shop_id, c.model, c.previous, c.current, c.changed_at.date()] += 1
    pipeline.flush()
    through_codecs(pipeline.tables)
    return pipeline, moves


def _recount(
    moves: Moves, shop: str, model: str, first: date, end: date
) -> Counter[tuple[str | None, str | None]]:
    counted: Counter[tuple[str | None, str | None]] = Counter()
    for (s, m, previous, current, day), n in moves.items():
        if s == shop and m == model and first <= day < end:
            counted[previous, current] += n
    return counted


def test_every_months_flows_of_every_model_equal_a_recount_of_the_changes() -> None:
    pipeline, moves = fed()
    checked = 0
    for shop in {key[0] for key in moves}:
        now = pipeline.reader.stream_time(shop)
        assert now is not None
        for model in {key[1] for key in moves if key[0] == shop}:
            for month in range(1, 13):
                start = date(now.year if month <= now.month else now.year - 1, month, 1)
                try:
                    answer = queries.flows(
                        pipeline.reader, shop, {"model": model, "start": start.isoformat()}
                    )
                except queries.NotFoundError:
                    continue  # not kept, or after the stream day
                first, end = date.fromisoformat(answer["start"]), date.fromisoformat(answer["end"])
                counted = {(f["from"], f["to"]): f["customers"] for f in answer["flows"]}
                assert counted == dict(_recount(moves, shop, model, first, end)), (
                    shop,
                    model,
                    start,
                )
                entered = Counter[str]()
                for (_, to), n in counted.items():
                    if to is not None:
                        entered[to] += n
                assert answer["entered"] == dict(sorted(entered.items()))
                checked += bool(counted)
    assert checked >= 10


def test_flows_name_a_model_the_shop_has() -> None:
    pipeline, moves = fed()
    shop = next(iter(moves))[0]
    with pytest.raises(queries.BadRequestError, match="name a model"):
        queries.flows(pipeline.reader, shop, {})
    with pytest.raises(queries.NotFoundError, match="unknown model 'nope'; known: "):
        queries.flows(pipeline.reader, shop, {"model": "nope"})
    with pytest.raises(queries.NotFoundError, match="no such window kept"):
        queries.flows(pipeline.reader, shop, {"model": "lifecycle", "start": "2999-01-01"})


def test_a_search_lists_the_ids_with_the_prefix_in_order() -> None:
    pipeline, moves = fed()
    shop = next(iter(moves))[0]
    every = [state.customer_id for state in pipeline.reader.customers(shop)]
    prefix = every[0][:-1]
    expected = [c for c in every if c.startswith(prefix)]
    found = queries.search_customers(pipeline.reader, shop, {"prefix": prefix, "limit": "500"})
    assert found["customers"] == expected and not found["more"]
    cut = queries.search_customers(pipeline.reader, shop, {"prefix": prefix, "limit": "2"})
    assert cut["customers"] == expected[:2] and cut["more"] == (len(expected) > 2)
    none = queries.search_customers(pipeline.reader, shop, {"prefix": "\u00ff-nobody"})
    assert none["customers"] == [] and not none["more"]
    with pytest.raises(queries.BadRequestError, match="at most 128"):
        queries.search_customers(pipeline.reader, shop, {"prefix": "x" * 129})


def test_the_shop_list_counts_each_shops_customers() -> None:
    pipeline, moves = fed()
    listed = queries.shops(pipeline.reader, None)
    shops = sorted({key[0] for key in moves})
    assert [row["shop_id"] for row in listed] == shops
    for row in listed:
        assert row["customers"] == sum(1 for _ in pipeline.reader.customers(row["shop_id"]))
        assert row["customers"] > 0
    assert [row["shop_id"] for row in queries.shops(pipeline.reader, shops[1])] == [shops[1]]
    assert queries.shops(pipeline.reader, "no-such-shop") == []
