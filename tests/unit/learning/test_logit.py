"""The online logistic regression: it reaches the penalised maximum-likelihood fit, its
probabilities are calibrated, and its state stays bounded and sane."""

from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest

from segstream.learning.logit import MAX_STEP, OnlineLogit, sigmoid

TRUE = (-1.0, 2.0, -0.5)


def sample(rng: random.Random, count: int) -> list[tuple[tuple[float, ...], bool]]:
    """``count`` examples of a known logistic model over a bias and two features."""
    found: list[tuple[tuple[float, ...], bool]] = []
    for _ in range(count):
        x = (1.0, rng.gauss(0.0, 1.0), rng.uniform(-2.0, 2.0))
        found.append((x, rng.random() < sigmoid(sum(w * v for w, v in zip(TRUE, x, strict=True)))))
    return found


def batch_fit(
    examples: list[tuple[tuple[float, ...], bool]], precision: float | tuple[float, ...]
) -> np.ndarray:
    """The penalised maximum-likelihood weights by Newton's method on all examples at once."""
    x = np.array([e[0] for e in examples])
    y = np.array([float(e[1]) for e in examples])
    w = np.zeros(x.shape[1])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        hessian = (x.T * (p * (1 - p))) @ x + np.diag(np.broadcast_to(precision, w.shape))
        w -= np.linalg.solve(hessian, x.T @ (p - y) + precision * w)
    return w


@pytest.mark.parametrize("seed", [1, 2])
def test_it_reaches_the_batch_fit_and_is_calibrated(seed: int) -> None:
    examples = sample(random.Random(seed), 4000)
    model = OnlineLogit((0.0, 0.0, 0.0), prior_precision=1.0, memory=1e9)
    for x, label in examples:
        model.learn(x, label)
    assert model.weights == pytest.approx(tuple(batch_fit(examples, 1.0)), abs=0.06)
    assert model.weights == pytest.approx(TRUE, abs=0.15)
    fresh = sample(random.Random(seed + 100), 4000)
    predicted = sum(model.probability(x) for x, _ in fresh)
    assert predicted == pytest.approx(sum(label for _, label in fresh), rel=0.05)


def test_a_weight_of_its_own_precision_reaches_the_batch_fit_of_that_prior() -> None:
    """A weaker pull on one weight (the churn model's plan features) lets few examples move
    it further; the online fit is still the penalised fit of that prior."""
    precisions = (1.0, 1.0, 0.01)
    for count, strong in ((4000, 1.0), (30, 30.0)):
        examples = sample(random.Random(5), count)
        model = OnlineLogit((0.0, 0.0, 0.0), prior_precision=precisions, memory=1e9)
        even = OnlineLogit((0.0, 0.0, 0.0), prior_precision=(1.0, 1.0, strong), memory=1e9)
        for x, label in examples:
            model.learn(x, label)
            even.learn(x, label)
        if count > 1000:  # one Newton step per example: near the batch fit, not at it
            assert model.weights == pytest.approx(tuple(batch_fit(examples, precisions)), abs=0.1)
        assert abs(model.weights[2]) > abs(even.weights[2])


def test_without_examples_it_answers_the_prior_and_an_unused_feature_stays_there() -> None:
    model = OnlineLogit((0.0, 1.0, 0.0), prior_precision=1.0, memory=100)
    assert model.probability((0.0, 0.7, 5.0)) == pytest.approx(sigmoid(0.7))
    for x, label in sample(random.Random(3), 2000):
        model.learn((x[0], x[1], 0.0), label)  # the last feature is never seen
    assert model.weights[2] == 0.0
    assert all(math.isfinite(v) for v in model.curvature.flat)
    assert np.min(np.linalg.eigvalsh(model.curvature)) >= 1.0 - 1e-9


def test_a_first_example_far_off_moves_no_weight_more_than_the_trust_region() -> None:
    model = OnlineLogit((0.0, 0.0), prior_precision=1e-6)
    model.learn((1.0, 100.0), True)
    assert max(abs(w) for w in model.weights) <= MAX_STEP + 1e-12


def test_a_copy_continues_identically() -> None:
    model = OnlineLogit((0.0, 0.0, 0.0))
    examples = sample(random.Random(4), 300)
    for x, label in examples[:150]:
        model.learn(x, label)
    twin = pickle.loads(pickle.dumps(model))
    for x, label in examples[150:]:
        model.learn(x, label)
        twin.learn(x, label)
    assert twin.weights == model.weights
