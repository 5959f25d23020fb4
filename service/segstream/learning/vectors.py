"""The behavioural feature vector learned models read, and the online scaler they scale it with.

:func:`behaviour_vector` turns a :class:`~segstream.domain.features.CustomerSnapshot` into a
plain ``{name: float}`` dict (what river models take). Counts, money and day spans
are heavy-tailed, so they enter as ``log1p``; :func:`original_value` undoes that
for descriptions in the shop's own units. Shares and flags enter as they are.

:class:`FadingScaler` standardises online: an exact running mean and variance for
the first ``1 / fading`` updates, then exponentially fading ones, so early
z-scores are sane (river's ``AdaptiveStandardScaler`` starts with zero variance)
and the scale follows a shop whose customers change.

>>> scaler = FadingScaler(fading=0.5)
>>> for value in (1.0, 3.0):
...     scaler.learn_one({"x": value})
>>> scaler.transform_one({"x": 3.0})
{'x': 1.0}
"""

from __future__ import annotations

import math

from segstream.domain.features import CustomerSnapshot

Vector = dict[str, float]

LOGGED = (
    "quiet_days",
    "repeat_days",
    "mean_order_value",
    "spend_per_month",
    "tenure_days",
    "cadence_days",
    "overdue",
)
"""Features that enter as ``log1p`` of their value in original units."""

FEATURES = (
    *LOGGED,
    "orders_per_month",
    "discount_share",
    "renewal_share",
    "subscribed",
    "cancelled",
    "gift_plan",
)
"""Every feature of :func:`behaviour_vector`, in a fixed order (for compact storage)."""

MONTH_DAYS = 30.0
MAX_OVERDUE = 20.0


def behaviour_vector(customer: CustomerSnapshot) -> Vector:
    """What a customer's behaviour looks like at ``customer.as_of`` (see :data:`FEATURES`).

    - ``quiet_days``: days since the last purchase (since first seen if none);
    - ``repeat_days``: the lifetimes ``frequency``;
    - ``mean_order_value``, ``spend_per_month`` (over the tenure, at least a month);
    - ``tenure_days``; ``cadence_days``: usual days between purchase days (the tenure
      while there is no repeat purchase: the gap is at least that long);
    - ``overdue``: quiet days / cadence, capped: how late the next purchase is;
    - ``orders_per_month``, ``discount_share`` and ``renewal_share`` of orders;
    - ``subscribed``, ``cancelled`` (cancelled or cancelling), ``gift_plan``: 0/1 flags.

    >>> from datetime import date
    >>> from segstream.domain.customer import CustomerState
    >>> from segstream.domain.events import parse_time
    >>> from segstream.domain.features import snapshot
    >>> state = CustomerState("shop", "c-1", first_seen_at=parse_time("2026-01-01T00:00:00Z"),
    ...     purchase_days={date(2026, 1, 1): 10.0, date(2026, 1, 11): 30.0}, order_count=2,
    ...     total_spend=40.0, discount_order_count=1)
    >>> vector = behaviour_vector(snapshot(state, parse_time("2026-01-31T00:00:00Z")))
    >>> round(original_value("cadence_days", vector["cadence_days"]), 6), vector["discount_share"]
    (10.0, 0.5)
    """
    orders = max(customer.order_count, 1)
    quiet = customer.days_since_last_purchase
    quiet_days = customer.tenure_days if quiet is None else quiet
    cadence = customer.cadence_days if customer.cadence_days is not None else customer.tenure_days
    raw = {
        "quiet_days": quiet_days,
        "repeat_days": float(customer.frequency),
        "mean_order_value": customer.total_spend / orders,
        "spend_per_month": customer.total_spend
        / max(customer.tenure_days, MONTH_DAYS)
        * MONTH_DAYS,
        "tenure_days": customer.tenure_days,
        "cadence_days": cadence,
        "overdue": min(quiet_days / max(cadence, 1.0), MAX_OVERDUE),
    }
    vector = {name: math.log1p(max(value, 0.0)) for name, value in raw.items()}
    vector.update(
        orders_per_month=customer.order_count / max(customer.tenure_days, MONTH_DAYS) * MONTH_DAYS,
        discount_share=customer.discount_order_count / orders,
        renewal_share=customer.renewal_count / orders,
        subscribed=float(customer.subscription == "active"),
        cancelled=float(customer.subscription in ("cancelling", "cancelled")),
        gift_plan=float(customer.plan_tier == "gift"),
    )
    return vector


def original_value(feature: str, value: float) -> float:
    """A feature's value in original units (days, counts, money, shares).

    >>> round(original_value("tenure_days", math.log1p(90.0)), 6), original_value("subscribed", 1.0)
    (90.0, 1.0)
    """
    return math.expm1(value) if feature in LOGGED else value


def as_row(vector: Vector) -> tuple[float, ...]:
    """The vector as a tuple in :data:`FEATURES` order (compact to keep and pickle)."""
    return tuple(vector[name] for name in FEATURES)


def from_row(row: tuple[float, ...]) -> Vector:
    """Inverse of :func:`as_row`."""
    return dict(zip(FEATURES, row, strict=True))


class FadingScaler:
    """Online standardisation: running mean and variance with a floor on the update rate.

    The rate of update ``n`` is ``max(1 / n, fading)``: an exact average while few
    values were seen, an exponentially weighted one (memory about ``1 / fading``
    updates) after. A feature without spread yet scales to 0.
    """

    def __init__(self, fading: float = 0.001) -> None:
        self.fading = fading
        self.count = 0
        self.means: Vector = {}
        self.variances: Vector = {}

    def learn_one(self, x: Vector) -> None:
        """Update the mean and variance of every feature of ``x``."""
        self.count += 1
        rate = max(1.0 / self.count, self.fading)
        for name, value in x.items():
            mean = self.means.get(name, value)
            delta = value - mean
            self.means[name] = mean + rate * delta
            variance = self.variances.get(name, 0.0)
            self.variances[name] = (1.0 - rate) * (variance + rate * delta * delta)

    def transform_one(self, x: Vector) -> Vector:
        """``x`` in standard deviations from the mean."""
        return {name: self.z(name, value) for name, value in x.items()}

    def z(self, name: str, value: float) -> float:
        """One feature's value in standard deviations from its mean."""
        spread = math.sqrt(self.variances.get(name, 0.0))
        return 0.0 if spread <= 0.0 else (value - self.means.get(name, value)) / spread

    def inverse(self, name: str, z: float) -> float:
        """The value (in vector units) that lies ``z`` standard deviations from the mean."""
        return self.means.get(name, 0.0) + z * math.sqrt(self.variances.get(name, 0.0))
