"""The six kinds of tiny subscription shop the simulation knows, with their catalogues.

Each kind has plans (price per billing interval, EUR), a box category for its
subscription shipments, add-on products for one-off orders, and the questions
its signup form asks. The attributes follow the well-known keys of the v1
contract (``age``, ``gender``, ``region``, ``location_type``, ``preferences``)
plus kind-specific answers (``origin``, ``tea_type``, ``genres``).

>>> [shop.shop_id for shop in shops_per_kind(1)][:3]
['coffee-roaster-1', 'tea-house-1', 'snack-box-1']
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Interval = Literal["week", "month", "quarter", "year"]
Tier = Literal["basic", "premium", "gift", "pay_as_you_go"]
Attributes = dict[str, Any]

CURRENCY = "EUR"
REGIONS = (
    "berlin",
    "bavaria",
    "hamburg",
    "north_rhine_westphalia",
    "saxony",
    "hesse",
    "baden_wuerttemberg",
    "lower_saxony",
)
GENDERS = ("female", "male", "diverse")
GENDER_WEIGHTS = (0.48, 0.48, 0.04)


@dataclass(frozen=True, slots=True)
class Plan:
    """A plan a customer can subscribe to; ``price`` is charged every ``interval``."""

    plan_id: str
    tier: Tier
    interval: Interval
    price: float

    def payload(self) -> dict[str, Any]:
        """The contract's ``plan`` object."""
        return {
            "plan_id": self.plan_id,
            "price": self.price,
            "currency": CURRENCY,
            "interval": self.interval,
            "tier": self.tier,
        }


@dataclass(frozen=True, slots=True)
class Product:
    """Something a customer can buy as a one-off add-on."""

    sku: str
    category: str
    unit_price: float


AttributeSampler = Callable[[random.Random], Attributes]


@dataclass(frozen=True, slots=True)
class ShopKind:
    """Catalogue and signup form shared by every shop of one kind."""

    kind: str
    slug: str
    box_category: str
    plans: tuple[Plan, ...]
    products: tuple[Product, ...]
    gift_products: tuple[Product, ...]
    form: AttributeSampler

    def plans_of(self, tier: Tier) -> tuple[Plan, ...]:
        """Plans of one tier (every kind has at least one of each tier)."""
        return tuple(plan for plan in self.plans if plan.tier == tier)


@dataclass(frozen=True, slots=True)
class Shop:
    """One simulated shop: an id and the kind it is."""

    shop_id: str
    kind: ShopKind


def _common(rng: random.Random) -> Attributes:
    """Demographic answers every signup form carries; gender only sometimes."""
    attributes: Attributes = {
        "age": min(85, max(18, round(rng.gauss(39, 12)))),
        "region": rng.choice(REGIONS),
        "location_type": "urban" if rng.random() < 0.68 else "rural",
    }
    if rng.random() < 0.6:
        attributes["gender"] = rng.choices(GENDERS, GENDER_WEIGHTS)[0]
    return attributes


def _coffee_form(rng: random.Random) -> Attributes:
    """Coffee: brew strength and favourite origin."""
    attributes = _common(rng)
    attributes["origin"] = rng.choice(("ethiopia", "colombia", "brazil", "guatemala", "kenya"))
    attributes["preferences"] = ["strong_brew"] if rng.random() < 0.45 else []
    return attributes


def _tea_form(rng: random.Random) -> Attributes:
    """Tea: the kind of tea the customer drinks most."""
    attributes = _common(rng)
    attributes["tea_type"] = rng.choice(("green", "black", "oolong", "herbal", "white", "rooibos"))
    return attributes


def _snacks_form(rng: random.Random) -> Attributes:
    """Snack box: demographics only."""
    return _common(rng)


def _meal_kit_form(rng: random.Random) -> Attributes:
    """Meal kit: dietary needs (vegan, gluten-free) as preferences."""
    attributes = _common(rng)
    diet = [tag for tag, share in (("vegan", 0.25), ("gluten_free", 0.15)) if rng.random() < share]
    attributes["preferences"] = diet
    return attributes


def _soap_form(rng: random.Random) -> Attributes:
    """Soap: whether the customer buys for environmental reasons."""
    attributes = _common(rng)
    attributes["preferences"] = ["eco_conscious"] if rng.random() < 0.6 else []
    return attributes


def _book_club_form(rng: random.Random) -> Attributes:
    """Book club: one to three favourite genres."""
    attributes = _common(rng)
    genres = ("crime", "fantasy", "sci_fi", "romance", "literary", "history", "biography")
    attributes["genres"] = sorted(rng.sample(genres, rng.randint(1, 3)))
    return attributes


def _plans(prefix: str, *rows: tuple[str, Tier, Interval, float]) -> tuple[Plan, ...]:
    """Plans of one kind, every id prefixed; a free pay-as-you-go plan is always added."""
    plans = tuple(
        Plan(f"{prefix}-{name}", tier, interval, price) for name, tier, interval, price in rows
    )
    return (*plans, Plan(f"{prefix}-pay-as-you-go", "pay_as_you_go", "month", 0.0))


def _products(prefix: str, *rows: tuple[str, str, float]) -> tuple[Product, ...]:
    """Products of one kind, every sku prefixed."""
    return tuple(Product(f"{prefix}-{name}", category, price) for name, category, price in rows)


KINDS: tuple[ShopKind, ...] = (
    ShopKind(
        kind="coffee",
        slug="coffee-roaster",
        box_category="coffee_beans",
        plans=_plans(
            "coffee",
            ("weekly-250g", "basic", "week", 7.90),
            ("monthly-500g", "basic", "month", 16.90),
            ("monthly-1kg-single-origin", "premium", "month", 29.90),
            ("gift-3-months", "gift", "quarter", 45.00),
        ),
        products=_products(
            "coffee",
            ("single-origin-250g", "coffee_beans", 11.50),
            ("espresso-blend-1kg", "coffee_beans", 27.00),
            ("paper-filters", "equipment", 4.90),
            ("hand-grinder", "equipment", 49.00),
            ("enamel-mug", "merch", 14.00),
        ),
        gift_products=_products(
            "coffee",
            ("tasting-set", "gift_set", 34.00),
            ("gift-card-25", "gift_card", 25.00),
        ),
        form=_coffee_form,
    ),
    ShopKind(
        kind="tea",
        slug="tea-house",
        box_category="loose_tea",
        plans=_plans(
            "tea",
            ("monthly-discovery", "basic", "month", 12.50),
            ("monthly-grand-cru", "premium", "month", 24.00),
            ("gift-3-months", "gift", "quarter", 36.00),
        ),
        products=_products(
            "tea",
            ("sencha-100g", "loose_tea", 8.90),
            ("darjeeling-100g", "loose_tea", 12.90),
            ("matcha-30g", "loose_tea", 18.50),
            ("glass-teapot", "teaware", 29.00),
            ("tea-strainer", "teaware", 6.50),
        ),
        gift_products=_products(
            "tea",
            ("advent-calendar", "gift_set", 39.00),
            ("gift-card-25", "gift_card", 25.00),
        ),
        form=_tea_form,
    ),
    ShopKind(
        kind="snacks",
        slug="snack-box",
        box_category="snack_box",
        plans=_plans(
            "snacks",
            ("weekly-mini", "basic", "week", 6.99),
            ("monthly-classic", "basic", "month", 19.99),
            ("monthly-deluxe", "premium", "month", 32.99),
            ("gift-3-months", "gift", "quarter", 55.00),
        ),
        products=_products(
            "snacks",
            ("protein-bars-6", "bars", 9.90),
            ("trail-mix-500g", "nuts", 7.50),
            ("dark-chocolate", "sweets", 3.90),
            ("veggie-chips", "savory", 2.90),
        ),
        gift_products=_products(
            "snacks",
            ("holiday-crate", "gift_set", 42.00),
            ("gift-card-25", "gift_card", 25.00),
        ),
        form=_snacks_form,
    ),
    ShopKind(
        kind="meal_kit",
        slug="meal-kit",
        box_category="meal_box",
        plans=_plans(
            "mealkit",
            ("weekly-2-people", "basic", "week", 49.90),
            ("weekly-4-people", "premium", "week", 84.90),
            ("gift-3-boxes", "gift", "quarter", 139.00),
        ),
        products=_products(
            "mealkit",
            ("dessert", "dessert", 5.90),
            ("breakfast-pack", "breakfast", 12.90),
            ("spice-set", "pantry", 9.50),
            ("wine-pairing", "drinks", 14.90),
        ),
        gift_products=_products(
            "mealkit",
            ("festive-dinner", "gift_set", 69.00),
            ("gift-card-50", "gift_card", 50.00),
        ),
        form=_meal_kit_form,
    ),
    ShopKind(
        kind="soap",
        slug="soap-maker",
        box_category="soap_box",
        plans=_plans(
            "soap",
            ("monthly-bar", "basic", "month", 9.90),
            ("quarterly-collection", "premium", "quarter", 34.00),
            ("gift-quarter", "gift", "quarter", 29.00),
        ),
        products=_products(
            "soap",
            ("lavender-bar", "soap", 6.50),
            ("shampoo-bar", "hair_care", 8.90),
            ("wooden-dish", "accessories", 7.90),
            ("refill-liquid-500ml", "refill", 12.00),
        ),
        gift_products=_products(
            "soap",
            ("gift-box", "gift_set", 32.00),
            ("gift-card-25", "gift_card", 25.00),
        ),
        form=_soap_form,
    ),
    ShopKind(
        kind="book_club",
        slug="book-club",
        box_category="books",
        plans=_plans(
            "books",
            ("monthly-paperback", "basic", "month", 15.90),
            ("monthly-hardcover", "premium", "month", 28.90),
            ("gift-3-months", "gift", "quarter", 45.00),
        ),
        products=_products(
            "books",
            ("extra-paperback", "books", 12.00),
            ("extra-hardcover", "books", 24.00),
            ("reading-light", "accessories", 15.00),
            ("tote-bag", "merch", 9.00),
        ),
        gift_products=_products(
            "books",
            ("gift-bundle", "gift_set", 39.00),
            ("gift-card-25", "gift_card", 25.00),
        ),
        form=_book_club_form,
    ),
)
KINDS_BY_NAME: dict[str, ShopKind] = {kind.kind: kind for kind in KINDS}


def shops_per_kind(count: int, kinds: tuple[ShopKind, ...] = KINDS) -> list[Shop]:
    """``count`` shops of every kind, numbered from 1 ("coffee-roaster-1", "tea-house-2", ...)."""
    return [Shop(f"{kind.slug}-{number}", kind) for number in range(1, count + 1) for kind in kinds]
