"""The batch oracle (heuristic batches retrained) and the heuristic candidate proposals."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from metaal.acquisition.features import BATCH_PROPOSERS
from metaal.acquisition.proposals import heuristic_batches
from metaal.cli import cli
from metaal.errors import MetaalError
from metaal.learners import LearnerConfig
from metaal.loop import LoopConfig, new_state
from metaal.oracle import OracleConfig, OracleStrategy, lookahead_gains
from metaal.oracle.batch import candidate_gains
from metaal.tasks import load_task

LEARNER = LearnerConfig(hidden=32, steps=40)


def generate_batch(out, *extra, task="sklearn:wine", budget=6, train_steps=15):
    """One small batch-oracle episode (query size 3, K = 18) through the CLI."""
    return CliRunner().invoke(cli, ["generate", "--tasks", task, "--episodes", "1", "--candidates", "18", "--initial", "6",
                                    "--budget", str(budget), "--query-size", "3", "--oracle", "batch", *extra,
                                    "--epochs-steps", str(train_steps), "--quiet", "--out", str(out)])


@pytest.fixture()
def state():
    task = load_task("sklearn:wine", 3)
    return new_state(task, LEARNER, LoopConfig(initial=8, budget=20, query_size=5), seed=3, device="cpu")


def test_winning_batch_gain_is_what_the_loop_then_realises(state):
    task = state.task
    Xv, yv = task.X[task.val], task.y[task.val]
    acc0 = state.learner.accuracy(Xv, yv)
    cands, loss_gain, acc_gain, per_batch = candidate_gains(state, 5, Xv, yv, round_seed=1)
    assert set(per_batch) == set(BATCH_PROPOSERS)
    batches = heuristic_batches(state, 5)
    assert np.array_equal(cands, np.unique(np.concatenate(list(batches.values()))))
    assert np.isin(cands, state.unlabelled).all()
    winner = max(BATCH_PROPOSERS, key=lambda name: per_batch[name][0])
    top = cands[np.argsort(-loss_gain.astype(np.float64), kind="stable")[:5]]
    assert set(top) == set(batches[winner])
    # every candidate carries the best gain of a batch that contains it
    for name, batch in batches.items():
        pos = np.searchsorted(cands, batch)
        assert (loss_gain[pos] >= np.float32(per_batch[name][0])).all()
    # take the winning batch for real: the loop's retrain gives exactly the oracle's number
    state.round = 1
    state.add_labels(batches[winner])
    state.retrain()
    assert state.learner.accuracy(Xv, yv) - acc0 == pytest.approx(per_batch[winner][1], abs=1e-6)
    assert np.isfinite(acc_gain).all()


def test_oracle_strategy_in_batch_mode_returns_the_winning_batch(state):
    strategy = OracleStrategy(OracleConfig(mode="batch"))
    picked = strategy.select(state, 5)
    assert len(np.unique(picked)) == 5 and np.isin(picked, state.unlabelled).all()
    assert picked.tolist() == strategy.select(state, 5).tolist()  # deterministic


def test_lookahead_gains_refuses_the_batch_mode(state):
    with pytest.raises(MetaalError, match="whole batches"):
        lookahead_gains(state.learner, *(np.zeros((2, 13), np.float32), np.zeros(2, np.int64)) * 3, OracleConfig(mode="batch"), 0)


def test_heuristic_proposals_mix_the_heuristics_and_are_reproducible(state):
    from metaal.acquisition.proposals import propose_candidates
    from metaal.registry import get_strategy

    a = propose_candidates(state, 21, "heuristics")
    assert len(a) == 21 and len(np.unique(a)) == 21 and np.isin(a, state.unlabelled).all()
    assert a.tolist() == propose_candidates(state, 21, "heuristics").tolist()
    for name in ("margin", "coreset"):  # each heuristic's own first pick is in
        assert get_strategy(name).select(state, 1)[0] in a
    r = propose_candidates(state, 21, "random")
    assert len(r) == 21 and np.isin(r, state.unlabelled).all()
    with pytest.raises(MetaalError, match="proposals"):
        propose_candidates(state, 5, "best")


def test_generate_and_distill_with_the_batch_oracle(tmp_path):
    from metaal.policy import load_policy
    from metaal.store import read_trajectories

    out = tmp_path / "b.zarr"
    args = ["generate", "--tasks", "sklearn:wine", "--episodes", "2", "--candidates", "18", "--initial", "6",
            "--budget", "6", "--query-size", "3", "--oracle", "batch", "--epochs-steps", "15", "--seed", "2", "--quiet",
            "--out", str(out)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    t = read_trajectories(str(out))
    s = t.steps
    assert t.attrs["oracle"]["mode"] == "batch" and t.n_steps == 2 * 6
    # each round's expert picks are one whole batch: the three picks share the round's best gain
    first_picks = s["oracle_gain"][np.arange(t.n_steps), s["expert_action"]].reshape(-1, 3)
    assert np.allclose(first_picks, first_picks[:, :1])
    assert (s["mask"][s["round_end"]].sum(1) >= 1).all()
    # the stored features say which heuristics proposed each candidate; the expert's picks of a round all
    # come from one proposer's batch, and every proposer flags exactly its batch (3 items) per step
    from metaal.acquisition.features import FEATURE_NAMES

    cols = [FEATURE_NAMES.index(f"in_{p}") for p in BATCH_PROPOSERS]
    flags = s["candidates"][:, :, cols]  # (steps, K, proposers)
    n_valid = np.isfinite(s["oracle_gain"]).sum(1)
    assert (flags.sum(1) == 3).all()
    assert np.allclose(s["candidates"][:, :, FEATURE_NAMES.index("proposer_votes")], flags.mean(2))
    for rnd in range(t.n_steps // 3):
        steps = np.arange(3 * rnd, 3 * rnd + 3)
        picked = flags[steps, s["expert_action"][steps]]  # (3 picks, proposers)
        assert picked.all(axis=0).any()  # one proposer holds all three
        assert (flags[steps[0], n_valid[steps[0]]:] == 0).all()  # padding carries no flag
    r = CliRunner().invoke(cli, ["distill", str(out), "--algo", "gain", "--target", "accuracy", "--steps", "30",
                                 "--out", str(tmp_path / "pol"), "--quiet"])
    assert r.exit_code == 0, r.output
    policy = load_policy(tmp_path / "pol")
    assert policy.proposals == "batches" and policy.meta["hyperparameters"]["target"] == "accuracy"
    state = new_state(load_task("sklearn:iris", 0), LEARNER, LoopConfig(initial=6, budget=9, query_size=3), seed=0, device="cpu")
    picked = policy.select(state, 3)
    union = np.unique(np.concatenate(list(heuristic_batches(state, 3).values())))
    assert len(np.unique(picked)) == 3 and np.isin(picked, union).all()
    # too few candidates for six batches: refused up front
    bad = CliRunner().invoke(cli, args[:-2] + ["--candidates", "12", "--out", str(tmp_path / "c.zarr")])
    assert bad.exit_code == 2 and "--candidates >= 18" in bad.output
    bad = CliRunner().invoke(cli, args[:-2] + ["--proposals", "heuristics", "--out", str(tmp_path / "d.zarr")])
    assert bad.exit_code == 2 and "conflict" in bad.output and not (tmp_path / "d.zarr").exists()


def test_horizon_two_judges_a_batch_after_a_margin_round(state):
    task = state.task
    Xv, yv = task.X[task.val], task.y[task.val]
    batches = heuristic_batches(state, 5)
    from metaal.oracle.batch import batch_gains

    one = batch_gains(state, batches, Xv, yv, round_seed=1)
    two = batch_gains(state, batches, Xv, yv, round_seed=1, horizon=2)
    assert set(two) == set(one) and one != two
    assert two == batch_gains(state, batches, Xv, yv, round_seed=1, horizon=2)  # deterministic
    with pytest.raises(MetaalError, match="horizon"):
        OracleConfig(mode="batch", horizon=0)


def test_repeats_average_the_gains_of_retrains_with_other_round_seeds(state):
    from metaal.oracle.batch import REPEAT_SEED_STRIDE, batch_gains

    task = state.task
    Xv, yv = task.X[task.val], task.y[task.val]
    batches = heuristic_batches(state, 5)
    one = batch_gains(state, batches, Xv, yv, round_seed=1)
    assert batch_gains(state, batches, Xv, yv, round_seed=1, repeats=1) == one  # the default is one retrain
    other = batch_gains(state, batches, Xv, yv, round_seed=1 + REPEAT_SEED_STRIDE)
    three = batch_gains(state, batches, Xv, yv, round_seed=1, repeats=3)
    assert three == batch_gains(state, batches, Xv, yv, round_seed=1, repeats=3)  # deterministic
    assert three != one
    for name in batches:
        two = batch_gains(state, {name: batches[name]}, Xv, yv, round_seed=1, repeats=2)[name]
        assert two == pytest.approx(((one[name][0] + other[name][0]) / 2, (one[name][1] + other[name][1]) / 2), abs=1e-9)


@pytest.mark.parametrize("option, key, bad, message", [
    ("--oracle-horizon", "horizon", ["--oracle", "batch", "--oracle-horizon", "0"], "horizon"),
])
def test_generate_batch_oracle_options_are_recorded_and_checked(tmp_path, option, key, bad, message):
    from metaal.store import read_trajectories

    out = tmp_path / "o.zarr"
    r = generate_batch(out, option, "2", task="sklearn:iris", budget=3, train_steps=10)
    assert r.exit_code == 0, r.output
    assert read_trajectories(str(out)).attrs["oracle"][key] == 2
    r = CliRunner().invoke(cli, ["generate", "--tasks", "sklearn:iris", *bad, "--out", str(tmp_path / "x.zarr")])
    assert r.exit_code == 2 and message in r.output


def test_accuracy_metric_picks_the_batch_with_the_best_accuracy_gain(state):
    from metaal.oracle.lookahead import expert_key

    task = state.task
    Xv, yv = task.X[task.val], task.y[task.val]
    batches = heuristic_batches(state, 5)
    cands, loss_gain, acc_gain, per_batch = candidate_gains(state, 5, Xv, yv, round_seed=1, batches=batches,
                                                            metric="accuracy")
    best_acc = max(v[1] for v in per_batch.values())
    winners = [name for name in BATCH_PROPOSERS if per_batch[name][1] == best_acc]
    winner = max(winners, key=lambda name: per_batch[name][0])  # loss breaks accuracy ties
    top = cands[np.argsort(-expert_key(loss_gain, acc_gain, "accuracy"), kind="stable")[:5]]
    assert set(top) == set(batches[winner])
    picked = OracleStrategy(OracleConfig(mode="batch", metric="accuracy")).select(state, 5)
    assert set(picked) == set(batches[winner])
    assert expert_key([0.1, np.nan], [0.0, 0.5], "accuracy")[1] == -np.inf  # NaN never wins
    for bad, match in ((dict(metric="f1"), "unknown oracle metric"), (dict(mode="first-order", metric="accuracy"), "no accuracy")):
        with pytest.raises(MetaalError, match=match):
            OracleConfig(**bad)


def test_generate_with_the_accuracy_metric_records_it_and_follows_it(tmp_path):
    from metaal.oracle.lookahead import expert_key
    from metaal.store import read_trajectories

    out = tmp_path / "m.zarr"
    r = generate_batch(out, "--oracle-metric", "accuracy")
    assert r.exit_code == 0, r.output
    t = read_trajectories(str(out))
    assert t.attrs["oracle"]["metric"] == "accuracy"
    s = t.steps
    for i in range(t.n_steps):
        key = expert_key(s["oracle_gain"][i], s["oracle_acc_gain"][i], "accuracy")
        key[~s["mask"][i]] = -np.inf
        assert s["expert_action"][i] == int(np.argmax(key))


def test_margin_pool_keeps_the_expert_and_its_policy_among_uncertain_items(tmp_path):
    from metaal.acquisition import scores
    from metaal.acquisition.proposals import uncertain_pool
    from metaal.policy import load_policy
    from metaal.store import read_trajectories

    out = tmp_path / "p.zarr"
    r = generate_batch(out, "--oracle-margin-pool", "3", budget=3)
    assert r.exit_code == 0, r.output
    assert read_trajectories(str(out)).attrs["oracle"]["margin_pool"] == 3
    assert (read_trajectories(str(out)).steps["mask"].sum(1) <= 9).all()  # the batches come from 9 items
    r = CliRunner().invoke(cli, ["distill", str(out), "--steps", "5", "--val-fraction", "0", "--out", str(tmp_path / "pol"), "--quiet"])
    assert r.exit_code == 0, r.output
    policy = load_policy(tmp_path / "pol")
    assert policy.margin_pool == 3
    state = new_state(load_task("sklearn:iris", 0), LEARNER, LoopConfig(initial=6, budget=9, query_size=3), seed=0, device="cpu")
    picked = policy.select(state, 3)
    uncertain = uncertain_pool(state, 3, 3)
    assert len(uncertain) == 9 and np.isin(picked, uncertain).all()
    margins = scores.margin(state.pool_proba()[state.unlabelled])
    assert scores.margin(state.pool_proba()[uncertain]).max() <= np.sort(margins)[8]
    picked = OracleStrategy(OracleConfig(mode="batch", margin_pool=3)).select(state, 3)
    assert np.isin(picked, uncertain).all()
    bad = CliRunner().invoke(cli, ["generate", "--tasks", "sklearn:iris", "--oracle-margin-pool", "2", "--out", str(tmp_path / "x.zarr")])
    assert bad.exit_code == 2 and "margin_pool applies to the batch oracle" in bad.output


def test_proposer_flags_without_batches_are_zero_and_unknown_proposers_are_refused():
    from metaal.acquisition.features import proposer_flags

    flags = proposer_flags(np.array([3, 5, 9]), None)
    assert set(flags) == {f"in_{p}" for p in BATCH_PROPOSERS} | {"proposer_votes"}
    assert all((v == 0).all() for v in flags.values())
    flags = proposer_flags(np.array([3, 5, 9]), {"margin": np.array([5, 9]), "random": np.array([9])})
    assert flags["in_margin"].tolist() == [0, 1, 1] and flags["in_random"].tolist() == [0, 0, 1]
    assert np.allclose(flags["proposer_votes"], [0, 1 / 6, 2 / 6])
    with pytest.raises(MetaalError, match="unknown proposer"):
        proposer_flags(np.array([1]), {"typiclust": np.array([1])})


def test_best_batch_takes_the_proposer_batch_with_the_highest_mean_score():
    from metaal.acquisition.features import FEATURE_NAMES
    from metaal.policy.inference import best_batch

    feats = np.zeros((7, len(FEATURE_NAMES)))
    flag = {p: FEATURE_NAMES.index(f"in_{p}") for p in BATCH_PROPOSERS}
    feats[[0, 1, 2], flag["margin"]] = 1
    feats[[2, 3, 4], flag["coreset"]] = 1
    feats[[5, 6], flag["random"]] = 1
    scores = np.array([0.9, 0.1, 0.5, 0.6, 0.7, 0.0, 0.2])
    # margin 0.5, coreset 0.6, random 0.1: coreset's items, best first, although item 0 scores highest
    assert best_batch(feats, scores, 3).tolist() == [4, 3, 2]
    scores[[3, 4]] = [0.4, 0.4]  # coreset 0.433, margin 0.5
    assert best_batch(feats, scores, 3).tolist() == [0, 2, 1]
    scores[:] = 1.0  # a tie: the earlier proposer (margin)
    assert best_batch(feats, scores, 3).tolist() == [0, 1, 2]
    scores = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.9, 0.8])
    assert best_batch(feats, scores, 3).tolist() == [5, 6, 0]  # random's 2 items, topped up by the best other
    with pytest.raises(MetaalError, match="heuristics' batches"):
        best_batch(np.zeros((4, len(FEATURE_NAMES))), np.ones(4), 2)


def test_batch_choice_policy_picks_one_heuristic_batch_whole(tmp_path):
    """Policies distilled with the retired --choice batch record choice "batch": they still load and act as trained."""
    import json
    import shutil

    from metaal.policy import load_policy

    out = tmp_path / "b.zarr"
    assert generate_batch(out, "--seed", "4").exit_code == 0
    r = CliRunner().invoke(cli, ["distill", str(out), "--steps", "20", "--val-fraction", "0", "--out", str(tmp_path / "items"),
                                 "--quiet"])
    assert r.exit_code == 0, r.output
    shutil.copytree(tmp_path / "items", tmp_path / "batch")
    meta_file = tmp_path / "batch" / "metaal-policy.json"
    meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), "choice": "batch"}))
    policy = load_policy(tmp_path / "batch")
    assert policy.choice == "batch" and load_policy(tmp_path / "items").choice == "items"
    for seed in range(3):
        state = new_state(load_task("sklearn:iris", seed), LEARNER, LoopConfig(initial=6, budget=9, query_size=3),
                          seed=seed, device="cpu")
        picked = set(policy.select(state, 3).tolist())
        batches = heuristic_batches(state, 3)
        assert len(picked) == 3 and any(picked == set(b.tolist()) for b in batches.values()), (picked, batches)
    r = CliRunner().invoke(cli, ["transfer-eval", "--tasks", "sklearn:iris", "--strategies", "margin", "--policy",
                                 str(tmp_path / "batch"), "--seeds", "1", "--initial", "6", "--budget", "12",
                                 "--query-size", "3", "--epochs-steps", "15", "--quiet", "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0 and "policy" in r.output, r.output
    # `metaal select` on a user's pool follows the recorded choice too
    import csv

    task = load_task("sklearn:iris", 0)
    np.savez(tmp_path / "pool.npz", X=task.X, y=task.y)
    labelled = np.random.default_rng(0).choice(len(task.X), 9, replace=False)
    (tmp_path / "labels.csv").write_text("index,label\n" + "".join(f"{i},{task.y[i]}\n" for i in labelled))
    r = CliRunner().invoke(cli, ["select", "--data", f"npz:{tmp_path / 'pool.npz'}", "--labels", str(tmp_path / "labels.csv"),
                                 "--strategy", f"policy:{tmp_path / 'batch'}", "--n", "3", "--epochs-steps", "15",
                                 "--out", str(tmp_path / "next.csv")])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(tmp_path / "next.csv")))
    scores = [float(x["score"]) for x in rows]
    assert len(rows) == 3 and scores == sorted(scores, reverse=True)  # one batch, its best item first
    assert not set(int(x["index"]) for x in rows) & set(labelled.tolist())


def test_generate_records_every_heuristic_batchs_own_gain(tmp_path):
    """batch_gain / batch_acc_gain hold each proposer's whole-batch gains, the same on every step of a round: every
    candidate's gain is the best of its containing batches', and the expert's batch is the best one."""
    from metaal.acquisition.features import FEATURE_NAMES
    from metaal.store import read_trajectories

    out = tmp_path / "b.zarr"
    assert generate_batch(out, "--seed", "5").exit_code == 0
    s = read_trajectories(out).steps
    cols = [FEATURE_NAMES.index(f"in_{p}") for p in BATCH_PROPOSERS]
    assert s["batch_gain"].shape == (len(s["action"]), len(BATCH_PROPOSERS)) and np.isfinite(s["batch_gain"]).all()
    for rnd in range(len(s["action"]) // 3):
        steps = np.arange(3 * rnd, 3 * rnd + 3)
        assert (s["batch_gain"][steps] == s["batch_gain"][steps[0]]).all()
        first = steps[0]
        flags = s["candidates"][first][:, cols] > 0.5
        valid = s["mask"][first]
        for k in np.flatnonzero(valid):
            containing = np.flatnonzero(flags[k])
            assert s["oracle_gain"][first, k] in s["batch_gain"][first, containing]
            assert s["oracle_gain"][first, k] == s["batch_gain"][first, containing].max()  # the loss metric
        assert s["oracle_gain"][first, s["expert_action"][first]] == s["batch_gain"][first].max()
    # a lookahead (non-batch) oracle has no batches: NaN
    other = tmp_path / "r.zarr"
    r = CliRunner().invoke(cli, ["generate", "--tasks", "sklearn:wine", "--episodes", "1", "--candidates", "6",
                                 "--initial", "6", "--budget", "3", "--query-size", "3", "--oracle", "retrain",
                                 "--epochs-steps", "15", "--quiet", "--out", str(other)])
    assert r.exit_code == 0, r.output
    assert np.isnan(read_trajectories(other).steps["batch_acc_gain"]).all()


def test_inspect_tells_per_round_which_heuristic_batch_wins_and_by_how_much(tmp_path):
    """Mean gain, mean rank and win share per round and proposer, from the stored per-batch gains; ties in accuracy
    go to the loss gain, then to BATCH_PROPOSERS order (the batch oracle's own pick)."""
    from metaal.inspect import batch_outcomes_by_round
    from metaal.store import Trajectories

    P = len(BATCH_PROPOSERS)
    # two episodes of two rounds, two steps per round (the second step of a round repeats the first's gains)
    acc = np.zeros((4, P))
    acc[0] = [0.2, 0.0, 0.0, 0.4, 0.0, 0.0]  # episode 0, round 1: coreset wins
    acc[1] = [0.1, 0.1, 0.0, 0.0, 0.0, 0.0]  # round 2: margin and entropy tie in accuracy, entropy has the better loss
    acc[2] = [0.4, 0.0, 0.0, 0.2, 0.0, 0.0]  # episode 1, round 1: margin wins
    acc[3] = [0.0] * P  # round 2: all tie in both: margin, first in order
    acc[3, 5] = np.nan  # random's batch not measured there
    loss = np.zeros((4, P))
    loss[1, 1] = 0.5
    per_step = np.repeat(np.arange(4), 2)
    steps = {"batch_acc_gain": acc[per_step], "batch_gain": loss[per_step], "episode": np.repeat([0, 1], 4),
             "round_end": np.tile([False, True], 4), "action": np.zeros(8, np.int64)}
    rows = batch_outcomes_by_round(Trajectories(attrs={"oracle": {"metric": "accuracy"}}, steps=steps))
    assert rows == batch_outcomes_by_round(Trajectories(attrs={}, steps=steps), "accuracy")
    assert [(r["round"], r["rounds"]) for r in rows] == [(1, 2), (2, 2)]
    first, second = rows[0]["batches"], rows[1]["batches"]
    assert first["margin"]["acc_gain"] == pytest.approx(0.3) and first["coreset"]["acc_gain"] == pytest.approx(0.3)
    assert first["margin"]["wins"] == first["coreset"]["wins"] == 0.5 and first["badge"]["wins"] == 0.0
    assert first["margin"]["rank"] == pytest.approx((0.8 + 1.0) / 2)
    assert second["entropy"]["wins"] == 0.5 and second["margin"]["wins"] == 0.5
    assert second["random"]["wins"] == 0.0 and second["random"]["acc_gain"] == 0.0  # measured in one round only
    # a loss-metric expert (generate's default) ranks by the loss gain alone: entropy wins round 2 of episode 0, the
    # other batches tie at 0 and go to margin, first in order; the accuracy gain is still what the table reports
    by_loss = batch_outcomes_by_round(Trajectories(attrs={"oracle": {"metric": "loss"}}, steps=steps))
    assert by_loss[0]["batches"]["margin"]["wins"] == 1.0 and by_loss[0]["batches"]["coreset"]["wins"] == 0.0
    assert by_loss[1]["batches"]["entropy"]["wins"] == 0.5 and by_loss[0]["batches"]["coreset"]["acc_gain"] == pytest.approx(0.3)
    assert by_loss == batch_outcomes_by_round(Trajectories(attrs={}, steps=steps))
    # through the CLI on a real batch-oracle store; a lookahead store prints no such table
    out = tmp_path / "b.zarr"
    assert generate_batch(out, "--seed", "5").exit_code == 0
    r = CliRunner().invoke(cli, ["inspect", str(out)])
    assert r.exit_code == 0, r.output
    assert "heuristic batches by round" in r.output and all(p in r.output for p in BATCH_PROPOSERS)
    assert batch_outcomes_by_round(Trajectories(attrs={}, steps={**steps, "batch_acc_gain": np.full((8, P), np.nan),
                                                                 "batch_gain": np.full((8, P), np.nan)})) == []


def test_stacked_retrains_give_the_sequential_gains(state):
    """All (batch, repeat) copies of a round trained as one stack (fit_many) vs one fit after another.

    Same minibatches, masks and Adam arithmetic; only the summation order of the products differs, so the
    loss gains agree to 1e-5 and an accuracy gain by at most one validation item (a near-tie flipping).
    """
    from metaal.oracle.batch import batch_gains

    task = state.task
    Xv, yv = task.X[task.val], task.y[task.val]
    batches = heuristic_batches(state, 5)
    for kw in ({}, {"horizon": 2, "repeats": 2}):
        seq = batch_gains(state, batches, Xv, yv, round_seed=1, stack=False, **kw)
        stk = batch_gains(state, batches, Xv, yv, round_seed=1, stack=True, **kw)
        assert set(seq) == set(stk) == set(batches)
        for name in batches:
            assert stk[name][0] == pytest.approx(seq[name][0], abs=1e-5)
            assert abs(stk[name][1] - seq[name][1]) <= 1 / len(yv) + 1e-9
