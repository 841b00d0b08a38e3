"""Task-agnostic state features: what a learned policy sees instead of raw inputs.

Every value is computed from the model, the labelled set and the pool only (never a
candidate's label) and normalised so that its scale does not depend on the data set:
probabilities are in [0, 1], entropies are divided by log C, distances are divided by a
per-step scale taken from the pool itself.  The schema (names, order, version) travels with
every store and policy; ``check_schema`` turns a mismatch into an error.

Batches are selected one item at a time: ``dist_labelled`` measures distance to the labelled
set *plus the items already chosen this round*, so a policy that picks sequentially can learn
diversity, and ``batch_fraction`` tells it how far into the batch it is.

When the candidates are the classic heuristics' own batches (the batch oracle's proposals,
metaal.oracle.batch), ``proposer_votes`` and the ``in_<proposer>`` flags say which heuristics
proposed each item.  The batch expert's label is "this item is in the winning batch", which no
per-item uncertainty or distance feature can tell for coreset, BADGE or random batches; with the
flags the policy can learn *which heuristic wins when* and still mix items across batches.
They are 0 when candidates are drawn otherwise.
"""

from __future__ import annotations

import numpy as np

from metaal.acquisition import scores
from metaal.acquisition.ops import pool_uncertainty, sq_dist
from metaal.errors import MetaalError
from metaal.state import AcquisitionState

SCHEMA_VERSION = 2

# The heuristics whose batches the batch oracle compares (metaal.oracle.batch), in tie-break order.
BATCH_PROPOSERS: tuple[str, ...] = ("margin", "entropy", "bald", "coreset", "badge", "random")

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
    "proposer_votes",  # share of the heuristics whose batch holds the item (0: candidates not from batches)
    *(f"in_{name}" for name in BATCH_PROPOSERS),  # 1 if that heuristic's batch holds the item
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


def feature_columns(names) -> tuple[list[int], list[int]]:
    """Column positions of ``names`` among the candidate features and among the context features."""
    names = list(names or [])
    unknown = sorted(set(names) - set(FEATURE_NAMES) - set(CONTEXT_NAMES))
    if unknown:
        raise MetaalError(f"unknown feature(s) {', '.join(unknown)} (features: {', '.join(FEATURE_NAMES)}; "
                          f"context: {', '.join(CONTEXT_NAMES)})")
    return ([FEATURE_NAMES.index(n) for n in names if n in FEATURE_NAMES],
            [CONTEXT_NAMES.index(n) for n in names if n in CONTEXT_NAMES])


COUNT_CONTEXTS = ("raw", "per-class", "per-class-with-classes")


def count_context(context: np.ndarray, mode: str) -> np.ndarray:
    """The context with the label count as the policy sees it: "raw" as stored, "per-class":
    log((1 + labelled) / classes) in log_labelled's column and log_classes held at 0, or
    "per-class-with-classes": the same per-class count with log_classes kept.

    A 3-class source with 10 labels and a 10-class target with 33 share a per-class count, while
    neither raw count generalises from sources with one class count to targets with another.  Keeping
    the class count as well lets sources with several class counts teach a policy that one label per
    class means something else with ten classes than with three."""
    if mode == "raw":
        return context
    if mode not in COUNT_CONTEXTS:
        raise MetaalError(f"unknown count context '{mode}' (choose from {', '.join(COUNT_CONTEXTS)})")
    labelled, classes = CONTEXT_NAMES.index("log_labelled"), CONTEXT_NAMES.index("log_classes")
    out = np.array(context, dtype=np.float32, copy=True)
    out[..., labelled] = out[..., labelled] - out[..., classes]
    if mode == "per-class":
        out[..., classes] = 0.0
    return out


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
    """Computes features for one round from an ``AcquisitionState`` (the loop's ``ALState`` or
    ``metaal.select.PoolState``): model outputs are read by rows (the candidates, a uniform pool sample and
    the labelled set), distances are computed here."""

    def __init__(self, state: AcquisitionState, candidates: np.ndarray, batches: dict[str, np.ndarray] | None = None):
        candidates = np.asarray(candidates, dtype=np.int64)
        sample = pool_sample(state)
        pool_margin, pool_entropy = pool_uncertainty(state)
        proba = state.proba(candidates)
        self._build(
            candidates=candidates,
            n_classes=state.n_classes,
            proba=proba,
            mc_proba=state.mc_proba(candidates) if state.has_mc else proba[None],  # no MC dropout: BALD is 0
            embedding=state.embedding(candidates),
            grad_norm=state.grad_norm(candidates),
            sample=sample,
            sample_embedding=state.embedding(sample),
            sample_grad_norm=state.grad_norm(sample[: min(len(sample), 256)]),
            labelled_embedding=state.embedding(state.labelled),
            labelled_y=state.labelled_y,
            pool_margin=pool_margin,
            pool_entropy=pool_entropy,
            budget_used=state.budget_used,
            labelled_stats=state.labelled_stats(),
            batches=batches,
        )

    def _build(self, *, candidates, n_classes, proba, mc_proba, embedding, grad_norm, sample, sample_embedding,
               sample_grad_norm, labelled_embedding, labelled_y, pool_margin, pool_entropy, budget_used, labelled_stats,
               batches=None):
        """Every input the features read.

        candidates (n,) and sample (S,) are row ids in one index space (only used to tell a candidate
        from itself in the sample); proba (n, C), mc_proba (T, n, C), embedding (n, E) and grad_norm (n,)
        belong to the candidates; sample_embedding (S, E) and sample_grad_norm (<= S,) to a uniform
        sample of the unlabelled pool; labelled_embedding (L, E) and labelled_y (L,) class ids to the
        labelled set; pool_margin holds the margins of the whole unlabelled pool, pool_entropy its mean
        normalised entropy; labelled_stats = (train loss, train accuracy); batches (optional) maps a
        heuristic in BATCH_PROPOSERS to the row ids of the batch it proposed this round.
        """
        self.candidates = np.asarray(candidates, dtype=np.int64)
        sample = np.asarray(sample, dtype=np.int64)
        C = int(n_classes)
        self._logC = np.log(C)
        e_sample = np.asarray(sample_embedding).astype(np.float64)
        # Scale: median distance from a sample point to its nearest other sample point.
        d_ss = sq_dist(e_sample, e_sample)  # squared: sqrt is monotone, so the nearest distance is sqrt(min)
        np.fill_diagonal(d_ss, np.inf)
        nn = np.sqrt(d_ss.min(axis=1))
        self._scale = float(np.median(nn[np.isfinite(nn)])) if np.isfinite(nn).any() else 1.0
        self._scale = self._scale if self._scale > 1e-12 else 1.0

        p = np.asarray(proba)
        e_c = np.asarray(embedding).astype(np.float64)
        d_cs = sq_dist(e_c, e_sample)  # squared until the k nearest are known (sqrt is monotone)
        d_cs[self.candidates[:, None] == sample[None, :]] = np.inf
        k = min(_KNN, max(1, d_cs.shape[1] - 1))
        knn = np.sqrt(np.sort(np.partition(d_cs, k - 1, axis=1)[:, :k] if k < d_cs.shape[1] else d_cs, axis=1)[:, :k])
        knn = np.where(np.isfinite(knn), knn, np.nan)
        density = 1.0 / (1.0 + np.nanmean(knn, axis=1) / self._scale)

        pred = p.argmax(1)
        labelled_y = np.asarray(labelled_y, dtype=np.int64)
        lab_counts = np.bincount(labelled_y, minlength=C)
        share = lab_counts[pred] / max(1, len(labelled_y)) * C

        gnorm = np.asarray(grad_norm)
        g_ref = np.asarray(sample_grad_norm)
        g_scale = float(np.median(g_ref)) if len(g_ref) and np.median(g_ref) > 1e-12 else 1.0

        m_c = scores.margin(p)
        margin_rank = 1.0 - _count_below(np.asarray(pool_margin), m_c) / max(1, len(pool_margin))

        self._static = {
            "max_prob": p.max(1),
            "margin": m_c,
            "entropy": scores.entropy(p) / self._logC,
            "bald": scores.bald(mc_proba) / self._logC,
            "pred_class_share": share,
            "density": np.nan_to_num(density, nan=0.0),
            "grad_norm": gnorm / g_scale,
            "margin_rank": margin_rank,
            **proposer_flags(self.candidates, batches),
        }
        # Nearest labelled distance, updated as items are chosen within the batch.
        e_l = np.asarray(labelled_embedding).astype(np.float64)
        self._emb_c = e_c
        self._d_lab = np.sqrt(sq_dist(e_c, e_l).min(axis=1)) if len(e_l) else np.full(len(e_c), np.inf)
        self._n_selected = 0
        self._context_base = [
            budget_used,
            np.log1p(len(labelled_y)),
            self._logC,
            *labelled_stats,
            pool_entropy,
        ]

    @property
    def candidate_embedding(self) -> np.ndarray:
        """The candidates' embeddings (n, E), float64."""
        return self._emb_c

    def mark_selected(self, position: int) -> None:
        """Record that candidate ``position`` was chosen: distances now count it as labelled."""
        d_new = np.sqrt(sq_dist(self._emb_c, self._emb_c[position : position + 1])[:, 0])
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


_IN_PROPOSER_COLUMNS = [FEATURE_NAMES.index(f"in_{p}") for p in BATCH_PROPOSERS]


def proposer_membership(candidates: np.ndarray) -> np.ndarray:
    """Which proposer's batch holds each candidate: (..., K, F) features -> (..., K, P) booleans, from the
    ``in_<proposer>`` flags (P = len(BATCH_PROPOSERS))."""
    return np.asarray(candidates)[..., _IN_PROPOSER_COLUMNS] > 0.5


def pool_sample(state: AcquisitionState) -> np.ndarray:
    """The uniform sample of the unlabelled pool the features use for scales and density."""
    unl = state.unlabelled
    return unl if len(unl) <= _POOL_SAMPLE else state.rng(17).choice(unl, _POOL_SAMPLE, replace=False)


def proposer_flags(candidates: np.ndarray, batches: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """``in_<proposer>`` (0/1) and ``proposer_votes`` for each candidate; all 0 without batches."""
    batches = batches or {}
    unknown = sorted(set(batches) - set(BATCH_PROPOSERS))
    if unknown:
        raise MetaalError(f"unknown proposer(s) {unknown}: the features know {', '.join(BATCH_PROPOSERS)}")
    flags = {f"in_{name}": np.isin(candidates, np.asarray(batches.get(name, []), dtype=np.int64)).astype(np.float64)
             for name in BATCH_PROPOSERS}
    flags["proposer_votes"] = sum(flags.values()) / len(BATCH_PROPOSERS)
    return flags


def _count_below(pool: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each value, how many pool entries are strictly smaller (= searchsorted(sort(pool), values, "left")),
    without sorting the pool: O(N log n) for a pool of N and n values."""
    order = np.argsort(values, kind="stable")
    ranks = np.searchsorted(values[order], pool, side="right")  # pool entry v is below values[order][j] iff rank <= j
    below = np.cumsum(np.bincount(ranks, minlength=len(values) + 1))[: len(values)]
    out = np.empty(len(values), dtype=np.int64)
    out[order] = below
    return out
