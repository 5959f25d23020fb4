"""No record grows with a shop: a shop of 100,000 customers, run through the pipeline and
encoded exactly as the worker writes its tables, keeps every record far below the broker's
1 MB limit (the bound docs/guarantees.md documents: 64 KiB for anything per shop or per partition).

In-process (no broker needed), but slow (about a minute), so it runs with the integration
suite."""

from __future__ import annotations

import pickle
import random
import time
from datetime import UTC, date, datetime, timedelta

from segstream.domain.changes import Source
from segstream.domain.events import Order
from segstream.engine.pipeline import Pipeline
from segstream.segments.rfm import RfmModel, values
from segstream.settings import Settings
from segstream.state.codec import encode
from segstream.state.keyspace import shop_partition
from segstream.stream.tables import CODECS
from tests.factories import encoded, order
from tests.states import state

CUSTOMERS = 100_000
PER_SHOP_BOUND = 64 * 1024
"""Documented bound of every per-shop and per-partition record (docs/guarantees.md)."""


def test_a_100k_customer_shop_writes_no_record_above_the_bound() -> None:
    tables: tuple[dict[str, object], ...] = ({}, {}, {}, {})
    pipeline = Pipeline(Settings(), *tables)
    partition = shop_partition("big-shop", pipeline.settings.topic_partitions)
    rng = random.Random(1)
    start, began = datetime(2026, 11, 2, tzinfo=UTC), time.monotonic()
    for n in range(CUSTOMERS):  # one day of a big shop's first orders, 10 batches
        at = start + timedelta(seconds=n * 0.5)
        amount = round(rng.lognormvariate(3.5, 0.8), 2)
        raw = encoded(order(f"c-{n:06d}", at, f"e-{n}", amount, shop="big-shop", order_id=f"o-{n}"))
        pipeline.handle(raw, Order, Source("orders", partition, n), None)
        if n % (CUSTOMERS // 10) == 0:
            pipeline.flush()
    pipeline.flush()
    largest = {}
    for name, table in zip(("customers", "shops", "models", "metrics"), tables, strict=True):
        codec = CODECS[name]
        largest[name] = max(len(codec.encode(key, value)) for key, value in table.items())
    print(f"{CUSTOMERS} customers in {time.monotonic() - began:.0f} s; largest records {largest}")
    assert len(tables[0]) == CUSTOMERS
    assert largest["customers"] < 1024
    assert max(largest["shops"], largest["models"], largest["metrics"]) < PER_SHOP_BOUND


def test_the_rfm_distribution_grows_with_distinct_values_not_customers() -> None:
    """Three years of last purchase days and spend from a few cents to 100,000: what RFM
    keeps per shop is bounded by the days of history and 1 % spend steps."""
    rng = random.Random(2)
    model = RfmModel()
    first = date(2024, 1, 1).toordinal()
    for _ in range(CUSTOMERS):
        model.observe(
            None,
            values(first + rng.randrange(3 * 365), rng.randint(1, 60), rng.uniform(0.1, 1e5)),
        )
    size = len(pickle.dumps(model, protocol=5))
    print(f"RFM distribution of {CUSTOMERS} customers: {size} bytes")
    assert size < PER_SHOP_BOUND


def test_a_customer_record_grows_only_with_their_own_history() -> None:
    """Ten years of weekly orders: about 7 bytes per purchase day, ids bounded."""
    days = {(date(2016, 1, 4) + timedelta(weeks=w)).isoformat(): 24.9 for w in range(520)}
    customer = state(purchase_days=days, order_count=520, total_spend=520 * 24.9)
    size = len(CODECS["customers"].encode("shop/c-1", customer))
    assert size < 520 * 8 + 512, size
    assert len(encode({"k": "v"})) < 16
