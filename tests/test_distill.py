"""Distillation: the d3rlpy bridge, the equivariant scorer, the policy artifact and its loader.

Everything runs on small synthetic trajectories built in memory (no store, no AL loop).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from metaal.acquisition import features
from metaal.acquisition.agreement import decision_metrics, heuristic_scores, validation_table
from metaal.distill import DistillConfig, build_dataset, distill, rank_percentiles, split_episodes
from metaal.errors import MetaalError
from metaal.policy import Policy, load_policy
from metaal.policy.networks import (
    SENTINEL,
    CandidateScorer,
    d3rlpy_scores,
    flatten_observations,
    load_d3rlpy_model,
)
from metaal.store.records import Trajectories

F, G = len(features.FEATURE_NAMES), len(features.CONTEXT_NAMES)
TOY_FEATURE = "grad_norm"  # the toy expert picks the candidate with the largest value of this feature
ROOT = Path(__file__).resolve().parents[1]


def toy_trajectories(n_episodes=30, rounds=4, b=3, K=8, seed=0, timeout_last=True) -> Trajectories:
    """Rounds of b picks over K candidates; the expert (and the oracle gain) follow one feature.

    Some candidates are masked (pool smaller than K); masked rows hold NaN like a real store.
    The roll-in takes the expert's pick half of the time, a random valid one otherwise.  The
    last episode ends with a timeout instead of a terminal when ``timeout_last``."""
    rng = np.random.default_rng(seed)
    j = features.FEATURE_NAMES.index(TOY_FEATURE)
    S = {k: [] for k in ("candidates", "context", "mask", "oracle_gain", "oracle_acc_gain", "action",
                         "expert_action", "reward", "terminal", "episode", "round_end")}
    ids, firsts, lengths = [], [], []
    step = 0
    for e in range(n_episodes):
        first = step
        for r in range(rounds):
            c = rng.random((K, F)).astype(np.float32)
            c[:, j] = rng.permutation(np.linspace(0.0, 1.0, K)) + rng.normal(0, 0.01, K)
            m = np.ones(K, bool)
            m[rng.choice(K, rng.integers(0, 3), replace=False)] = False
            gain = c[:, j] * 0.1
            for t in range(b):
                ctx = rng.random(G).astype(np.float32)
                ctx[-1] = t / b
                g = np.where(m, gain, np.nan).astype(np.float32)
                expert = int(np.nanargmax(g))
                act = expert if rng.random() < 0.5 else int(rng.choice(np.flatnonzero(m)))
                last = t == b - 1
                S["candidates"].append(np.where(m[:, None], c, np.nan))
                S["context"].append(ctx)
                S["mask"].append(m.copy())
                S["oracle_gain"].append(g)
                S["oracle_acc_gain"].append(g)
                S["action"].append(act)
                S["expert_action"].append(expert)
                S["reward"].append(float(gain[act]) if last else 0.0)
                S["terminal"].append(bool(last and r == rounds - 1 and not (timeout_last and e == n_episodes - 1)))
                S["episode"].append(100 + e)
                S["round_end"].append(last)
                m[act] = False
                step += 1
        ids.append(100 + e)
        firsts.append(first)
        lengths.append(step - first)
    dtypes = {"candidates": np.float32, "context": np.float32, "mask": bool, "oracle_gain": np.float32,
              "oracle_acc_gain": np.float32, "action": np.int32, "expert_action": np.int32, "reward": np.float32,
              "terminal": bool, "episode": np.int32, "round_end": bool}
    steps = {k: np.asarray(v).astype(dtypes[k]) for k, v in S.items()}
    attrs = {"schema": features.schema(), "feature_names": list(features.FEATURE_NAMES),
             "context_names": list(features.CONTEXT_NAMES), "K": K}
    episodes = {"id": np.asarray(ids), "task": np.asarray(["toy"] * n_episodes), "first_step": np.asarray(firsts),
                "length": np.asarray(lengths)}
    return Trajectories(attrs=attrs, steps=steps, episodes=episodes)


def small_config(algo: str, **kw) -> DistillConfig:
    base = dict(algo=algo, steps=300, batch_size=64, hidden=32, lr=3e-3, val_fraction=0.2, seed=0, threads=1)
    base.update(kw)
    return DistillConfig(**base)


@pytest.fixture(scope="module")
def toy():
    return toy_trajectories()


@pytest.fixture(scope="module")
def policies(toy, tmp_path_factory):
    """One distilled policy per algorithm (trained once for the module)."""
    root = tmp_path_factory.mktemp("policies")
    out = {}
    for algo in ("bc", "cql", "bcq", "gain"):
        meta = distill(toy, small_config(algo), root / algo, progress=False)
        out[algo] = (root / algo, meta)
    return out


def permuted(obs: np.ndarray, perm: np.ndarray, K: int) -> np.ndarray:
    cand = obs[:, : K * F].reshape(len(obs), K, F)[:, perm]
    return np.concatenate([cand.reshape(len(obs), K * F), obs[:, K * F :]], axis=1)


# ------------------------------------------------------------------------------------------ bridge


def test_bridge_round_trip(toy):
    K = toy.K
    for algo, action_key in (("bc", "expert_action"), ("cql", "action")):
        ds, info = build_dataset(toy, algo)
        assert len(ds.episodes) == toy.n_episodes  # no episode dropped (the last one ends with a timeout)
        assert ds.dataset_info.action_size == K
        assert sum(len(ep.observations) for ep in ds.episodes) == toy.n_steps
        obs = np.concatenate([ep.observations for ep in ds.episodes])
        act = np.concatenate([ep.actions for ep in ds.episodes]).ravel()
        rew = np.concatenate([ep.rewards for ep in ds.episodes]).ravel()
        st = toy.steps
        np.testing.assert_array_equal(act, st[action_key])
        np.testing.assert_allclose(rew, st["reward"])
        cand = obs[:, : K * F].reshape(-1, K, F)
        m = st["mask"]
        np.testing.assert_array_equal(cand[m], st["candidates"][m])
        assert np.all(cand[~m] == SENTINEL)
        np.testing.assert_array_equal(obs[:, K * F :], st["context"])
        assert [bool(ep.terminated) for ep in ds.episodes] == [True] * (toy.n_episodes - 1) + [False]


def test_split_is_by_episode_and_seeded(toy):
    tr, va = split_episodes(toy, 0.2, seed=3)
    assert len(va) == 6 and len(tr) == 24 and not set(tr) & set(va)
    tr2, va2 = split_episodes(toy, 0.2, seed=3)
    np.testing.assert_array_equal(va, va2)
    _, ds_info = build_dataset(toy, "bc", episodes=va)
    assert len(ds_info["episodes"]) == 6


def test_rank_percentiles():
    g = np.array([[0.1, 0.3, np.nan, 0.2], [1.0, 1.0, 0.0, 5.0], [0.0, np.nan, np.nan, np.nan]])
    m = np.array([[1, 1, 0, 1], [1, 1, 1, 1], [1, 0, 0, 0]], bool)
    p = rank_percentiles(g, m)
    np.testing.assert_allclose(p[0], [0.0, 1.0, 0.0, 0.5])
    np.testing.assert_allclose(p[1], [0.5, 0.5, 0.0, 1.0])
    np.testing.assert_allclose(p[2], [0.5, 0, 0, 0])


# ------------------------------------------------------------------------------------------ scorer


def test_scorer_equivariant_any_pool_size_and_masked():
    torch.manual_seed(0)
    s = CandidateScorer(F, G, hidden=16).eval()
    rng = np.random.default_rng(0)
    K = 9
    cand = rng.random((5, K, F)).astype(np.float32) * 3
    ctx = rng.random((5, G)).astype(np.float32)
    mask = rng.random((5, K)) > 0.3
    mask[:, 0] = True
    obs = flatten_observations(cand, ctx, mask)
    perm = rng.permutation(K)
    with torch.no_grad():
        a = s(torch.as_tensor(obs)).numpy()
        b = s(torch.as_tensor(permuted(obs, perm, K))).numpy()
        c = s(torch.as_tensor(cand), torch.as_tensor(ctx), torch.as_tensor(mask)).numpy()
        for n in (1, 3, 50):  # any pool size
            out = s(torch.rand(2, n, F), torch.rand(2, G))
            assert out.shape == (2, n) and torch.isfinite(out).all()
    np.testing.assert_allclose(b, a[:, perm], atol=1e-5)
    np.testing.assert_allclose(c[mask], a[mask], atol=1e-6)  # structured input == flat input
    assert np.all(a[~mask] < np.where(mask, a, np.inf).min(1, keepdims=True).repeat(K, 1)[~mask])


# ------------------------------------------------------------------------------------------ training + artifact


def test_toy_expert_is_learned_by_bc_and_gain(policies):
    for algo in ("bc", "gain"):
        val = policies[algo][1]["validation"]
        assert val["episodes"] == 6
        assert val["policy"]["agreement"] >= 0.95, (algo, val["policy"])
        assert val["heuristics"]["random"]["agreement"] < 0.6
    print("\n" + validation_table(policies["bc"][1]["validation"]))


def test_artifact_contents(policies):
    for algo, (path, meta) in policies.items():
        files = sorted(p.name for p in path.iterdir())
        expected = ["metaal-policy.json", "scorer.pt"] + ([] if algo == "gain" else ["model.d3"])
        assert files == sorted(expected), files
        on_disk = json.loads((path / "metaal-policy.json").read_text())
        assert on_disk == meta  # distill returns exactly what it wrote
        assert on_disk["format"] == "metaal-policy" and on_disk["format_version"] == 1
        assert on_disk["schema"] == features.schema() and on_disk["K"] == 8 and on_disk["algorithm"] == algo
        assert on_disk["hyperparameters"]["steps"] == 300
        assert on_disk["training"]["steps"] == 300 and on_disk["training"]["loss_end"] is not None
        assert on_disk["sources"][0]["fingerprint"].startswith("sha256:")
        assert on_disk["versions"]["torch"]
        assert set(on_disk["validation"]["policy"]) == {"agreement", "topb_overlap", "regret"}
        assert set(on_disk["validation"]["heuristics"]) == {*features.HEURISTIC_FEATURES, "random"}
        torch.load(path / "scorer.pt", weights_only=True)
    assert not list(path.parent.glob(".*tmp"))  # no temp dirs left behind


def test_equivariance_saved_scorer_and_d3rlpy(policies, toy):
    K = toy.K
    obs = flatten_observations(toy.steps["candidates"][:40], toy.steps["context"][:40], toy.steps["mask"][:40])
    perm = np.random.default_rng(1).permutation(K)
    obs_p = permuted(obs, perm, K)
    for algo, (path, _meta) in policies.items():
        pol = load_policy(path)
        with torch.no_grad():
            a = pol.scorer(torch.as_tensor(obs)).numpy()
            b = pol.scorer(torch.as_tensor(obs_p)).numpy()
        np.testing.assert_allclose(b, a[:, perm], atol=1e-5, err_msg=algo)
        if algo == "gain":
            continue
        model = load_d3rlpy_model(path / "model.d3")
        da, db = d3rlpy_scores(model, obs), d3rlpy_scores(model, obs_p)
        np.testing.assert_allclose(db, da[:, perm], atol=1e-5, err_msg=algo)
        if algo in ("cql", "bcq"):  # d3rlpy's own Q values
            for act in range(K):
                qa = model.predict_value(obs, np.full(len(obs), perm[act]))
                qb = model.predict_value(obs_p, np.full(len(obs), act))
                np.testing.assert_allclose(qb, qa, atol=1e-5, err_msg=algo)


def test_reload_identical_with_and_without_d3rlpy(policies, toy):
    st = toy.steps
    obs = flatten_observations(st["candidates"][:60], st["context"][:60], st["mask"][:60])
    for algo, (path, _meta) in policies.items():
        pol = load_policy(path)
        s_policy = np.stack([pol.score(np.nan_to_num(st["candidates"][i]), st["context"][i]) for i in range(60)])
        with torch.no_grad():
            s_flat = pol.scorer(torch.as_tensor(obs)).numpy()
        full = st["mask"][:60].all(1)  # Policy.score sees no mask: compare where every candidate is valid
        assert full.sum() > 5
        np.testing.assert_allclose(s_policy[full], s_flat[full], atol=1e-5, err_msg=algo)
        if algo == "gain":
            continue
        model = load_d3rlpy_model(path / "model.d3")
        np.testing.assert_allclose(d3rlpy_scores(model, obs), s_flat, atol=1e-5, err_msg=algo)
        np.testing.assert_array_equal(model.predict(obs), s_flat.argmax(1), err_msg=algo)  # d3rlpy's decision


def test_policy_loads_and_scores_without_d3rlpy(policies, toy):
    path = policies["bc"][0]
    ctx = toy.steps["context"][0]
    feats = np.nan_to_num(toy.steps["candidates"][0])
    code = (
        "import sys, json, numpy as np; sys.modules['d3rlpy'] = None\n"
        "from metaal.policy import load_policy\n"
        f"p = load_policy({str(path)!r})\n"
        f"s = p.score(np.array({feats.tolist()!r}, np.float32), np.array({ctx.tolist()!r}, np.float32))\n"
        "assert 'gym' not in sys.modules\n"
        "print(json.dumps(s.tolist()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    np.testing.assert_allclose(json.loads(out.stdout.strip().splitlines()[-1]), load_policy(path).score(feats, ctx), atol=1e-6)


def test_schema_mismatch_is_an_error(policies, toy, tmp_path):
    dst = tmp_path / "p"
    shutil.copytree(policies["gain"][0], dst)
    meta = json.loads((dst / "metaal-policy.json").read_text())
    meta["schema"]["features"] = meta["schema"]["features"][:-1] + ["something_else"]
    (dst / "metaal-policy.json").write_text(json.dumps(meta))
    with pytest.raises(MetaalError, match="schema") as exc:
        load_policy(dst)
    assert "\n" not in str(exc.value)
    bad = Trajectories(attrs={**toy.attrs, "schema": {**features.schema(), "version": 99}}, steps=toy.steps, episodes=toy.episodes)
    with pytest.raises(MetaalError, match="schema"):
        distill(bad, small_config("gain", steps=5), tmp_path / "never", progress=False)
    assert not (tmp_path / "never").exists()


def test_missing_or_corrupt_files(policies, tmp_path):
    src = policies["gain"][0]
    with pytest.raises(MetaalError, match="not a policy"):
        load_policy(tmp_path / "nowhere")
    a = tmp_path / "a"
    shutil.copytree(src, a)
    (a / "scorer.pt").unlink()
    with pytest.raises(MetaalError, match="missing"):
        load_policy(a)
    b = tmp_path / "b"
    shutil.copytree(src, b)
    (b / "scorer.pt").write_bytes(b"not a torch file")
    with pytest.raises(MetaalError, match="cannot load"):
        load_policy(b)
    c = tmp_path / "c"
    shutil.copytree(src, c)
    (c / "metaal-policy.json").write_text("{ nope")
    with pytest.raises(MetaalError, match="cannot read"):
        load_policy(c)


class _Marker:
    """Unpickling this creates a file: proof that a pickle was executed."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_malicious_files_are_never_executed(policies, tmp_path):
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Marker(probe)))
    assert probe.exists()  # the payload works when unpickled

    marker = tmp_path / "PWNED"
    payload = pickle.dumps(_Marker(marker))
    for algo in ("gain", "bc"):
        d = tmp_path / algo
        shutil.copytree(policies[algo][0], d)
        (d / "model.d3").write_bytes(payload)  # replaces (bc) or plants (gain) d3rlpy's pickle
        for name in ("extra.pkl", "policy.pt", "scorer.pkl", "__init__.py"):
            (d / name).write_bytes(payload)
        pol = load_policy(d)
        pol.score(np.random.rand(5, F).astype(np.float32), np.random.rand(G).astype(np.float32))
        with pytest.raises(MetaalError, match="trust_pickle"):
            pol.d3rlpy_model()
        assert not marker.exists()
    d = tmp_path / "evil_scorer"
    shutil.copytree(policies["gain"][0], d)
    torch.save({"x": _Marker(marker)}, d / "scorer.pt")  # a full pickle in place of the weights
    with pytest.raises(MetaalError, match="cannot load"):
        load_policy(d)
    assert not marker.exists()


def test_output_dir_safety_and_overwrite(toy, tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "precious.txt").write_text("x")
    with pytest.raises(MetaalError, match="refusing"):
        distill(toy, small_config("gain", steps=5), other, progress=False)
    assert (other / "precious.txt").exists()
    out = tmp_path / "pol"
    distill(toy, small_config("gain", steps=5), out, progress=False)
    meta = distill(toy, small_config("gain", steps=7), out, progress=False)  # replaces the old policy
    assert json.loads((out / "metaal-policy.json").read_text())["training"]["steps"] == 7 == meta["training"]["steps"]
    assert sorted(os.listdir(tmp_path)) == ["mine", "pol"]


# ------------------------------------------------------------------------------------------ metrics


def test_decision_metrics_by_hand():
    steps = {
        "mask": np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1], [1, 1, 0]], bool),
        "oracle_gain": np.array([[0.0, 1.0, 2.0], [0.0, np.nan, 2.0], [3.0, 1.0, 0.0], [1.0, 1.0, np.nan]]),
        "expert_action": np.array([2, 2, 0, 0]),
        "action": np.array([2, 0, 0, 1]),
        "round_end": np.array([0, 1, 0, 1], bool),
        "episode": np.array([0, 0, 1, 1]),
    }
    scores = np.array([[0.0, 5.0, 1.0], [9.0, 99.0, 1.0], [1.0, 0.0, -1.0], [0.0, 1.0, 50.0]])
    m = decision_metrics(scores, steps)
    # picks: 1 (expert 2), 0 (masked 1 ignored; expert 2), 0 (expert 0), 1 (masked 2 ignored; expert 0)
    assert m["agreement"] == pytest.approx(1 / 4)
    # regrets: (2-1)/2, (2-0)/2, 0, spread 0 -> 0
    assert m["regret"] == pytest.approx((0.5 + 1.0 + 0 + 0) / 4)
    # round 1 (b=2): top2 score {1,2} vs gain {2,1} -> 1; round 2 (b=2): {0,1} vs {0,1} -> 1
    assert m["topb_overlap"] == pytest.approx(1.0)
    h = heuristic_scores(np.random.rand(4, 3, F), "margin")
    assert h.shape == (4, 3)
    np.testing.assert_array_equal(heuristic_scores(np.zeros((4, 3, F)), "random", seed=1),
                                  heuristic_scores(np.zeros((4, 3, F)), "random", seed=1))
    table = validation_table({"policy": m, "heuristics": {"random": m}, "episodes": 2})
    assert "policy" in table and "random" in table and "top-b overlap" in table


# ------------------------------------------------------------------------------------------ select


class _FakeTask:
    def __init__(self, n=60, C=3, seed=0):
        rng = np.random.default_rng(seed)
        self.X = rng.normal(size=(n, 4))
        self.y = rng.integers(0, C, n)
        self.pool = np.arange(n)
        self.n_classes = C


class _FakeState:
    """A minimal AcquisitionState (metaal.state): hand-made outputs for 60 pool rows."""

    has_mc = True

    def __init__(self, seed=0):
        self.task = _FakeTask(seed=seed)
        self.labelled = np.arange(6)
        self.initial, self.budget, self.round, self.seed = 6, 20, 0, seed
        rng = np.random.default_rng(seed)
        logits = rng.normal(size=(60, 3))
        self._proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        self.labelled_y = self.task.y[self.labelled]
        self.n_classes = self._proba.shape[1]
        self._cache = {}

    def cached(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def proba_chunks(self):
        yield 0, self._proba

    def proba(self, idx):
        return self._proba[idx]

    def embedding(self, idx):
        return self.task.X[idx]

    def grad_norm(self, idx):
        return np.linalg.norm(self.grad_embedding(idx), axis=1)

    n_labelled = property(lambda self: len(self.labelled))
    unlabelled = property(lambda self: np.setdiff1d(np.arange(60), self.labelled))
    budget_used = property(lambda self: 0.0)

    def rng(self, purpose):
        return np.random.default_rng([self.seed, self.round, purpose])

    def pool_proba(self):
        return self._proba

    def pool_embedding(self):
        return self.task.X

    def mc_proba(self, idx):
        return np.stack([self._proba[idx]] * 4)

    def grad_embedding(self, idx):
        return self.task.X[idx] * 2

    def labelled_stats(self):
        return 0.5, 0.8


def test_policy_select(policies):
    pol = load_policy(policies["gain"][0])
    assert isinstance(pol, Policy) and pol.name == "policy"
    st = _FakeState()
    pick = pol.select(st, 5)
    assert len(pick) == 5 and len(set(pick)) == 5 and not set(pick) & set(st.labelled)
    np.testing.assert_array_equal(pick, pol.select(st, 5))  # deterministic
    cands = st.unlabelled[:12]
    assert set(pol.select(st, 4, cands)) <= set(cands)
    capped = load_policy(policies["gain"][0], max_candidates=10)
    pick2 = capped.select(st, 3)
    drawn = st.rng(29).choice(st.unlabelled, size=10, replace=False)
    assert set(pick2) <= set(drawn)
    with pytest.raises(MetaalError):
        pol.select(st, 100)


def test_dropped_features_are_held_at_zero_in_training_and_in_use(toy, policies, tmp_path):
    """The ablation switch: without the one feature the toy expert follows, the expert cannot be learned;
    dropping another feature does not hurt; the policy ignores the dropped columns at inference.  The
    heuristics it is compared with still read the stored features (a dropped margin column is not margin)."""
    blind = distill(toy, small_config("gain", drop_features=[TOY_FEATURE, "budget_used", "margin"]),
                    tmp_path / "blind", progress=False)
    assert blind["dropped_features"] == [TOY_FEATURE, "budget_used", "margin"]
    assert blind["validation"]["policy"]["agreement"] < 0.6
    other = distill(toy, small_config("gain", drop_features=["density"]), tmp_path / "other", progress=False)
    assert other["validation"]["policy"]["agreement"] >= 0.95
    assert blind["validation"]["heuristics"] == other["validation"]["heuristics"]
    pol = load_policy(tmp_path / "blind")
    rng = np.random.default_rng(0)
    x, ctx = rng.random((7, F)).astype(np.float32), rng.random(G).astype(np.float32)
    x2, ctx2 = x.copy(), ctx.copy()
    x2[:, features.FEATURE_NAMES.index(TOY_FEATURE)] = rng.random(7)
    ctx2[features.CONTEXT_NAMES.index("budget_used")] = 0.9
    np.testing.assert_array_equal(pol.score(x, ctx), pol.score(x2, ctx2))
    assert not np.array_equal(pol.score(x, ctx), pol.score(x[::-1].copy(), ctx))  # the other features still count
    with pytest.raises(MetaalError, match="unknown feature"):
        distill(toy, small_config("gain", drop_features=["no_such"]), tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()


def test_a_second_distill_into_the_same_policy_is_refused(toy, tmp_path):
    """A running distill holds OUT.partial/.lock: a second one must not clear its staging directory."""
    from metaal.distill import WORK_LOCK, partial_dir
    from metaal.io import hold_lock

    out = tmp_path / "pol"
    work = partial_dir(out)
    (work / "staging").mkdir(parents=True)
    (work / "staging" / "half-written").write_text("the other run's")
    lock = hold_lock(work / WORK_LOCK, "test")
    try:
        with pytest.raises(MetaalError, match="in use by another metaal process"):
            distill(toy, small_config("gain", steps=5), out, progress=False)
        assert (work / "staging" / "half-written").read_text() == "the other run's"
    finally:
        lock.close()
    meta = distill(toy, small_config("gain", steps=5), out, progress=False)  # released: runs, and cleans up
    assert meta["training"]["steps"] == 5 and not work.exists()


def test_policies_of_the_retired_ensemble_option_still_load_and_score_with_the_mean(policies, tmp_path):
    """A policy written by the retired --ensemble (a ScorerEnsemble artefact) loads and scores with its members' mean."""
    from metaal.policy.artefact import write_policy
    from metaal.policy.networks import ScorerEnsemble

    meta = json.loads((policies["gain"][0] / "metaal-policy.json").read_text())
    torch.manual_seed(0)
    ens = ScorerEnsemble(F, G, meta["scorer"]["hidden"], 3)
    meta["scorer"] = {**meta["scorer"], "class": "ScorerEnsemble", "members": 3}
    meta["hyperparameters"]["ensemble"] = 3
    (tmp_path / "ens").mkdir()
    write_policy(tmp_path / "ens", ens, meta)
    pol = load_policy(tmp_path / "ens")
    assert isinstance(pol.scorer, ScorerEnsemble) and len(pol.scorer.members) == 3
    rng = np.random.default_rng(1)
    x, ctx = rng.random((9, F)).astype(np.float32), rng.random(G).astype(np.float32)
    with torch.no_grad():
        each = [m(torch.as_tensor(x)[None], torch.as_tensor(ctx)[None])[0].numpy() for m in pol.scorer.members]
    assert not np.allclose(each[0], each[1])  # different initialisations
    np.testing.assert_allclose(pol.score(x, ctx), np.mean(each, axis=0), rtol=1e-5, atol=1e-6)
    perm = rng.permutation(9)
    np.testing.assert_allclose(pol.score(x[perm], ctx), pol.score(x, ctx)[perm], rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError):  # the option itself is gone
        small_config("gain", ensemble=3)


def test_per_class_count_context_is_the_same_transform_in_training_and_in_use(toy, tmp_path):
    """--count-context per-class trains on log((1 + labelled) / classes) and the policy scores with the same
    transform: the result equals a raw-count policy trained on contexts transformed by hand, and at use only
    the ratio of the two counts matters."""
    import dataclasses

    lab, cls = features.CONTEXT_NAMES.index("log_labelled"), features.CONTEXT_NAMES.index("log_classes")
    meta = distill(toy, small_config("gain", steps=60, count_context="per-class"), tmp_path / "per", progress=False)
    assert meta["count_context"] == "per-class"
    steps = dict(toy.steps, context=features.count_context(toy.steps["context"], "per-class"))
    by_hand = distill(dataclasses.replace(toy, steps=steps), small_config("gain", steps=60), tmp_path / "hand", progress=False)
    assert by_hand["count_context"] == "raw" and meta["training"]["curve"] == by_hand["training"]["curve"]
    per, hand = load_policy(tmp_path / "per"), load_policy(tmp_path / "hand")
    rng = np.random.default_rng(0)
    x, ctx = rng.random((6, F)).astype(np.float32), rng.random(G).astype(np.float32)
    np.testing.assert_allclose(per.score(x, ctx), hand.score(x, features.count_context(ctx, "per-class")), rtol=1e-6)
    shifted = ctx.copy()
    shifted[[lab, cls]] += 0.7  # ten times the labels on ten times the classes
    np.testing.assert_allclose(per.score(x, shifted), per.score(x, ctx), rtol=1e-5, atol=1e-6)
    shifted[cls] += 0.7
    assert not np.allclose(per.score(x, shifted), per.score(x, ctx))
    with pytest.raises(MetaalError, match="do not drop log_labelled"):
        distill(toy, small_config("gain", count_context="per-class", drop_features=["log_labelled"]), tmp_path / "x")
    with pytest.raises(MetaalError, match="unknown count context"):
        distill(toy, small_config("gain", count_context="per-task"), tmp_path / "y")


def test_per_class_with_classes_policies_still_score_with_the_class_count(toy, tmp_path):
    """The retired count context per-class-with-classes: distill refuses it, a policy that records it keeps its transform."""
    lab, cls = features.CONTEXT_NAMES.index("log_labelled"), features.CONTEXT_NAMES.index("log_classes")
    ctx = np.random.default_rng(1).random((4, G)).astype(np.float32)
    both = features.count_context(ctx, "per-class-with-classes")
    np.testing.assert_allclose(both[:, lab], ctx[:, lab] - ctx[:, cls])
    np.testing.assert_array_equal(both[:, cls], ctx[:, cls])
    np.testing.assert_array_equal(np.delete(both, [lab], 1), np.delete(ctx, [lab], 1))
    with pytest.raises(MetaalError, match="unknown count context"):
        distill(toy, small_config("gain", steps=30, count_context="per-class-with-classes"), tmp_path / "x", progress=False)
    distill(toy, small_config("gain", steps=30, count_context="per-class"), tmp_path / "p", progress=False)
    meta_file = tmp_path / "p" / "metaal-policy.json"
    meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), "count_context": "per-class-with-classes"}))
    policy = load_policy(tmp_path / "p")
    x = np.random.default_rng(2).random((6, F)).astype(np.float32)
    shifted = ctx[0].copy()
    shifted[[lab, cls]] += 0.7  # the same labels per class, more classes: a different state now
    assert not np.allclose(policy.score(x, shifted), policy.score(x, ctx[0]))
