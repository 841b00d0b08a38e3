"""Classic acquisition strategies behind one interface: ``select(state, n, candidates=None)``.

Like baal's heuristics, a scoring strategy only says how much it wants each item;
``ScoreStrategy.select`` owns ranking, tie-breaking and masking once for all of them.
Batch-aware strategies (coreset, BADGE) override ``select``.
"""

from __future__ import annotations

import numpy as np

from metaal.acquisition import scores
from metaal.errors import MetaalError
from metaal.state import ALState


class Strategy:
    name = "base"
    description = ""
    uses_true_labels = False

    def select(self, state: ALState, n: int, candidates: np.ndarray | None = None) -> np.ndarray:
        """Return n distinct row indices from ``candidates`` (default: every unlabelled row)."""
        raise NotImplementedError

    @staticmethod
    def _candidates(state: ALState, n: int, candidates: np.ndarray | None) -> np.ndarray:
        cands = state.unlabelled if candidates is None else np.asarray(candidates, dtype=np.int64)
        if n > len(cands):
            raise MetaalError(f"cannot select {n} items from {len(cands)} candidates")
        return cands


class ScoreStrategy(Strategy):
    def score(self, state: ALState, idx: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def select(self, state, n, candidates=None):
        cands = self._candidates(state, n, candidates)
        s = np.asarray(self.score(state, cands), dtype=np.float64)
        jitter = state.rng(7).random(len(cands))  # random, reproducible tie-break
        order = np.lexsort((jitter, -s))
        return cands[order[:n]]


def top_k(score: np.ndarray, k: int, jitter: np.ndarray) -> np.ndarray:
    """Positions of the k highest scores, best first, ties broken by the smaller ``jitter``.

    The same order as ``np.lexsort((jitter, -score))[:k]``, without sorting the whole array.
    """
    score = np.asarray(score, dtype=np.float64)
    jitter = np.asarray(jitter)
    if k >= len(score):
        return np.lexsort((jitter, -score))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    threshold = score[np.argpartition(-score, k - 1)[:k]].min()
    keep = np.flatnonzero(score >= threshold)  # every tie at the threshold competes on jitter
    return keep[np.lexsort((jitter[keep], -score[keep]))[:k]]


class RandomStrategy(Strategy):
    name = "random"
    description = "uniformly at random (the baseline every other strategy must beat)"

    def select(self, state, n, candidates=None):
        cands = self._candidates(state, n, candidates)
        return state.rng(11).choice(cands, size=n, replace=False)


class LeastConfidence(ScoreStrategy):
    name = "least_confidence"
    description = "lowest top-class probability"

    def score(self, state, idx):
        return scores.least_confidence(state.pool_proba()[idx])


class Margin(ScoreStrategy):
    name = "margin"
    description = "smallest gap between the two most likely classes"

    def score(self, state, idx):
        return -scores.margin(state.pool_proba()[idx])


class Entropy(ScoreStrategy):
    name = "entropy"
    description = "highest predictive entropy"

    def score(self, state, idx):
        return scores.entropy(state.pool_proba()[idx])


class BALD(ScoreStrategy):
    name = "bald"
    description = "highest mutual information between label and weights (MC dropout)"

    def score(self, state, idx):
        return scores.bald(state.mc_proba(idx))


def k_center_greedy(points: np.ndarray, centres: np.ndarray, n: int) -> np.ndarray:
    """Indices into ``points`` of n picks, each the farthest from all centres and earlier picks."""
    if len(centres):
        d = np.full(len(points), np.inf)
        for start in range(0, len(centres), 512):
            block = centres[start : start + 512]
            d = np.minimum(d, _sq_dist(points, block).min(axis=1))
    else:
        d = np.full(len(points), np.inf)
    picks = []
    for _ in range(n):
        j = int(np.argmax(d)) if np.isfinite(d).any() else 0
        picks.append(j)
        d = np.minimum(d, _sq_dist(points, points[j : j + 1])[:, 0])
        d[picks] = -np.inf
    return np.asarray(picks, dtype=np.int64)


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None, :], 0.0)


class Coreset(Strategy):
    name = "coreset"
    description = "k-center greedy in the model's embedding space (Sener & Savarese, 2018)"

    def select(self, state, n, candidates=None):
        cands = self._candidates(state, n, candidates)
        emb = state.pool_embedding().astype(np.float64)
        return cands[k_center_greedy(emb[cands], emb[state.labelled], n)]


def kmeans_pp(points: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each pick with probability proportional to squared distance."""
    first = int(np.argmax((points * points).sum(1)))  # BADGE starts from the largest gradient
    picks = [first]
    d = _sq_dist(points, points[first : first + 1])[:, 0]
    for _ in range(n - 1):
        d[picks] = 0.0
        total = d.sum()
        j = int(rng.choice(len(points), p=d / total)) if total > 0 else int(rng.choice(np.setdiff1d(np.arange(len(points)), picks)))
        picks.append(j)
        d = np.minimum(d, _sq_dist(points, points[j : j + 1])[:, 0])
    return np.asarray(picks, dtype=np.int64)


class Badge(Strategy):
    name = "badge"
    description = "k-means++ on gradient embeddings: uncertain and diverse (Ash et al., 2020)"

    def select(self, state, n, candidates=None):
        cands = self._candidates(state, n, candidates)
        g = state.grad_embedding(cands).astype(np.float64)
        return cands[kmeans_pp(g, n, state.rng(13))]


class MarginPoolRandom(Strategy):
    """Uniform among the ``POOL`` x n smallest margins: the batch oracle's "random" proposal with the `metaal run`
    default's margin pool.  Top-n margin takes near-duplicates from one stretch of the decision boundary; sampling
    among the uncertain items spreads the batch (as stochastic batch acquisition does).  In the expert's stores this
    proposal's batch ranks best from the second round on, so it is the heuristic a policy most often imitates."""

    name = "margin_pool_random"
    description = "uniformly at random among the 5 x batch-size smallest-margin items (the batch oracle's random proposal)"
    POOL = 5

    def select(self, state, n, candidates=None):
        from metaal.oracle.batch import uncertain_pool

        cands = self._candidates(state, n, candidates)
        return RandomStrategy().select(state, n, uncertain_pool(state, n, self.POOL, cands))


HEURISTICS: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (RandomStrategy, LeastConfidence, Margin, Entropy, BALD, Coreset, Badge, MarginPoolRandom)
}


def strategy_names() -> list[str]:
    return list(HEURISTICS)


def get_strategy(name: str, **options) -> Strategy:
    """Resolve a strategy by name: a heuristic, ``policy:DIR`` (a distilled policy) or ``oracle``."""
    if name.startswith("policy:"):
        from metaal.acquisition.policy import load_policy

        return load_policy(name.split(":", 1)[1], **options)
    if name == "oracle":
        from metaal.oracle import OracleStrategy

        return OracleStrategy(**options)
    if name not in HEURISTICS:
        raise MetaalError(f"unknown strategy '{name}' (choose from {', '.join(HEURISTICS)}, policy:DIR)")
    return HEURISTICS[name]()
