"""The active-learning state every strategy sees, with per-round caching of model outputs.

Pool positions index rows of ``task.X`` directly (tasks lay the pool out first), so
``labelled`` and any candidate set are plain integer arrays of row numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from metaal.learners import Learner
from metaal.tasks import Task


@dataclass
class ALState:
    task: Task
    learner: Learner
    labelled: np.ndarray
    initial: int
    budget: int
    round: int = 0
    seed: int = 0
    _cache: dict = field(default_factory=dict, repr=False)

    # ---------------------------------------------------------------- bookkeeping
    @property
    def n_labelled(self) -> int:
        return len(self.labelled)

    @property
    def unlabelled(self) -> np.ndarray:
        if "unlabelled" not in self._cache:
            mask = np.ones(len(self.task.pool), bool)
            mask[self.labelled] = False
            self._cache["unlabelled"] = np.flatnonzero(mask)
        return self._cache["unlabelled"]

    @property
    def budget_used(self) -> float:
        return (self.n_labelled - self.initial) / max(1, self.budget)

    def add_labels(self, idx: np.ndarray) -> None:
        idx = np.asarray(idx, dtype=np.int64)
        self.labelled = np.concatenate([self.labelled, idx])
        self._cache.clear()

    def retrain(self) -> None:
        self.learner.fit(self.task.X[self.labelled], self.task.y[self.labelled], round_seed=self.round)
        self._cache.clear()

    def rng(self, purpose: int) -> np.random.Generator:
        """A generator fixed by (seed, round, purpose): strategies stay reproducible and paired."""
        return np.random.default_rng([self.seed, self.round, purpose])

    # ---------------------------------------------------------------- cached model outputs
    def _cached(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def pool_proba(self) -> np.ndarray:
        """Class probabilities of every pool row (labelled rows included), (n_pool, C)."""
        return self._cached("proba", lambda: self.learner.predict_proba(self.task.X[self.task.pool]))

    def pool_embedding(self) -> np.ndarray:
        return self._cached("embed", lambda: self.learner.embed(self.task.X[self.task.pool]))

    def mc_proba(self, idx: np.ndarray) -> np.ndarray:
        """MC-dropout probabilities (T, len(idx), C); seeded by round so strategies agree."""
        return self.learner.mc_proba(self.task.X[idx], seed=self.round)

    def grad_embedding(self, idx: np.ndarray) -> np.ndarray:
        return self.learner.grad_embedding(self.task.X[idx])

    def labelled_stats(self) -> tuple[float, float]:
        return self.learner.train_loss, self.learner.train_accuracy
