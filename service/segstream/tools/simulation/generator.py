"""Deterministic event streams of simulated shops, with the truth about every customer.

:func:`generate` is pure: the same :class:`SimulationConfig` always gives the
same events, byte for byte (every random draw comes from ``random.Random``
seeded with the seed plus shop and customer ids; event ids are UUID5s of the
same). Real-world mess is added on request: duplicates (the same event, same
``event_id``, sent again shortly after), out-of-order delivery (events sent
later than their ``occurred_at``) and invalid records (kept apart as raw bytes
with the topic they are meant for).
"""

from __future__ import annotations

import copy
import json
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from segstream.domain.contracts import INPUT_ROLES, role_for
from segstream.tools.publish import Record, encode
from segstream.tools.simulation.personas import (
    DAY,
    HOUR,
    PERSONAS,
    Journey,
    Persona,
    PersonaName,
    Treatment,
    rfc3339,
)
from segstream.tools.simulation.shops import Shop, shops_per_kind

DEFAULT_MIX: dict[PersonaName, float] = {
    "loyal": 0.30,
    "occasional": 0.20,
    "quick_canceller": 0.15,
    "declining_big_spender": 0.10,
    "bargain_hunter": 0.10,
    "holiday_gifter": 0.15,
}
EVENT_ID_NAMESPACE = uuid.UUID("5d0f6a8e-2c1b-4e57-9a3e-7f0b9c6d2e41")
MAX_SEND_DELAY = 3 * DAY
MAX_DUPLICATE_DELAY = 6 * HOUR


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. ``shops`` (if given) replaces ``shops_per_kind`` shops of every kind.

    Persona weights are shares of each shop's customers; a persona that cannot
    occur in the window (holiday gifters without a November or December) is left
    out and the others are scaled up.
    """

    seed: int = 0
    shops_per_kind: int = 1
    shops: tuple[Shop, ...] = ()
    customers_per_shop: int = 100
    start: date = date(2025, 1, 1)
    days: int = 365
    persona_mix: Mapping[PersonaName, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    invalid_ratio: float = 0.0
    duplicate_ratio: float = 0.0
    out_of_order_ratio: float = 0.0
    treatment: Treatment | None = None
    """A planted effect: customers in an experiment's treated arm react to it."""
    touchpoints: bool = False
    """Journeys start before the signup: site visits, trials and sample requests
    (touchpoint events), and each shop has half as many prospects again who never buy."""

    def __post_init__(self) -> None:
        """Reject impossible configurations with a readable ValueError."""
        if self.days < 1 or self.customers_per_shop < 1:
            raise ValueError("days and customers_per_shop must be at least 1")
        if not self.shops and self.shops_per_kind < 1:
            raise ValueError("shops_per_kind must be at least 1 when no shops are given")
        for name in ("invalid_ratio", "duplicate_ratio", "out_of_order_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        unknown = set(self.persona_mix) - set(PERSONAS)
        if unknown:
            raise ValueError(f"unknown personas {sorted(unknown)}; known: {sorted(PERSONAS)}")
        if any(weight < 0 for weight in self.persona_mix.values()):
            raise ValueError("persona weights must not be negative")
        if sum(self.persona_mix.values()) <= 0:
            raise ValueError("persona_mix needs at least one positive weight")

    @property
    def window(self) -> tuple[int, int]:
        """Start (midnight UTC of ``start``) and exclusive end of the stream, epoch seconds."""
        first = int(
            datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC).timestamp()
        )
        return first, first + self.days * DAY

    def shop_list(self) -> tuple[Shop, ...]:
        """The shops to simulate."""
        return self.shops or tuple(shops_per_kind(self.shops_per_kind))


@dataclass(frozen=True, slots=True)
class CustomerTruth:
    """What a customer really did: the reference segment and churn results are judged by.

    ``churned`` means the customer cancelled (``churned_at`` is the cancellation's
    ``occurred_at``) or lapsed: planned to stop without cancelling, with
    ``churned_at`` their last event. Outcomes planned for after the stream ends
    are not churn.
    """

    shop_id: str
    customer_id: str
    persona: PersonaName
    signup_at: str
    churned: bool
    churned_at: str | None
    lapsed: bool


@dataclass(frozen=True)
class Simulation:
    """Generated events in send order, invalid records, and the per-customer truth."""

    events: list[dict[str, Any]]
    invalid: list[tuple[str, bytes]]
    truth: list[CustomerTruth]

    def outbox(self) -> list[Record]:
        """Everything to publish, in send order: invalid records spread evenly among events."""
        records: list[Record] = [(role_for(event), event) for event in self.events]
        step = len(records) / (len(self.invalid) + 1)
        for number in range(len(self.invalid), 0, -1):
            records.insert(round(number * step), self.invalid[number - 1])
        return records


def generate(config: SimulationConfig) -> Simulation:
    """Simulate every shop's customers over the window; see :class:`SimulationConfig`."""
    start, end = config.window
    mix = _available_mix(config.persona_mix, start, end)
    timed: list[tuple[int, dict[str, Any]]] = []
    truth: list[CustomerTruth] = []
    for shop in config.shop_list():
        for persona, journey in _journeys(config, shop, mix, start, end):
            if config.touchpoints:
                _touch_before(config.seed, journey)
            timed.extend(_events(config.seed, journey))
            truth.append(_truth(persona, journey))
        for prospect in _prospects(config, shop) if config.touchpoints else ():
            timed.extend(_events(config.seed, prospect))
    timed.sort(key=lambda pair: pair[0])
    rng = random.Random(f"{config.seed}/mess")
    events = [event for _, event in timed]
    invalid = _invalid(events, rng, round(config.invalid_ratio * len(events)))
    sent = _send_order(timed, rng, config.out_of_order_ratio, config.duplicate_ratio)
    return Simulation(events=sent, invalid=invalid, truth=truth)


def _available_mix(
    mix: Mapping[PersonaName, float], start: int, end: int
) -> dict[PersonaName, float]:
    """The positive persona weights whose customers can sign up inside the window."""
    available = {
        name: weight
        for name, weight in mix.items()
        if weight > 0 and PERSONAS[name].signup_range(start, end) is not None
    }
    if not available:
        raise ValueError("none of the personas in persona_mix can occur in this window")
    return available


def _persona_counts(mix: Mapping[PersonaName, float], total: int) -> list[PersonaName]:
    """Exactly ``total`` persona names in proportion to ``mix`` (largest remainder)."""
    weight_sum = sum(mix.values())
    quotas = {name: total * weight / weight_sum for name, weight in mix.items()}
    counts = {name: int(quota) for name, quota in quotas.items()}
    by_remainder = sorted(quotas, key=lambda name: counts[name] - quotas[name])
    for name in by_remainder[: total - sum(counts.values())]:
        counts[name] += 1
    return [name for name in mix for _ in range(counts[name])]


def _journeys(
    config: SimulationConfig, shop: Shop, mix: Mapping[PersonaName, float], start: int, end: int
) -> list[tuple[Persona, Journey]]:
    """Every customer of one shop, played out in signup order (so referrers exist already)."""
    names = _persona_counts(mix, config.customers_per_shop)
    random.Random(f"{config.seed}/{shop.shop_id}").shuffle(names)
    width = max(4, len(str(config.customers_per_shop)))
    planned = []
    for number, name in enumerate(names, start=1):
        customer_id = f"c-{number:0{width}d}"
        rng = random.Random(f"{config.seed}/{shop.shop_id}/{customer_id}")
        persona = PERSONAS[name]
        signup_range = persona.signup_range(start, end)
        assert signup_range is not None, "filtered by _available_mix"
        planned.append((rng.randint(*signup_range), number, customer_id, rng, persona))
    planned.sort(key=lambda row: (row[0], row[1]))
    referrers: list[str] = []
    journeys = []
    for signup_at, _, customer_id, rng, persona in planned:
        journey = Journey(shop, customer_id, rng, signup_at, start, end, referrers)
        journey.treated = config.treatment is not None and config.treatment.treats(
            shop.shop_id, customer_id
        )
        persona.live(journey)
        referrers.append(customer_id)
        journeys.append((persona, journey))
    return journeys


TOUCHPOINT_CHANNELS = (("social", 4), ("web", 3), ("email", 1), ("marketplace", 1), ("other", 1))
"""Channels that bring visitors who never signed up (a signup's own channel brings its
customer)."""


def _touch_before(seed: int, journey: Journey) -> None:
    """One to three site visits in the four weeks before the customer's first event, from
    the channel they signed up through; a third try a sample or a trial first."""
    rng = random.Random(f"{seed}/{journey.shop.shop_id}/{journey.customer_id}/touch")
    first = min((at for at, _ in journey.steps), default=journey.signup_at)
    signups = [body for _, body in journey.steps if body["type"] == "signup"]
    channel = signups[0]["acquisition_channel"] if signups else _pick_channel(rng)
    visits = sorted(first - rng.randint(HOUR, 28 * DAY) for _ in range(rng.randint(1, 3)))
    steps = [(at, "site_visit") for at in visits]
    if rng.random() < 1 / 3:
        steps.append((rng.randint(visits[0], first - 1), rng.choice(("trial", "sample_request"))))
    for at, kind in steps:
        if at >= journey.window_start:
            journey.steps.append(
                (at, {"type": "touchpoint", "touchpoint": kind, "channel": channel})
            )


def _prospects(config: SimulationConfig, shop: Shop) -> list[Journey]:
    """Visitors who never buy: half as many as the shop's customers, each with one or two
    site visits and, one in four, a trial or sample request."""
    start, end = config.window
    journeys = []
    for number in range(1, config.customers_per_shop // 2 + 1):
        customer_id = f"v-{number:04d}"
        rng = random.Random(f"{config.seed}/{shop.shop_id}/{customer_id}")
        journey = Journey(shop, customer_id, rng, start, start, end, ())
        channel = _pick_channel(rng)
        first = rng.randint(start, end - 1)
        steps = [(first, "site_visit")]
        if rng.random() < 0.5:
            steps.append((first + rng.randint(HOUR, 14 * DAY), "site_visit"))
        if rng.random() < 0.25:
            steps.append(
                (first + rng.randint(HOUR, 7 * DAY), rng.choice(("trial", "sample_request")))
            )
        for at, kind in steps:
            if at < end:
                journey.steps.append(
                    (at, {"type": "touchpoint", "touchpoint": kind, "channel": channel})
                )
        journeys.append(journey)
    return journeys


def _pick_channel(rng: random.Random) -> str:
    names = [name for name, _ in TOUCHPOINT_CHANNELS]
    return rng.choices(names, [weight for _, weight in TOUCHPOINT_CHANNELS])[0]


def _events(seed: int, journey: Journey) -> list[tuple[int, dict[str, Any]]]:
    """A journey's payloads with their envelopes, in time order."""
    steps = sorted(journey.steps, key=lambda step: step[0])
    events = []
    for sequence, (at, body) in enumerate(steps):
        name = f"{seed}/{journey.shop.shop_id}/{journey.customer_id}/{sequence}"
        event = {
            "schema_version": 1,
            "type": body["type"],
            "event_id": str(uuid.uuid5(EVENT_ID_NAMESPACE, name)),
            "shop_id": journey.shop.shop_id,
            "customer_id": journey.customer_id,
            "occurred_at": rfc3339(at),
        }
        event.update((key, value) for key, value in body.items() if key != "type")
        events.append((at, event))
    return events


def _truth(persona: Persona, journey: Journey) -> CustomerTruth:
    """The outcome a journey recorded."""
    churned_at = journey.cancelled_at
    if churned_at is None and journey.lapsed:
        churned_at = journey.last_activity
    return CustomerTruth(
        shop_id=journey.shop.shop_id,
        customer_id=journey.customer_id,
        persona=persona.name,
        signup_at=rfc3339(journey.signup_at),
        churned=churned_at is not None,
        churned_at=None if churned_at is None else rfc3339(churned_at),
        lapsed=journey.cancelled_at is None and journey.lapsed,
    )


def _send_order(
    timed: list[tuple[int, dict[str, Any]]],
    rng: random.Random,
    out_of_order_ratio: float,
    duplicate_ratio: float,
) -> list[dict[str, Any]]:
    """Events in the order they are sent: some delayed, some sent twice."""
    count = len(timed)
    keys = [(at, index) for index, (at, _) in enumerate(timed)]
    for index in rng.sample(range(count), round(out_of_order_ratio * count)):
        keys[index] = (keys[index][0] + rng.randint(HOUR, MAX_SEND_DELAY), index)
    queue = [(key, event) for key, (_, event) in zip(keys, timed, strict=True)]
    for extra, index in enumerate(rng.sample(range(count), round(duplicate_ratio * count))):
        again = (keys[index][0] + rng.randint(1, MAX_DUPLICATE_DELAY), count + extra)
        queue.append((again, copy.deepcopy(timed[index][1])))
    queue.sort(key=lambda pair: pair[0])
    return [event for _, event in queue]


def _invalid(
    events: list[dict[str, Any]], rng: random.Random, count: int
) -> list[tuple[str, bytes]]:
    """``count`` broken records, each derived from a real event, cycling through the kinds."""
    records = []
    for number in range(count):
        event = copy.deepcopy(rng.choice(events))
        corrupt = _CORRUPTIONS[number % len(_CORRUPTIONS)]
        records.append(corrupt(event, rng))
    return records


def _truncated_json(event: dict[str, Any], rng: random.Random) -> tuple[str, bytes]:
    """Valid JSON cut off mid-way: invalid JSON."""
    raw = encode(event)
    return role_for(event), raw[: rng.randint(1, len(raw) - 1)]


def _wrong_type(event: dict[str, Any], rng: random.Random) -> tuple[str, bytes]:
    """A field of the wrong JSON type (numbers as strings, strings as numbers)."""
    field_name = rng.choice(
        {
            "signup": ("schema_version", "occurred_at", "acquisition_channel", "plan"),
            "order": ("schema_version", "amount", "is_renewal", "customer_id"),
            "cancellation": ("schema_version", "occurred_at", "reason"),
            "touchpoint": ("schema_version", "occurred_at", "channel"),
        }[event["type"]]
    )
    value = event[field_name]
    event[field_name] = str(value) if isinstance(value, int | float) else 42
    return role_for(event), encode(event)


def _missing_field(event: dict[str, Any], rng: random.Random) -> tuple[str, bytes]:
    """A required field left out."""
    required = {
        "signup": ("event_id", "shop_id", "plan", "acquisition_channel"),
        "order": ("event_id", "customer_id", "order_id", "amount", "currency"),
        "cancellation": ("event_id", "occurred_at", "reason"),
        "touchpoint": ("event_id", "touchpoint", "channel"),
    }[event["type"]]
    del event[rng.choice(required)]
    return role_for(event), encode(event)


def _wrong_topic(event: dict[str, Any], rng: random.Random) -> tuple[str, bytes]:
    """A valid event sent to the topic of another event type."""
    others = [role for role in INPUT_ROLES if role != role_for(event)]
    return rng.choice(others), encode(event)


def _not_utf8(event: dict[str, Any], rng: random.Random) -> tuple[str, bytes]:
    """The event encoded as Latin-1 with a byte that is not UTF-8."""
    raw = json.dumps({**event, "customer_id": "Zoë"}, ensure_ascii=False).encode("latin-1")
    return role_for(event), raw


_CORRUPTIONS: tuple[Callable[[dict[str, Any], random.Random], tuple[str, bytes]], ...] = (
    _truncated_json,
    _wrong_type,
    _missing_field,
    _wrong_topic,
    _not_utf8,
)
