"""Statistics over tasks against scipy (and by hand) on a hand-made table."""

import math

import numpy as np
import pytest
from scipy import stats as sst

from metaal import stats

NAMES = ["random", "margin", "policy"]
# 6 tasks x 3 strategies (mean AULC per task)
TABLE = np.array([
    [0.60, 0.70, 0.72],
    [0.50, 0.55, 0.54],
    [0.80, 0.85, 0.90],
    [0.40, 0.46, 0.47],
    [0.65, 0.64, 0.70],
    [0.70, 0.75, 0.751],
])


def test_ranks_and_friedman_against_scipy():
    r = stats.ranks(TABLE)
    # by hand: policy first on tasks 0, 2, 3, 4, 5; margin first on task 1; random last except on task 4
    assert r[:, 2].tolist() == [1, 2, 1, 1, 1, 1]
    assert r[4].tolist() == [2, 3, 1]
    assert r.mean(0).tolist() == pytest.approx([17 / 6, 12 / 6, 7 / 6])
    fr = stats.friedman(TABLE)
    ref = sst.friedmanchisquare(*TABLE.T)
    assert fr["statistic"] == pytest.approx(ref.statistic) and fr["p_value"] == pytest.approx(ref.pvalue)
    assert stats.friedman(TABLE[:, :2]) is None  # needs 3 strategies
    assert stats.ranks(np.array([[0.5, 0.5, 0.4]])).tolist() == [[1.5, 1.5, 3]]  # ties share their mean rank


def test_critical_difference_is_demsars():
    # Demšar (2006), table 5(a): q_0.05 = 2.343 for k = 3; CD = q sqrt(k (k + 1) / (6 N))
    assert stats.critical_difference(6, 3) == pytest.approx(2.343 * math.sqrt(12 / 36), abs=1e-3)
    assert stats.critical_difference(20, 10) == pytest.approx(3.164 * math.sqrt(110 / 120), abs=1e-3)


def test_wilcoxon_holm_and_win_tie_loss_over_tasks():
    rows = {r["baseline"]: r for r in stats.versus_reference(TABLE, NAMES, "policy")}
    d_margin = TABLE[:, 2] - TABLE[:, 1]
    assert rows["margin"]["p_two_sided"] == pytest.approx(sst.wilcoxon(d_margin).pvalue)
    assert rows["margin"]["p_greater"] == pytest.approx(sst.wilcoxon(d_margin, alternative="greater").pvalue)
    assert rows["margin"]["mean_difference"] == pytest.approx(d_margin.mean())
    # differences 0.02, -0.01, 0.05, 0.01, 0.06, 0.001: the last is within the tie threshold 0.002
    assert rows["margin"]["win_tie_loss"] == [4, 1, 1]
    assert rows["random"]["win_tie_loss"] == [6, 0, 0]
    # Holm over the two baselines, by hand: the smaller p times 2, the larger at least that
    p = sorted([rows["margin"]["p_two_sided"], rows["random"]["p_two_sided"]])
    adj = sorted([rows["margin"]["p_two_sided_holm"], rows["random"]["p_two_sided_holm"]])
    assert adj[0] == pytest.approx(min(1, 2 * p[0])) and adj[1] == pytest.approx(max(adj[0], p[1]))
    assert stats.wilcoxon([0.5, 0.6], [0.5, 0.6]) == 1.0  # no difference at all
    assert math.isnan(stats.wilcoxon([0.5], [0.4]))


def test_per_task_significance_over_paired_seeds():
    seeds = 7  # smallest two-sided p = 2 / 2^7 = 0.0156; Holm over 2 tasks: 0.031 < 0.05
    cube = np.zeros((2, 3, seeds))
    cube[:, 0] = 0.5
    cube[:, 2] = 0.6
    cube[0, 1] = 0.6 + 0.01 * np.arange(1, seeds + 1)  # margin better than the policy on every seed of task 0
    cube[1, 1] = 0.6 - 0.01 * np.arange(1, seeds + 1)  # and worse on every seed of task 1
    rows = {r["baseline"]: r for r in stats.per_task_significance(cube, ["a", "b"], NAMES, "policy")}
    assert rows["margin"]["better_on"] == ["a"] and rows["margin"]["worse_on"] == ["b"]
    assert rows["margin"]["share_better"] == 0.5
    assert rows["margin"]["p_holm"]["a"] == pytest.approx(2 * sst.wilcoxon(cube[0, 1] - cube[0, 2]).pvalue)
    assert rows["random"]["better_on"] == [] and rows["random"]["worse_on"] == ["a", "b"]


def test_normalised_early_late_and_round_difference():
    table = np.array([[0.5, 0.6, 0.7], [0.4, 0.4, 0.4]])
    norm = stats.normalised(table, ["random", "margin", "oracle"])
    assert norm[0].tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert np.isnan(norm[1]).all()  # the oracle does not beat random: nothing to normalise by
    assert stats.normalised(table, ["random", "margin", "policy"]) is None
    assert stats.early_late([0.1, 0.2, 0.3, 0.4, 0.9, 1.0]) == pytest.approx((0.25, 0.95))
    runs = [{"task": t, "strategy": s, "seed": k, "labels": [2, 4, 6], "accuracy": acc}
            for t, s, k, acc in [("a", "policy", 0, [0.5, 0.7, 0.8]), ("a", "margin", 0, [0.5, 0.6, 0.9]),
                                 ("a", "policy", 1, [0.5, 0.8, 0.8]), ("a", "margin", 1, [0.5, 0.6, 0.9]),
                                 ("b", "policy", 0, [0.4, 0.4, 0.4]), ("b", "margin", 0, [0.4, 0.5, 0.4])]]
    labels, d = stats.round_difference(runs, ["a", "b"], "policy", "margin")
    assert labels == [2, 4, 6]
    assert np.allclose(d, [[0, 0.15, -0.1], [0, -0.1, 0]])
    assert stats.round_difference(runs, ["a", "c"], "policy", "margin") is None


def test_per_seed_and_task_means():
    runs = [{"task": "a", "strategy": "margin", "seed": s, "aulc": v, "accuracy": [v]} for s, v in [(0, 0.5), (1, 0.7)]]
    runs.append({"task": "b", "strategy": "margin", "seed": 0, "aulc": 0.4, "accuracy": [0.4]})
    cube = stats.per_seed(runs, ["a", "b"], ["margin"])
    assert cube.shape == (2, 1, 2) and np.isnan(cube[1, 0, 1])
    assert np.allclose(stats.task_means(cube), [[0.6], [0.4]])
