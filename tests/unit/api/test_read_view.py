"""The query API reads without filling the write side's caches (issue 27, item 3).

A worker whose books were dropped (a rebalance, an aborted batch) answers the API from
the tables: it must answer as the worker holding the book does, and keep no book (nor
the partition priors a book loads) it would then carry and flush with every batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from typing import Any

from harness.stores import feed
from segstream.api import definitions, experiments, queries
from segstream.engine.pipeline import Pipeline
from segstream.engine.view import ReadView
from segstream.settings import Settings
from segstream.state.store import Tables
from segstream.tools.simulation.generator import SimulationConfig, generate
from segstream.tools.simulation.shops import shops_per_kind

SHOP = "coffee-roaster-1"
PREVIEW = {
    "schema_version": 1,
    "shop_id": SHOP,
    "segment_id": "likely-back",
    "name": "Likely back",
    "rule": {"field": "predictions.p_alive", "op": "gte", "value": 0.5},
}
"""A definition that reads the lifetime model (so its answer depends on the book)."""


@cache
def tables() -> Tables:
    """The tables of a worker that processed a simulated shop (books flushed)."""
    coffee = tuple(shop for shop in shops_per_kind(1) if shop.shop_id == SHOP)
    simulation = generate(SimulationConfig(seed=5, shops=coffee, customers_per_shop=25, days=200))
    found = Tables.of({}, {}, {}, {})
    feed(Pipeline(Settings(), found), simulation.outbox())
    return found


def restarted() -> Pipeline:
    """A worker over copies of those tables, holding no book."""
    kept = tables()
    copies = (
        {key: table[key] for key in table}
        for table in (kept.customers, kept.shops, kept.models, kept.metrics)
    )
    return Pipeline(Settings(), Tables.of(*copies))


def reads(reader: ReadView) -> dict[str, Callable[[], Any]]:
    """Every read the API makes of the shop."""
    customer_id = next(iter(reader.customers(SHOP))).customer_id
    members = "lifecycle", "active"
    today = queries.shop_now(reader, SHOP).date()
    body = json.dumps(PREVIEW).encode()
    return {
        "customer": lambda: queries.customer(reader, SHOP, customer_id),
        "segments": lambda: queries.segment_sizes(reader, SHOP),
        "members": lambda: queries.segment_members(reader, SHOP, *members, {}),
        "preview": lambda: queries.definition_preview(reader, SHOP, body, {}),
        "metrics": lambda: queries.window_metrics(reader, SHOP, {"start": str(today)}),
        "cohorts": lambda: queries.cohorts(reader, SHOP, {"months": "3"}),
        "journey": lambda: queries.journey(reader, SHOP, {"months": "3"}),
        "models": lambda: queries.model_quality(reader, SHOP),
        "definitions": lambda: definitions.listing(reader, SHOP),
        "experiments": lambda: experiments.listing(reader, SHOP),
    }


def test_an_api_read_keeps_no_book_and_no_prior() -> None:
    pipeline = restarted()
    for name, read in reads(pipeline.reader).items():
        read()
        assert pipeline.books.find(SHOP) is None, f"the {name} read kept the shop's book"
        assert pipeline.books.cached == {}, name
        assert pipeline.books._priors == {}, f"the {name} read kept the partition's priors"


def test_a_worker_without_the_book_answers_as_the_one_holding_it() -> None:
    holding, cold = restarted(), restarted()
    partition = int(holding.shops[SHOP]["partition"])
    book = holding.book(SHOP, partition)
    cold_reads = reads(cold.reader)
    for name, read in reads(holding.reader).items():
        assert cold_reads[name]() == read(), name
    assert holding.book(SHOP) is book, "a read leaves the writer's book in place"
    assert not book.dirty, "and does not mark it for a write"


def test_a_read_sees_the_book_in_memory_not_only_the_tables() -> None:
    """What the writer holds and has not flushed yet is what the API shows."""
    pipeline = restarted()
    book = pipeline.book(SHOP)
    model, counts = next((m, c) for m, c in book.sizes.items() if c)
    segment = next(iter(counts))
    counts[segment] += 1000  # as a batch would before its flush
    answered = queries.segment_sizes(pipeline.reader, SHOP)["models"][model][segment]
    assert answered == counts[segment]
