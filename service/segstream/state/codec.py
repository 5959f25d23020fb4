"""How table values are stored: compact MessagePack, times as integers.

- :func:`encode_state` / :func:`decode_state`: a :class:`CustomerState` as one MessagePack
  map of field number -> value (:data:`FIELDS`; key 0 holds the format), fields at their
  default left out; the positional arrays of format 1 are still read. Times are epoch
  seconds (a float only when the event time had a fraction of a second), purchase days
  are day numbers, amounts are integer cents when that is exact, remembered event ids
  are 8-byte hashes.
- :func:`encode` / :func:`decode`: any other table value (dicts, lists, strings,
  numbers), as MessagePack.

>>> from segstream.domain.events import parse_time
>>> state = CustomerState("tea-1", "c-1", signups=[parse_time("2026-03-01T09:30:00Z")],
...     purchase_days={date(2026, 3, 1): 12.5})
>>> blob = encode_state(state)
>>> len(blob) < 48, decode_state("tea-1", "c-1", blob) == state
(True, True)
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgpack

from segstream.domain.customer import EPOCH_DAY, CustomerState
from segstream.domain.events import CAMPAIGN_ACTIONS, CONTACT_CHANNELS, Plan

FORMAT = 2
"""The format :func:`encode_state` writes (1: the positional array of older releases)."""
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


@dataclass(frozen=True, slots=True)
class _Field:
    """How one :class:`CustomerState` field is stored: its value to MessagePack and back
    (None: stored as it is)."""

    name: str
    pack: Callable[[Any], Any] | None = None
    unpack: Callable[[Any], Any] | None = None


def _times(values: list[datetime]) -> list[int | float]:
    return [_time(s) for s in values]


def _moments(values: list[int | float]) -> list[datetime]:
    return [_moment(s) for s in values]


def _pack_days(purchase_days: dict[date, float]) -> list[int | float]:
    days: list[int | float] = []
    for day, amount in sorted(purchase_days.items()):
        days += [(day - EPOCH_DAY).days, _amount(amount)]
    return days


def _unpack_days(days: list[int | float]) -> dict[date, float]:
    return {
        EPOCH_DAY + timedelta(days=days[n]): _price(days[n + 1]) for n in range(0, len(days), 2)
    }


FIELDS: dict[int, _Field] = {
    1: _Field("signups", _times, _moments),
    2: _Field(
        "cancellations",
        lambda v: [[_time(o), _time(e)] for o, e in v],
        lambda v: [(_moment(o), _moment(e)) for o, e in v],
    ),
    3: _Field("cancel_reason"),
    4: _Field(
        "plan_history",
        lambda v: [[_time(at), *_plan(plan)] for at, plan in v],
        lambda v: [(_moment(at), Plan(p, _price(price), c, i, t)) for at, p, price, c, i, t in v],
    ),
    5: _Field("acquisition_channel"),
    6: _Field("referred_by"),
    7: _Field("preferred_channel"),
    8: _Field("attributes"),
    9: _Field("purchase_days", _pack_days, _unpack_days),
    10: _Field("first_seen_at", _time, _moment),
    11: _Field("order_count"),
    12: _Field("renewal_count"),
    13: _Field("discount_order_count"),
    14: _Field("total_spend", _amount, _price),
    15: _Field("categories"),
    16: _Field(
        "seen_ids",
        lambda v: b"".join(_ID.pack(h, day) for h, day in v),
        lambda v: list(_ID.iter_unpack(v)),
    ),
    17: _Field("segments"),
    18: _Field("memory"),
    19: _Field("due_at", _time, _moment),
    20: _Field("segment_since"),
    21: _Field("marketing_opt_in"),
    22: _Field(
        "attribute_times",
        lambda v: {key: _time(at) for key, at in v.items()},
        lambda v: {key: _moment(at) for key, at in v.items()},
    ),
    23: _Field("preferred_channel_at", _time, _moment),
    24: _Field("marketing_opt_in_at", _time, _moment),
    25: _Field(
        "campaign_touches",
        lambda v: b"".join(
            _TOUCH.pack(day, CAMPAIGN_ACTIONS.index(action), CONTACT_CHANNELS.index(channel), h)
            for day, action, channel, h in v
        ),
        lambda v: [
            (day, CAMPAIGN_ACTIONS[action], CONTACT_CHANNELS[channel], h)
            for day, action, channel, h in _TOUCH.iter_unpack(v)
        ],
    ),
    26: _Field(
        "feedback_scores",
        lambda v: b"".join(_SCORE.pack(day, score) for day, score in v),
        lambda v: list(_SCORE.iter_unpack(v)),
    ),
    27: _Field("referral_count"),
    28: _Field("enrolments"),
    29: _Field("first_touch", lambda v: [_time(v[0]), v[1]], lambda v: (_moment(v[0]), v[1])),
    30: _Field("considered_at", _time, _moment),
}
"""Every stored :class:`CustomerState` field by its number: the key it is stored under.
A number is never reused nor renumbered. A new field takes the next number; states
stored before it decode with the field's default."""

_ID_OF = {field.name: number for number, field in FIELDS.items()}


def _default(name: str) -> Any:
    found = next(f for f in fields(CustomerState) if f.name == name)
    if found.default_factory is not MISSING:
        return found.default_factory()
    return found.default


_PACKERS = tuple(
    (number, field.name, field.pack, _default(field.name)) for number, field in FIELDS.items()
)

_UNPACKERS = {number: (field.name, field.unpack) for number, field in FIELDS.items()}


def encode_state(state: CustomerState) -> bytes:
    """A customer's state as one MessagePack map: :data:`FORMAT` under key 0, then each
    field that is not at its default under its number in :data:`FIELDS`."""
    stored: dict[int, Any] = {0: FORMAT}
    for number, name, pack, default in _PACKERS:
        value = getattr(state, name)
        if value != default:
            stored[number] = value if pack is None else pack(value)
    return encode(stored)


def decode_state(shop_id: str, customer_id: str, raw: bytes) -> CustomerState:
    """Inverse of :func:`encode_state`; also reads the positional format 1 and the shorter
    layouts older releases wrote. A field number it does not know (written by a later
    release) is left out."""
    found = decode(raw)
    stored = v1_fields(found) if isinstance(found, list) else found
    if not isinstance(stored, dict) or stored.get(0) != FORMAT:
        raise ValueError(f"customer state format {_format_of(found)} is not {FORMAT}")
    values: dict[str, Any] = {}
    for number, value in stored.items():
        known = _UNPACKERS.get(number)
        if known is not None and value is not None:  # None: the default
            name, unpack = known
            values[name] = value if unpack is None else unpack(value)
    return CustomerState(shop_id, customer_id, **values)


_V1_LAYOUT = (
    "format",
    "first_seen_at",
    "signups",
    "cancellations",
    "cancel_reason",
    "plan_history",
    "channels",
    "attributes",
    "purchase_days",
    "counts",
    "total_spend",
    "categories",
    "seen_ids",
    "segments",
    "memory",
    "due_at",
    "marketing_opt_in",
    "segment_since",
    "attribute_times",
    "preferred_channel_at",
    "marketing_opt_in_at",
    "campaign_touches",
    "feedback_scores",
    "enrolments",
    "journey",
)
"""Format 1: the fields by position. Releases appended fields over time, so an older
state is a prefix of it (at least up to ``due_at``); ``counts`` gained its fourth
(``referral_count``) likewise."""

_V1_GROUPS: dict[str, tuple[str, ...]] = {
    "channels": ("acquisition_channel", "referred_by", "preferred_channel"),
    "counts": ("order_count", "renewal_count", "discount_order_count", "referral_count"),
}
"""Format-1 positions that held several fields, by the order of their elements (and
``journey``: the first touch's time and channel, then ``considered_at``)."""


def v1_fields(positional: list[Any]) -> dict[int, Any]:
    """A format-1 state's fields by number, as format 2 stores them (key 0: its format).
    Fields a release had not written yet are left out (their default),
    except the statement times: a state from before them counts what it holds as stated
    at its latest signup."""
    named: dict[str, Any] = {}
    for name, value in zip(_V1_LAYOUT, positional, strict=False):
        if name in _V1_GROUPS:
            named |= dict(zip(_V1_GROUPS[name], value, strict=False))
        elif name == "journey":
            named |= {"first_touch": value[:2], "considered_at": value[2]}
        else:
            named[name] = value
    if named.get("format") != 1:
        raise ValueError(f"customer state format {named.get('format')} is not {FORMAT}")
    if "attribute_times" not in named:
        named |= _v1_statement_times(named)
    return {0: FORMAT} | {_ID_OF[n]: v for n, v in named.items() if n in _ID_OF}


def _format_of(found: Any) -> Any:
    return found.get(0) if isinstance(found, dict) else type(found).__name__


def _v1_statement_times(named: dict[str, Any]) -> dict[str, Any]:
    """Statement times of a state stored before them: its latest signup (stored times)."""
    latest = max(named.get("signups", ()), default=None)
    stated = {} if latest is None else dict.fromkeys(named.get("attributes", {}), latest)
    has = {"preferred_channel_at": "preferred_channel", "marketing_opt_in_at": "marketing_opt_in"}
    return {"attribute_times": stated} | {
        at: None if named.get(name) is None else latest for at, name in has.items()
    }


def day_of(number: int) -> date:
    """The date of a day number (days since 1970-01-01)."""
    return EPOCH_DAY + timedelta(days=number)
