"""BG/NBD as lifetimes' BetaGeoFitter computes it, checked against direct numeric integration."""

from __future__ import annotations

import math
import random
import statistics
import warnings
from collections import Counter
from datetime import UTC, date, datetime

import numpy as np
import pytest
from scipy import integrate, stats

from harness.stores import feed
from segstream.domain.contracts import role_for
from segstream.domain.customer import EPOCH_DAY, CustomerState, apply
from segstream.domain.events import from_payload
from segstream.domain.features import snapshot
from segstream.engine.pipeline import Pipeline
from segstream.learning import lifetime
from segstream.learning.lifetime import (
    REFIT_MAX_DAYS,
    REFIT_MIN_ORDERS,
    SAMPLE_SIZE,
    BgNbd,
    ShopLifetime,
    SpendTrend,
    _expected_if_alive,
    cant_lose,
    clv,
    fit,
    fit_customers,
    high_value_rate,
    log_likelihood,
    log_likelihood_gradient,
    sample_hash,
    spend_trend,
)
from segstream.settings import Settings
from tests.factories import LogRecorder
from tests.states import state
from tests.unit.learning.streams import final_snapshots, one_shop

# The CDNOW parameters of Fader, Hardie & Lee (2005), in weeks.
PAPER = BgNbd(r=0.243, alpha=4.414, a=0.793, b=2.426)
CUSTOMERS = [(0, 0.0, 30.0), (1, 10.0, 20.0), (4, 20.0, 38.0), (12, 35.0, 36.0)]


def _posterior_parts(params: BgNbd, x: int, t_x: float, big_t: float) -> tuple[float, float]:
    """(likelihood alive at T, likelihood dropped after the last purchase) of the model's
    individual-level likelihood averaged over p ~ Beta(a, b) (moments of the Beta) and
    lambda ~ Gamma(r, alpha) (numerically)."""
    rate = stats.gamma(params.r, scale=1 / params.alpha)
    dropout = stats.beta(params.a, params.b)
    survive_all = dropout.expect(lambda p: (1 - p) ** x)
    drop_last = dropout.expect(lambda p: p * (1 - p) ** (x - 1)) if x else 0.0

    def purchases_then_silence(lam: float, silent_from: float) -> float:
        return float(lam**x * math.exp(-lam * silent_from) * rate.pdf(lam))

    def over_rates(silent_from: float) -> float:
        return float(
            sum(
                integrate.quad(
                    purchases_then_silence,
                    low,
                    high,
                    args=(silent_from,),
                    epsabs=0,
                    epsrel=1e-11,
                    limit=200,
                )[0]
                for low, high in ((0, 1e-6), (1e-6, 1), (1, np.inf))
            )
        )

    return survive_all * over_rates(big_t), drop_last * over_rates(t_x)


@pytest.mark.parametrize(("x", "t_x", "big_t"), CUSTOMERS)
def test_log_likelihood_matches_numeric_integration(x: int, t_x: float, big_t: float) -> None:
    alive, dropped = _posterior_parts(PAPER, x, t_x, big_t)
    formula = float(log_likelihood(PAPER, [x], [t_x], [big_t])[0])
    assert formula == pytest.approx(math.log(alive + dropped), rel=1e-5)


@pytest.mark.parametrize(("x", "t_x", "big_t"), CUSTOMERS[1:])
def test_p_alive_is_the_posterior_share_of_alive(x: int, t_x: float, big_t: float) -> None:
    alive, dropped = _posterior_parts(PAPER, x, t_x, big_t)
    assert PAPER.p_alive(x, t_x, big_t) == pytest.approx(alive / (alive + dropped), rel=1e-5)


def test_p_alive_is_one_without_repeat_purchases_as_in_lifetimes() -> None:
    assert PAPER.p_alive(frequency=0, recency=0.0, T=500.0) == 1.0


def test_p_alive_falls_with_silence() -> None:
    assert PAPER.p_alive(5, 10.0, 12.0) > PAPER.p_alive(5, 10.0, 40.0)


def test_expected_purchases_of_a_new_customer_match_integration() -> None:
    dropout = stats.beta(PAPER.a, PAPER.b)
    t = 39.0

    def purchases(p: float) -> float:
        # E[X(t) | lambda, p] = (1 - exp(-lambda p t)) / p; over lambda ~ Gamma(r, alpha)
        # E[exp(-lambda p t)] = (alpha / (alpha + p t)) ** r
        return float((1 - (PAPER.alpha / (PAPER.alpha + p * t)) ** PAPER.r) / p * dropout.pdf(p))

    numeric = integrate.quad(purchases, 0, 1, epsrel=1e-11, limit=200)[0]
    assert PAPER.unconditional_expected_purchases(t) == pytest.approx(numeric, rel=1e-6)
    assert PAPER.expected_purchases(t, 0, 0.0, 0.0) == pytest.approx(numeric, rel=1e-6)


def test_expected_purchases_follow_the_paper_example() -> None:
    # Fader, Hardie & Lee (2005), p. 281: x=2, t_x=30.43, T=38.86 expects 1.226 in 39 weeks.
    assert PAPER.expected_purchases(39.0, 2, 30.43, 38.86) == pytest.approx(1.226, abs=5e-3)


@pytest.mark.parametrize(("x", "t_x", "big_t"), CUSTOMERS)
def test_the_quadrature_fallback_gives_the_closed_formulas_value(
    x: int, t_x: float, big_t: float
) -> None:
    closed = PAPER.expected_purchases(39.0, x, t_x, big_t)
    integrated = PAPER.p_alive(x, t_x, big_t) * _expected_if_alive(PAPER, 39.0, x, big_t)
    assert integrated == pytest.approx(closed, rel=1e-5)


EXTREMES = [1e-4, 1e-2, 0.5, 0.99, 1.0, 1.0001, 1.01, 2.0, 100.0, 1e5, 1e8]
"""Parameters a small shop's fit can reach: ``a`` at or near 1 makes the closed formula
0/0 (CI once answered ``clv_365d: null`` for an ordinary customer of a 30-customer shop),
huge ones overflow it, and a parameter that underflowed to 0 made P(alive) take the log
of 0 (a chaos run's reference replay, seed 571223: ``ValueError: math domain error``)."""


@pytest.mark.parametrize("a", [0.0, *EXTREMES])
@pytest.mark.parametrize("b", [0.0, *EXTREMES])
def test_every_fit_gives_finite_answers(a: float, b: float) -> None:
    for r, alpha in [(1e-4, 1e-4), (0.24, 4.4), (1e5, 1e-2), (1e-2, 1e8), (100.0, 100.0)]:
        model = BgNbd(r=r, alpha=alpha, a=a, b=b)
        for x, t_x, big_t in [(2, 62.0, 75.0), (0, 0.0, 30.0), (40, 700.0, 720.0), (1, 0.0, 900.0)]:
            alive = model.p_alive(x, t_x, big_t)
            expected = model.expected_purchases(365.0, x, t_x, big_t)
            buys = model.p_buys_within(30.0, x, t_x, big_t)
            assert 0.0 <= alive <= 1.0, (model, x, t_x, big_t, alive)
            assert 0.0 <= buys <= 1.0, (model, x, t_x, big_t, buys)
            assert math.isfinite(expected) and expected >= 0.0, (model, x, t_x, big_t, expected)


def test_a_dropout_certain_at_the_next_purchase_buys_at_most_once() -> None:
    # b underflowed to 0: Beta(a, 0) is all at 1, so a customer without repeat purchases
    # (alive) leaves at their next one; the quadrature's quantiles were NaN
    model = BgNbd(r=0.24, alpha=4.41, a=1.0, b=0.0)
    once = 1.0 - ((4.41 + 40.0) / (4.41 + 40.0 + 30.0)) ** 0.24
    assert model.expected_purchases(30.0, 0, 0.0, 40.0) == pytest.approx(once)


def test_expected_days_to_next_order_is_the_posterior_mean_wait() -> None:
    x, big_t = 4, 38.0
    posterior = stats.gamma(PAPER.r + x, scale=1 / (PAPER.alpha + big_t))
    mean_wait = integrate.quad(lambda lam: posterior.pdf(lam) / lam, 0, np.inf)[0]
    assert PAPER.expected_days_to_next_order(x, big_t) == pytest.approx(mean_wait, rel=1e-6)


def _simulate(params: BgNbd, customers: int, horizon: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(customers):
        lam = rng.gamma(params.r, 1 / params.alpha)
        p = rng.beta(params.a, params.b)
        t, x, last = 0.0, 0, 0.0
        while True:
            t += rng.exponential(1 / lam)
            if t > horizon:
                break
            x, last = x + 1, t
            if rng.random() < p:
                break
        rows.append((x, last, horizon))
    return np.array(rows)


def _columns(data: np.ndarray) -> tuple[list[float], list[float], list[float]]:
    """Frequency, recency and T of :func:`_simulate`'s rows, as :func:`fit` takes them."""
    return data[:, 0].tolist(), data[:, 1].tolist(), data[:, 2].tolist()


def test_fit_recovers_the_parameters_of_simulated_customers() -> None:
    data = _simulate(PAPER, customers=3000, horizon=52.0, seed=3)
    fitted = fit(*_columns(data))
    truth_ll = log_likelihood(PAPER, data[:, 0], data[:, 1], data[:, 2]).sum()
    fitted_ll = log_likelihood(fitted, data[:, 0], data[:, 1], data[:, 2]).sum()
    assert fitted_ll >= truth_ll
    assert fitted.r == pytest.approx(PAPER.r, rel=0.25)
    assert fitted.alpha == pytest.approx(PAPER.alpha, rel=0.35)
    assert fitted.a / (fitted.a + fitted.b) == pytest.approx(PAPER.a / (PAPER.a + PAPER.b), rel=0.3)


def test_a_refit_given_the_previous_fit_ends_at_the_optimum() -> None:
    """A month later the shop has more orders: a refit that also searches from last
    month's parameters ends where a search from scratch does, or better."""
    before = _simulate(PAPER, customers=1000, horizon=40.0, seed=5)
    after = _simulate(PAPER, customers=1000, horizon=44.0, seed=5)
    previous = fit(*_columns(before))
    cold = fit(*_columns(after))
    warm = fit(*_columns(after), start=previous)
    cold_ll = log_likelihood(cold, after[:, 0], after[:, 1], after[:, 2]).sum()
    warm_ll = log_likelihood(warm, after[:, 0], after[:, 1], after[:, 2]).sum()
    assert warm_ll >= cold_ll - 1e-6
    assert warm.p_alive(2, 20.0, 44.0) == pytest.approx(cold.p_alive(2, 20.0, 44.0), abs=0.01)


@pytest.mark.parametrize(
    "params",
    [PAPER, BgNbd(1.3, 20.0, 0.1, 5.0), BgNbd(0.05, 0.5, 3.0, 0.7), BgNbd(4e3, 1e5, 1e3, 1e-3)],
)
def test_the_likelihood_gradient_is_the_likelihoods_slope(params: BgNbd) -> None:
    """The fit follows this gradient: it must be the slope central differences measure."""
    data = _simulate(PAPER, customers=200, horizon=52.0, seed=11)
    x, t_x, big_t = data[:, 0], data[:, 1], data[:, 2]
    each, gradient = log_likelihood_gradient(params, x, t_x, big_t)
    assert np.array_equal(each, log_likelihood(params, x, t_x, big_t))
    values = [params.r, params.alpha, params.a, params.b]
    for k, value in enumerate(values):
        step = 1e-5 * value
        up, down = list(values), list(values)
        up[k], down[k] = value + step, value - step
        slope = (
            log_likelihood(BgNbd(*up), x, t_x, big_t) - log_likelihood(BgNbd(*down), x, t_x, big_t)
        ) / (2 * step)
        assert slope == pytest.approx(gradient[k], rel=1e-5, abs=1e-6 / value)


def test_fit_rejects_an_empty_shop() -> None:
    with pytest.raises(ValueError, match="at least one customer"):
        fit([], [], [])


def test_clv_is_expected_purchases_times_repeat_spend() -> None:
    customer = state(
        "shop", "c-1", purchase_days={"2025-01-01": 10.0, "2025-02-01": 30.0, "2025-03-01": 50.0}
    )
    view = snapshot(customer, datetime(2025, 4, 1, tzinfo=UTC))
    expected = PAPER.expected_purchases(90.0, view.frequency, view.recency, view.T)
    assert clv(PAPER, view, horizon_days=90.0) == pytest.approx(expected * 40.0)


def test_clv_of_a_one_time_buyer_uses_their_order_value() -> None:
    customer = state(
        "shop", "c-1", purchase_days={"2025-01-01": 25.0}, order_count=1, total_spend=25.0
    )
    view = snapshot(customer, datetime(2025, 2, 1, tzinfo=UTC))
    assert clv(PAPER, view, 30.0) == pytest.approx(
        PAPER.expected_purchases(30.0, 0, 0.0, 31.0) * 25
    )


def test_spend_trend_compares_the_recent_window_with_the_history_before() -> None:
    days = {date(2025, 1, 10): 60.0, date(2025, 3, 1): 60.0, date(2025, 5, 20): 5.0}
    trend = spend_trend(days, date(2025, 7, 1), window_days=90)
    assert trend is not None
    assert trend.recent_rate == pytest.approx(5.0 / 90 * 30)
    assert trend.historical_rate == pytest.approx(
        120.0 / (date(2025, 4, 2) - date(2025, 1, 10)).days * 30
    )


def test_spend_trend_needs_history_before_the_window() -> None:
    assert spend_trend({date(2025, 6, 1): 10.0}, date(2025, 7, 1)) is None


@pytest.mark.parametrize(
    ("trend", "flagged"),
    [
        (SpendTrend(recent_rate=10.0, historical_rate=50.0), True),
        (SpendTrend(recent_rate=30.0, historical_rate=50.0), False),
        (SpendTrend(recent_rate=1.0, historical_rate=15.0), False),
        (None, False),
    ],
)
def test_cant_lose_flags_valuable_customers_whose_spend_fell(
    trend: SpendTrend | None, flagged: bool
) -> None:
    assert cant_lose(trend, high_value_rate=40.0) is flagged


def test_on_a_simulated_shop_leavers_look_dead_and_decliners_are_flagged() -> None:
    simulation = one_shop(seed=3, customers=200, days=730, start=date(2024, 1, 1))
    final = final_snapshots(simulation)
    model = fit_customers(list(final.values()))
    persona = {t.customer_id: t.persona for t in simulation.truth}

    def mean_p_alive(name: str) -> float:
        views = [v for c, v in final.items() if persona[c] == name and v.has_purchased]
        return statistics.fmean(model.p_alive(v.frequency, v.recency, v.T) for v in views)

    assert mean_p_alive("loyal") > 0.8
    assert mean_p_alive("declining_big_spender") < 0.2
    states: dict[str, CustomerState] = {}
    for payload in simulation.events:
        event = from_payload(payload)
        state = states.setdefault(
            event.customer_id, CustomerState(event.shop_id, event.customer_id)
        )
        apply(state, event)
    end = max(view.as_of for view in final.values()).date()
    trends = {c: spend_trend(s.purchase_days, end) for c, s in states.items()}
    threshold = high_value_rate(trends.values())
    flagged = Counter(persona[c] for c, trend in trends.items() if cant_lose(trend, threshold))
    assert flagged.most_common(1)[0][0] == "declining_big_spender"
    assert flagged["declining_big_spender"] >= 0.7 * sum(flagged.values())


def test_the_sample_is_the_same_bounded_set_whatever_the_arrival_order() -> None:
    ids = [f"c-{n}" for n in range(3 * SAMPLE_SIZE)]
    smallest = sorted(ids, key=lambda c: (sample_hash(c), c))[:SAMPLE_SIZE]
    for seed in (1, 2):
        kept = ShopLifetime({})
        shuffled = list(ids)
        random.Random(seed).shuffle(shuffled)
        changed = [kept.offer(c) for c in shuffled]
        assert sorted(kept.sample) == sorted(smallest)
        assert sum(changed) < len(ids)  # most later customers change nothing
        assert not kept.offer(smallest[0])  # a member is offered once
    restored = ShopLifetime.load(kept.record())
    assert restored.sample == kept.sample and restored.fit is None


END = datetime(2025, 9, 1, tzinfo=UTC)


def test_a_fit_is_due_when_the_samples_orders_grew_by_half_or_a_month_passed() -> None:
    kept = ShopLifetime({})
    kept.offer("c-1")
    assert not kept.note_order("c-9")  # not sampled: not counted
    for _ in range(REFIT_MIN_ORDERS - 1):
        assert kept.note_order("c-1")
    assert not kept.due(100)
    kept.note_order("c-1")
    assert kept.due(100)
    kept.refit(100, [])  # nobody bought twice: no fit yet, and no new try at once
    assert kept.fit is None and not kept.due(100)
    views = [
        (snapshot(state(purchase_days={"2025-01-01": 10.0, f"2025-0{m}-02": 5.0}), END), None)
        for m in range(2, 8)
    ]
    for _ in range(REFIT_MIN_ORDERS):
        kept.note_order("c-1")
    kept.refit(101, views)
    assert kept.fit is not None and kept.fit.day == 101 and kept.tried_orders == 40
    for _ in range(19):
        kept.note_order("c-1")
    assert not kept.due(102)  # 19 more: neither half of 40 nor 20
    kept.note_order("c-1")
    assert kept.due(102)
    kept.refit(102, views)
    kept.note_order("c-1")
    assert not kept.due(102 + REFIT_MAX_DAYS - 1) and kept.due(102 + REFIT_MAX_DAYS)
    restored = ShopLifetime.load(kept.record())
    assert (restored.fit, restored.orders, restored.tried_orders) == (kept.fit, 61, 60)


def test_a_fit_on_the_sample_predicts_like_a_fit_on_every_customer() -> None:
    """A 3,000-customer shop: a fit on its 1,000 sampled customers gives every buyer a
    P(alive) close to that of a fit on all of them."""
    final = final_snapshots(one_shop(seed=5, customers=3000, days=400, start=date(2024, 1, 1)))
    kept = ShopLifetime({})
    for customer_id in final:
        kept.offer(customer_id)
    kept.refit(0, ((final[c], None) for c in kept.sample))
    assert kept.fit is not None and len(kept.sample) == SAMPLE_SIZE
    full = fit_customers(list(final.values()))
    buyers = [v for v in final.values() if v.frequency > 0]
    gaps = [
        abs(
            kept.fit.model.p_alive(v.frequency, v.recency, v.T)
            - full.p_alive(v.frequency, v.recency, v.T)
        )
        for v in buyers
    ]
    assert statistics.fmean(gaps) < 0.05, statistics.fmean(gaps)


def test_the_pipeline_keeps_each_shops_lifetime_model_current() -> None:
    """Fed through the pipeline, a shop's lifetime model is fitted on its customers, refitted
    as its sample's orders grow, and survives a rebuild from the tables."""
    simulation = one_shop(seed=5, customers=150, days=200, start=date(2024, 1, 1))
    pipeline = Pipeline(Settings(), {}, {}, {}, {})
    feed(pipeline, [(role_for(e), e) for e in simulation.events])
    shop_id = simulation.events[0]["shop_id"]
    book = pipeline.book(shop_id)
    fit, now = book.lifetime.fit, book.stream_time
    assert fit is not None and now is not None
    assert len(book.lifetime.sample) == len({e["customer_id"] for e in simulation.events})
    fitted = date.fromordinal(EPOCH_DAY.toordinal() + fit.day)
    assert (now.date() - fitted).days < REFIT_MAX_DAYS
    pipeline.forget_shops()
    assert pipeline.book(shop_id).lifetime.fit == fit


@pytest.mark.parametrize("params", [BgNbd(0.24, 0.0, 0.8, 2.4), BgNbd(0.0, 4.4, 0.0, 0.0)])
def test_a_gradient_at_a_parameter_driven_to_zero_is_not_finite_and_does_not_raise(
    params: BgNbd,
) -> None:
    """The search tries extreme log-parameters; exp of a very negative one is 0.0. A bench's
    100,000-customer shop met ``alpha = 0`` and ``math.log`` raised inside a refit, which
    would have dead-lettered the event that triggered it."""
    data = _simulate(PAPER, customers=50, horizon=52.0, seed=11)
    with np.errstate(all="ignore"):
        each, gradient = log_likelihood_gradient(params, data[:, 0], data[:, 1], data[:, 2])
    assert not np.all(np.isfinite(each)) or not np.all(np.isfinite(gradient))


def test_a_refit_that_fails_keeps_the_last_fit_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fit is made inside the event that makes it due: a numerical defect must leave the
    last fit in place (and wait for the next refit), never fail the event."""
    final = final_snapshots(one_shop(seed=5, customers=300, days=400, start=date(2024, 1, 1)))
    kept = ShopLifetime({})
    for customer_id in final:
        kept.offer(customer_id)
    kept.refit(0, ((final[c], None) for c in kept.sample))
    before = kept.fit
    assert before is not None
    recorder = LogRecorder()
    monkeypatch.setattr(lifetime, "log", recorder)

    def broken(*_: object, **__: object) -> BgNbd:
        raise ValueError("math domain error")

    monkeypatch.setattr(lifetime, "fit_customers", broken)
    kept.refit(40, ((final[c], None) for c in kept.sample))
    assert kept.fit is before and kept.tried_day == 40
    assert recorder.said("warning") == [
        ("lifetime_fit_failed", {"day": 40, "error": "ValueError: math domain error"})
    ]


def test_a_customer_without_repeats_has_the_closed_form_likelihood_at_extreme_parameters() -> None:
    """x = 0: the likelihood is r ln(alpha / (alpha + T)); the dropping-out term, absent,
    once set the scale and the row came out -inf."""
    model = BgNbd(r=100.0, alpha=0.01, a=1.0, b=1.0)
    found = log_likelihood(model, np.array([0.0]), np.array([0.0]), np.array([60.0]))
    assert found[0] == pytest.approx(100.0 * math.log(0.01 / 60.01), rel=1e-12)


def test_a_refit_from_a_fit_whose_parameter_underflowed_starts_from_a_finite_point() -> None:
    """A stored fit can hold a = 0.0: its log was -inf (a warning, and a start that could
    never win); it is floored at 1e-300 now, and the search from it stays usable."""
    data = _simulate(PAPER, customers=1000, horizon=44.0, seed=5)
    cold = fit(*_columns(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warm = fit(*_columns(data), start=BgNbd(PAPER.r, PAPER.alpha, 0.0, PAPER.b))
    each = (data[:, 0], data[:, 1], data[:, 2])
    assert log_likelihood(warm, *each).sum() >= log_likelihood(cold, *each).sum() - 1e-6
