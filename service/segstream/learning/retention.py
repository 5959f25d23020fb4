"""What the churn model reads: a few features that say whether a buyer orders again.

The churn probability is P(leaving within ``horizon`` days: no order, renewals included,
or a cancellation asked for). Its
features (:data:`FEATURES`, all of one :class:`~segstream.domain.features.CustomerSnapshot`):

- ``base``: the logit of the shop's BG/NBD P(no purchase within the horizon), from its
  lifetime model (``1 - P(alive) (1 - ((alpha + T) / (alpha + T + H)) ^ (r + x))``); before the
  shop has a fit, the logit of a cold-start guess (the share of the way to a lapse the
  customer's silence has gone), and ``no_fit`` is 1;
- ``quiet``, ``repeat_days``, ``age``: log(1 + days since the last purchase), of the repeat
  purchase days (lifetimes' frequency) and of the days since the first purchase (T);
- ``overdue``: log(1 + quiet days / the customer's own cadence), 0 before a repeat purchase;
- ``subscribed``, ``cancelled``: a paying subscription (active, priced plan), a
  cancellation (pending or done);
- ``renewal_due``: for a paying subscriber, log(1 + quiet days / (billing period + grace));
- ``discount_share``, ``renewal_share``: the shares of orders placed with a discount code
  and of renewals (bargain hunters leave when offers stop);
- ``plan_age``: for a paying subscriber, log(1 + days since first seen) (young
  subscriptions are cancelled most);
- ``spend_trend``: log(latest purchase day's spend / the mean purchase day's), within
  +-3, 0 before a repeat purchase (big spenders who fade spend less before they go);
- ``gap_trend``: log(1 + the latest gap between purchase days / the usual one), 0 before
  two repeat purchases (gaps widen before a customer goes);
- ``plan_price``: for a paying subscriber, log(1 + the plan's price) (cheap trial plans
  are left most).

A paying subscriber who has not bought yet is scored too (a box not shipped yet): no
purchase, so ``base`` is the cold-start guess.

A model whose weights are all 0 but ``base``'s 1 answers BG/NBD's probability: the
prior the churn model starts from (:data:`PRIOR_MEAN`).

Expected orders (:func:`expected_orders`) are BG/NBD's, scaled by the churn model's
calibrated chance of an order within its horizon over BG/NBD's chance of the same: ``E_h =
E_BG(h) * P(order within H) / P_BG(order within H)`` for every horizon ``h`` (BG/NBD
keeps the shape over time, the shop's labels set the level). So the count agrees with
the probability the shop sees, and learns what the probability learns. A paying
subscriber whose renewals stopped coming on schedule (:func:`off_schedule`) is expected
at most one order: their chance of coming back (:func:`p_buys_within`), not the pace of
their past renewals.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Protocol, cast, runtime_checkable

from segstream.domain.customer import renewal_rule
from segstream.domain.features import CustomerSnapshot
from segstream.learning.labels import LapseRule
from segstream.learning.lifetime import LifetimeFit
from segstream.learning.logit import sigmoid

FEATURES = (
    "bias",
    "base",
    "no_fit",
    "quiet",
    "repeat_days",
    "age",
    "overdue",
    "subscribed",
    "cancelled",
    "renewal_due",
    "discount_share",
    "renewal_share",
    "plan_age",
    "spend_trend",
    "gap_trend",
    "plan_price",
)
HORIZONS = (30, 90, 365)
"""Days ahead of the expected orders the API, the rule fields and churn-risk changes give."""
PRIOR_MEAN = tuple(1.0 if name == "base" else 0.0 for name in FEATURES)
"""Weights before any label: BG/NBD's (or the cold-start guess's) probability as it is."""
CLIP = 1e-4
"""Probabilities the ``base`` logit is taken of are clipped to [CLIP, 1 - CLIP]."""
COLD_CLIP = 0.02
"""The cold-start guess stays within [COLD_CLIP, 1 - COLD_CLIP]: a guess, not a certainty."""


def logit(p: float, clip: float = CLIP) -> float:
    """``log(p / (1 - p))`` of ``p`` clipped to ``[clip, 1 - clip]``."""
    p = min(max(p, clip), 1.0 - clip)
    return math.log(p / (1.0 - p))


def cold_start(customer: CustomerSnapshot, lapse: LapseRule) -> float:
    """Share of the way to a lapse the customer's silence has gone (0..1)."""
    return min(1.0, customer.last_activity_days / lapse.gap_days(customer))


def p_no_order(customer: CustomerSnapshot, horizon_days: float) -> float | None:
    """BG/NBD's P(no purchase within ``horizon_days``) from the shop's lifetime model (None
    without a fit or a purchase)."""
    fit: LifetimeFit | None = customer.lifetime
    if fit is None or not customer.has_purchased:
        return None
    buys = fit.model.p_buys_within(horizon_days, customer.frequency, customer.recency, customer.T)
    return 1.0 - float(buys)


def features(
    customer: CustomerSnapshot, horizon_days: float, lapse: LapseRule
) -> tuple[float, ...]:
    """The customer's :data:`FEATURES` (a buyer or a paying subscriber:
    ``customer.is_customer``)."""
    bg = p_no_order(customer, horizon_days)
    base = logit(min(max(cold_start(customer, lapse), COLD_CLIP), 1.0 - COLD_CLIP))
    if bg is not None and math.isfinite(bg):
        base = logit(bg)
    quiet = customer.days_since_last_purchase
    quiet = customer.last_activity_days if quiet is None else quiet
    cadence = customer.cadence_days
    renewal = renewal_rule(customer.plan_price, customer.plan_interval)
    paying = customer.subscription == "active" and renewal is not None
    return (
        1.0,
        base,
        float(bg is None),
        math.log1p(quiet),
        math.log1p(customer.frequency),
        math.log1p(customer.T),
        0.0 if cadence is None else math.log1p(quiet / max(cadence, 1.0)),
        float(paying),
        float(customer.subscription in ("cancelling", "cancelled")),
        math.log1p(quiet / (renewal.period + renewal.late)) if paying and renewal else 0.0,
        customer.discount_order_count / max(customer.order_count, 1),
        customer.renewal_count / max(customer.order_count, 1),
        math.log1p(customer.tenure_days) if paying else 0.0,
        _spend_trend(customer),
        _gap_trend(customer),
        math.log1p(customer.plan_price or 0.0) if paying else 0.0,
    )


def _gap_trend(customer: CustomerSnapshot) -> float:
    """log(1 + latest gap / usual gap); 0 before two repeat purchases."""
    gap, cadence = customer.last_gap_days, customer.cadence_days
    if gap is None or cadence is None or customer.frequency < 2:
        return 0.0
    return math.log1p(gap / max(cadence, 1.0))


SPEND_TREND_LIMIT = 3.0


def _spend_trend(customer: CustomerSnapshot) -> float:
    """log(latest purchase day's spend / the mean purchase day's), within
    +-SPEND_TREND_LIMIT; 0 before a repeat purchase or without spend."""
    if customer.frequency < 1 or customer.total_spend <= 0.0:
        return 0.0
    mean = customer.total_spend / (customer.frequency + 1)
    if customer.last_purchase_amount <= 0.0:
        return -SPEND_TREND_LIMIT
    trend = math.log(customer.last_purchase_amount / mean)
    return min(max(trend, -SPEND_TREND_LIMIT), SPEND_TREND_LIMIT)


def expected_orders(
    customer: CustomerSnapshot, days: float, p_no_order_model: float, horizon_days: float
) -> float | None:
    """A buyer's expected orders (purchase days) in the next ``days`` days, from the shop's
    BG/NBD fit and ``p_no_order_model``, the churn model's P(no order within
    ``horizon_days``) (module docstring); None without a fit, or where BG/NBD's formulas do
    not hold (a non-finite value)."""
    fit: LifetimeFit | None = customer.lifetime
    if fit is None or not customer.has_purchased:
        return None
    model, x, t_x, big_t = fit.model, customer.frequency, customer.recency, customer.T
    counted = model.expected_purchases(days, x, t_x, big_t)
    buys_bg = model.p_buys_within(horizon_days, x, t_x, big_t)
    if not (math.isfinite(counted) and counted >= 0.0 and math.isfinite(buys_bg)):
        return None
    found = counted if buys_bg <= CLIP else counted * (1.0 - p_no_order_model) / buys_bg
    if off_schedule(customer):
        return min(found, p_buys_within(customer, days, p_no_order_model, horizon_days))
    return found


def p_buys_within(
    customer: CustomerSnapshot, days: float, p_no_order_model: float, horizon_days: float
) -> float:
    """P(an order within ``days``): BG/NBD's odds for ``days`` shifted by as much as the
    churn model shifts them for its own horizon (``p_no_order_model``: exact there). The
    customer has a purchase and the shop a fit."""
    model = customer.lifetime.model
    x, t_x, big_t = customer.frequency, customer.recency, customer.T
    bg_days = model.p_buys_within(days, x, t_x, big_t)
    bg_horizon = model.p_buys_within(horizon_days, x, t_x, big_t)
    shift = logit(p_no_order_model) - logit(1.0 - bg_horizon)
    return 1.0 - sigmoid(logit(1.0 - bg_days) + shift)


def off_schedule(customer: CustomerSnapshot) -> bool:
    """A paying subscriber whose renewals stopped coming on schedule: quiet longer than a
    billing period and its grace. Their past pace (BG/NBD's rate) no longer holds: what is
    left to expect of them is a comeback, at most one order, with the churn model's
    chance."""
    renewal = renewal_rule(customer.plan_price, customer.plan_interval)
    quiet = customer.days_since_last_purchase
    return (
        customer.subscription == "active"
        and renewal is not None
        and quiet is not None
        and quiet > renewal.period + renewal.late
    )


@runtime_checkable
class OrdersForecast(Protocol):
    """What gives a customer's expected orders (the churn model): rule fields and the API
    read it from the customer's snapshot (``CustomerSnapshot.forecast``)."""

    def expected_orders(self, customer: CustomerSnapshot, days: int) -> float | None:
        """Expected orders (purchase days) in the next ``days`` days; None when unknown."""
        ...


def forecast_of(models: Iterable[object]) -> OrdersForecast | None:
    """The first of ``models`` that is an :class:`OrdersForecast`, judged once per class (a
    runtime Protocol check walks the protocol's attributes on every call, and every
    customer snapshot asks)."""
    for model in models:
        kind = type(model)
        forecasts = _FORECASTS.get(kind)
        if forecasts is None:
            forecasts = _FORECASTS[kind] = callable(getattr(kind, "expected_orders", None))
        if forecasts:
            return cast(OrdersForecast, model)
    return None


_FORECASTS: dict[type, bool] = {}
"""Per model class, whether its instances are :class:`OrdersForecast` (its methods are
the class's)."""
