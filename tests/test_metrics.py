import math

import numpy as np
import pytest

from metaal.metrics import aulc, labels_to_reach, mean_std_ci95, paired_test, win_tie_loss
from metaal.report import add_labels_to_random_final, summarise


def test_aulc_is_mean_over_all_points():
    assert aulc([0.5, 0.7, 0.9]) == pytest.approx(0.7)
    assert math.isnan(aulc([]))


def test_labels_to_reach_first_crossing_or_none():
    labels, acc = [10, 20, 30, 40], [0.5, 0.8, 0.7, 0.9]
    assert labels_to_reach(labels, acc, 0.8) == 20
    assert labels_to_reach(labels, acc, 0.85) == 40
    assert labels_to_reach(labels, acc, 0.95) is None
    assert labels_to_reach(labels, acc, 0.1) == 10


def test_ci95_matches_t_distribution_by_hand():
    mean, std, (lo, hi) = mean_std_ci95([1.0, 2.0, 3.0])
    assert mean == 2.0 and std == pytest.approx(1.0)
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t_{0.975, 2}
    assert (lo, hi) == pytest.approx((2 - half, 2 + half))
    assert mean_std_ci95([0.4]) == (0.4, 0.0, (0.4, 0.4))


def test_win_tie_loss_and_paired_test():
    assert win_tie_loss([0.9, 0.8, 0.7], [0.8, 0.8, 0.9]) == (1, 1, 1)
    sig = paired_test([0.9, 0.91, 0.92, 0.93, 0.94], [0.8, 0.8, 0.81, 0.8, 0.82])
    assert sig["verdict"] == "win" and sig["p_value"] < 0.05
    assert paired_test([0.9, 0.7], [0.8, 0.8])["verdict"] == "tie"


def test_summary_on_hand_computed_runs():
    runs = [
        {"task": "t", "strategy": "random", "seed": 0, "labels": [10, 20, 30], "accuracy": [0.5, 0.6, 0.7]},
        {"task": "t", "strategy": "margin", "seed": 0, "labels": [10, 20, 30], "accuracy": [0.5, 0.7, 0.8]},
        {"task": "t", "strategy": "random", "seed": 1, "labels": [10, 20, 30], "accuracy": [0.4, 0.6, 0.8]},
        {"task": "t", "strategy": "margin", "seed": 1, "labels": [10, 20, 30], "accuracy": [0.4, 0.5, 0.6]},
    ]
    for r in runs:
        r["aulc"] = float(np.mean(r["accuracy"]))
        r["final_accuracy"] = r["accuracy"][-1]
    add_labels_to_random_final(runs)
    assert [r["labels_to_random_final"] for r in runs] == [30, 20, 30, None]
    rows = {r["strategy"]: r for r in summarise(runs, ["t"], ["random", "margin"])}
    assert rows["margin"]["aulc_mean"] == pytest.approx((2 / 3 + 0.5) / 2)
    assert rows["margin"]["labels_to_random_final_mean"] == 20 and rows["margin"]["labels_to_random_final_reached"] == 1
    assert rows["margin"]["vs_random"]["win_tie_loss"] == [1, 0, 1]
    assert "vs_random" not in rows["random"]
