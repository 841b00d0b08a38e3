"""`metaal select` and the selection API: a real annotation loop, reproducibility, pools, errors, scale paths."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from metaal.acquisition import features
from metaal.acquisition.ops import top_k
from metaal.acquisition.proposals import uncertain_pool
from metaal.cli import cli
from metaal.errors import MetaalError
from metaal.registry import get_strategy
from metaal.select import ArrayOutputs, PoolState, rank_pool, select_next
from metaal.tasks.pools import load_image_folder

NAMES = np.array(["cat", "dog", "eel", "fox"])
STEPS = ["--epochs-steps", "40"]


def make_policy(path, seed=0, uncertainty=False, proposals="random", margin_pool=0):
    """A policy artifact as `metaal distill` writes it: random weights, or a hand-set scorer whose score
    falls with the margin feature (an uncertainty policy)."""
    from metaal.policy.networks import CandidateScorer

    path.mkdir(parents=True, exist_ok=True)
    F, G = len(features.FEATURE_NAMES), len(features.CONTEXT_NAMES)
    torch.manual_seed(seed)
    scorer = CandidateScorer(F, G, 16)
    if uncertainty:
        with torch.no_grad():
            for prm in scorer.parameters():
                prm.zero_()
            scorer.lin_xh.weight[0, features.FEATURE_NAMES.index("margin")] = -1.0
            scorer.lin_xh.bias[0] = 1.0
            scorer.out.weight[0, 0] = 1.0
    torch.save(scorer.state_dict(), path / "scorer.pt")
    meta = {"format": "metaal-policy", "format_version": 1, "schema": features.schema(), "algorithm": "gain",
            "scorer": {"file": "scorer.pt", "class": "CandidateScorer", "n_features": F, "n_context": G, "hidden": 16},
            "proposals": proposals, "margin_pool": margin_pool}
    (path / "metaal-policy.json").write_text(json.dumps(meta))
    return path


def blobs(n=400, classes=4, dim=8, seed=0, sep=1.6):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * sep
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.normal(size=(n, dim))).astype(np.float32), y


def write_labels(path, idx, labels):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", "label"])
        w.writerows([i, lab] for i, lab in zip(idx, labels))


def read_next(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    return make_policy(tmp_path_factory.mktemp("pol") / "policy")


@pytest.fixture
def pool(tmp_path):
    X, y = blobs()
    np.savez(tmp_path / "pool.npz", X=X)  # no labels in the file: the truth stays hidden
    first = np.concatenate([np.flatnonzero(y == c)[:2] for c in range(4)])
    write_labels(tmp_path / "labels.csv", first, NAMES[y[first]])
    return tmp_path, y, first


def run(args):
    return CliRunner().invoke(cli, ["select", *args])


# ------------------------------------------------------------------------------------------ the loop


def test_three_rounds_select_annotate_select(tmp_path, tmp_path_factory):
    """select -> annotate from the hidden truth -> select, three times: test accuracy rises, no item twice."""
    policy = make_policy(tmp_path_factory.mktemp("upol") / "policy", uncertainty=True)
    X, y = blobs(700, classes=4, dim=8, seed=5, sep=0.9)
    X_test, y_test, X, y = X[:300], y[:300], X[300:], y[300:]  # the test items never enter the pool
    np.savez(tmp_path / "pool.npz", X=X)  # no labels in the file: the truth stays hidden
    labelled = [int(i) for c in range(4) for i in np.flatnonzero(y == c)[:1]]
    write_labels(tmp_path / "labels.csv", labelled, NAMES[y[labelled]])
    args = ["--data", f"npz:{tmp_path / 'pool.npz'}", "--labels", str(tmp_path / "labels.csv"), "--strategy",
            f"policy:{policy}", "--n", "12", "--out", str(tmp_path / "next.csv"), *STEPS]
    accuracy = []
    for _ in range(3):
        r = run(args)
        assert r.exit_code == 0, r.output
        rows = read_next(tmp_path / "next.csv")
        assert [int(row["rank"]) for row in rows] == list(range(1, 13))
        picked = [int(row["index"]) for row in rows]
        assert len(set(picked)) == 12 and not set(picked) & set(labelled)
        assert {row["predicted_label"] for row in rows} <= set(NAMES)
        # the same call through the API: same picks, and the round's model to score on the test items
        sel = select_next(f"npz:{tmp_path / 'pool.npz'}", tmp_path / "labels.csv", 12, f"policy:{policy}",
                          learner=_learner(40))
        assert sel.index.tolist() == picked
        accuracy.append(float(np.mean(np.asarray(sel.model.predict(X_test)) == NAMES[y_test])))
        labelled += picked  # the annotator labels them
        write_labels(tmp_path / "labels.csv", labelled, NAMES[y[labelled]])
    sel = select_next(f"npz:{tmp_path / 'pool.npz'}", tmp_path / "labels.csv", 12, f"policy:{policy}", learner=_learner(40))
    accuracy.append(float(np.mean(np.asarray(sel.model.predict(X_test)) == NAMES[y_test])))
    assert len(set(labelled)) == len(labelled) == 4 + 36
    assert accuracy[-1] > accuracy[0] + 0.05 and accuracy[-1] >= max(accuracy[:-1]) - 0.02, accuracy


def _learner(steps):
    from metaal.learners import LearnerConfig

    return LearnerConfig(steps=steps)


def test_output_is_reproducible_for_a_seed(pool, policy_dir):
    d, _, _ = pool
    outs = []
    for k, seed in enumerate((3, 3)):
        out = d / f"next{k}.csv"
        r = run(["--data", f"npz:{d / 'pool.npz'}", "--labels", str(d / "labels.csv"), "--strategy", f"policy:{policy_dir}",
                 "--n", "10", "--seed", str(seed), "--out", str(out), *STEPS])
        assert r.exit_code == 0, r.output
        outs.append(out.read_text())
    assert outs[0] == outs[1]
    header = outs[0].splitlines()[0]
    assert header == "index,score,rank,predicted_label,confidence"


def test_a_second_select_on_the_same_out_exits_2_and_writes_nothing(pool):
    from metaal.io import hold_lock

    d, _, _ = pool
    out = d / "locked.csv"
    args = ["--data", f"npz:{d / 'pool.npz'}", "--labels", str(d / "labels.csv"), "--strategy", "margin",
            "--n", "5", "--out", str(out), *STEPS]
    held = hold_lock(d / ".locked.csv.lock", "test")  # another select running on the same --out
    try:
        r = run(args)
        assert r.exit_code == 2 and f"output {out} is in use by another metaal process" in r.output, r.output
        assert not out.exists() and not (d / "locked.csv.json").exists()
    finally:
        held.close()
    r = run(args)  # the lock dies with its holder: the next select takes it over
    assert r.exit_code == 0 and len(out.read_text().splitlines()) == 6, r.output


def test_string_labels_and_scores(pool):
    d, y, first = pool
    sel = select_next(f"npz:{d / 'pool.npz'}", d / "labels.csv", n=15, strategy="margin", learner=_learner(40))
    assert sel.info["classes"] == sorted(NAMES.tolist())
    assert set(sel.predicted) <= set(NAMES) and np.all((sel.confidence > 0) & (sel.confidence <= 1))
    assert np.all(np.diff(sel.score) <= 0)  # margin: best first
    # labels from a mapping, any hashable; integer-looking strings sort numerically
    mapping = {int(i): int(y[i]) * 10 for i in first}
    sel2 = select_next(f"npz:{d / 'pool.npz'}", mapping, n=5, learner=_learner(40))
    assert sel2.info["classes"] == [0, 10, 20, 30] and set(sel2.predicted) <= {0, 10, 20, 30}


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "labels, extra, message",
    [
        ([(0, "cat"), (1, "dog"), (400, "cat"), (401, "eel")], [], "not in the pool"),
        ([(0, "cat"), (1, "cat"), (2, "cat")], [], "at least 2 classes"),
        ([(0, "cat"), (1, "dog"), (0, "eel")], [], "duplicate index 0"),
        ([(0, "cat"), (1, "dog")], ["--n", "399"], "only 398 unlabelled items are left"),
        ([(0, "cat"), (1, "dog")], ["--strategy", "nope"], "unknown strategy 'nope'"),
        ([(0, "cat"), (1, "dog")], ["--strategy", "oracle"], "oracle"),
        ([(0, "cat"), ("x.png", "dog")], [], "not an integer item number"),
        ([(0, "cat"), (1, "")], [], "empty label"),
    ],
)
def test_errors_are_one_line(pool, labels, extra, message):
    d, _, _ = pool
    write_labels(d / "bad.csv", [i for i, _ in labels], [lab for _, lab in labels])
    r = run(["--data", f"npz:{d / 'pool.npz'}", "--labels", str(d / "bad.csv"), "--out", str(d / "n.csv"), *STEPS, *extra])
    assert r.exit_code == 2, r.output
    assert message in r.output and r.output.startswith("error:") and len(r.output.strip().splitlines()) == 1
    assert "Traceback" not in r.output and not (d / "n.csv").exists()


def test_bad_inputs(tmp_path, pool):
    d, _, _ = pool
    (tmp_path / "cols.csv").write_text("item,class\n0,cat\n")
    for args, message in [
        (["--labels", str(tmp_path / "cols.csv")], "needs columns index,label"),
        (["--labels", str(tmp_path / "missing.csv")], "not found"),
        (["--data", f"npz:{tmp_path / 'nope.npz'}"], "file not found"),
        (["--data", str(d / "pool.npz")], "name the format"),
    ]:
        base = {"--data": f"npz:{d / 'pool.npz'}", "--labels": str(d / "labels.csv")}
        base[args[0]] = args[1]
        r = run([*sum(base.items(), ()), "--out", str(tmp_path / "n.csv")])
        assert r.exit_code == 2 and message in r.output, (args, r.output)


# ------------------------------------------------------------------------------------------ pools


def test_image_folder_and_csv_pools(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    names = []
    for k in range(24):
        cls = k % 2
        arr = (rng.random((8, 8)) * 60).astype(np.uint8) + (150 if cls else 0)
        name = f"{'sub/' if k % 3 == 0 else ''}img_{k:02d}.png"
        Image.fromarray(arr, mode="L").save(folder / name)
        names.append((name, "bright" if cls else "dark"))
    (folder / "notes.txt").write_text("not an image")
    X, paths = load_image_folder(folder)
    assert X.shape == (24, 1, 8, 8) and X.dtype == np.uint8 and paths == sorted(n for n, _ in names)
    # labels may name items by position or by relative path
    write_labels(tmp_path / "lab.csv", [paths.index(names[0][0]), names[1][0], names[2][0], names[3][0]],
                 [lab for _, lab in names[:4]])
    r = run(["--data", str(folder), "--labels", str(tmp_path / "lab.csv"), "--n", "5", "--out", str(tmp_path / "n.csv"),
             "--epochs-steps", "10"])
    assert r.exit_code == 0, r.output
    rows = read_next(tmp_path / "n.csv")
    assert all(paths[int(row["index"])] == row["path"] for row in rows) and len(rows) == 5
    # an RGB image among grey ones makes every image RGB; a different size is an error
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "z_rgb.png")
    assert load_image_folder(folder)[0].shape == (25, 3, 8, 8)
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(folder / "zz_big.png")
    with pytest.raises(MetaalError, match="differ in size"):
        load_image_folder(folder)

    Xt, y = blobs(60, classes=2, dim=3)
    with open(tmp_path / "pool.csv", "w") as fh:
        fh.write("a,b,label,c\n" + "".join(f"{x[0]},{x[1]},,{x[2]}\n" for x in Xt))
    first = np.concatenate([np.flatnonzero(y == c)[:3] for c in range(2)])
    write_labels(tmp_path / "lab2.csv", first, ["p" if v else "q" for v in y[first]])
    sel = select_next(f"csv:{tmp_path / 'pool.csv'}", tmp_path / "lab2.csv", n=4, learner=_learner(10))
    assert len(sel.index) == 4 and sel.info["pool"] == 60 and sel.path is None


# ------------------------------------------------------------------------------------------ API and scale paths


@pytest.fixture(scope="module")
def al_state():
    from metaal.learners import LearnerConfig
    from metaal.loop import LoopConfig, new_state
    from metaal.tasks import load_task

    task = load_task("synthetic:seed=1,n=900,classes=3,dim=6", 0)
    return new_state(task, LearnerConfig(steps=30), LoopConfig(8, 40, 10), 0, "cpu")


@pytest.mark.parametrize("name", ["margin", "entropy", "least_confidence", "bald", "random", "coreset", "badge", "margin_pool_random"])
def test_rank_pool_matches_the_strategies(al_state, name):
    st = al_state
    sel = rank_pool(st.pool_proba(), st.pool_embedding(), labelled=st.labelled, labels=st.task.y[st.labelled], n=10,
                    strategy=name, mc_proba=st.mc_proba)
    np.testing.assert_array_equal(sel.index, get_strategy(name).select(st, 10))


@pytest.fixture(scope="module")
def batch_policy_dir(tmp_path_factory):
    return make_policy(tmp_path_factory.mktemp("bpol") / "policy", proposals="batches")


@pytest.fixture(scope="module")
def margin_pool_policy_dir(tmp_path_factory):
    return make_policy(tmp_path_factory.mktemp("mpol") / "policy", proposals="batches", margin_pool=3)


@pytest.mark.parametrize("proposals", ["random", "batches", "batches-margin-pool"])
@pytest.mark.parametrize("prefilter", [None, 150])
def test_rank_pool_policy_matches_policy_select(al_state, policy_dir, batch_policy_dir, margin_pool_policy_dir, prefilter,
                                                proposals):
    from metaal.acquisition import scores
    from metaal.policy import load_policy

    st = al_state
    pol = load_policy({"random": policy_dir, "batches": batch_policy_dir, "batches-margin-pool": margin_pool_policy_dir}[proposals],
                      prefilter=prefilter)
    margin_pool = 3 if proposals == "batches-margin-pool" else 0
    proposals = proposals.split("-")[0]
    calls = []

    def embed(idx):
        calls.append(np.asarray(idx))
        return st.pool_embedding()[idx]

    sel = rank_pool(st.pool_proba(), embed, labelled=st.labelled, labels=st.task.y[st.labelled], n=10, strategy=pol,
                    mc_proba=st.mc_proba, prefilter=prefilter, budget_used=st.budget_used)
    np.testing.assert_array_equal(sel.index, pol.select(st, 10))
    assert np.isfinite(sel.score).all()
    embedded = np.concatenate(calls)
    assert len(np.unique(embedded)) == len(embedded)  # no row is embedded twice
    if prefilter:  # only the pre-filtered candidates, the pool sample and the labelled set are embedded
        assert len(embedded) <= prefilter + len(st.unlabelled) + st.n_labelled
    # one candidate pipeline: on select's PoolState over the state's outputs, Policy.candidates gives the rows and
    # batches it gives on the ALState itself, and the features agree (BADGE norms: closed form vs the learner's)
    pool_state = PoolState(ArrayOutputs(st.pool_proba(), st.pool_embedding(), st.mc_proba), st.labelled,
                           st.task.y[st.labelled], seed=st.seed, budget_used=st.budget_used)
    cands, batches = pol.candidates(pool_state, 10)
    cands0, batches0 = pol.candidates(st, 10)
    np.testing.assert_array_equal(cands, cands0)
    assert (batches is None) == (batches0 is None) == (proposals != "batches")
    if batches is not None:
        assert batches.keys() == batches0.keys() == set(features.BATCH_PROPOSERS)
        for name in batches:
            np.testing.assert_array_equal(batches[name], batches0[name])
        assert_batches_are_the_heuristics(st, batches0, margin_pool)
    if margin_pool:  # every proposal is among the 30 smallest margins
        assert len(np.unique(cands)) <= 30 and scores.margin(st.pool_proba()[cands]).max() <= np.sort(
            scores.margin(st.pool_proba()[st.unlabelled]))[29]
    f0, c0 = features.FeatureExtractor(st, cands, batches=batches0).features(10)
    f1, c1 = features.FeatureExtractor(pool_state, cands, batches=batches).features(10)
    if batches is not None:  # every proposer's batch is flagged, and the votes count them
        flags = f1[:, [features.FEATURE_NAMES.index(f"in_{p}") for p in features.BATCH_PROPOSERS]]
        assert (flags.sum(0) == 10).all() and (flags.max(1) == 1).all()
    np.testing.assert_allclose(f1, f0, atol=1e-5)
    np.testing.assert_allclose(c1, c0, atol=1e-5)
    picks, picked_scores = pol.rank(pool_state, 10)
    np.testing.assert_array_equal(picks, pol.select(st, 10))
    np.testing.assert_allclose(picked_scores, pol.rank(st, 10)[1], rtol=1e-4, atol=1e-5)


def assert_batches_are_the_heuristics(st, batches, margin_pool):
    """Each proposer's batch is that heuristic's own pick of 10 from the uncertain pool."""
    pool = uncertain_pool(st, 10, margin_pool)
    for name, batch in batches.items():
        np.testing.assert_array_equal(batch, get_strategy(name).select(st, 10, candidates=pool))


def test_pool_state_without_mc_proposes_no_bald_batch(al_state, batch_policy_dir):
    """Without MC-dropout outputs BALD neither proposes a batch nor reads a BALD feature (0), on select's state."""
    from metaal.policy import load_policy

    st = al_state
    pol = load_policy(batch_policy_dir)
    pool_state = PoolState(ArrayOutputs(st.pool_proba(), st.pool_embedding()), st.labelled, st.task.y[st.labelled])
    cands, batches = pol.candidates(pool_state, 10)
    assert set(batches) == set(features.BATCH_PROPOSERS) - {"bald"}
    f, _ = features.FeatureExtractor(pool_state, cands, batches=batches).features(10)
    assert (f[:, features.FEATURE_NAMES.index("bald")] == 0).all()
    assert (f[:, features.FEATURE_NAMES.index("in_bald")] == 0).all()
    with pytest.raises(MetaalError, match="MC-dropout"):
        pool_state.mc_proba(cands)


def test_rank_pool_with_own_pytorch_model(tmp_path):
    """The README example: your own model's probabilities and embeddings, string classes."""
    X, y = blobs(3000, classes=3, dim=5, seed=2)
    labelled = np.concatenate([np.flatnonzero(y == c)[:4] for c in range(3)])
    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Linear(5, 32), torch.nn.ReLU())
    head = torch.nn.Linear(32, 3)
    opt = torch.optim.Adam([*body.parameters(), *head.parameters()], lr=1e-2)
    Xt = torch.as_tensor(X)
    for _ in range(50):
        loss = torch.nn.functional.cross_entropy(head(body(Xt[labelled])), torch.as_tensor(y[labelled]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        emb = body(Xt)
        proba = head(emb).softmax(1).numpy()
    classes = ["a", "b", "c"]
    embedded = []

    def embed(idx):  # embeddings on demand: the policy asks only for the rows it needs
        embedded.extend(idx)
        with torch.no_grad():
            return body(Xt[idx]).numpy()

    sel = rank_pool(proba, embed, labelled=labelled, labels=[classes[v] for v in y[labelled]], classes=classes,
                    n=8, strategy="policy:" + str(make_policy(tmp_path / "p")), prefilter=100)
    assert len(set(sel.index)) == 8 and not set(sel.index) & set(labelled)
    assert set(sel.predicted) <= set(classes) and sel.score.shape == (8,)
    assert len(embedded) == len(set(embedded)) <= 100 + features._POOL_SAMPLE + len(labelled) < len(X)
    with pytest.raises(MetaalError, match="not classes of proba"):
        rank_pool(proba, emb.numpy(), labelled=labelled, labels=["zz"] * len(labelled), n=3)
    with pytest.raises(MetaalError, match="needs embeddings"):
        rank_pool(proba, labelled=labelled, labels=list(y[labelled]), n=3, strategy="coreset")
    with pytest.raises(MetaalError, match="bald needs"):
        rank_pool(proba, labelled=labelled, n=3, strategy="bald")
    with pytest.raises(MetaalError, match="duplicate index"):
        rank_pool(proba, labelled=[1, 1], n=3)
    mask = np.zeros(len(y), bool)
    mask[labelled] = True
    np.testing.assert_array_equal(rank_pool(proba, labelled=mask, n=5).index, rank_pool(proba, labelled=labelled, n=5).index)


def test_top_k_is_lexsort_without_the_full_sort():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        s, j, k = rng.integers(0, 4, n).astype(float), rng.random(n), int(rng.integers(0, n + 2))
        np.testing.assert_array_equal(top_k(s, k, j), np.lexsort((j, -s))[:k])


def test_next_csv_has_a_provenance_sidecar(pool):
    """next.csv.json records what made next.csv: the strategy, the git commit and the command line."""
    d, _, _ = pool
    r = run(["--data", f"npz:{d / 'pool.npz'}", "--labels", str(d / "labels.csv"), "--strategy", "margin", "--n", "5",
             "--out", str(d / "next.csv"), *STEPS])
    assert r.exit_code == 0, r.output
    meta = json.loads((d / "next.csv.json").read_text())
    assert meta["strategy"] == "margin" and meta["items"] == 5 == len(read_next(d / "next.csv"))
    assert meta["provenance"]["git_commit"] and meta["versions"]["metaal"] and meta["platform"]["machine"]
