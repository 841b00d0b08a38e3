"""scripts/heldout_draws.py: the names of an arm's draws, the held-out policy-minus-margin read from run files,
and the correlations across policies; the transfer-eval runs themselves take minutes and are not in the suite."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _tiny import load_script


@pytest.fixture(scope="module")
def heldout():
    return load_script("heldout_draws")


def test_draw_names_follow_the_study_rows_and_the_session_6_alias(heldout):
    study = heldout._load_study()
    names = heldout.draw_names(study.SESSION_6_DEFAULT, aliases=study.DRAW_ARM_ALIASES)
    assert names[:4] == [(0, 0, study.SESSION_6_DEFAULT), (0, 1, f"{study.SESSION_6_DEFAULT}-distill-seed-1"),
                         (0, 2, f"{study.SESSION_6_DEFAULT}-distill-seed-2"), (1, 0, "per-class-initial-3-generate-seed-1")]
    lever = "per-class-initial-3-source-val-35"
    assert [n for _, _, n in heldout.draw_names(lever, aliases=study.DRAW_ARM_ALIASES)][-1] == \
        f"{lever}-generate-seed-2-distill-seed-2"
    rows = study.variants()  # every policy the script would read is a row study.py can run
    for arm in (study.SESSION_6_DEFAULT, lever, "per-class-initial-3-with-10-class-synthetic"):
        assert all(n in rows for _, _, n in heldout.draw_names(arm, aliases=study.DRAW_ARM_ALIASES))


def test_policy_minus_margin_reads_transfer_evals_run_files(heldout, tmp_path):
    from metaal.evaluate import run_path

    for seed, (policy, margin) in enumerate([(0.80, 0.70), (0.60, 0.65)]):
        for strategy, aulc in (("policy", policy), ("margin", margin)):
            path = run_path(tmp_path, "sklearn:digits", strategy, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"aulc": aulc, "accuracy": [0.5, aulc]}))  # as transfer-eval writes both
    assert heldout.policy_minus_margin(tmp_path, "sklearn:digits", seeds=2) == pytest.approx(0.025)
    with pytest.raises(FileNotFoundError):
        heldout.policy_minus_margin(tmp_path, "sklearn:digits", seeds=3)


def test_correlations_across_policies(heldout):
    tuning = {"two sets": [0.1, 0.2, 0.3, 0.4], "spiky": [0.4, 0.3, 0.2, 0.1]}
    rows = {(c["target"], c["set"]): c for c in heldout.correlations(tuning, {"digits": [1.0, 2.0, 3.0, 5.0]})}
    assert rows[("digits", "two sets")]["spearman"] == pytest.approx(1.0)
    assert rows[("digits", "spiky")]["spearman"] == pytest.approx(-1.0)
    assert 0.9 < rows[("digits", "two sets")]["pearson"] < 1.0


def test_split_half_reliability_tells_signal_from_noise(heldout):
    rng = np.random.default_rng(0)
    quality = rng.normal(0, 0.01, 30)  # a real per-policy difference, seen by both halves
    r, p = heldout.split_half(list(quality + rng.normal(0, 0.001, 30)), list(quality + rng.normal(0, 0.001, 30)))
    assert r > 0.9 and p < 0.001
    r, _ = heldout.split_half(list(rng.normal(0, 0.01, 30)), list(rng.normal(0, 0.01, 30)))  # noise only
    assert abs(r) < 0.5


def test_seed_differences_give_aulc_and_per_round_accuracy_per_seed(heldout, tmp_path):
    from metaal.evaluate import run_path

    runs = [((0.8, [0.5, 0.6, 0.9]), (0.7, [0.5, 0.7, 0.8])), ((0.6, [0.4, 0.6, 0.7]), (0.7, [0.4, 0.8, 0.7])),
            ((0.9, [0.4, 0.9, 0.9]), (0.7, [0.4, 0.7, 0.7]))]
    for seed, pair in enumerate(runs):
        for strategy, (aulc, accuracy) in zip(("policy", "margin"), pair):
            path = run_path(tmp_path, "sklearn:iris", strategy, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"aulc": aulc, "accuracy": accuracy}))
    aulc, accuracy = heldout.seed_differences(tmp_path, "sklearn:iris", 3)
    assert aulc == pytest.approx([0.1, -0.1, 0.2])
    assert aulc[0::2].mean() == pytest.approx(0.15)  # the even-seed half main() pairs with the odd one
    assert accuracy.shape == (3, 3) and accuracy[:2].mean(axis=0) == pytest.approx([0.0, -0.15, 0.05])
    assert heldout.seed_differences(tmp_path, "sklearn:iris", 2)[0] == pytest.approx([0.1, -0.1])
    assert heldout.policy_minus_margin(tmp_path, "sklearn:iris", 3) == pytest.approx(0.2 / 3)
