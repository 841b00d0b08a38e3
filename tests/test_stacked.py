"""The stacked trainer against M sequential Learner.fit calls: same weights to float32 rounding."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from metaal.learners import Learner, LearnerConfig
from metaal.learners.stacked import fit_many

# Tolerances (absolute, on weights of magnitude ~0.1-0.5).  The two paths draw the same minibatches and
# dropout masks and run the same Adam arithmetic; only the order of the sums in the products differs
# (batched vs one-copy GEMMs, padded rows).  Adam divides by sqrt(v), which turns last-bit differences of
# a near-zero gradient into larger ones: measured 6e-8 (MLP) and 2e-5 (CNN) after 20-30 steps.
MLP_ATOL = 1e-5
CNN_ATOL = 1e-4


def _copies(shape, model, sizes, classes=4, **cfg):
    config = LearnerConfig(model=model, hidden=16, steps=cfg.pop("steps", 20), **cfg)
    rng = np.random.default_rng(7)
    learners = [Learner(config, shape, classes, seed=11 + 5 * i) for i in range(len(sizes))]
    data = [(rng.normal(size=(n, *shape)).astype(np.float32), rng.integers(0, classes, n)) for n in sizes]
    return learners, data


def _max_diff(a: list[Learner], b: list[Learner]) -> float:
    return max(float((p - q).detach().abs().max()) for la, lb in zip(a, b)
               for p, q in zip(la.net.parameters(), lb.net.parameters()))


def _both(learners, data, seeds, **kw):
    ref, stacked = copy.deepcopy(learners), copy.deepcopy(learners)
    for lrn, (X, y), s in zip(ref, data, seeds):
        lrn.fit(X, y, round_seed=s)
    fit_many(stacked, data, seeds, **kw)
    return ref, stacked


@pytest.mark.parametrize("seeds", [[0, 0, 0, 0, 0], [1, 4, 2, 9, 3]])
def test_mlp_ragged_sets_match_sequential_fit(seeds):
    # labelled sets of different sizes, three of them smaller than the batch size (32)
    learners, data = _copies((6,), "mlp", [3, 40, 17, 70, 32])
    ref, stacked = _both(learners, data, seeds)
    assert _max_diff(ref, stacked) < MLP_ATOL
    for a, b in zip(ref, stacked):
        assert a.train_loss == pytest.approx(b.train_loss, abs=1e-5)
        assert a.train_accuracy == b.train_accuracy
        assert not b.net.training  # left in eval mode, as fit leaves it


def test_copies_differ_when_their_seeds_do():
    # identical learners and rows: only the round seed (minibatch order, dropout) tells the copies apart
    learners, data = _copies((6,), "mlp", [40])
    learners, data = [learners[0], copy.deepcopy(learners[0])], data * 2
    _, stacked = _both(learners, data, [1, 2])
    assert _max_diff(stacked[:1], stacked[1:]) > 1e-3
    _, same = _both(learners, data, [1, 1])
    assert _max_diff(same[:1], same[1:]) == 0.0


def test_mlp_warm_start_and_chunks():
    learners, data = _copies((5,), "mlp", [12, 50, 50, 8], warm_start=True, steps=10)
    for lrn, (X, y) in zip(learners, data):  # move off the initial weights first
        lrn.fit(X, y, round_seed=0)
    ref, stacked = _both(learners, data, [1, 2, 3, 4])
    assert _max_diff(ref, stacked) < MLP_ATOL
    # a copy's arithmetic never depends on the other copies of its stack: chunks (one of them a lone
    # copy) and subsets give the very same bits, which is what makes a resumed lockstep evaluation exact
    _, chunked = _both(learners, data, [1, 2, 3, 4], chunk=3)
    assert _max_diff(chunked, stacked) == 0.0
    _, subset = _both(learners[1:3], data[1:3], [2, 3])
    assert _max_diff(subset, stacked[1:3]) == 0.0


def test_cnn_matches_sequential_fit_through_torch_func():
    learners, data = _copies((1, 8, 8), "cnn", [5, 36, 20], classes=3, steps=12)
    ref, stacked = _both(learners, data, [2, 5, 8])
    assert _max_diff(ref, stacked) < CNN_ATOL
    for a, b in zip(ref, stacked):
        assert a.train_loss == pytest.approx(b.train_loss, abs=1e-4)


def test_learners_must_share_the_model():
    (a,), data = _copies((6,), "mlp", [10])
    (b,), _ = _copies((6,), "mlp", [10], classes=3)
    with pytest.raises(ValueError, match="differ"):
        fit_many([a, b], data * 2, [0, 0])
    with pytest.raises(ValueError, match="at least one labelled row"):
        fit_many([a], [(data[0][0][:0], data[0][1][:0])], [0])
    with pytest.raises(ValueError, match="round seeds"):
        fit_many([a], data, [0, 1])


def _paired(sizes, seeds, model="mlp", shape=(6,), **cfg):
    """Copies of one learner (the strategies of one (task, seed)) on their own rows; some share a mask stream."""
    config = LearnerConfig(model=model, hidden=16, steps=cfg.pop("steps", 20), **cfg)
    rng = np.random.default_rng(3)
    base = [Learner(config, shape, 4, seed=s) for s in sorted(set(seeds))]
    learners = [copy.deepcopy(base[sorted(set(seeds)).index(s)]) for s in seeds]
    data = [(rng.normal(size=(n, *shape)).astype(np.float32), rng.integers(0, 4, n)) for n in sizes]
    return learners, data


@pytest.mark.parametrize("model,shape,atol", [("mlp", (6,), MLP_ATOL), ("cnn", (1, 8, 8), CNN_ATOL)])
def test_shared_mask_streams_match_one_stream_per_copy(model, shape, atol):
    # copies with the same learner seed, round seed and minibatch rows draw one dropout stream, shared out;
    # stacked apart (chunk=1: every copy in its own stack) each draws its own: the very same bits
    seeds = [21, 21, 21, 33, 33, 21]
    sizes = [12, 12, 12, 12, 40, 50]  # the last two: rows >= batch size share the stream with each other only by seed
    learners, data = _paired(sizes, seeds, model, shape, steps=12)
    rounds = [2, 2, 2, 2, 2, 3]
    ref, stacked = _both(learners, data, rounds)
    assert _max_diff(ref, stacked) < atol
    # each copy stacked beside a stranger (another seed: two streams, nothing shared) gives the same bits
    (stranger,), (extra,) = (lambda lr, d: ([lr[0]], [d[0]]))(*_paired([12], [99], model, shape, steps=12))
    for lrn, d, r, got in zip(learners, data, rounds, stacked):
        pair = [copy.deepcopy(lrn), copy.deepcopy(stranger)]
        fit_many(pair, [d, extra], [r, 7])
        assert _max_diff(pair[:1], [got]) == 0.0


def test_adam_step_with_scratch_buffers_is_the_same_arithmetic():
    import torch

    from metaal.learners.stacked import adam_step

    gen = torch.Generator().manual_seed(0)
    shapes = {"w": (3, 16, 6), "b": (3, 16), "h": (3, 4, 16), "hb": (3, 4)}
    params = {n: torch.randn(s, generator=gen) for n, s in shapes.items()}
    grads = [{n: torch.randn(s, generator=gen) for n, s in shapes.items()} for _ in range(4)]
    out = []
    for scratch in (None, {}):
        p = {n: t.clone() for n, t in params.items()}
        m = {n: torch.zeros_like(t) for n, t in p.items()}
        v = {n: torch.zeros_like(t) for n, t in p.items()}
        for step, g in enumerate(grads, start=1):
            adam_step(p, {n: t.clone() for n, t in g.items()}, m, v, step, 1e-3, 1e-4, scratch)
        out.append(p)
    ref = {n: t.clone().requires_grad_(True) for n, t in params.items()}
    opt = torch.optim.Adam(list(ref.values()), lr=1e-3, weight_decay=1e-4)
    for g in grads:
        for n, t in ref.items():
            t.grad = g[n].clone()
        opt.step()
    for n in shapes:
        assert torch.equal(out[0][n], out[1][n])
        assert torch.equal(out[1][n], ref[n].detach())


def test_identical_copies_train_once_with_the_bits_they_would_get(monkeypatch):
    # the strategies of one (task, seed) share the initial fit: same seed, round seed and rows.  They train
    # once and are copied; a copy that differs in rows, round seed or starting weights trains on its own
    from metaal.learners import stacked as st

    learners, data = _paired([12, 12, 12, 30, 12], [21, 21, 21, 21, 33], steps=8)
    data[1] = (data[0][0].copy(), data[0][1].copy())  # equal content, another array
    data[2] = (data[0][0], data[0][1])
    rounds = [0, 0, 1, 0, 0]
    trained = []
    real = st._Trainer.fit
    monkeypatch.setattr(st._Trainer, "fit", lambda self, lrn, d, r: (trained.append(len(lrn)), real(self, lrn, d, r))[1])
    deduped = copy.deepcopy(learners)
    fit_many(deduped, data, rounds)
    assert trained == [4]  # copy 1 is copy 0's twin; copy 2 differs by its round seed
    monkeypatch.setattr(st._Trainer, "fit", real)
    apart = [copy.deepcopy(lrn) for lrn in learners]
    for lrn, d, r in zip(apart, data, rounds):
        fit_many([lrn], [d], [r])
    assert _max_diff(deduped, apart) == 0.0
    assert [lrn.train_loss for lrn in deduped] == [lrn.train_loss for lrn in apart]
    # warm start: copies with the same rows but other current weights are not twins
    warm, wdata = _paired([12, 12], [21, 21], steps=8, warm_start=True)
    wdata[1] = wdata[0]
    fit_many(warm[1:], [(wdata[1][0][:5], wdata[1][1][:5])], [9])  # copy 1 moves off the initial weights
    trained.clear()
    monkeypatch.setattr(st._Trainer, "fit", lambda self, lrn, d, r: (trained.append(len(lrn)), real(self, lrn, d, r))[1])
    fit_many(warm, wdata, [0, 0])
    assert trained == [2]


def test_set_threads_bounds_blas_and_openmp_loaded_later():
    # scikit-learn's OpenMP runtime (k-means in TypiClust / ProbCover) is loaded after set_threads runs
    import subprocess
    import sys

    code = ("from metaal.learners import set_threads; set_threads(1)\n"
            "from threadpoolctl import threadpool_info\n"
            "from sklearn.utils._openmp_helpers import _openmp_effective_n_threads\n"
            "import sklearn.cluster\n"
            "assert _openmp_effective_n_threads() == 1, _openmp_effective_n_threads()\n"
            "assert all(p['num_threads'] == 1 for p in threadpool_info()), threadpool_info()\n")
    subprocess.run([sys.executable, "-c", code], check=True, env={k: v for k, v in __import__("os").environ.items()
                                                                     if k != "OMP_NUM_THREADS"})
