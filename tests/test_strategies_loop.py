import numpy as np
import pytest

from metaal.errors import MetaalError
from metaal.learners import LearnerConfig
from metaal.loop import LoopConfig, initial_labelled, new_state, run_episode
from metaal.registry import HEURISTICS, get_strategy

FAST = LearnerConfig(steps=20)


@pytest.fixture(scope="module")
def state():
    from metaal.tasks import load_task

    task = load_task("sklearn:digits", 0)
    return new_state(task, FAST, LoopConfig(10, 50, 10), seed=0, device="cpu")


@pytest.mark.parametrize("name", list(HEURISTICS))
def test_every_strategy_selects_distinct_unlabelled_items(state, name):
    strategy = get_strategy(name)
    picked = strategy.select(state, 7)
    assert len(picked) == 7 and len(set(picked.tolist())) == 7
    assert np.isin(picked, state.unlabelled).all()
    cands = state.unlabelled[::5][:20]
    sub = strategy.select(state, 5, candidates=cands)
    assert np.isin(sub, cands).all() and len(set(sub.tolist())) == 5
    assert np.array_equal(strategy.select(state, 7), picked), "selection must be reproducible"


def test_uncertainty_strategies_pick_the_most_uncertain(state):
    from metaal.acquisition import scores

    proba = state.pool_proba()
    unl = state.unlabelled
    m = scores.margin(proba[unl])
    assert get_strategy("margin").select(state, 1)[0] == unl[np.argmin(m)]
    e = scores.entropy(proba[unl])
    assert get_strategy("entropy").select(state, 1)[0] == unl[np.argmax(e)]


def test_margin_pool_random_is_the_batch_oracles_random_proposal_among_uncertain_items(state):
    from metaal.acquisition import scores
    from metaal.acquisition.proposals import heuristic_batches, uncertain_pool

    n = 7
    picked = get_strategy("margin_pool_random").select(state, n)
    unl = state.unlabelled
    m = scores.margin(state.pool_proba()[unl])
    assert np.isin(picked, unl[np.argsort(m)[: 5 * n]]).all()  # only among the 5n smallest margins
    assert not np.array_equal(np.sort(picked), np.sort(get_strategy("margin").select(state, n)))  # not top-n margin
    assert np.array_equal(picked, heuristic_batches(state, n, uncertain_pool(state, n, 5))["random"])


def test_coreset_picks_far_points(state):
    from metaal.acquisition.ops import k_center_greedy

    pts = np.array([[0.0, 0], [0.1, 0], [5, 5], [10, 0]])
    assert k_center_greedy(pts, pts[:1], 2).tolist() == [3, 2]


def test_unknown_strategy_and_oversized_selection(state):
    with pytest.raises(MetaalError, match="unknown strategy"):
        get_strategy("nope")
    with pytest.raises(MetaalError, match="cannot select"):
        get_strategy("margin").select(state, 5, candidates=state.unlabelled[:3])


def test_paired_start_same_initial_set_and_first_accuracy(digits_task):
    loop = LoopConfig(10, 20, 10)
    results = {name: run_episode(digits_task, get_strategy(name), FAST, loop, seed=3) for name in ("random", "margin", "badge")}
    first = {name: r.accuracy[0] for name, r in results.items()}
    assert len(set(first.values())) == 1, first
    assert all(r.labels == [10, 20, 30] for r in results.values())
    assert np.array_equal(initial_labelled(digits_task, 10, 3), initial_labelled(digits_task, 10, 3))
    assert not np.array_equal(initial_labelled(digits_task, 10, 3), initial_labelled(digits_task, 10, 4))
    assert results["random"].selected != results["margin"].selected


def test_episode_is_deterministic_and_budget_rounds(digits_task):
    loop = LoopConfig(10, 25, 10)
    assert loop.rounds() == [10, 10, 5]
    a = run_episode(digits_task, get_strategy("margin"), FAST, loop, seed=1)
    b = run_episode(digits_task, get_strategy("margin"), FAST, loop, seed=1)
    assert a.accuracy == b.accuracy and a.selected == b.selected
    assert a.labels == [10, 20, 30, 35]
    assert len(set(a.selected)) == 25


@pytest.mark.parametrize(
    "loop,match",
    [
        (LoopConfig(10, 0, 10), "budget"),
        (LoopConfig(10, 20, 0), "query-size"),
        (LoopConfig(10, 20, 30), "larger than the budget"),
        (LoopConfig(0, 20, 10), "initial"),
        (LoopConfig(10, 5000, 10), "pool has only"),
    ],
)
def test_loop_config_errors(digits_task, loop, match):
    with pytest.raises(MetaalError, match=match):
        loop.validate(len(digits_task.pool))


def test_learner_outputs_shapes_and_mc_dropout(digits_task):
    from metaal.learners import Learner

    learner = Learner(FAST, digits_task.input_shape, digits_task.n_classes, seed=0)
    X = digits_task.X[:12]
    learner.fit(digits_task.X[:50], digits_task.y[:50], round_seed=0)
    p = learner.predict_proba(X)
    assert p.shape == (12, 10) and np.allclose(p.sum(1), 1, atol=1e-5)
    mc = learner.mc_proba(X, samples=5)
    assert mc.shape == (5, 12, 10) and not np.allclose(mc[0], mc[1])
    assert learner.embed(X).shape == (12, FAST.hidden)
    assert learner.grad_embedding(X).shape == (12, 10 * FAST.hidden)
    assert np.array_equal(p, learner.predict_proba(X)), "eval mode must be deterministic"


def test_cnn_and_resnet_on_images():
    from metaal.learners import Learner

    rng = np.random.default_rng(0)
    X = rng.random((20, 1, 28, 28), dtype=np.float32)
    y = np.arange(20) % 3
    for model in ("auto", "resnet18"):
        learner = Learner(LearnerConfig(model=model, steps=2, batch_size=8), X.shape[1:], 3, seed=0)
        learner.fit(X, y, round_seed=0)
        assert learner.kind == ("cnn" if model == "auto" else "resnet18")
        assert learner.predict_proba(X[:4]).shape == (4, 3)
        assert learner.mc_proba(X[:4], samples=2).shape == (2, 4, 3)
    with pytest.raises(MetaalError, match="needs image inputs"):
        Learner(LearnerConfig(model="cnn"), (64,), 3, seed=0)
