"""The active-learning state every strategy sees, with per-round caching of model outputs.

Pool positions index rows of ``task.X`` directly (tasks lay the pool out first), so
``labelled`` and any candidate set are plain integer arrays of row numbers.

``AcquisitionState`` is what acquisition (heuristics, proposals, features) and the learned policy read
of a state: the loop's ``ALState`` and ``metaal.select.PoolState`` (a user's pool and model outputs)
both satisfy it, so the policy's candidate pipeline runs unchanged on either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from metaal.learners import Learner
from metaal.tasks import Task


class AcquisitionState(Protocol):
    """A pool, its labelled rows and a model's outputs, read by rows (``idx``: integer pool rows).

    ``proba_chunks`` walks the whole pool once (a large pool is streamed); every other output is read
    only for the rows asked, so a state over a large pool need not hold its embeddings."""

    labelled: np.ndarray  # labelled pool rows
    labelled_y: np.ndarray  # their class ids
    n_classes: int
    seed: int
    round: int
    has_mc: bool  # mc_proba is available (BALD proposes and the BALD feature is read only then)

    @property
    def unlabelled(self) -> np.ndarray: ...  # sorted unlabelled pool rows
    @property
    def budget_used(self) -> float: ...
    def rng(self, purpose: int) -> np.random.Generator: ...
    def cached(self, key: str, fn: Callable[[], Any]) -> Any: ...  # a value derived from this round's outputs
    def proba_chunks(self) -> Iterator[tuple[int, np.ndarray]]: ...  # (first row, probabilities of rows from it)
    def proba(self, idx: np.ndarray) -> np.ndarray: ...  # (len(idx), C)
    def embedding(self, idx: np.ndarray) -> np.ndarray: ...  # (len(idx), E)
    def mc_proba(self, idx: np.ndarray) -> np.ndarray: ...  # (T, len(idx), C)
    def grad_embedding(self, idx: np.ndarray) -> np.ndarray: ...  # BADGE's (len(idx), C * E)
    def grad_norm(self, idx: np.ndarray) -> np.ndarray: ...  # norms of grad_embedding(idx)
    def labelled_stats(self) -> tuple[float, float]: ...  # (training loss, training accuracy) on the labelled set
    def pool_proba(self) -> np.ndarray: ...  # every pool row: only whole-pool strategies (typiclust, probcover)
    def pool_embedding(self) -> np.ndarray: ...


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
    def n_classes(self) -> int:
        return self.task.n_classes

    @property
    def labelled_y(self) -> np.ndarray:
        return self.task.y[self.labelled]

    has_mc = True  # the learner always has MC dropout

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
    def cached(self, key, fn):
        """``fn()``, computed once per round (labels added or a retrain clear it)."""
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def pool_proba(self) -> np.ndarray:
        """Class probabilities of every pool row (labelled rows included), (n_pool, C)."""
        return self.cached("proba", lambda: self.learner.predict_proba(self.task.X[self.task.pool]))

    def pool_embedding(self) -> np.ndarray:
        return self.cached("embed", lambda: self.learner.embed(self.task.X[self.task.pool]))

    def proba_chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        yield 0, self.pool_proba()

    def proba(self, idx: np.ndarray) -> np.ndarray:
        return self.pool_proba()[idx]

    def embedding(self, idx: np.ndarray) -> np.ndarray:
        return self.pool_embedding()[idx]

    def mc_proba(self, idx: np.ndarray) -> np.ndarray:
        """MC-dropout probabilities (T, len(idx), C); seeded by round so strategies agree."""
        return self.learner.mc_proba(self.task.X[idx], seed=self.round)

    def grad_embedding(self, idx: np.ndarray) -> np.ndarray:
        return self.learner.grad_embedding(self.task.X[idx])

    def grad_norm(self, idx: np.ndarray) -> np.ndarray:
        return np.linalg.norm(self.grad_embedding(idx), axis=1)

    def labelled_stats(self) -> tuple[float, float]:
        return self.learner.train_loss, self.learner.train_accuracy
