"""Task-agnostic state features: what a learned policy sees instead of raw inputs.

Every value is computed from the model, the labelled set and the pool only (never a
candidate's label) and normalised so that its scale does not depend on the data set:
probabilities are in [0, 1], entropies are divided by log C, distances are divided by a
per-step scale taken from the pool itself.  The schema (names, order, version) travels with
every store and policy; ``check_schema`` turns a mismatch into an error.

Batches are selected one item at a time: ``dist_labelled`` measures distance to the labelled
set *plus the items already chosen this round*, so a policy that picks sequentially can learn
diversity, and ``batch_fraction`` tells it how far into the batch it is.
"""

from __future__ import annotations

import numpy as np

from metaal.acquisition import scores
from metaal.errors import MetaalError
from metaal.state import ALState

SCHEMA_VERSION = 1

FEATURE_NAMES: tuple[str, ...] = (
    "max_prob",  # top-class probability
    "margin",  # top-1 minus top-2 probability
    "entropy",  # predictive entropy / log C
    "bald",  # MC-dropout mutual information / log C
    "pred_class_share",  # share of the labelled set in the predicted class, times C (1 = balanced)
    "dist_labelled",  # distance to nearest labelled-or-selected point / pool scale
    "density",  # 1 / (1 + mean distance to 10 nearest pool points / pool scale)
    "grad_norm",  # gradient-embedding norm / its pool median
    "margin_rank",  # share of the unlabelled pool with a larger margin (1 = most uncertain)
    "dist_rank",  # share of the candidates nearer to the labelled set (1 = farthest)
)
CONTEXT_NAMES: tuple[str, ...] = (
    "budget_used",  # fraction of the query budget spent
    "log_labelled",  # log(1 + labelled count)
    "log_classes",  # log(class count)
    "train_loss",  # training loss on the labelled set
    "train_accuracy",  # training accuracy on the labelled set
    "pool_entropy",  # mean normalised entropy of the unlabelled pool
    "batch_fraction",  # share of the current batch already chosen
)

# Classic heuristics expressed as "pick the candidate with the extreme value of one feature":
# used by `metaal inspect` and distillation's validation to compare with the expert.
HEURISTIC_FEATURES: dict[str, tuple[str, int]] = {
    "margin": ("margin", -1),
    "entropy": ("entropy", +1),
    "least_confidence": ("max_prob", -1),
    "bald": ("bald", +1),
    "dist_labelled": ("dist_labelled", +1),
}


def schema() -> dict:
    return {"version": SCHEMA_VERSION, "features": list(FEATURE_NAMES), "context": list(CONTEXT_NAMES)}


def check_schema(found: dict, where: str) -> None:
    """Raise a one-line error when a stored schema differs from this code's."""
    expected = schema()
    if found.get("version") != expected["version"] or list(found.get("features", [])) != expected["features"] or list(
        found.get("context", [])
    ) != expected["context"]:
        missing = sorted(set(expected["features"]) - set(found.get("features", [])))
        extra = sorted(set(found.get("features", [])) - set(expected["features"]))
        detail = f"version {found.get('version')} vs {expected['version']}"
        if missing or extra:
            detail += f"; missing {missing or '[]'}, unexpected {extra or '[]'}"
        raise MetaalError(f"{where}: feature schema does not match this metaal ({detail})")


_POOL_SAMPLE = 1000
_KNN = 10


class FeatureExtractor:
    """Computes features for one round; model outputs are cached in the state, distances here."""

    def __init__(self, state: ALState, candidates: np.ndarray):
        self.state = state
        self.candidates = np.asarray(candidates, dtype=np.int64)
        C = state.task.n_classes
        self._logC = np.log(C)
        proba = state.pool_proba()
        unl = state.unlabelled
        rng = state.rng(17)
        sample = unl if len(unl) <= _POOL_SAMPLE else rng.choice(unl, _POOL_SAMPLE, replace=False)
        emb = state.pool_embedding()
        e_sample = emb[sample].astype(np.float64)
        # Scale: median distance from a sample point to its nearest other sample point.
        d_ss = np.sqrt(_sq(e_sample, e_sample))
        np.fill_diagonal(d_ss, np.inf)
        nn = d_ss.min(axis=1)
        self._scale = float(np.median(nn[np.isfinite(nn)])) if np.isfinite(nn).any() else 1.0
        self._scale = self._scale if self._scale > 1e-12 else 1.0

        p = proba[self.candidates]
        mc = state.mc_proba(self.candidates)
        e_c = emb[self.candidates].astype(np.float64)
        d_cs = np.sqrt(_sq(e_c, e_sample))
        d_cs[self.candidates[:, None] == sample[None, :]] = np.inf
        k = min(_KNN, max(1, d_cs.shape[1] - 1))
        knn = np.sort(d_cs, axis=1)[:, :k]
        knn = np.where(np.isfinite(knn), knn, np.nan)
        density = 1.0 / (1.0 + np.nanmean(knn, axis=1) / self._scale)

        pred = p.argmax(1)
        lab_counts = np.bincount(state.task.y[state.labelled], minlength=C)
        share = lab_counts[pred] / max(1, state.n_labelled) * C

        g = state.grad_embedding(self.candidates)
        gnorm = np.linalg.norm(g, axis=1)
        g_ref = np.linalg.norm(state.grad_embedding(sample[: min(len(sample), 256)]), axis=1)
        g_scale = float(np.median(g_ref)) if len(g_ref) and np.median(g_ref) > 1e-12 else 1.0

        m_c = scores.margin(p)
        m_pool = np.sort(scores.margin(proba[unl]))
        margin_rank = 1.0 - np.searchsorted(m_pool, m_c, side="left") / max(1, len(m_pool))

        self._static = {
            "max_prob": p.max(1),
            "margin": m_c,
            "entropy": scores.entropy(p) / self._logC,
            "bald": scores.bald(mc) / self._logC,
            "pred_class_share": share,
            "density": np.nan_to_num(density, nan=0.0),
            "grad_norm": gnorm / g_scale,
            "margin_rank": margin_rank,
        }
        # Nearest labelled distance, updated as items are chosen within the batch.
        e_l = emb[state.labelled].astype(np.float64)
        self._emb_c = e_c
        self._d_lab = np.sqrt(_sq(e_c, e_l).min(axis=1)) if len(e_l) else np.full(len(e_c), np.inf)
        self._n_selected = 0
        self._context_base = [
            state.budget_used,
            np.log1p(state.n_labelled),
            self._logC,
            *state.labelled_stats(),
            float(np.mean(scores.entropy(proba[unl]) / self._logC)) if len(unl) else 0.0,
        ]

    def mark_selected(self, position: int) -> None:
        """Record that candidate ``position`` was chosen: distances now count it as labelled."""
        d_new = np.sqrt(_sq(self._emb_c, self._emb_c[position : position + 1])[:, 0])
        self._d_lab = np.minimum(self._d_lab, d_new)
        self._n_selected += 1

    def features(self, batch_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(candidates (n, F), context (G,)) as float32 in schema order."""
        dist = np.minimum(self._d_lab / self._scale, 1e3)
        dist = np.where(np.isfinite(dist), dist, 1e3)
        dist_rank = (np.argsort(np.argsort(dist, kind="stable"), kind="stable") + 1) / len(dist)
        cols = dict(self._static, dist_labelled=dist, dist_rank=dist_rank)
        cand = np.stack([cols[name] for name in FEATURE_NAMES], axis=1).astype(np.float32)
        ctx = np.asarray([*self._context_base, self._n_selected / max(1, batch_size)], dtype=np.float32)
        return cand, ctx


def _sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None, :], 0.0)
