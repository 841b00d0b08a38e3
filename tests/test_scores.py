"""metaal.acquisition.scores against scikit-activeml on the same probability matrices.

Conventions: metaal scores are pure numpy, one value per row.
* least_confidence = 1 - max p            (skactiveml ``uncertainty_scores(method="least_confident")``: same)
* margin = top1 - top2, small = uncertain  (skactiveml "margin_sampling" returns 1 - |top1 - top2|)
* entropy in nats                          (skactiveml "entropy": same, natural log)
* bald(mc) for samples (T, N, C) = H(mean_t p) - mean_t H(p)
  (skactiveml ``batch_bald(probas (n_estimators, N, C), batch_size=1)`` is the BALD score of every
  candidate: with one point the joint entropy is exact, so it reduces to plain BALD.)
"""

from __future__ import annotations

import numpy as np
import pytest
from skactiveml.pool import batch_bald, uncertainty_scores

from metaal.acquisition.scores import bald, entropy, least_confidence, margin

SHAPES = [(1, 2), (7, 2), (25, 3), (40, 10), (13, 100)]


def dirichlet(shape, alpha, seed):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(shape[-1], alpha), size=shape[:-1])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("alpha", [0.1, 1.0, 10.0])
def test_single_prediction_scores_match_skactiveml(shape, alpha):
    p = dirichlet(shape, alpha, seed=sum(shape) * 100 + int(alpha * 10))
    np.testing.assert_allclose(least_confidence(p), uncertainty_scores(p, method="least_confident"), atol=1e-12)
    np.testing.assert_allclose(margin(p), 1.0 - uncertainty_scores(p, method="margin_sampling"), atol=1e-12)
    # skactiveml skips exact zeros (nansum); metaal clips at 1e-12, which differs by < C * 1e-12 * 28
    np.testing.assert_allclose(entropy(p), uncertainty_scores(p, method="entropy"), atol=1e-9)


def test_scores_on_edge_rows():
    p = np.array(
        [
            [1.0, 0.0, 0.0],  # certain
            [1 / 3, 1 / 3, 1 / 3],  # uniform
            [0.5, 0.5, 0.0],  # tie between two
            [0.2, 0.7, 0.1],
        ]
    )
    np.testing.assert_allclose(least_confidence(p), [0.0, 2 / 3, 0.5, 0.3], atol=1e-12)
    np.testing.assert_allclose(margin(p), [1.0, 0.0, 0.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(entropy(p), [0.0, np.log(3), np.log(2), -(0.2 * np.log(0.2) + 0.7 * np.log(0.7) + 0.1 * np.log(0.1))], atol=1e-9)
    for method, ours in (("least_confident", least_confidence(p)), ("entropy", entropy(p))):
        np.testing.assert_allclose(ours, uncertainty_scores(p, method=method), atol=1e-9)
    np.testing.assert_allclose(margin(p), 1.0 - uncertainty_scores(p, method="margin_sampling"), atol=1e-12)
    assert np.isfinite(entropy(p)).all()


def test_orientation_agrees_on_ranking():
    p = dirichlet((60, 4), 1.0, seed=5)
    # skactiveml: higher = query first; metaal's margin: lower = query first
    sk = uncertainty_scores(p, method="margin_sampling")
    assert np.array_equal(np.argsort(-sk, kind="stable"), np.argsort(margin(p), kind="stable"))
    assert np.corrcoef(least_confidence(p), entropy(p))[0, 1] > 0.8


@pytest.mark.parametrize("shape", [(2, 1, 2), (5, 8, 3), (10, 30, 4), (20, 6, 10)])
@pytest.mark.parametrize("alpha", [0.3, 2.0])
def test_bald_matches_skactiveml_batch_bald(shape, alpha):
    mc = dirichlet(shape, alpha, seed=sum(shape) + int(10 * alpha))
    mc = np.clip(mc, 1e-9, 1.0)
    mc /= mc.sum(axis=-1, keepdims=True)
    ours = bald(mc)
    theirs = batch_bald(mc.copy(), batch_size=1, eps=1e-12, random_state=0)  # copy: it clips in place
    assert theirs.shape == (1, shape[1])
    np.testing.assert_allclose(ours, theirs[0], atol=1e-9)


def test_bald_hand_computed():
    # two MC samples, three points, two classes
    mc = np.array(
        [
            [[1.0, 0.0], [0.5, 0.5], [0.9, 0.1]],
            [[0.0, 1.0], [0.5, 0.5], [0.9, 0.1]],
        ]
    )
    h = lambda q: -sum(v * np.log(v) for v in q if v > 0)  # noqa: E731
    expected = [
        h([0.5, 0.5]) - 0.0,  # total disagreement: log 2
        h([0.5, 0.5]) - h([0.5, 0.5]),  # agreeing uncertainty: 0
        h([0.9, 0.1]) - h([0.9, 0.1]),  # agreeing confidence: 0
    ]
    np.testing.assert_allclose(bald(mc), expected, atol=1e-9)
    np.testing.assert_allclose(bald(mc)[0], np.log(2), atol=1e-12)


def test_bald_non_negative_and_zero_without_disagreement():
    mc = dirichlet((8, 50, 5), 0.5, seed=11)
    assert (bald(mc) >= -1e-12).all()
    same = np.repeat(mc[:1], 8, axis=0)
    np.testing.assert_allclose(bald(same), 0.0, atol=1e-12)
    # BALD never exceeds the predictive entropy
    assert (bald(mc) <= entropy(mc.mean(axis=0)) + 1e-12).all()
