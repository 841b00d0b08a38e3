"""The lookahead oracle: batched (torch.func) against the per-candidate reference loop, CRN, strategy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metaal.errors import MetaalError
from metaal.learners import Learner, LearnerConfig
from metaal.oracle import (
    ORACLE_MODES,
    OracleConfig,
    OracleResult,
    OracleStrategy,
    lookahead_gains,
    minibatch_schedule,
    reference_gains,
)
from metaal.oracle.lookahead import auto_chunk
from metaal.state import ALState
from metaal.tasks import load_task

TOL = 1e-5


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def digits():
    return load_task("sklearn:digits", 0)


@pytest.fixture(scope="module")
def mlp_case(digits):
    """A small MLP trained on 40 digits; 8 candidates, 120 validation rows."""
    t = digits
    L, C, V = t.pool[:40], t.pool[40:48], t.val[:120]
    learner = Learner(LearnerConfig(hidden=32, steps=30, batch_size=16), t.input_shape, t.n_classes, seed=0)
    learner.fit(t.X[L], t.y[L], round_seed=0)
    return learner, (t.X[L], t.y[L]), (t.X[C], t.y[C]), (t.X[V], t.y[V])


@pytest.fixture(scope="module")
def cnn_case():
    """The small CNN on random 1x12x12 inputs, 4 classes."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((78, 1, 12, 12)).astype(np.float32)
    y = rng.integers(0, 4, 78).astype(np.int64)
    learner = Learner(LearnerConfig(model="cnn", hidden=16, steps=10, batch_size=8), (1, 12, 12), 4, seed=1)
    learner.fit(X[:30], y[:30], round_seed=0)
    return learner, (X[:30], y[:30]), (X[30:38], y[30:38]), (X[38:], y[38:])


def small(mode: str, **kw) -> OracleConfig:
    return OracleConfig(mode=mode, steps=kw.pop("steps", 4), batch_size=kw.pop("batch_size", 10), lr=kw.pop("lr", 0.1), **kw)


def gains(fn, case, config, seed=7) -> OracleResult:
    learner, lab, cand, val = case
    return fn(learner, *lab, *cand, *val, config, seed)


def assert_close(a: OracleResult, b: OracleResult, mode: str):
    assert a.loss_gain.dtype == np.float32 and a.acc_gain.dtype == np.float32
    assert a.loss_gain.shape == b.loss_gain.shape
    np.testing.assert_allclose(a.loss_gain, b.loss_gain, rtol=0, atol=TOL)
    if mode == "first-order":
        assert np.isnan(a.acc_gain).all() and np.isnan(b.acc_gain).all()
    else:
        np.testing.assert_allclose(a.acc_gain, b.acc_gain, rtol=0, atol=TOL)


# ------------------------------------------------------------------ batched == reference
@pytest.mark.parametrize("mode", ORACLE_MODES)
@pytest.mark.parametrize("case_name", ["mlp_case", "cnn_case"])
def test_batched_matches_reference(request, case_name, mode):
    case = request.getfixturevalue(case_name)
    config = small(mode)
    batched = gains(lookahead_gains, case, config)
    ref = gains(reference_gains, case, config)
    assert_close(batched, ref, mode)
    assert np.isfinite(batched.loss_gain).all()
    assert np.ptp(batched.loss_gain) > 0  # not trivially equal


@pytest.mark.parametrize("mode", ["finetune", "retrain"])
def test_mlp_torch_func_kernel_matches_reference(mlp_case, mode):
    """The MLP takes the fused kernel by default; the generic torch.func path must agree too."""
    config = small(mode)
    learner, lab, cand, val = mlp_case
    func = lookahead_gains(learner, *lab, *cand, *val, config, 7, kernel="func")
    fused = lookahead_gains(learner, *lab, *cand, *val, config, 7, kernel="fused")
    assert_close(func, gains(reference_gains, mlp_case, config), mode)
    np.testing.assert_allclose(fused.loss_gain, func.loss_gain, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fused.acc_gain, func.acc_gain, rtol=0, atol=1e-6)


def test_fused_kernel_on_an_mlp_over_images_and_tiny_labelled_sets(cnn_case):
    """Image rows through an MLP are flattened; with one labelled row the batch is that row + the candidate."""
    _, (Xl, yl), (Xc, yc), (Xv, yv) = cnn_case
    learner = Learner(LearnerConfig(model="mlp", hidden=16, steps=5, batch_size=8), (1, 12, 12), 4, seed=2)
    learner.fit(Xl, yl, round_seed=0)
    for n_lab in (1, 30):
        for mode in ("finetune", "retrain"):
            args = (learner, Xl[:n_lab], yl[:n_lab], Xc, yc, Xv, yv, small(mode), 5)
            assert_close(lookahead_gains(*args, kernel="fused"), reference_gains(*args), mode)


def test_kernel_choice_errors(cnn_case):
    learner, lab, cand, val = cnn_case
    with pytest.raises(MetaalError, match="plain MLP"):
        lookahead_gains(learner, *lab, *cand, *val, small("finetune"), 0, kernel="fused")
    with pytest.raises(MetaalError, match="unknown oracle kernel"):
        lookahead_gains(learner, *lab, *cand, *val, small("finetune"), 0, kernel="cuda")


def test_fused_plan_accepts_only_plain_mlps():
    from metaal.learners.fused import plan
    from metaal.learners.models import build_model
    from metaal.oracle.lookahead import MaskedDropout, lookahead_copy

    mlp = lookahead_copy(build_model("mlp", (8,), 3, hidden=4, dropout=0.2))
    ops, names = plan(mlp, (MaskedDropout,))
    assert [o.kind for o in ops] == ["linear", "relu", "mask", "linear", "relu", "mask", "linear"]
    assert names == [n for n, _ in mlp.named_parameters()]
    assert plan(lookahead_copy(build_model("cnn", (1, 8, 8), 3, hidden=4, dropout=0.2)), (MaskedDropout,)) is None
    mlp.body.append(torch.nn.Tanh())  # an activation the fused path does not know
    assert plan(mlp, (MaskedDropout,)) is None


@pytest.mark.parametrize("mode", ORACLE_MODES)
def test_chunked_equals_unchunked(mlp_case, mode):
    whole = gains(lookahead_gains, mlp_case, small(mode))
    chunked = gains(lookahead_gains, mlp_case, small(mode, chunk=3))
    np.testing.assert_allclose(chunked.loss_gain, whole.loss_gain, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.isnan(chunked.acc_gain), np.isnan(whole.acc_gain))
    if mode != "first-order":
        np.testing.assert_allclose(chunked.acc_gain, whole.acc_gain, rtol=0, atol=1e-6)


def test_small_labelled_set_uses_all_of_it(mlp_case):
    learner, (Xl, yl), cand, val = mlp_case
    config = small("finetune", batch_size=64)  # > |L| + 1: every step uses all of L
    a = lookahead_gains(learner, Xl[:5], yl[:5], *cand, *val, config, 3)
    b = reference_gains(learner, Xl[:5], yl[:5], *cand, *val, config, 3)
    assert_close(a, b, "finetune")
    sched = minibatch_schedule(5, 64, 3, seed=0)
    assert sched.shape == (3, 5)
    assert all(sorted(row.tolist()) == list(range(5)) for row in sched)


# ------------------------------------------------------------------ common random numbers
@pytest.mark.parametrize("mode", ["finetune", "retrain"])
def test_common_random_numbers(mlp_case, mode):
    """Two copies of the same candidate get identical gains (same minibatches and dropout masks),
    and different candidates get different gains."""
    learner, lab, (Xc, yc), val = mlp_case
    assert learner.config.dropout > 0  # dropout really is on in the lookahead
    Xd = np.concatenate([Xc[:3], Xc[:1], Xc[1:2]])
    yd = np.concatenate([yc[:3], yc[:1], yc[1:2]])
    for fn in (lookahead_gains, reference_gains):
        r = fn(learner, *lab, Xd, yd, *val, small(mode), 11)
        assert r.loss_gain[3] == r.loss_gain[0] and r.loss_gain[4] == r.loss_gain[1]
        assert r.acc_gain[3] == r.acc_gain[0]
        assert len(np.unique(r.loss_gain[:3])) == 3
    # the identical-candidate equality survives chunk boundaries too
    r = lookahead_gains(learner, *lab, Xd, yd, *val, small(mode, chunk=2), 11)
    assert r.loss_gain[3] == r.loss_gain[0] and r.loss_gain[4] == r.loss_gain[1]


def test_dropout_masks_matter_and_follow_the_seed(mlp_case):
    """Different seeds give different noise (so CRN is not a no-op); the same seed repeats exactly."""
    a = gains(lookahead_gains, mlp_case, small("finetune"), seed=1)
    b = gains(lookahead_gains, mlp_case, small("finetune"), seed=1)
    c = gains(lookahead_gains, mlp_case, small("finetune"), seed=2)
    np.testing.assert_array_equal(a.loss_gain, b.loss_gain)
    assert not np.allclose(a.loss_gain, c.loss_gain)


# ------------------------------------------------------------------ the learner stays as it was
@pytest.mark.parametrize("mode", ORACLE_MODES)
def test_learner_unchanged(mlp_case, mode):
    learner = mlp_case[0]
    before = {k: v.clone() for k, v in learner.net.state_dict().items()}
    init = {k: v.clone() for k, v in learner.init_state.items()}
    training = learner.net.training
    for fn in (lookahead_gains, reference_gains):
        gains(fn, mlp_case, small(mode))
    for k, v in learner.net.state_dict().items():
        assert torch.equal(v, before[k]), k
    for k, v in learner.init_state.items():
        assert torch.equal(v, init[k]), k
    assert learner.net.training == training
    assert all(type(m).__name__ != "MaskedDropout" for m in learner.net.modules())


# ------------------------------------------------------------------ semantics
def test_first_order_predicts_one_sgd_step(mlp_case):
    """For a tiny step, the first-order gain matches the real val-loss decrease of one SGD step on c."""
    learner, lab, (Xc, yc), (Xv, yv) = mlp_case
    lr = 1e-3
    fo = lookahead_gains(learner, *lab, Xc, yc, Xv, yv, OracleConfig(mode="first-order", lr=lr), 0)
    import copy

    import torch.nn.functional as F

    xv, tv = learner.tensor(Xv), torch.as_tensor(yv)
    learner.net.eval()
    with torch.no_grad():
        base = float(F.cross_entropy(learner.net(xv), tv))
    for i in range(3):
        net = copy.deepcopy(learner.net).eval()
        F.cross_entropy(net(learner.tensor(Xc[i : i + 1])), torch.as_tensor(yc[i : i + 1])).backward()
        with torch.no_grad():
            for p in net.parameters():
                p -= lr * p.grad
            after = float(F.cross_entropy(net(xv), tv))
        assert abs((base - after) - fo.loss_gain[i]) < 0.05 * abs(fo.loss_gain[i]) + 1e-6


def test_resnet18_with_batchnorm():
    pytest.importorskip("torchvision")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 1, 16, 16)).astype(np.float32)
    y = rng.integers(0, 3, 30).astype(np.int64)
    learner = Learner(LearnerConfig(model="resnet18", steps=1, batch_size=4), (1, 16, 16), 3, seed=0)
    learner.fit(X[:10], y[:10], round_seed=0)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in learner.net.modules())
    before = {k: v.clone() for k, v in learner.net.state_dict().items()}
    for mode in ("finetune", "first-order"):
        config = OracleConfig(mode=mode, steps=1, batch_size=4, lr=0.01)
        a = lookahead_gains(learner, X[:10], y[:10], X[10:12], y[10:12], X[20:], y[20:], config, 0)
        b = reference_gains(learner, X[:10], y[:10], X[10:12], y[10:12], X[20:], y[20:], config, 0)
        assert_close(a, b, mode)
    for k, v in learner.net.state_dict().items():  # running statistics included
        assert torch.equal(v, before[k]), k


# ------------------------------------------------------------------ config, errors, chunk estimate
def test_config_validation_and_dict():
    assert OracleConfig().to_dict() == {
        "mode": "finetune", "steps": 10, "lr": 0.05, "batch_size": 32, "chunk": None, "candidates": 32,
        "proposals": "random", "horizon": 1, "metric": "loss", "margin_pool": 0,
    }
    for bad in ({"mode": "greedy"}, {"steps": 0}, {"lr": 0.0}, {"batch_size": 0}, {"chunk": 0}, {"candidates": 0},
                {"metric": "f1"}, {"mode": "batch", "margin_pool": -1}, {"mode": "finetune", "margin_pool": 3}):
        with pytest.raises(MetaalError):
            OracleConfig(**bad)


def test_input_errors_and_empty(mlp_case):
    learner, lab, (Xc, yc), (Xv, yv) = mlp_case
    with pytest.raises(MetaalError, match="validation"):
        lookahead_gains(learner, *lab, Xc, yc, Xv[:0], yv[:0], OracleConfig(), 0)
    with pytest.raises(MetaalError, match="labels"):
        lookahead_gains(learner, *lab, Xc, yc + 100, Xv, yv, OracleConfig(), 0)
    with pytest.raises(MetaalError, match="disagree"):
        lookahead_gains(learner, *lab, Xc, yc[:-1], Xv, yv, OracleConfig(), 0)
    empty = lookahead_gains(learner, *lab, Xc[:0], yc[:0], Xv, yv, OracleConfig(), 0)
    assert empty.loss_gain.shape == (0,) and empty.acc_gain.shape == (0,)


def test_auto_chunk_is_bounded():
    cpu = torch.device("cpu")
    assert auto_chunk(64, 10_000, 3, 32, 500, cpu) == 64
    big = auto_chunk(64, 11_000_000, 6, 32, 200_000, cpu)  # ResNet-18-sized: a few at a time
    assert 1 <= big < 64
    assert big * 4 * 11_000_000 * 6 <= 1 << 30
    assert auto_chunk(64, 10**10, 3, 32, 500, cpu) == 1


# ------------------------------------------------------------------ strategy
def _state(digits, learner, labelled, round_=0):
    return ALState(task=digits, learner=learner, labelled=labelled, initial=len(labelled), budget=50, round=round_, seed=3)


def test_oracle_strategy_contract(digits):
    strategy = OracleStrategy(OracleConfig(steps=2, candidates=12))
    assert strategy.name == "oracle" and strategy.uses_true_labels
    assert "true label" in strategy.description.lower()
    learner = Learner(LearnerConfig(hidden=16, steps=10), digits.input_shape, digits.n_classes, seed=0)
    labelled = digits.pool[:20]
    learner.fit(digits.X[labelled], digits.y[labelled], round_seed=0)
    state = _state(digits, learner, labelled)
    picks = strategy.select(state, 4)
    assert picks.shape == (4,) and len(set(picks.tolist())) == 4
    assert set(picks.tolist()) <= set(state.unlabelled.tolist())
    assert set(picks.tolist()) <= set(strategy.last_candidates.tolist())
    assert len(strategy.last_candidates) == 12
    np.testing.assert_array_equal(picks, strategy.select(state, 4))  # reproducible
    # explicit candidates
    cands = state.unlabelled[5:15]
    picks = strategy.select(state, 3, candidates=cands)
    assert len(set(picks.tolist())) == 3 and set(picks.tolist()) <= set(cands.tolist())
    with pytest.raises(MetaalError):
        strategy.select(state, 11, candidates=cands)
    # keyword options build the config
    assert OracleStrategy(mode="first-order", candidates=5).config == OracleConfig(mode="first-order", candidates=5)


def test_oracle_strategy_picks_highest_gain(digits):
    """Toy setting: the labelled set misses class 0 entirely; candidates of class 0 help most and the
    strategy's top pick is the candidate with the highest gain."""
    t = digits
    pool = t.pool
    labelled = pool[t.y[pool] != 0][:30]
    learner = Learner(LearnerConfig(hidden=32, steps=100, dropout=0.0), t.input_shape, t.n_classes, seed=0)
    learner.fit(t.X[labelled], t.y[labelled], round_seed=0)
    state = _state(t, learner, labelled)
    unl = state.unlabelled
    cands = np.concatenate([unl[t.y[unl] == 0][:2], unl[t.y[unl] != 0][:6]])
    strategy = OracleStrategy(OracleConfig(steps=10, lr=0.1, batch_size=8))
    pick = strategy.select(state, 1, candidates=cands)
    res = strategy.last_result
    assert pick[0] == cands[int(np.argmax(res.loss_gain))]
    assert t.y[pick[0]] == 0
    assert (res.loss_gain[:2] > res.loss_gain[2:].max()).all()  # both class-0 candidates beat the rest


def test_unsupported_dropout_is_a_clear_error(mlp_case):
    learner = mlp_case[0]
    import copy

    other = copy.copy(learner)
    other.net = copy.deepcopy(learner.net)
    other.net.dropout = torch.nn.AlphaDropout(0.2)
    with pytest.raises(MetaalError, match="AlphaDropout"):
        gains(lookahead_gains, (other, *mlp_case[1:]), small("finetune"))
