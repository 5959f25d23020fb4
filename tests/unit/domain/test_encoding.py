"""The one compact-JSON encoder: its bytes are pinned, and they are what the three encoders
it replaced produced (the publisher's, the worker's outputs', the test harness's)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.kafka_io import encode_value
from segstream.domain.changes import Cause, SegmentChange
from segstream.domain.encoding import compact_json
from segstream.engine.pipeline import Outcome
from segstream.settings import Settings
from segstream.stream.runner import output_records
from segstream.tools.publish import encode

VALUE = {
    "shop_id": "tea-1",
    "customer_id": "Zoë 顧客 \U0001f600",
    "amount": 12.5,
    "n": 3,
    "ok": True,
    "none": None,
    "list": [1, 2.0, 'a"b\\c\n\t'],
    "nested": {"z": 1, "a": 2},
}
PINNED = (
    b'{"shop_id":"tea-1","customer_id":"Zo\xc3\xab \xe9\xa1\xa7\xe5\xae\xa2 \xf0\x9f\x98\x80",'
    b'"amount":12.5,"n":3,"ok":true,"none":null,"list":[1,2.0,"a\\"b\\\\c\\n\\t"],'
    b'"nested":{"z":1,"a":2}}'
)


def former_publish(value: Any) -> bytes:
    """``tools.publish.encode`` and ``stream.wiring.to_bytes`` before issue 27."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def former_harness(value: Any) -> bytes:
    """``harness.kafka_io.encode_value`` before issue 27: it escaped every character from
    DEL (U+007F) on as ``\\uXXXX``; its callers send only printable ASCII text, for which
    the bytes are the same."""
    return json.dumps(value, separators=(",", ":")).encode()


def test_the_bytes_are_pinned() -> None:
    assert compact_json(VALUE) == PINNED == former_publish(VALUE)


def test_the_publisher_the_outputs_and_the_harness_use_it() -> None:
    assert encode(VALUE) == PINNED
    assert encode_value(VALUE) == PINNED
    at = datetime(2026, 3, 1, tzinfo=UTC)
    change = SegmentChange("Zoë-1", "c-ü", "lifecycle", None, "active", at, Cause("event"), None)
    records = output_records(Settings(), Outcome("processed", changes=[change]))
    assert records[0].value == former_publish(change.to_json())


def documents(text: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects whose strings are drawn from ``text``."""
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
    nested = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
        max_leaves=8,
    )
    return st.dictionaries(text, nested, max_size=6)


ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]))  # lone surrogates: no UTF-8
ASCII_TEXT = st.text(st.characters(max_codepoint=126))  # from DEL on the harness escaped


@settings(max_examples=100, deadline=None)
@given(documents(ANY_TEXT))
def test_any_document_encodes_as_the_publisher_and_the_outputs_encoded_it(
    value: dict[str, Any],
) -> None:
    assert compact_json(value) == former_publish(value)


@settings(max_examples=100, deadline=None)
@given(documents(ASCII_TEXT))
def test_an_ascii_document_encodes_as_the_harness_encoded_it(value: dict[str, Any]) -> None:
    assert encode_value(value) == former_harness(value)
