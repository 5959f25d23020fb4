"""The in-process harness runs the worker's codecs: what ``feed`` leaves in a test's
tables is what a worker would read back from its store (issue 27, item 5)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from harness.stores import feed, through_codecs
from segstream.engine.pipeline import Pipeline
from segstream.settings import Settings
from segstream.state.keyspace import customer_key
from segstream.state.store import Tables
from tests.factories import SHOP, order, signup

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)


def test_each_value_is_swapped_for_its_decoded_encoding() -> None:
    record = {"since": "2026-03-01", "counts": [1, 2]}
    tables = Tables.of({}, {SHOP: record})
    through_codecs(tables)
    assert tables.shops[SHOP] == record and tables.shops[SHOP] is not record


def test_a_value_the_codec_cannot_carry_fails() -> None:
    with pytest.raises(TypeError, match="set"):
        through_codecs(Tables.of({}, {SHOP: {"tags": {"a", "b"}}}))


def test_the_states_a_pipeline_is_fed_come_back_from_the_state_codec() -> None:
    customers: dict[str, Any] = {}
    pipeline = Pipeline(Settings(), customers, {}, {}, {})
    feed(pipeline, [("signups", signup("c-1", T0, "e-1"))])
    held = customers[customer_key(SHOP, "c-1")]
    feed(pipeline, [("orders", order("c-1", T0, "e-2"))])  # loads, changes and saves held
    state = customers[customer_key(SHOP, "c-1")]
    assert state is not held, "the table holds what the codec decoded, not the saved object"
    assert state == held and state.order_count == 1
