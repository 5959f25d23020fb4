"""Behaviour models of simulated customers, each with a planned churn outcome.

A persona decides when its customers sign up and, given a :class:`Journey`,
what they do afterwards. The journey turns those decisions into contract
payloads and records the outcome (cancelled, lapsed, retained), so the truth
the tests and demos compare segment results with is known by construction:

==========================  =========================================================
persona                     planned outcome
==========================  =========================================================
``loyal``                   renews every interval until the end: retained
``occasional``              pay-as-you-go, one-offs every 18-80 days: retained
``quick_canceller``         0-2 boxes, cancels within 35 days of signup: churned
``declining_big_spender``   spends big, then gaps widen and amounts fall: cancels or
                            lapses (no event at all) around 70 % into the stream
``bargain_hunter``          orders with discount codes, cancels when offers stop
``holiday_gifter``          signs up and orders only in Nov-Dec: retained (seasonal)
==========================  =========================================================

Times are whole seconds since the Unix epoch (UTC).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from segstream.experiments.splits import Arm, arm_of
from segstream.tools.simulation.shops import CURRENCY, Interval, Plan, Product, Shop, Tier

PersonaName = Literal[
    "loyal",
    "occasional",
    "quick_canceller",
    "declining_big_spender",
    "bargain_hunter",
    "holiday_gifter",
]
Weights = tuple[tuple[str, float], ...]

HOUR = 3600
DAY = 24 * HOUR
_MONTHS: dict[Interval, int] = {"month": 1, "quarter": 3, "year": 12}


def add_intervals(at: int, interval: Interval, count: int) -> int:
    """``count`` billing intervals after ``at``; months keep the day (clamped to 28).

    >>> add_intervals(0, "week", 2) // DAY
    14
    >>> datetime.fromtimestamp(add_intervals(1738281600, "month", 1), UTC).date()
    datetime.date(2025, 2, 28)
    """
    if interval == "week":
        return at + 7 * DAY * count
    moment = datetime.fromtimestamp(at, UTC)
    years, month = divmod(moment.month - 1 + _MONTHS[interval] * count, 12)
    shifted = moment.replace(year=moment.year + years, month=month + 1, day=min(moment.day, 28))
    return int(shifted.timestamp())


def rfc3339(at: int) -> str:
    """Epoch seconds as an RFC 3339 UTC string.

    >>> rfc3339(0)
    '1970-01-01T00:00:00Z'
    """
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def next_billing(since: int, interval: Interval, after: int) -> int:
    """The first billing date (counted from ``since``) later than ``after``."""
    count = 1
    while (due := add_intervals(since, interval, count)) <= after:
        count += 1
    return due


def _pick(rng: random.Random, weights: Weights) -> str:
    """One value of a ``((value, weight), ...)`` table."""
    values = [value for value, _ in weights]
    return rng.choices(values, [share for _, share in weights])[0]


@dataclass
class Journey:
    """One customer's life at one shop: collects payloads and the churn outcome.

    Payloads carry ``type`` and the type's own fields; the generator adds the
    envelope (ids, times). Anything at or after ``window_end`` is not emitted,
    so a plan that runs past the end of the stream is simply cut off.
    """

    shop: Shop
    customer_id: str
    rng: random.Random
    signup_at: int
    window_start: int
    window_end: int
    referrers: Sequence[str]
    steps: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    plan: Plan | None = None
    cancelled_at: int | None = None
    lapsed: bool = False
    orders: int = 0
    treated: bool = False
    """In the treated arm of the simulation's planted experiment (see :class:`Treatment`)."""

    @property
    def last_activity(self) -> int:
        """Time of the latest emitted event (the signup if nothing else happened)."""
        return max((at for at, _ in self.steps), default=self.signup_at)

    def plans(self, tier: Tier) -> tuple[Plan, ...]:
        """The shop's plans of one tier."""
        return self.shop.kind.plans_of(tier)

    def signup(self, plan: Plan, channels: Weights, opt_in_probability: float) -> None:
        """Subscribe to ``plan`` with the shop's signup-form answers."""
        self.plan = plan
        channel = _pick(self.rng, channels)
        body: dict[str, Any] = {"type": "signup", "plan": plan.payload()}
        if channel == "referral" and self.referrers:
            body["referred_by"] = self.rng.choice(self.referrers)
        elif channel == "referral":
            channel = "web"
        body["acquisition_channel"] = channel
        if self.rng.random() < 0.7:
            body["preferred_channel"] = _pick(self.rng, (("email", 6), ("sms", 1), ("push", 3)))
        body["marketing_opt_in"] = self.rng.random() < opt_in_probability
        body["attributes"] = self.shop.kind.form(self.rng)
        self._emit(self.signup_at, body)

    def renewal(
        self,
        at: int,
        *,
        plan: Plan | None = None,
        discount_code: str | None = None,
        discount: float = 0.0,
    ) -> None:
        """Ship one subscription box; ``plan`` switches plans from this order on."""
        current = plan or self.plan
        assert current is not None, "a renewal needs a plan"
        box = {
            "sku": f"{current.plan_id}-box",
            "category": self.shop.kind.box_category,
            "quantity": 1,
            "unit_price": current.price,
        }
        extra: dict[str, Any] = {}
        if plan is not None:
            self.plan = plan
            extra["plan"] = plan.payload()
        self._order(at, [box], True, discount_code, discount, extra)

    def one_off(
        self,
        at: int,
        products: Sequence[Product],
        *,
        lines: int = 1,
        max_quantity: int = 1,
        discount_code: str | None = None,
        discount: float = 0.0,
    ) -> None:
        """Buy ``lines`` distinct products (1..``max_quantity`` units each) outside the plan."""
        chosen = self.rng.sample(list(products), min(lines, len(products)))
        items = [
            {
                "sku": product.sku,
                "category": product.category,
                "quantity": self.rng.randint(1, max_quantity),
                "unit_price": product.unit_price,
            }
            for product in chosen
        ]
        self._order(at, items, False, discount_code, discount, {})

    def cancel(self, at: int, reason: str, *, effective_at: int | None = None) -> None:
        """End the subscription; ``effective_at`` is when the paid period runs out."""
        body: dict[str, Any] = {"type": "cancellation", "reason": reason}
        if effective_at is not None:
            body["effective_at"] = rfc3339(effective_at)
        if self._emit(at, body):
            self.cancelled_at = at

    def lapse(self, at: int) -> None:
        """Plan to go silent from ``at`` on without cancelling (counts only inside the window)."""
        self.lapsed = at < self.window_end

    def _order(
        self,
        at: int,
        items: list[dict[str, Any]],
        is_renewal: bool,
        discount_code: str | None,
        discount: float,
        extra: dict[str, Any],
    ) -> None:
        """Emit an order whose amount is the item total minus ``discount`` (a share)."""
        total = sum(item["quantity"] * item["unit_price"] for item in items)
        body: dict[str, Any] = {
            "type": "order",
            "order_id": f"{self.customer_id}-{self.orders + 1:04d}",
            "amount": round(total * (1.0 - discount), 2),
            "currency": CURRENCY,
            "is_renewal": is_renewal,
            "items": items,
            **extra,
        }
        if discount_code is not None:
            body["discount_code"] = discount_code
        if self._emit(at, body):
            self.orders += 1

    def _emit(self, at: int, body: dict[str, Any]) -> bool:
        """Keep a payload if it happens inside the window; nothing follows a cancellation."""
        assert self.cancelled_at is None, "no events after a cancellation"
        if at >= self.window_end:
            return False
        self.steps.append((at, body))
        return True


class Persona(ABC):
    """A behaviour model: when its customers sign up and what they do then."""

    name: ClassVar[PersonaName]

    @abstractmethod
    def signup_range(self, start: int, end: int) -> tuple[int, int] | None:
        """Earliest and latest signup time inside ``[start, end)``; None if it cannot occur."""

    @abstractmethod
    def live(self, journey: Journey) -> None:
        """Sign the customer up and play out their behaviour."""


def _share_of(start: int, end: int, share: float) -> int:
    """The time ``share`` of the way from ``start`` to ``end``."""
    return start + int((end - start) * share)


def _first_box(journey: Journey) -> int:
    """When the first box ships: a few hours after the signup."""
    return journey.signup_at + journey.rng.randint(1 * HOUR, 6 * HOUR)


@dataclass(frozen=True)
class Loyal(Persona):
    """Signs up early, renews every interval, sometimes adds a one-off or upgrades."""

    name: ClassVar[PersonaName] = "loyal"
    signup_share: float = 0.5
    addon_probability: float = 0.15
    upgrade_probability: float = 0.2
    jitter_hours: int = 12
    channels: Weights = (("web", 4), ("referral", 3), ("app", 2), ("email", 1))
    opt_in_probability: float = 0.7

    def signup_range(self, start: int, end: int) -> tuple[int, int]:
        """The first ``signup_share`` of the stream: long tenure."""
        return start, _share_of(start, end, self.signup_share)

    def live(self, journey: Journey) -> None:
        """Renew on schedule until the stream ends."""
        rng = journey.rng
        plan = rng.choice(journey.plans("basic") + journey.plans("premium"))
        journey.signup(plan, self.channels, self.opt_in_probability)
        upgrades = plan.tier == "basic" and rng.random() < self.upgrade_probability
        upgrade_at = rng.randint(2, 6) if upgrades else -1
        anchor, count, at = journey.signup_at, 0, _first_box(journey)
        while at < journey.window_end:
            if count == upgrade_at:
                plan = rng.choice(journey.plans("premium"))
                journey.renewal(at, plan=plan)
                anchor, count, upgrade_at = at, 0, -1
            else:
                journey.renewal(at)
            if rng.random() < self.addon_probability:
                journey.one_off(at + rng.randint(DAY, 5 * DAY), journey.shop.kind.products)
            count += 1
            jitter = rng.randint(-self.jitter_hours * HOUR, self.jitter_hours * HOUR)
            at = add_intervals(anchor, plan.interval, count) + jitter


@dataclass(frozen=True)
class Occasional(Persona):
    """Pay-as-you-go account: sporadic one-off orders at long, irregular gaps; never cancels."""

    name: ClassVar[PersonaName] = "occasional"
    signup_share: float = 0.7
    gap_days: tuple[int, int] = (18, 80)
    max_lines: int = 2
    channels: Weights = (("web", 4), ("marketplace", 3), ("retail", 2), ("social", 1))
    opt_in_probability: float = 0.4

    def signup_range(self, start: int, end: int) -> tuple[int, int]:
        """Any time in the first ``signup_share`` of the stream."""
        return start, _share_of(start, end, self.signup_share)

    def live(self, journey: Journey) -> None:
        """Order once soon after signing up, then every 18-80 days."""
        rng = journey.rng
        journey.signup(journey.plans("pay_as_you_go")[0], self.channels, self.opt_in_probability)
        at = journey.signup_at + rng.randint(HOUR, 3 * DAY)
        low, high = self.gap_days
        while at < journey.window_end:
            journey.one_off(at, journey.shop.kind.products, lines=rng.randint(1, self.max_lines))
            at += rng.randint(low * DAY, high * DAY)


@dataclass(frozen=True)
class QuickCanceller(Persona):
    """Subscribes, receives 0-2 boxes and cancels within ``cancel_within_days``."""

    name: ClassVar[PersonaName] = "quick_canceller"
    cancel_within_days: int = 35
    max_orders: int = 2
    reasons: Weights = (
        ("price", 3),
        ("taste", 2),
        ("too_much_product", 2),
        ("quality", 1),
        ("no_longer_needed", 2),
    )
    channels: Weights = (("social", 4), ("marketplace", 2), ("web", 3), ("app", 1))
    opt_in_probability: float = 0.5

    def signup_range(self, start: int, end: int) -> tuple[int, int]:
        """Early enough that the cancellation still falls inside the stream when it can."""
        return start, max(start, end - self.cancel_within_days * DAY)

    def live(self, journey: Journey) -> None:
        """Sign up on a basic plan, take a box or two, then cancel."""
        rng = journey.rng
        plan = rng.choice(journey.plans("basic"))
        journey.signup(plan, self.channels, self.opt_in_probability)
        cancel_at = journey.signup_at + rng.randint(2 * DAY, self.cancel_within_days * DAY)
        boxes = sorted(
            rng.randint(journey.signup_at + HOUR, cancel_at - HOUR)
            for _ in range(rng.randint(0, self.max_orders))
        )
        for at in boxes:
            journey.renewal(at)
        paid_until = next_billing(journey.signup_at, plan.interval, cancel_at)
        journey.cancel(cancel_at, _pick(rng, self.reasons), effective_at=paid_until)


@dataclass(frozen=True)
class DecliningBigSpender(Persona):
    """Premium plan plus frequent large add-ons, then widening gaps and smaller orders.

    Big spending runs until ``peak_share`` of the stream, the decline until
    ``stop_share``; then the customer cancels (``cancel_probability``) or lapses.
    """

    name: ClassVar[PersonaName] = "declining_big_spender"
    signup_share: float = 0.15
    peak_share: float = 0.45
    stop_share: float = 0.7
    peak_gap_days: tuple[int, int] = (4, 10)
    gap_growth: float = 1.5
    cancel_probability: float = 0.5
    channels: Weights = (("web", 3), ("app", 3), ("referral", 2), ("email", 1))
    opt_in_probability: float = 0.8

    def signup_range(self, start: int, end: int) -> tuple[int, int]:
        """Early in the stream, so there are months of big spending to see."""
        return start, _share_of(start, end, self.signup_share)

    def live(self, journey: Journey) -> None:
        """Spend, decline, stop."""
        rng = journey.rng
        journey.signup(rng.choice(journey.plans("premium")), self.channels, self.opt_in_probability)
        start, end = journey.window_start, journey.window_end
        peak_end = max(journey.signup_at + 30 * DAY, _share_of(start, end, self.peak_share))
        stop = max(peak_end + 30 * DAY, _share_of(start, end, self.stop_share))
        if journey.treated and rng.random() < TREATMENT_KEEPS:
            self._peak(journey, _first_box(journey), end)  # the treatment kept them
            return
        at = self._peak(journey, _first_box(journey), peak_end)
        self._decline(journey, at, stop)
        if rng.random() < self.cancel_probability:
            journey.cancel(stop + rng.randint(DAY, 10 * DAY), "no_longer_needed")
        else:
            journey.lapse(stop)

    def _peak(self, journey: Journey, at: int, until: int) -> int:
        """Premium boxes on schedule and big add-ons every few days; returns the next order time."""
        rng = journey.rng
        assert journey.plan is not None
        interval, count = journey.plan.interval, 0
        next_box = at
        while at < until:
            if at >= next_box:
                journey.renewal(at)
                count += 1
                next_box = add_intervals(journey.signup_at, interval, count)
            else:
                journey.one_off(
                    at, journey.shop.kind.products, lines=rng.randint(2, 4), max_quantity=3
                )
            at += rng.randint(self.peak_gap_days[0] * DAY, self.peak_gap_days[1] * DAY)
        return at

    def _decline(self, journey: Journey, at: int, stop: int) -> None:
        """Downgrade to basic, then basic boxes at ever wider gaps, sometimes a small add-on."""
        rng = journey.rng
        gap = float(self.peak_gap_days[1] * DAY)
        journey.renewal(at, plan=rng.choice(journey.plans("basic")))
        while (at := at + int(gap)) < stop:
            if rng.random() < 0.3:
                journey.one_off(at, journey.shop.kind.products)
            else:
                journey.renewal(at)
            gap *= self.gap_growth


TREATMENT_KEEPS = 0.6
"""Share of treated declining big spenders whom the treatment keeps spending (the planted
effect: their churn falls from ``cancel_probability`` to 40 % of it)."""


@dataclass(frozen=True)
class Treatment:
    """A planted experiment effect: customers whose arm (the service's own hash of shop,
    ``experiment_id`` and customer, with ``arms``) is ``treated_arm`` react to the
    treatment (declining big spenders: see :data:`TREATMENT_KEEPS`)."""

    experiment_id: str
    arms: tuple[Arm, ...]
    treated_arm: str

    def treats(self, shop_id: str, customer_id: str) -> bool:
        return arm_of(shop_id, self.experiment_id, customer_id, self.arms) == self.treated_arm


@dataclass(frozen=True)
class BargainHunter(Persona):
    """Subscribes for an introductory offer, orders with codes, cancels when offers stop."""

    name: ClassVar[PersonaName] = "bargain_hunter"
    signup_share: float = 0.6
    offer_renewals: tuple[int, int] = (2, 4)
    discounts: tuple[tuple[str, float], ...] = (
        ("WELCOME50", 0.5),
        ("SAVE30", 0.3),
        ("LOYAL20", 0.2),
        ("FLASH15", 0.15),
    )
    flash_sale_probability: float = 0.35
    full_price_probability: float = 0.3
    channels: Weights = (("social", 3), ("email", 3), ("marketplace", 2), ("web", 1))
    opt_in_probability: float = 0.95

    def signup_range(self, start: int, end: int) -> tuple[int, int]:
        """Any time in the first ``signup_share`` of the stream."""
        return start, _share_of(start, end, self.signup_share)

    def live(self, journey: Journey) -> None:
        """Discounted boxes while offers last, perhaps one at full price, then cancel on price."""
        rng = journey.rng
        plan = rng.choice(journey.plans("basic"))
        journey.signup(plan, self.channels, self.opt_in_probability)
        offers = rng.randint(*self.offer_renewals)
        boxes = offers + (1 if rng.random() < self.full_price_probability else 0)
        for count in range(boxes):
            at = (
                _first_box(journey)
                if count == 0
                else add_intervals(journey.signup_at, plan.interval, count)
            )
            if count < offers:
                code, share = self.discounts[min(count, len(self.discounts) - 1)]
                journey.renewal(at, discount_code=code, discount=share)
                self._flash_sale(journey, at)
            else:
                journey.renewal(at)
        next_box = add_intervals(journey.signup_at, plan.interval, boxes)
        cancel_at = next_box - rng.randint(HOUR, 2 * DAY)
        journey.cancel(cancel_at, "price", effective_at=next_box)

    def _flash_sale(self, journey: Journey, after: int) -> None:
        """Sometimes buy a one-off with the flash-sale code a day or two after a box."""
        if journey.rng.random() < self.flash_sale_probability:
            code, share = self.discounts[-1]
            at = after + journey.rng.randint(DAY, 2 * DAY)
            journey.one_off(at, journey.shop.kind.products, discount_code=code, discount=share)


@dataclass(frozen=True)
class HolidayGifter(Persona):
    """Appears only in the last November-December of the stream: a gift plan and gift orders."""

    name: ClassVar[PersonaName] = "holiday_gifter"
    signup_until_day: int = 20
    max_gift_orders: int = 2
    channels: Weights = (("marketplace", 3), ("social", 3), ("retail", 2), ("web", 2))
    opt_in_probability: float = 0.3

    def signup_range(self, start: int, end: int) -> tuple[int, int] | None:
        """1 Nov - ``signup_until_day`` Dec of the latest year whose season overlaps the stream."""
        for year in range(datetime.fromtimestamp(end, UTC).year, 1969, -1):
            low = max(start, _epoch(year, 11, 1))
            high = min(end - 1, _epoch(year, 12, self.signup_until_day))
            if low <= high:
                return low, high
            if high < start:
                return None
        return None

    def live(self, journey: Journey) -> None:
        """A prepaid gift box at signup, then up to two gift orders before the year ends."""
        rng = journey.rng
        journey.signup(rng.choice(journey.plans("gift")), self.channels, self.opt_in_probability)
        journey.renewal(_first_box(journey))
        year = datetime.fromtimestamp(journey.signup_at, UTC).year
        season_end = min(journey.window_end, _epoch(year + 1, 1, 1))
        times = sorted(
            rng.randint(journey.signup_at + DAY, max(journey.signup_at + DAY, season_end - HOUR))
            for _ in range(rng.randint(0, self.max_gift_orders))
        )
        for at in times:
            if at < season_end:
                journey.one_off(at, journey.shop.kind.gift_products, max_quantity=3)


def _epoch(year: int, month: int, day: int) -> int:
    """Midnight UTC of a date, as epoch seconds."""
    return int(datetime(year, month, day, tzinfo=UTC).timestamp())


PERSONAS: dict[PersonaName, Persona] = {
    persona.name: persona
    for persona in (
        Loyal(),
        Occasional(),
        QuickCanceller(),
        DecliningBigSpender(),
        BargainHunter(),
        HolidayGifter(),
    )
}
