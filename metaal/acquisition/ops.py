"""Small label-free operations the strategies, proposals and the policy share: top-k with a
reproducible tie-break, k-center greedy, k-means++ seeding, the k smallest margins, and the
cold-start pieces (k-means clusters, typicality, delta-ball coverage) of TypiClust and ProbCover.

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


def pool_uncertainty(state) -> tuple[np.ndarray, float]:
    """The margin of every unlabelled row (in ``state.unlabelled`` order) and the unlabelled pool's mean
    normalised entropy, from one pass over ``state.proba_chunks()`` (a streamed pool keeps one number an item);
    once per round."""

    def compute():
        unl = state.unlabelled
        log_c = np.log(state.n_classes)
        margins = np.empty(len(unl))
        entropy_sum = 0.0
        for start, p in state.proba_chunks():
            lo, hi = np.searchsorted(unl, [start, start + len(p)])
            pu = p[unl[lo:hi] - start]
            margins[lo:hi] = scores.margin(pu)
            entropy_sum += float((scores.entropy(pu) / log_c).sum())
        return margins, (entropy_sum / len(unl) if len(unl) else 0.0)

    return state.cached("pool_uncertainty", compute)


def unlabelled_margins(state, rows: np.ndarray) -> np.ndarray:
    """The margins of ``rows`` (unlabelled pool rows), read from ``pool_uncertainty``."""
    rows = np.asarray(rows, dtype=np.int64)
    margins, _ = pool_uncertainty(state)
    unl = state.unlabelled
    pos = np.searchsorted(unl, rows)
    if len(rows) and (pos.max() >= len(unl) or (unl[pos] != rows).any()):
        raise ValueError("unlabelled_margins: rows must be unlabelled pool rows")
    return margins[pos]


def uncertain_pool(state, n: int, margin_pool: int, pool: np.ndarray | None = None) -> np.ndarray:
    """The ``margin_pool * n`` smallest-margin items of ``pool`` (default: the unlabelled rows), sorted by row id;
    the whole pool when ``margin_pool`` is 0 or the pool is no larger.

    Drawing the proposers' batches from this pool keeps every choice among uncertain items: the expert (and a
    policy imitating it) then decides how to spread a batch over the uncertain region, not whether to leave it."""
    pool = state.unlabelled if pool is None else np.asarray(pool, dtype=np.int64)
    k = int(margin_pool) * int(n)
    if margin_pool <= 0 or len(pool) <= k:
        return pool
    return smallest_margins(unlabelled_margins(state, pool), pool, k, state.rng(37))


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


def kmeans_labels(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means cluster of each point (scikit-learn, one k-means++ start seeded from ``rng``), labels 0..k-1."""
    import warnings

    from sklearn.cluster import KMeans

    k = max(1, min(int(k), len(points)))
    with warnings.catch_warnings():  # duplicate points leave fewer distinct clusters than k: harmless here
        warnings.simplefilter("ignore")
        km = KMeans(n_clusters=k, n_init=1, random_state=int(rng.integers(2**31 - 1)))
        return km.fit_predict(np.asarray(points, dtype=np.float64)).astype(np.int64)


def typicality(points: np.ndarray, knn: int) -> np.ndarray:
    """1 / mean Euclidean distance of each point to its ``knn`` nearest other points (TypiClust's density);
    0 for a lone point."""
    kk = min(int(knn), len(points) - 1)
    if kk < 1:
        return np.zeros(len(points))
    mean_d = np.empty(len(points))
    for start in range(0, len(points), 512):  # blocks bound memory on big clusters
        d = np.sqrt(sq_dist(points[start:start + 512], points))
        d[np.arange(len(d)), np.arange(start, start + len(d))] = np.inf  # not its own neighbour
        mean_d[start:start + len(d)] = np.partition(d, kk - 1, axis=1)[:, :kk].mean(1)
    return 1.0 / (mean_d + 1e-5)


def typical_picks(points: np.ndarray, clusters: np.ndarray, labelled: np.ndarray, candidates: np.ndarray, n: int,
                  rng: np.random.Generator, knn: int = 20, min_cluster: int = 5) -> np.ndarray:
    """TypiClust's choice of n ``candidates`` (row ids into ``points``), given every point's cluster.

    Each pick comes from the cluster with the fewest labelled-or-picked points, larger before smaller, ties at
    random; clusters under ``min_cluster`` points (outliers, which the paper drops) only once every other cluster
    has no candidate left.  The pick is the cluster's candidate of highest typicality within the cluster."""
    clusters = np.asarray(clusters, dtype=np.int64)
    k = int(clusters.max()) + 1 if len(clusters) else 0
    size = np.bincount(clusters, minlength=k)
    covered = np.bincount(clusters[np.asarray(labelled, dtype=np.int64)], minlength=k)
    free = np.zeros(len(points), bool)
    free[np.asarray(candidates, dtype=np.int64)] = True
    small = (size < min_cluster).astype(np.int64)
    jitter = rng.random(k)
    typ: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    picks: list[int] = []
    for _ in range(n):
        open_ = np.bincount(clusters[free], minlength=k) > 0  # clusters with a candidate left
        order = np.lexsort((jitter, -size, covered, small))
        c = int(next(c for c in order if open_[c]))
        if c not in typ:
            members = np.flatnonzero(clusters == c)
            typ[c] = (members, typicality(points[members], knn))
        members, t = typ[c]
        t = np.where(free[members], t, -np.inf)
        j = int(members[np.argmax(t)])
        picks.append(j)
        free[j] = False
        covered[c] += 1
    return np.asarray(picks, dtype=np.int64)


def delta_by_purity(points: np.ndarray, labels: np.ndarray, purity: float = 0.95) -> float:
    """ProbCover's radius: the largest delta at which at least ``purity`` of the open delta-balls around the points
    hold points of one label only.  A ball is pure while delta <= the distance to the point's nearest point of
    another label, so delta is that distance's order statistic at position floor((1 - purity) N)."""
    labels = np.asarray(labels)
    d_other = np.full(len(points), np.inf)
    for start in range(0, len(points), 512):
        d = sq_dist(points[start:start + 512], points)
        d[labels[start:start + 512, None] == labels[None, :]] = np.inf
        d_other[start:start + len(d)] = d.min(1)
    d_other = np.sort(np.sqrt(d_other))
    delta = float(d_other[int(np.floor((1.0 - purity) * len(d_other)))])
    return delta if np.isfinite(delta) else float(np.sqrt(sq_dist(points, points).max()) + 1.0)  # one label: one ball


def max_coverage(points: np.ndarray, delta: float, labelled: np.ndarray, candidates: np.ndarray, n: int,
                 rng: np.random.Generator) -> np.ndarray:
    """ProbCover's greedy choice of n ``candidates``: each pick's open delta-ball holds the most points that no
    labelled point's or earlier pick's ball holds (ties at random); uniform among the rest once nothing new can be
    covered."""
    candidates = np.asarray(candidates, dtype=np.int64)
    labelled = np.asarray(labelled, dtype=np.int64)
    d2 = float(delta) ** 2
    covered = np.zeros(len(points), bool)
    for start in range(0, len(labelled), 512):
        covered |= (sq_dist(points[labelled[start:start + 512]], points) < d2).any(0)
    ball = np.concatenate([sq_dist(points[candidates[s:s + 512]], points) < d2
                           for s in range(0, len(candidates), 512)]) if len(candidates) else np.zeros((0, len(points)), bool)
    degree = ball[:, ~covered].sum(1).astype(np.int64)
    jitter = rng.random(len(candidates))
    taken = np.zeros(len(candidates), bool)
    picks: list[int] = []
    while len(picks) < n:
        score = np.where(taken, -1, degree)
        if score.max() <= 0:
            rest = np.flatnonzero(~taken)
            picks += rng.choice(rest, size=n - len(picks), replace=False).tolist()
            break
        j = int(np.lexsort((jitter, -score))[0])
        picks.append(j)
        taken[j] = True
        new = ball[j] & ~covered
        covered |= new
        degree -= ball[:, new].sum(1)
    return candidates[np.asarray(picks, dtype=np.int64)]
