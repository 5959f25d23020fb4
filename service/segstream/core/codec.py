"""How table values are stored: compact MessagePack, times as integers.

- :func:`encode_state` / :func:`decode_state`: a :class:`CustomerState` as one MessagePack
  array, versioned by its first element. Times are epoch seconds (a float only when
  the event time had a fraction of a second), purchase days are day numbers, amounts
  are integer cents when that is exact, remembered event ids are 8-byte hashes.
- :func:`encode` / :func:`decode`: any other table value (dicts, lists, strings,
  numbers), as MessagePack.

>>> from segstream.core.events import parse_time
>>> state = CustomerState("tea-1", "c-1", signups=[parse_time("2026-03-01T09:30:00Z")],
...     purchase_days={date(2026, 3, 1): 12.5})
>>> blob = encode_state(state)
>>> len(blob) < 48, decode_state("tea-1", "c-1", blob) == state
(True, True)
"""

from __future__ import annotations

import struct
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgpack

from segstream.core.customer import EPOCH_DAY, CustomerState
from segstream.core.events import CAMPAIGN_ACTIONS, CONTACT_CHANNELS, Plan

STATE_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ID = struct.Struct(">QI")
"""A remembered event: 8-byte id hash, 4-byte event day."""
_TOUCH = struct.Struct(">IBBQ")
"""A campaign interaction: 4-byte event day, action and channel (their index in
``CAMPAIGN_ACTIONS`` and ``CONTACT_CHANNELS``: those lists may only grow at the end),
8-byte campaign id hash."""
_SCORE = struct.Struct(">IB")
"""A feedback score: 4-byte event day, 1-byte score."""


def encode(value: Any) -> bytes:
    """A plain value (dicts, lists, strings, numbers, bytes) as MessagePack."""
    return bytes(msgpack.packb(value, use_bin_type=True))


def decode(raw: bytes) -> Any:
    """Inverse of :func:`encode` (tuples come back as lists)."""
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)


def _time(when: datetime) -> int | float:
    seconds = (when - _EPOCH).total_seconds()
    whole = int(seconds)
    return whole if whole == seconds else seconds


def _moment(value: int | float) -> datetime:
    return _EPOCH + timedelta(seconds=value)


def _optional_time(when: datetime | None) -> int | float | None:
    return None if when is None else _time(when)


def _optional_moment(value: int | float | None) -> datetime | None:
    return None if value is None else _moment(value)


_MAX_CENTS = 2**63 - 1
"""Largest amount in cents that MessagePack stores as an integer."""


def _amount(value: float) -> int | float:
    """Integer cents when exact (and storable), else the float itself: any float, even
    one beyond every contract's maximum, encodes."""
    cents = value * 100
    if not abs(cents) <= _MAX_CENTS:  # also inf and nan
        return value
    whole = round(cents)
    return whole if whole / 100 == value else value


def _plan(plan: Plan) -> list[Any]:
    return [plan.plan_id, _amount(plan.price), plan.currency, plan.interval, plan.tier]


def _price(value: int | float) -> float:
    return value / 100 if isinstance(value, int) else value


def encode_state(state: CustomerState) -> bytes:
    """A customer's state as one compact MessagePack array."""
    ids = b"".join(_ID.pack(h, day) for h, day in state.seen_ids)
    days: list[int | float] = []
    for day, amount in sorted(state.purchase_days.items()):
        days += [(day - EPOCH_DAY).days, _amount(amount)]
    fields: list[Any] = [
        STATE_VERSION,
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
    if state.enrolments or journey:  # most customers are in no experiment: no field at all
        fields.append(state.enrolments)
    if journey:  # nor have touchpoints
        fields.append(journey)
    return encode(fields)


def _journey(state: CustomerState) -> list[Any]:
    """[first touch time, its channel, considered at] (empty without touchpoints)."""
    if state.first_touch is None:
        return []
    at, channel = state.first_touch
    return [_time(at), channel, _optional_time(state.considered_at)]


def decode_state(shop_id: str, customer_id: str, raw: bytes) -> CustomerState:
    """Inverse of :func:`encode_state`."""
    (version, first, signups, cancels, reason, plans, channels, attributes, days, counts) = (
        fields := decode(raw)
    )[:10]
    if version != STATE_VERSION:
        raise ValueError(f"customer state version {version} is not {STATE_VERSION}")
    total, categories, ids, segments, memory, due = fields[10:16]
    consent = fields[16] if len(fields) > 16 else None  # states written before consent
    since = fields[17] if len(fields) > 17 else {}  # and before segment dwell
    acquisition, referred, preferred = channels
    moments = [_moment(s) for s in signups]
    touches = fields[21] if len(fields) > 21 else b""  # states written before campaign
    scores = fields[22] if len(fields) > 22 else b""  # responses and feedback
    enrolments = fields[23] if len(fields) > 23 else {}  # and before experiments
    touch_at, touch_channel, considered = fields[24] if len(fields) > 24 else (None, "", None)
    if len(fields) > 20:
        attribute_times = {key: _moment(at) for key, at in fields[18].items()}
        channel_at, consent_at = _optional_moment(fields[19]), _optional_moment(fields[20])
    else:  # before statement times: what the state holds came from signups, the latest
        latest = max(moments, default=None)  # one counts as having stated it
        attribute_times = {} if latest is None else dict.fromkeys(attributes, latest)
        channel_at = None if preferred is None else latest
        consent_at = None if consent is None else latest
    return CustomerState(
        shop_id,
        customer_id,
        signups=moments,
        cancellations=[(_moment(o), _moment(e)) for o, e in cancels],
        cancel_reason=reason,
        plan_history=[
            (_moment(at), Plan(plan_id, _price(price), currency, interval, tier))
            for at, plan_id, price, currency, interval, tier in plans
        ],
        acquisition_channel=acquisition,
        referred_by=referred,
        preferred_channel=preferred,
        attributes=attributes,
        purchase_days={
            EPOCH_DAY + timedelta(days=days[n]): _price(days[n + 1]) for n in range(0, len(days), 2)
        },
        first_seen_at=None if first is None else _moment(first),
        order_count=counts[0],
        renewal_count=counts[1],
        discount_order_count=counts[2],
        referral_count=counts[3] if len(counts) > 3 else 0,  # states before referral counts
        total_spend=_price(total),
        categories=categories,
        seen_ids=[_ID.unpack_from(ids, n) for n in range(0, len(ids), _ID.size)],
        segments=segments,
        memory=memory,
        due_at=None if due is None else _moment(due),
        marketing_opt_in=consent,
        segment_since=since,
        attribute_times=attribute_times,
        preferred_channel_at=channel_at,
        marketing_opt_in_at=consent_at,
        campaign_touches=[
            (day, CAMPAIGN_ACTIONS[action], CONTACT_CHANNELS[channel], h)
            for day, action, channel, h in _TOUCH.iter_unpack(touches)
        ],
        feedback_scores=list(_SCORE.iter_unpack(scores)),
        enrolments=enrolments,
        first_touch=None if touch_at is None else (_moment(touch_at), touch_channel),
        considered_at=_optional_moment(considered),
    )


def day_of(number: int) -> date:
    """The date of a day number (days since 1970-01-01)."""
    return EPOCH_DAY + timedelta(days=number)
