"""Small label-free operations the strategies, proposals and the policy share: top-k with a
reproducible tie-break, k-center greedy, k-means++ seeding, and the k smallest margins.

One implementation each, so that a heuristic, the batch oracle's proposals and a policy's
candidate pipeline order and break ties the same way.
"""

from __future__ import annotations

import numpy as np

from metaal.acquisition import scores


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


def smallest_margins(margins: np.ndarray, candidates: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """The k ``candidates`` with the smallest margin (one margin each; ties broken at random by ``rng``),
    sorted by row id.  Most of a large pool is confidently predicted: this keeps the uncertain part."""
    candidates = np.asarray(candidates, dtype=np.int64)
    return np.sort(candidates[top_k(-np.asarray(margins, np.float64), k, rng.random(len(candidates)))])


def uncertain_pool(state, n: int, margin_pool: int, pool: np.ndarray | None = None) -> np.ndarray:
    """The ``margin_pool * n`` smallest-margin items of ``pool`` (default: the unlabelled rows), sorted by row id;
    the whole pool when ``margin_pool`` is 0 or the pool is no larger.

    Drawing the proposers' batches from this pool keeps every choice among uncertain items: the expert (and a
    policy imitating it) then decides how to spread a batch over the uncertain region, not whether to leave it."""
    pool = state.unlabelled if pool is None else np.asarray(pool, dtype=np.int64)
    k = int(margin_pool) * int(n)
    if margin_pool <= 0 or len(pool) <= k:
        return pool
    return smallest_margins(scores.margin(state.pool_proba()[pool]), pool, k, state.rng(37))


def k_center_greedy(points: np.ndarray, centres: np.ndarray, n: int) -> np.ndarray:
    """Indices into ``points`` of n picks, each the farthest from all centres and earlier picks."""
    if len(centres):
        d = np.full(len(points), np.inf)
        for start in range(0, len(centres), 512):
            block = centres[start : start + 512]
            d = np.minimum(d, sq_dist(points, block).min(axis=1))
    else:
        d = np.full(len(points), np.inf)
    picks = []
    for _ in range(n):
        j = int(np.argmax(d)) if np.isfinite(d).any() else 0
        picks.append(j)
        d = np.minimum(d, sq_dist(points, points[j : j + 1])[:, 0])
        d[picks] = -np.inf
    return np.asarray(picks, dtype=np.int64)


def sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (len(a), len(b)), clipped at 0; in place on one buffer (the same values
    as ``aa - 2 a.b + bb``: IEEE addition commutes)."""
    d = a @ b.T
    d *= -2
    d += (a * a).sum(1)[:, None]
    d += (b * b).sum(1)[None, :]
    return np.maximum(d, 0.0, out=d)


def kmeans_pp(points: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each pick with probability proportional to squared distance."""
    first = int(np.argmax((points * points).sum(1)))  # BADGE starts from the largest gradient
    picks = [first]
    d = sq_dist(points, points[first : first + 1])[:, 0]
    for _ in range(n - 1):
        d[picks] = 0.0
        total = d.sum()
        j = int(rng.choice(len(points), p=d / total)) if total > 0 else int(rng.choice(np.setdiff1d(np.arange(len(points)), picks)))
        picks.append(j)
        d = np.minimum(d, sq_dist(points, points[j : j + 1])[:, 0])
    return np.asarray(picks, dtype=np.int64)
