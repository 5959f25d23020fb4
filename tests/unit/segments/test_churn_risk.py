"""Churn risk: bands, prior blending, checkpoints, and learning on simulated shops."""

from __future__ import annotations

import pickle
from datetime import UTC, date, datetime, timedelta

import pytest

from segstream.core.events import format_time
from segstream.core.features import CustomerSnapshot, snapshot
from segstream.learning.labels import Example
from segstream.learning.vectors import behaviour_vector
from segstream.segments.churn_risk import ChurnRiskModel
from segstream.settings import Settings
from tests.states import state
from tests.unit.learning.streams import evaluate, evaluations, one_shop

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def quiet_for(days: int, customer_id: str = "c-1", cadence: int = 10) -> CustomerSnapshot:
    """A subscriber buying every ``cadence`` days who has now been quiet ``days`` days."""
    last = NOW - timedelta(days=days)
    purchases = {(last - timedelta(days=cadence * n)).date().isoformat(): 20.0 for n in range(4)}
    customer = state(
        "shop",
        customer_id,
        first_seen_at=format_time(NOW - timedelta(300)),
        signups=[format_time(NOW - timedelta(300))],
        purchase_days=purchases,
        order_count=4,
        total_spend=80.0,
    )
    return snapshot(customer, NOW)


def example(churned: bool, predictions: tuple[float, ...] = (0.5,)) -> Example:
    return Example(behaviour_vector(quiet_for(3)), predictions, churned, NOW)


@pytest.mark.parametrize(("quiet", "band"), [(3, "low"), (10, "medium"), (20, "high")])
def test_cold_start_bands_follow_the_way_to_a_lapse(quiet: int, band: str) -> None:
    # no labels yet: the share of the 30-day lapse gap the silence has gone
    assert ChurnRiskModel.create(Settings(), seed=0).assign(quiet_for(quiet)) == band


def test_bands_are_configurable() -> None:
    assert ChurnRiskModel(bands=(0.05, 0.1)).assign(quiet_for(3)) == "high"


def test_customers_who_left_have_no_risk_band() -> None:
    model = ChurnRiskModel()
    assert model.assign(quiet_for(31)) is None
    cancelled = state(
        "shop",
        "c-2",
        signups=[format_time(NOW - timedelta(30))],
        cancellations=[(format_time(NOW - timedelta(1)),) * 2],
    )
    assert model.risk(snapshot(cancelled, NOW)) is None


def test_a_small_shop_leans_on_the_prior_until_it_has_learned_enough() -> None:
    prior, shop = ChurnRiskModel(), ChurnRiskModel(prior_weight_examples=4)
    for churned in (True, False, True, False, True, True):
        prior.learn_example(example(churned, (0.5,)))
    shop.attach_prior(prior)
    customer = quiet_for(5)
    x, cold = behaviour_vector(customer), shop.cold_start(customer)
    assert shop.risk(customer) == pytest.approx(prior.probability(x, cold))
    shop.learn_example(example(True, (0.5, 0.5)))
    own = float(shop.classifier.predict_proba_one(x)[True])
    expected = 0.25 * own + 0.75 * prior.probability(x, cold)
    assert shop.risk(customer) == pytest.approx(expected)
    assert shop.quality()["weight"] == 0.25


def test_settled_examples_feed_the_prior_with_its_own_prediction() -> None:
    prior, shop = ChurnRiskModel(), ChurnRiskModel()
    shop.attach_prior(prior)
    shop.learn_example(example(False, (0.9, 0.2)))
    assert (shop.labelled, prior.labelled) == (1, 1)
    assert shop.quality()["brier"] == pytest.approx(0.81)
    assert prior.quality()["brier"] == pytest.approx(0.04)


def test_snapshots_keep_the_prior_prediction_made_then() -> None:
    prior, shop = ChurnRiskModel(), ChurnRiskModel()
    shop.attach_prior(prior)
    customer = quiet_for(5)
    shop.learn(customer)
    (pending,) = shop.pending(customer)
    x, cold = behaviour_vector(customer), shop.cold_start(customer)
    assert pending.predictions == (shop.probability(x, cold), prior.probability(x, cold))


def test_checkpoint_leaves_the_prior_out_and_continues_after_reattaching() -> None:
    prior, shop = ChurnRiskModel(), ChurnRiskModel()
    shop.attach_prior(prior)
    for churned in (True, False, False):
        shop.learn_example(example(churned, (0.5, 0.5)))
    restored = pickle.loads(pickle.dumps(shop))
    assert restored.prior is None
    assert len(pickle.dumps(shop, protocol=5)) < len(pickle.dumps(prior, protocol=5)) * 1.5
    twin_prior = pickle.loads(pickle.dumps(prior))
    restored.attach_prior(twin_prior)
    for model in (shop, restored):
        model.learn_example(example(True, (0.4, 0.6)))
    customer = quiet_for(8)
    assert restored.risk(customer) == shop.risk(customer)
    assert restored.quality() == shop.quality()
    assert twin_prior.quality() == prior.quality()


def test_pending_snapshots_are_bounded() -> None:
    model = ChurnRiskModel(max_pending=50)
    for n in range(200):
        model.learn(quiet_for(2, customer_id=f"c-{n}"))
    assert model.quality()["pending"] == 50.0
    assert model.quality()["skipped"] == 150.0


def test_learns_churn_on_a_simulated_shop() -> None:
    # Measured progressive AUC 0.75-0.90 on the six shop kinds over two years (120-150
    # customers); 0.7 is the bound: clearly better than the 0.5 of guessing.
    model = ChurnRiskModel()
    simulation = one_shop(seed=4, customers=120, days=730, kind=1, start=date(2024, 1, 1))
    for view in evaluations(simulation, rescore_days=2.0):
        evaluate(model, view)
    quality = model.quality()
    assert quality["labelled"] > 1000
    assert 0 < quality["positives"] < quality["labelled"]
    assert quality["roc_auc"] > 0.7
    assert quality["brier"] < 0.15
