"""Customer lifetime: BG/NBD P(alive), expected purchases, next order, CLV and its trend.

BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): while
alive a customer buys as a Poisson process of rate ``lambda ~ Gamma(r, alpha)``
and after every purchase drops out with probability ``p ~ Beta(a, b)``. The four
parameters are fitted per shop by maximum likelihood over its customers'
``(frequency, recency, T)`` (the lifetimes definitions, in days; see
:mod:`segstream.domain.features`), as ``lifetimes.BetaGeoFitter`` does: the same
log-likelihood, optimised over log-parameters, with its conventions (P(alive) is 1
for a customer without repeat purchases). Per customer everything is then a
closed formula: cheap enough to evaluate at every event.

- :meth:`BgNbd.p_alive`, :meth:`BgNbd.expected_purchases` (in the next ``t`` days),
  :meth:`BgNbd.p_buys_within` (at least one purchase in the next ``t`` days),
  :meth:`BgNbd.expected_days_to_next_order` (if alive: the posterior mean of the
  waiting time of their Poisson process, ``(alpha + T) / (r + x - 1)``);
- :func:`clv`: expected purchases over a horizon x value per purchase (the mean
  repeat spend, ``monetary_value``; the mean order value without repeats);
- :func:`spend_trend` and :func:`cant_lose`: a customer whose spend rate over the
  last ``window_days`` fell below ``drop_ratio`` x their own earlier rate, and whose
  earlier rate was high for the shop: a "Can't lose them" candidate.

>>> model = BgNbd(r=0.24, alpha=4.41, a=0.79, b=2.43)
>>> model.p_alive(frequency=0, recency=0.0, T=30.0)
1.0
>>> round(model.p_alive(frequency=2, recency=30.0, T=35.0), 3)
0.762
"""

from __future__ import annotations

import functools
import importlib
import math
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np

from segstream.domain.features import CustomerSnapshot
from segstream.observability.logs import get_logger

optimize: Any = importlib.import_module("scipy.optimize")  # scipy ships no type hints
special: Any = importlib.import_module("scipy.special")

Array = Any

log = get_logger(__name__)

MAX_WAIT_DAYS = 36_525.0
"""Longest expected wait for a next order shown (a century); beyond it (or infinite:
:meth:`BgNbd.expected_days_to_next_order`) the answers say null."""

MAX_EXPONENT = 1000.0
"""Largest power of two taken (2 ** 1024 overflows a float)."""


@dataclass(frozen=True, slots=True)
class BgNbd:
    """Fitted BG/NBD parameters (purchase rate ``Gamma(r, alpha)``, dropout ``Beta(a, b)``)."""

    r: float
    alpha: float
    a: float
    b: float

    def p_alive(self, frequency: int, recency: float, T: float) -> float:  # noqa: N803
        """Probability the customer is still alive at ``T`` (1 without repeat purchases).
        A fit whose ``a`` underflowed to 0 (no one ever drops out) or whose ``b`` did with
        one repeat purchase (everyone drops out after it) gives the limits, 1 and 0; the
        log of 0 raised and failed the record (a chaos run's replay, seed 571223)."""
        if frequency == 0 or self.a <= 0.0:
            return 1.0
        stays = self.b + frequency - 1
        if stays <= 0.0:
            return 0.0
        log_odds_dead = (self.r + frequency) * math.log(
            (self.alpha + T) / (self.alpha + recency)
        ) + (math.log(self.a) - math.log(stays))
        return float(special.expit(-log_odds_dead))  # 1 / (1 + e^z) without overflow

    def expected_purchases(self, t: float, frequency: int, recency: float, T: float) -> float:  # noqa: N803
        """Expected purchases in the next ``t`` days, conditional on the history: the paper's
        closed formula (eq. 10), or, where a fit makes it fail numerically (``a`` near 1,
        extreme parameters of a small shop: a 0/0, an overflow, a negative or NaN result),
        the same expectation by quadrature (:func:`_expected_if_alive`), always finite.
        An ``a`` that underflowed to 0 is the limit without dropout: the posterior mean
        rate over ``t`` days."""
        if self.a <= 0.0:
            return (self.r + frequency) / (self.alpha + T) * t
        try:
            found = self._closed_expected_purchases(t, frequency, recency, T)
        except (OverflowError, ZeroDivisionError):
            found = math.nan
        if math.isfinite(found) and found >= 0.0:
            return found
        return self.p_alive(frequency, recency, T) * _expected_if_alive(self, t, frequency, T)

    def _closed_expected_purchases(
        self,
        t: float,
        frequency: int,
        recency: float,
        T: float,  # noqa: N803
    ) -> float:
        r, alpha, a, b, x = self.r, self.alpha, self.a, self.b, frequency
        z = t / (alpha + T + t)
        hyp = _hyp2f1(r + x, b + x, a + b + x - 1, z)
        first = (a + b + x - 1) / (a - 1)
        second = 1.0 - hyp * math.pow((alpha + T) / (alpha + T + t), r + x)
        alive_odds = (
            0.0 if x == 0 else a / (b + x - 1) * math.pow((alpha + T) / (alpha + recency), r + x)
        )
        return first * second / (1.0 + alive_odds)

    def p_buys_within(self, t: float, frequency: int, recency: float, T: float) -> float:  # noqa: N803
        """P(at least one purchase in the next ``t`` days | history): alive now and the
        Poisson process fires, its rate's posterior given alive being
        ``Gamma(r + x, alpha + T)``, so ``p_alive * (1 - ((alpha + T) / (alpha + T + t)) **
        (r + x))`` (a customer drops out only at a purchase: one alive now who buys nothing
        stays alive). For a one-time buyer P(alive) is 1, and this is what ranks them.

        >>> model = BgNbd(r=0.24, alpha=4.41, a=0.79, b=2.43)
        >>> round(model.p_buys_within(90.0, frequency=0, recency=0.0, T=30.0), 3)
        0.265
        """
        alive = self.p_alive(frequency, recency, T)
        scale = self.alpha + T
        return alive * (1.0 - math.pow(scale / (scale + t), self.r + frequency))

    def expected_days_to_next_order(self, frequency: int, T: float) -> float:  # noqa: N803
        """If alive: posterior mean wait for the next purchase, ``(alpha + T) / (r + x - 1)``
        (the posterior median when ``r + x <= 1``, where the mean is infinite); infinite
        when even the median is beyond a float (a fit with a tiny ``r``).

        >>> BgNbd(r=0.0005, alpha=4.41, a=0.79, b=2.43).expected_days_to_next_order(0, 30.0)
        inf
        """
        shape = self.r + frequency
        scale = self.alpha + T
        if shape > 1.0:
            return scale / (shape - 1.0)
        if shape <= 0.0 or 1.0 / shape > MAX_EXPONENT:
            return math.inf
        return scale * (math.pow(2.0, 1.0 / shape) - 1.0)

    def unconditional_expected_purchases(self, t: float) -> float:
        """Expected purchases of a new customer in their first ``t`` days."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        hyp = _hyp2f1(r, b, a + b - 1, t / (alpha + t))
        return (a + b - 1) / (a - 1) * (1.0 - math.pow(alpha / (alpha + t), r) * hyp)


_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(64)
QUANTILES, QUANTILE_WEIGHTS = (_NODES + 1.0) / 2.0, _WEIGHTS / 2.0
"""Gauss-Legendre nodes and weights over (0, 1): :func:`_expected_if_alive` integrates over
the dropout probability's quantiles."""


def _expected_if_alive(model: BgNbd, t: float, frequency: int, T: float) -> float:  # noqa: N803
    """Expected purchases in the next ``t`` days of a customer alive at ``T``: given alive,
    the purchase rate's posterior is ``Gamma(r + x, alpha + T)`` and the dropout's
    ``Beta(a, b + x)``; a customer of rate ``lambda`` and dropout ``p`` buys ``(1 -
    exp(-lambda p t)) / p`` in expectation, which over the rate is ``(1 - (s / (s + p
    t)) ** k) / p`` (``s = alpha + T``, ``k = r + x``), bounded by ``k t / s``. That is
    integrated over the dropout's quantiles (64 Gauss-Legendre nodes): finite for any
    parameters, some 0.2 ms, so only the closed formula's fallback."""
    scale, shape = model.alpha + T, model.r + frequency
    dropout = _dropout_quantiles(model.a, model.b + frequency)
    bought = -np.expm1(-shape * np.log1p(dropout * t / scale)) / dropout
    return float(np.dot(QUANTILE_WEIGHTS, bought))


@functools.lru_cache(maxsize=512)
def _dropout_quantiles(a: float, b: float) -> Array:
    """The ``Beta(a, b)`` dropout's quantiles at :data:`QUANTILES` (floored above 0), read
    only. ``betaincinv`` is most of the integral's cost, and a shop's fit and its customers'
    few distinct frequencies repeat the same ``(a, b)`` until the next refit."""
    if b <= 0.0:  # Beta(a, 0), a fit whose b underflowed: a dropout certain at p = 1
        dropout = np.ones_like(QUANTILES)
    else:
        dropout = np.maximum(special.betaincinv(a, b, QUANTILES), 1e-300)
    dropout.setflags(write=False)
    return dropout


def _hyp2f1(a: float, b: float, c: float, z: float) -> float:
    """Gauss hypergeometric 2F1 (Euler's transformation where the series overflows)."""
    value = float(special.hyp2f1(a, b, c, z))
    if math.isfinite(value):
        return value
    return float(special.hyp2f1(c - a, c - b, c, z)) * math.pow(1.0 - z, c - a - b)


def log_likelihood(params: BgNbd, frequency: Array, recency: Array, T: Array) -> Array:  # noqa: N803
    """Per-customer BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 6)."""
    terms = _Terms(params, frequency, recency, T)
    return terms.common + terms.top + np.log(terms.stays + terms.leaves)


@dataclass(slots=True, init=False)
class _Terms:
    """The parts of eq. 6 per customer: the gamma-function ``common`` part and the mixture
    of surviving to ``T`` (``stays``) and dropping out after the last purchase
    (``leaves``), both scaled by ``exp(-top)``."""

    x: Array
    t_x: Array
    big_t: Array
    gone: Array
    common: Array
    top: Array
    stays: Array
    leaves: Array

    def __init__(self, params: BgNbd, frequency: Array, recency: Array, T: Array) -> None:  # noqa: N803
        x, t_x, big_t = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
        r, alpha, a, b = params.r, params.alpha, params.a, params.b
        self.x, self.t_x, self.big_t = x, t_x, big_t
        self.gone = b + np.maximum(x, 1.0) - 1.0
        self.common = (
            special.gammaln(r + x)
            - special.gammaln(r)
            + r * np.log(alpha)
            + special.gammaln(a + b)
            + special.gammaln(b + x)
            - special.gammaln(b)
            - special.gammaln(a + b + x)
        )
        survived = -(r + x) * np.log(alpha + big_t)
        dropped = np.log(a) - np.log(self.gone) - (r + x) * np.log(alpha + t_x)
        # no repeat purchase, no dropping out: the term must not set the scale either (it
        # dominated for extreme parameters and made the survival term underflow to -inf)
        dropped = np.where(x > 0, dropped, -np.inf)
        self.top = np.maximum(survived, dropped)
        self.stays = np.exp(survived - self.top)
        self.leaves = np.exp(dropped - self.top) * (x > 0)


def log_likelihood_gradient(
    params: BgNbd,
    frequency: Array,
    recency: Array,
    T: Array,  # noqa: N803
) -> tuple[Array, Array]:
    """:func:`log_likelihood` per customer and its gradient over ``(r, alpha, a, b)`` (one
    row per parameter): the derivatives of eq. 6, digamma where gammaln stands, each of
    the mixture's two terms weighted by its share of the mixture."""
    terms = _Terms(params, frequency, recency, T)
    x, t_x, big_t = terms.x, terms.t_x, terms.big_t
    # numpy scalars: a parameter the search drove to 0 or inf gives inf or NaN, which the
    # fit's bound turns into a large value, where Python floats would raise
    r, alpha, a, b = (np.float64(v) for v in (params.r, params.alpha, params.a, params.b))
    mixture = terms.stays + terms.leaves
    stays, leaves = terms.stays / mixture, terms.leaves / mixture  # the terms' shares
    psi_ab, psi_abx = special.digamma(a + b), special.digamma(a + b + x)
    gradient = np.stack(
        [
            special.digamma(r + x)
            - special.digamma(r)
            + np.log(alpha)
            - stays * np.log(alpha + big_t)
            - leaves * np.log(alpha + t_x),
            r / alpha - (r + x) * (stays / (alpha + big_t) + leaves / (alpha + t_x)),
            psi_ab - psi_abx + leaves / a,
            psi_ab + special.digamma(b + x) - special.digamma(b) - psi_abx - leaves / terms.gone,
        ]
    )
    return terms.common + terms.top + np.log(mixture), gradient


def fit(
    frequency: Sequence[float],
    recency: Sequence[float],
    T: Sequence[float],  # noqa: N803
    penalizer: float = 0.0,
    start: BgNbd | None = None,
) -> BgNbd:
    """Maximum-likelihood parameters (L-BFGS-B over log-parameters from all ones, with the
    likelihood's exact gradient, an optional L2 ``penalizer`` on the parameters, as
    lifetimes' ``penalizer_coef``). Nelder-Mead, which this used before, finds the same
    optimum (log-likelihoods equal to 5 digits on simulated shops of 100 to 1,000
    customers) in 2-5 times the time; a numerical gradient took five likelihoods per step
    where the exact one takes one. Given ``start`` (a previous fit), the search runs from
    there too and the better optimum wins: either search alone can stop short (from all
    ones, one simulated shop's search never left its start; from the last fit, another's
    stuck at a = 0)."""
    x, t_x, big_t = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
    if len(x) == 0:
        raise ValueError("fitting BG/NBD needs at least one customer")

    def objective(log_params: Array) -> tuple[float, Array]:
        params = np.exp(log_params)
        each, gradient = log_likelihood_gradient(BgNbd(*params), x, t_x, big_t)
        value = -float(np.mean(each)) + penalizer * float(np.sum(params**2))
        slope = params * (-np.mean(gradient, axis=1) + 2.0 * penalizer * params)
        return value, slope

    starts = [np.zeros(4)]
    if start is not None:  # a stored fit may hold a parameter that underflowed to 0
        kept = np.clip([start.r, start.alpha, start.a, start.b], 1e-300, 1e300)
        starts.append(np.log(kept))
    bounded = _finite(objective)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # the search tries extreme parameters; their non-finite likelihoods lose anyway
        found = [
            optimize.minimize(bounded, first, method="L-BFGS-B", jac=True).x for first in starts
        ]
        best = min(found, key=lambda log_params: _or_inf(objective(log_params)[0]))
    return BgNbd(*(float(v) for v in np.exp(best)))


def _or_inf(value: float) -> float:
    """``value``, or infinity where it is not finite (what the best search is chosen on:
    the likelihood itself, also where its slope is not finite)."""
    return value if math.isfinite(value) else math.inf


def _finite(
    objective: Callable[[Array], tuple[float, Array]],
) -> Callable[[Array], tuple[float, Array]]:
    """``objective`` with a large value and a flat slope where it is not finite (a gradient
    method must not step into NaN)."""

    def finite(log_params: Array) -> tuple[float, Array]:
        value, slope = objective(log_params)
        if math.isfinite(value) and bool(np.all(np.isfinite(slope))):
            return value, slope
        return 1e10, np.zeros_like(log_params)

    return finite


def fit_customers(
    customers: Sequence[CustomerSnapshot], penalizer: float = 0.0, start: BgNbd | None = None
) -> BgNbd:
    """Fit a shop's parameters from its buying customers' snapshots (from ``start``, a
    previous fit, if given)."""
    buyers = [c for c in customers if c.has_purchased]
    return fit(
        [c.frequency for c in buyers],
        [c.recency for c in buyers],
        [c.T for c in buyers],
        penalizer,
        start,
    )


def purchase_value(customer: CustomerSnapshot) -> float:
    """Expected value of one future purchase: the mean repeat spend (lifetimes'
    ``monetary_value``), or the mean order value of a customer without repeats."""
    if customer.frequency > 0:
        return customer.monetary_value
    return customer.total_spend / max(customer.order_count, 1)


def clv(model: BgNbd, customer: CustomerSnapshot, horizon_days: float = 365.0) -> float:
    """Expected spend over the next ``horizon_days`` (undiscounted)."""
    if not customer.has_purchased:
        return 0.0
    purchases = model.expected_purchases(
        horizon_days, customer.frequency, customer.recency, customer.T
    )
    return purchases * purchase_value(customer)


@dataclass(frozen=True, slots=True)
class SpendTrend:
    """A customer's spend per 30 days over the recent window and over their history before it."""

    recent_rate: float
    historical_rate: float


def spend_trend(
    purchase_days: Mapping[date, float], as_of: date, window_days: int = 90
) -> SpendTrend | None:
    """Spend rates before and within the last ``window_days`` (daily totals by date); None
    when the customer has no history before the window to compare with.

    >>> trend = spend_trend({date(2026, 1, 1): 90.0, date(2026, 3, 15): 9.0}, date(2026, 6, 1))
    >>> round(trend.recent_rate, 2), round(trend.historical_rate, 2)
    (3.0, 44.26)
    """
    window_start = as_of - timedelta(days=window_days)
    days = sorted(purchase_days.items())
    before = [total for day, total in days if day < window_start]
    if not before:
        return None
    history_days = max((window_start - days[0][0]).days, 1)
    recent = sum(total for day, total in days if window_start <= day <= as_of)
    return SpendTrend(
        recent_rate=recent / window_days * 30.0,
        historical_rate=sum(before) / history_days * 30.0,
    )


def high_value_rate(trends: Iterable[SpendTrend | None], top_share: float = 0.25) -> float:
    """The historical spend rate that puts a customer in the shop's top ``top_share``
    (infinite without history: nobody is flagged).

    >>> high_value_rate([SpendTrend(0.0, rate) for rate in (10.0, 20.0, 30.0, 40.0)])
    40.0
    """
    rates = sorted(t.historical_rate for t in trends if t is not None)
    if not rates:
        return math.inf
    return rates[min(len(rates) - 1, int(len(rates) * (1.0 - top_share)))]


def cant_lose(trend: SpendTrend | None, high_value_rate: float, drop_ratio: float = 0.5) -> bool:
    """Whether a once valuable customer's spend rate fell well below their own history:
    historical rate at least ``high_value_rate`` (e.g. the shop's top quartile) and
    recent rate below ``drop_ratio`` x historical."""
    if trend is None:
        return False
    return (
        trend.historical_rate >= high_value_rate
        and trend.recent_rate < drop_ratio * trend.historical_rate
    )


SAMPLE_SIZE = 1_000
"""Customers a shop's lifetime model fits on at most (the bottom-k of a hash of their ids)."""
REFIT_GROWTH = 1.5
"""A shop's lifetime model is refitted once its sampled customers' orders grew by half
since the last fit (and by REFIT_MIN_ORDERS at least): often while a shop is young, rarely
once its history is long, and never for a shop whose sample buys nothing new."""
REFIT_MIN_ORDERS = 20
REFIT_MAX_DAYS = 30
"""... and at least once a month of stream time while its sample still buys (a stale fit
judges a young shop's customers by their first months: on CDNOW, a fit six months old
expected 18-22 % more orders in the next 90 days than a fresh one)."""
MIN_REPEAT_BUYERS = 5
"""Repeat buyers a fit needs (in the sample) before it says anything."""
TREND_RATIO = 1.5
"""A spend rate this many times the earlier one (or below its inverse) is a trend."""


@dataclass(frozen=True, slots=True)
class LifetimeFit:
    """A shop's fitted lifetime model: BG/NBD parameters and the spend rate of its top
    quarter (for "Can't lose them"), as of the day it was fitted."""

    model: BgNbd
    high_value_rate: float
    day: int


@dataclass(slots=True)
class ShopLifetime:
    """What a shop keeps to fit its lifetime model: a bounded, deterministic sample of its
    customers (the SAMPLE_SIZE smallest hashes of their ids: any customer is in it with the
    same chance, and whether they are never changes), the latest fit, and how many orders
    the sample had then and has now. Its size does not grow with the shop."""

    sample: dict[str, int]
    fit: LifetimeFit | None = None
    orders: int = 0
    """Orders of sampled customers seen (counted while they were sampled)."""
    tried_orders: int = 0
    """``orders`` at the latest fit or attempt."""
    tried_day: int | None = None
    ceiling: tuple[int, str] | None = field(default=None, compare=False)
    """The sample's largest (hash, id) while it is full (None: not known; not stored)."""

    @classmethod
    def load(cls, stored: Mapping[str, Any] | None) -> ShopLifetime:
        """From the shop's record (None: nothing kept yet)."""
        if stored is None:
            return cls({})
        fitted = stored["fit"]
        fit = None
        if fitted is not None:
            fit = LifetimeFit(BgNbd(*fitted["model"]), fitted["high_value_rate"], fitted["day"])
        return cls(
            dict(stored["sample"]),
            fit,
            stored["orders"],
            stored["tried_orders"],
            stored["tried_day"],
        )

    def record(self) -> dict[str, Any]:
        """The shop's record (see :meth:`load`)."""
        fit = self.fit
        return {
            "sample": self.sample,
            "fit": None
            if fit is None
            else {
                "model": [fit.model.r, fit.model.alpha, fit.model.a, fit.model.b],
                "high_value_rate": fit.high_value_rate,
                "day": fit.day,
            },
            "orders": self.orders,
            "tried_orders": self.tried_orders,
            "tried_day": self.tried_day,
        }

    def forget(self, customer_id: str) -> bool:
        """Take an erased customer out of the sample; whether they were in it (the next
        customer seen may take the free place; the fit refreshes as orders grow)."""
        if self.sample.pop(customer_id, None) is None:
            return False
        self.ceiling = None
        return True

    def offer(self, customer_id: str) -> bool:
        """Consider a customer seen for the first time; whether the sample changed."""
        if customer_id in self.sample:
            return False
        mark = sample_hash(customer_id)
        if len(self.sample) < SAMPLE_SIZE:
            self.sample[customer_id] = mark
            return True
        if self.ceiling is None:
            self.ceiling = max((h, c) for c, h in self.sample.items())
        if (mark, customer_id) >= self.ceiling:
            return False  # most customers of a large shop: no scan
        del self.sample[self.ceiling[1]]
        self.sample[customer_id] = mark
        self.ceiling = None
        return True

    def note_order(self, customer_id: str) -> bool:
        """Count an order of ``customer_id``; whether they are sampled (it counted)."""
        if customer_id not in self.sample:
            return False
        self.orders += 1
        return True

    def due(self, day: int) -> bool:
        """Whether to fit on stream day ``day``: the sample's orders grew by half (and by
        REFIT_MIN_ORDERS) since the last fit or attempt, or REFIT_MAX_DAYS passed and they grew."""
        grown = self.orders - self.tried_orders
        if grown >= max(REFIT_MIN_ORDERS, (REFIT_GROWTH - 1) * self.tried_orders):
            return True
        return grown > 0 and self.tried_day is not None and day >= self.tried_day + REFIT_MAX_DAYS

    def refit(
        self, day: int, customers: Iterable[tuple[CustomerSnapshot, SpendTrend | None]]
    ) -> None:
        """Fit on the sample's snapshots at ``day`` (the last fit stays while the sample
        has too few repeat buyers)."""
        self.tried_day, self.tried_orders = day, self.orders
        views, trends = [], []
        for view, trend in customers:
            views.append(view)
            trends.append(trend)
        if sum(1 for v in views if v.frequency > 0) >= MIN_REPEAT_BUYERS:
            previous = None if self.fit is None else self.fit.model
            try:
                model = fit_customers(views, start=previous)
            except (ArithmeticError, ValueError) as error:  # a numerical defect of ours
                # the last fit stays, and the next refit is due as after any other try:
                # a fit must never fail the event that made it due
                log.warning(
                    "lifetime_fit_failed", day=day, error=f"{type(error).__name__}: {error}"
                )
                return
            self.fit = LifetimeFit(model, high_value_rate(trends), day)


def sample_hash(customer_id: str) -> int:
    """A stable 32-bit hash of a customer id (the sample keeps the smallest)."""
    return zlib.crc32(customer_id.encode())


def trend_of(trend: SpendTrend | None) -> str | None:
    """``rising``, ``steady`` or ``declining``: the recent spend rate against the earlier
    one (None without history before the recent window)."""
    if trend is None:
        return None
    if trend.recent_rate > TREND_RATIO * trend.historical_rate:
        return "rising"
    if trend.recent_rate * TREND_RATIO < trend.historical_rate:
        return "declining"
    return "steady"
