"""States survive upgrades: bytes every format (and every older layout) wrote decode to
the same customer states with today's codec (golden files in ``data/``, written once by
:mod:`tests.unit.state.codec_fixtures`)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from segstream.state.codec import decode_state, encode_state
from tests.unit.state.codec_fixtures import path_of
from tests.unit.state.v1_layout import encode_v1

FORMATS = (1, 2)


def _fixtures(version: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(path_of(version).read_text(encoding="utf-8"))
    return found


ALL = [pytest.param(e, id=f"v{v}-{e['name']}") for v in FORMATS for e in _fixtures(v)]


@pytest.mark.parametrize("fixture", ALL)
def test_stored_bytes_decode_to_the_state_they_were_written_from(fixture: dict[str, Any]) -> None:
    state = decode_state(fixture["shop_id"], fixture["customer_id"], bytes.fromhex(fixture["hex"]))
    assert repr(state) == fixture["state"]


@pytest.mark.parametrize("fixture", ALL)
def test_a_decoded_state_round_trips_through_todays_encoder(fixture: dict[str, Any]) -> None:
    shop_id, customer_id = fixture["shop_id"], fixture["customer_id"]
    state = decode_state(shop_id, customer_id, bytes.fromhex(fixture["hex"]))
    assert decode_state(shop_id, customer_id, encode_state(state)) == state


@pytest.mark.parametrize("fixture", [e for e in _fixtures(1) if "_before_" not in e["name"]])
def test_the_frozen_format_1_encoder_writes_what_format_1_wrote(fixture: dict[str, Any]) -> None:
    """:mod:`tests.unit.state.v1_layout` (which the tests of older layouts use) is true to
    the bytes the format-1 encoder wrote."""
    raw = bytes.fromhex(fixture["hex"])
    assert encode_v1(decode_state(fixture["shop_id"], fixture["customer_id"], raw)) == raw
