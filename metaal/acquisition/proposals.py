"""Which K candidates the expert (and a policy trained on it) chooses among each round.

``random``: K unlabelled items drawn uniformly.  The expert then improves on a random pick, but
a random draw of K rarely holds the items an uncertainty heuristic would take from the whole
pool, so imitating it competes with margin from behind.

``heuristics``: the union of the classic heuristics' own top picks (margin, entropy, least
confidence, BALD, coreset, BADGE), an equal share each, topped up with uniform draws to K.  The
expert's lookahead then arbitrates between heuristics, item by item, with true labels; a policy
trained on such rounds learns *which heuristic's kind of item helps in which situation*, and at
deployment it scores the same proposals, so it never strays far from a sensible heuristic.
``heuristic_batches``: each batch proposer's own batch of n (the batch oracle's candidates, and a
batch-oracle policy's at deployment); their union is the round's candidate set.

Everything here reads only the model and the pool (never a label), so a policy can use it.
"""

from __future__ import annotations

import numpy as np

from metaal.acquisition.features import BATCH_PROPOSERS  # the feature schema names each batch proposer
from metaal.acquisition.ops import uncertain_pool
from metaal.acquisition.strategies import get_heuristic
from metaal.config import PROPOSALS
from metaal.errors import MetaalError

__all__ = ["PROPOSALS", "PROPOSERS", "heuristic_batches", "max_candidates", "propose_candidates", "uncertain_pool",
           "union_candidates"]

PROPOSERS = ("margin", "entropy", "least_confidence", "bald", "coreset", "badge")


def propose_candidates(state, k: int, how: str = "random", pool: np.ndarray | None = None) -> np.ndarray:
    """Up to k distinct unlabelled rows (sorted), chosen as ``how`` says; all of them when the pool has <= k."""
    if how not in PROPOSALS:
        raise MetaalError(f"unknown candidate proposals '{how}' (choose from {', '.join(PROPOSALS)})")
    pool = state.unlabelled if pool is None else np.asarray(pool, dtype=np.int64)
    k = min(int(k), len(pool))
    if k == len(pool):
        return np.sort(pool)
    if how == "random":
        return np.sort(state.rng(31).choice(pool, size=k, replace=False))
    share = max(1, k // (len(PROPOSERS) + 1))  # one share left for uniform draws
    chosen: list[int] = []
    seen: set[int] = set()
    for name in PROPOSERS:
        picks = get_heuristic(name).select(state, min(share, len(pool)), candidates=pool)
        new = [int(c) for c in picks if int(c) not in seen][: max(0, k - len(chosen))]
        chosen += new
        seen.update(new)
    rest = np.setdiff1d(pool, np.asarray(chosen, dtype=np.int64), assume_unique=True)
    fill = k - len(chosen)
    if fill > 0:
        chosen += [int(c) for c in state.rng(37).choice(rest, size=fill, replace=False)]
    return np.sort(np.asarray(chosen, dtype=np.int64))


def heuristic_batches(state, n: int, pool: np.ndarray | None = None,
                      proposers: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Each proposer's own batch of n items from ``pool`` (default: the unlabelled rows); ``proposers``
    default: every one in ``BATCH_PROPOSERS``, BALD only where the state has MC-dropout outputs."""
    if proposers is None:
        proposers = tuple(p for p in BATCH_PROPOSERS if p != "bald" or state.has_mc)
    pool = state.unlabelled if pool is None else np.asarray(pool, dtype=np.int64)
    n = min(int(n), len(pool))
    return {name: np.asarray(get_heuristic(name).select(state, n, candidates=pool), dtype=np.int64) for name in proposers}


def union_candidates(batches: dict[str, np.ndarray]) -> np.ndarray:
    """The round's candidates: the sorted union of the proposers' batches."""
    return np.unique(np.concatenate(list(batches.values()))) if batches else np.zeros(0, np.int64)


def max_candidates(n: int) -> int:
    """The most candidates one round can have (no overlap between the proposers' batches)."""
    return len(BATCH_PROPOSERS) * int(n)
