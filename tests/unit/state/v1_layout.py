"""The customer-state layout segstream wrote up to format 1: one positional MessagePack
array, and the shorter arrays older releases wrote (fields were appended over time).

A frozen copy of that encoder, for tests only: it writes the byte-exact states older
releases left in changelogs and local stores (``test_codec_fixtures`` checks it against
bytes the real encoder wrote), so decoding them can be tested after the format moved on.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from typing import Any

import msgpack

from segstream.domain.customer import EPOCH_DAY, CustomerState
from segstream.domain.events import CAMPAIGN_ACTIONS, CONTACT_CHANNELS, Plan

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ID = struct.Struct(">QI")
_TOUCH = struct.Struct(">IBBQ")
_SCORE = struct.Struct(">IB")
_MAX_CENTS = 2**63 - 1

LAYOUTS = {
    "consent": (16, 3),
    "segment_since": (17, 3),
    "statement_times": (18, 3),
    "touches": (21, 3),
    "scores": (22, 3),
    "referral_count": (23, 3),
    "enrolments": (23, 4),
    "journey": (24, 4),
}
"""Per field an older release did not write yet: the array length and number of counts
that release wrote (a state with neither enrolments nor touchpoints is 23 fields long in
format 1 itself)."""


def _time(when: datetime) -> int | float:
    seconds = (when - _EPOCH).total_seconds()
    whole = int(seconds)
    return whole if whole == seconds else seconds


def _optional_time(when: datetime | None) -> int | float | None:
    return None if when is None else _time(when)


def _amount(value: float) -> int | float:
    cents = value * 100
    if not abs(cents) <= _MAX_CENTS:
        return value
    whole = round(cents)
    return whole if whole / 100 == value else value


def _plan(plan: Plan) -> list[Any]:
    return [plan.plan_id, _amount(plan.price), plan.currency, plan.interval, plan.tier]


def fields_v1(state: CustomerState) -> list[Any]:
    """The format-1 array of ``state``, as format 1's encoder built it."""
    ids = b"".join(_ID.pack(h, day) for h, day in state.seen_ids)
    days: list[int | float] = []
    for day, amount in sorted(state.purchase_days.items()):
        days += [(day - EPOCH_DAY).days, _amount(amount)]
    fields: list[Any] = [
        1,
        None if state.first_seen_at is None else _time(state.first_seen_at),
        [_time(s) for s in state.signups],
        [[_time(o), _time(e)] for o, e in state.cancellations],
        state.cancel_reason,
        [[_time(at), *_plan(plan)] for at, plan in state.plan_history],
        [state.acquisition_channel, state.referred_by, state.preferred_channel],
        state.attributes,
        days,
        [
            state.order_count,
            state.renewal_count,
            state.discount_order_count,
            state.referral_count,
        ],
        _amount(state.total_spend),
        state.categories,
        ids,
        state.segments,
        state.memory,
        None if state.due_at is None else _time(state.due_at),
        state.marketing_opt_in,
        state.segment_since,
        {key: _time(at) for key, at in state.attribute_times.items()},
        _optional_time(state.preferred_channel_at),
        _optional_time(state.marketing_opt_in_at),
        b"".join(
            _TOUCH.pack(day, CAMPAIGN_ACTIONS.index(action), CONTACT_CHANNELS.index(channel), h)
            for day, action, channel, h in state.campaign_touches
        ),
        b"".join(_SCORE.pack(day, score) for day, score in state.feedback_scores),
    ]
    journey = _journey(state)
    if state.enrolments or journey:
        fields.append(state.enrolments)
    if journey:
        fields.append(journey)
    return fields


def _journey(state: CustomerState) -> list[Any]:
    if state.first_touch is None:
        return []
    at, channel = state.first_touch
    return [_time(at), channel, _optional_time(state.considered_at)]


def encode_v1(state: CustomerState) -> bytes:
    """``state`` as format 1's encoder wrote it."""
    return bytes(msgpack.packb(fields_v1(state), use_bin_type=True))


def encode_before(state: CustomerState, field: str) -> bytes:
    """``state`` as the release before ``field`` (a key of :data:`LAYOUTS`) wrote it: the
    format-1 array cut to that release's length, its counts cut likewise."""
    length, counts = LAYOUTS[field]
    fields = fields_v1(state)[:length]
    fields[9] = fields[9][:counts]
    return bytes(msgpack.packb(fields, use_bin_type=True))
