"""Classic acquisition strategies behind one interface: ``select(state, n, candidates=None)``.

Label-free only: the learned policy (``metaal.policy``) and the oracle (``metaal.oracle``) implement the same
interface above this layer, and ``metaal.registry`` resolves all of them by name.

Like baal's heuristics, a scoring strategy only says how much it wants each item;
``ScoreStrategy.select`` owns ranking, tie-breaking and masking once for all of them.
Batch-aware strategies (coreset, BADGE, TypiClust, ProbCover) override ``select``.
"""

from __future__ import annotations

import numpy as np

from metaal.acquisition import scores
from metaal.acquisition.ops import (
    delta_by_purity,
    k_center_greedy,
    kmeans_labels,
    kmeans_pp,
    max_coverage,
    typical_picks,
    uncertain_pool,
)
from metaal.errors import MetaalError
from metaal.state import AcquisitionState


class Strategy:
    name = "base"
    description = ""
    uses_true_labels = False

    def select(self, state: AcquisitionState, n: int, candidates: np.ndarray | None = None) -> np.ndarray:
        """Return n distinct row indices from ``candidates`` (default: every unlabelled row)."""
        raise NotImplementedError

    @staticmethod
    def _candidates(state: AcquisitionState, n: int, candidates: np.ndarray | None) -> np.ndarray:
        cands = state.unlabelled if candidates is None else np.asarray(candidates, dtype=np.int64)
        if n > len(cands):
            raise MetaalError(f"cannot select {n} items from {len(cands)} candidates")
        return cands


class ScoreStrategy(Strategy):
    def score(self, state: AcquisitionState, idx: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def select(self, state, n, candidates=None):
        cands = self._candidates(state, n, candidates)
        s = np.asarray(self.score(state, cands), dtype=np.float64)
        jitter = state.rng(7).random(len(cands))  # random, reproducible tie-break
        order = np.lexsort((jitter, -s))
        return cands[order[:n]]


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
        return scores.least_confidence(state.proba(idx))


class Margin(ScoreStrategy):
    name = "margin"
    description = "smallest gap between the two most likely classes"

    def score(self, state, idx):
        return -scores.margin(state.proba(idx))


class Entropy(ScoreStrategy):
    name = "entropy"
    description = "highest predictive entropy"

    def score(self, state, idx):
        return scores.entropy(state.proba(idx))


class BALD(ScoreStrategy):
    name = "bald"
    description = "highest mutual information between label and weights (MC dropout)"

    def score(self, state, idx):
        return scores.bald(state.mc_proba(idx))


class Coreset(Strategy):
    name = "coreset"
    description = "k-center greedy in the model's embedding space (Sener & Savarese, 2018)"

    def select(self, state, n, candidates=None):
        cands = self._candidates(state, n, candidates)
        return cands[k_center_greedy(state.embedding(cands).astype(np.float64),
                                     state.embedding(state.labelled).astype(np.float64), n)]


class Badge(Strategy):
    name = "badge"
    description = "k-means++ on gradient embeddings: uncertain and diverse (Ash et al., 2020)"

    def select(self, state, n, candidates=None):
        cands = self._candidates(state, n, candidates)
        g = state.grad_embedding(cands).astype(np.float64)
        return cands[kmeans_pp(g, n, state.rng(13))]


class TypiClust(Strategy):
    """Typical points of uncovered clusters (Hacohen et al., 2022), the low-budget baseline: with few labels the
    most representative items beat the most uncertain ones.  The whole pool's embedding (the learner's penultimate
    layer, as coreset uses) is clustered by k-means into |L| + n clusters; clusters holding the fewest labelled items
    come first, the largest first among them, and each gives its most typical candidate (typicality = 1 / mean
    distance to its ``KNN`` nearest neighbours in the cluster).  A cluster that gave an item counts as covered once
    more, so n larger than the uncovered clusters goes round again.  Clusters smaller than ``MIN_CLUSTER`` (outliers)
    come last, as the paper drops them; at most ``MAX_CLUSTERS`` clusters, as the paper's code caps them."""

    name = "typiclust"
    description = "most typical item of the largest uncovered k-means clusters (Hacohen et al., 2022)"
    KNN = 20
    MIN_CLUSTER = 5
    MAX_CLUSTERS = 500

    def select(self, state, n, candidates=None):
        cands = self._candidates(state, n, candidates)
        emb = state.pool_embedding().astype(np.float64)
        k = min(len(emb), len(state.labelled) + n, self.MAX_CLUSTERS)
        clusters = kmeans_labels(emb, k, state.rng(41))
        return typical_picks(emb, clusters, state.labelled, cands, n, state.rng(43), knn=self.KNN,
                             min_cluster=self.MIN_CLUSTER)


class ProbCover(Strategy):
    """Maximum coverage of delta-balls (Yehuda et al., 2022): each pick is the candidate whose ball (radius delta in
    the learner's embedding of the whole pool) holds the most pool items no labelled or earlier pick covers; when
    everything is covered, the rest is uniform.  Delta follows the paper's purity rule: the largest radius at which
    at least ``PURITY`` of the balls hold a single k-means cluster (k = the class count), i.e. the (1 - PURITY)
    quantile of each item's distance to its nearest item of another cluster.  ``delta`` fixes the radius instead."""

    name = "probcover"
    description = "greedy maximum coverage of delta-balls in the embedding, delta by the purity rule (Yehuda et al., 2022)"
    PURITY = 0.95

    def __init__(self, delta: float | None = None):
        self.delta = delta

    def select(self, state, n, candidates=None):
        cands = self._candidates(state, n, candidates)
        emb = state.pool_embedding().astype(np.float64)
        delta = self.delta
        if delta is None:
            k = min(len(emb), max(2, state.n_classes))
            delta = delta_by_purity(emb, kmeans_labels(emb, k, state.rng(47)), self.PURITY)
        return max_coverage(emb, delta, state.labelled, cands, n, state.rng(53))


class MarginPoolRandom(Strategy):
    """Uniform among the ``POOL`` x n smallest margins: the batch oracle's "random" proposal with the `metaal run`
    default's margin pool.  Top-n margin takes near-duplicates from one stretch of the decision boundary; sampling
    among the uncertain items spreads the batch (as stochastic batch acquisition does).  In the expert's stores this
    proposal's batch ranks best from the second round on, so it is the heuristic a policy most often imitates."""

    name = "margin_pool_random"
    description = "uniformly at random among the 5 x batch-size smallest-margin items (the batch oracle's random proposal)"
    POOL = 5

    def select(self, state, n, candidates=None):
        cands = self._candidates(state, n, candidates)
        return RandomStrategy().select(state, n, uncertain_pool(state, n, self.POOL, cands))


HEURISTICS: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (RandomStrategy, LeastConfidence, Margin, Entropy, BALD, Coreset, Badge, MarginPoolRandom, TypiClust,
                ProbCover)
}


def get_heuristic(name: str) -> Strategy:
    """A classic heuristic by name (``metaal.registry.get_strategy`` also resolves ``policy:DIR`` and ``oracle``)."""
    if name not in HEURISTICS:
        raise MetaalError(f"unknown heuristic '{name}' (choose from {', '.join(HEURISTICS)})")
    return HEURISTICS[name]()
