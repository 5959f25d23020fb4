"""The state codec's format 2: every field by its number, defaults left out, numbers a
later release adds left alone (issue 27 item 3, issue 30 item 3)."""

from __future__ import annotations

from dataclasses import fields

import pytest

from segstream.domain.customer import CustomerState
from segstream.state.codec import FIELDS, FORMAT, decode, decode_state, encode, encode_state
from tests.unit.state.codec_fixtures import every_field


def test_every_field_of_a_customer_state_has_a_number_of_its_own() -> None:
    stored = [field.name for field in FIELDS.values()]
    names = [f.name for f in fields(CustomerState) if f.name not in ("shop_id", "customer_id")]
    assert sorted(stored) == sorted(names)
    assert 0 not in FIELDS  # the format's key


def test_a_fresh_state_stores_its_format_alone() -> None:
    assert decode(encode_state(CustomerState("tea-1", "c-1"))) == {0: FORMAT}


def test_a_field_at_its_default_is_left_out_and_one_away_from_it_is_kept() -> None:
    state = CustomerState("tea-1", "c-1", marketing_opt_in=False, cancel_reason="")
    assert set(decode(encode_state(state))) == {0, 3, 21}
    assert decode_state("tea-1", "c-1", encode_state(state)) == state


def test_a_field_number_from_a_later_release_is_left_out() -> None:
    state = every_field()
    stored = decode(encode_state(state)) | {max(FIELDS) + 1: [1, 2, 3]}
    assert decode_state(state.shop_id, state.customer_id, encode(stored)) == state


@pytest.mark.parametrize("version", [0, 1, 3, None])
def test_a_format_this_release_does_not_know_is_refused(version: int | None) -> None:
    with pytest.raises(ValueError, match="customer state format"):
        decode_state("tea-1", "c-1", encode({0: version, 1: []}))


@pytest.mark.parametrize("value", [[2, None, [], [], None], 7, "state"])
def test_stored_bytes_that_are_no_state_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="customer state format"):
        decode_state("tea-1", "c-1", encode(value))
