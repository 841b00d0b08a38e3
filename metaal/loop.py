"""One active-learning episode: select -> label -> retrain, recording the test-accuracy curve."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from metaal.config import LoopConfig
from metaal.learners import Learner, LearnerConfig, derive_seed
from metaal.learners.stacked import fit_many
from metaal.metrics import aulc
from metaal.state import ALState
from metaal.tasks import Task


@dataclass
class EpisodeResult:
    labels: list[int] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    selected: list[int] = field(default_factory=list)

    @property
    def aulc(self) -> float:
        return aulc(self.accuracy)

    @property
    def final_accuracy(self) -> float:
        return float(self.accuracy[-1])


def initial_labelled(task: Task, n: int, seed: int) -> np.ndarray:
    """Seeded initial labelled set from the pool, with at least two classes when n >= 2.

    Depends only on (task, n, seed), so every strategy of a paired comparison starts from it.
    """
    rng = np.random.default_rng([seed, 0x1417])
    for _ in range(100):
        idx = np.sort(rng.choice(task.pool, size=n, replace=False))
        if n < 2 or len(np.unique(task.y[idx])) >= 2:
            return idx
    return idx


def new_state(task: Task, learner_config: LearnerConfig, loop: LoopConfig, seed: int, device, retrain: bool = True) -> ALState:
    """Fresh paired start: the initial set and the model's initial weights depend only on (task, seed).

    ``retrain=False`` leaves the first training to the caller (lockstep runs train all their starts as one).
    """
    loop.validate(len(task.pool), task.spec)
    learner = Learner(learner_config, task.input_shape, task.n_classes, seed=derive_seed(seed, 0x11), device=device)
    state = ALState(task, learner, initial_labelled(task, loop.initial, seed), loop.initial, loop.budget, seed=seed)
    if retrain:
        state.retrain()
    return state


def retrain_together(states: Sequence[ALState]) -> None:
    """``state.retrain()`` of every state as one stacked computation (equal to float32 rounding)."""
    fit_many([s.learner for s in states], [(s.task.X[s.labelled], s.task.y[s.labelled]) for s in states],
             [s.round for s in states])
    for s in states:
        s._cache.clear()


def run_episode(
    task: Task,
    strategy,
    learner_config: LearnerConfig,
    loop: LoopConfig,
    seed: int,
    device="cpu",
    on_round: Callable[[int, int], None] | None = None,
) -> EpisodeResult:
    """Run one strategy from the paired start until the budget is spent."""
    state = new_state(task, learner_config, loop, seed, device)
    X_test, y_test = task.X[task.test], task.y[task.test]
    result = EpisodeResult()
    result.labels.append(state.n_labelled)
    result.accuracy.append(state.learner.accuracy(X_test, y_test))
    sizes = loop.rounds()
    for r, size in enumerate(sizes, start=1):
        picked = np.asarray(strategy.select(state, size), dtype=np.int64)
        _check_selection(picked, state, size, getattr(strategy, "name", "strategy"))
        state.round = r
        state.add_labels(picked)
        state.retrain()
        result.selected.extend(int(i) for i in picked)
        result.labels.append(state.n_labelled)
        result.accuracy.append(state.learner.accuracy(X_test, y_test))
        if on_round:
            on_round(r, len(sizes))
    return result


def run_lockstep(
    runs: Sequence[tuple[Task, object, int]],
    learner_config: LearnerConfig,
    loop: LoopConfig,
    device="cpu",
    on_round: Callable[[int, int], None] | None = None,
) -> list[EpisodeResult]:
    """Several episodes ``(task, strategy, seed)`` advanced together, round by round.

    Each run selects with its own strategy on its own state, exactly as in :func:`run_episode`; then
    every run's retrain is one stacked call (:func:`retrain_together`), which is where the time goes.
    The tasks must share input shape and classes (the paired runs of one task, over strategies and
    seeds).  Results equal :func:`run_episode`'s up to float32 rounding of the training, which can flip
    a near-tie in a selection (``scripts/kernel_noise.py`` measures how often that moves a curve).
    """
    states = [new_state(task, learner_config, loop, seed, device, retrain=False) for task, _s, seed in runs]
    retrain_together(states)
    tests = [(task.X[task.test], task.y[task.test]) for task, _s, _seed in runs]
    results = [EpisodeResult() for _ in runs]
    for state, result, (X_test, y_test) in zip(states, results, tests):
        result.labels.append(state.n_labelled)
        result.accuracy.append(state.learner.accuracy(X_test, y_test))
    sizes = loop.rounds()
    for r, size in enumerate(sizes, start=1):
        for state, result, (_task, strategy, _seed) in zip(states, results, runs):
            picked = np.asarray(strategy.select(state, size), dtype=np.int64)
            _check_selection(picked, state, size, getattr(strategy, "name", "strategy"))
            state.round = r
            state.add_labels(picked)
            result.selected.extend(int(i) for i in picked)
        retrain_together(states)
        for state, result, (X_test, y_test) in zip(states, results, tests):
            result.labels.append(state.n_labelled)
            result.accuracy.append(state.learner.accuracy(X_test, y_test))
        if on_round:
            on_round(r, len(sizes))
    return results


def _check_selection(picked: np.ndarray, state: ALState, size: int, name: str) -> None:
    if len(picked) != size or len(np.unique(picked)) != size:
        raise RuntimeError(f"strategy {name} returned {len(picked)} items ({len(np.unique(picked))} distinct), expected {size}")
    if not np.isin(picked, state.unlabelled).all():
        raise RuntimeError(f"strategy {name} selected items that are labelled or outside the pool")
