"""Label your own data: which unlabelled items should annotators label next?

Two entry points, one ranking engine:

* ``select_next(data, labels, n, strategy)`` (the ``metaal select`` command): load a pool (``npz:PATH``,
  ``csv:PATH``, a folder of images or any task spec), train metaal's learner on the items labelled so far,
  rank the rest.
* ``rank_pool(proba, embeddings, labelled=..., labels=..., n=..., strategy=...)``: for a loop around your own
  model.  Hand over its predicted probabilities for the whole pool (and embeddings for the policy, coreset and
  BADGE: an array, or a function of row indices so that only the rows needed are computed) and get the indices
  to label next.

Every strategy runs on one ``PoolState`` (the ``AcquisitionState`` of metaal.state, as the loop's ``ALState``),
and the learned policy runs its own candidate pipeline on it (``Policy.rank``: the one ``transfer-eval`` runs).
Large pools are streamed.  Score strategies (margin, entropy, least confidence, BALD, any ``ScoreStrategy``) read
the model's outputs chunk by chunk and keep one number per item.  The learned policy reads the margin of every
item in one pass, keeps the ``prefilter`` items with the smallest margin (200, at least 10 n), and reads outputs
only for those, a uniform sample of 1000 pool items and the labelled set (each row once).  Coreset and BADGE
over the whole pool read every row's embedding; TypiClust and ProbCover hold the whole pool's.
"""

from __future__ import annotations

import csv as _csv
import io
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metaal.acquisition.ops import top_k
from metaal.acquisition.strategies import ScoreStrategy, Strategy
from metaal.config import LearnerConfig, SelectConfig
from metaal.errors import MetaalError
from metaal.registry import get_strategy, is_policy_name
from metaal.tasks.pools import Pool, check_labelled, encode_labels, few, load_image_folder, load_pool, read_labels_csv

DEFAULT_PREFILTER = SelectConfig.prefilter  # policy: featurise only this many smallest-margin items, at least 10 n (0/None: the whole pool)
CHUNK = 16384  # pool rows per forward pass when streaming


# ------------------------------------------------------------------------------------------ the result


@dataclass
class Selection:
    """The items to label next, best first.

    ``index`` are pool positions (rows of the data; for a folder of images, positions in the sorted list of
    relative file paths, given in ``path``).  ``score`` is the strategy's acquisition score (higher = wanted
    more; NaN for strategies that pick a batch without per-item scores: random, coreset, BADGE).
    ``predicted`` / ``confidence``: the model's predicted label and its probability for each item.
    ``model`` (``select_next`` only): the trained model; ``model.predict(X)`` / ``model.predict_proba(X)`` for
    any raw items shaped like the pool (standardised as the pool was).
    """

    index: np.ndarray
    score: np.ndarray
    strategy: str
    predicted: list | None = None
    confidence: np.ndarray | None = None
    path: list[str] | None = None
    info: dict = field(default_factory=dict)
    model: LearnerOutputs | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def rank(self) -> np.ndarray:
        return np.arange(1, len(self.index) + 1)

    def rows(self) -> list[dict]:
        out = []
        for k, i in enumerate(self.index):
            row = {"index": int(i), "score": float(self.score[k]), "rank": k + 1}
            if self.predicted is not None:
                row["predicted_label"] = self.predicted[k]
            if self.confidence is not None:
                row["confidence"] = float(self.confidence[k])
            if self.path is not None:
                row["path"] = self.path[k]
            out.append(row)
        return out

    def to_csv(self) -> str:
        header = ["index", "score", "rank"]
        header += ["predicted_label"] if self.predicted is not None else []
        header += ["confidence"] if self.confidence is not None else []
        header += ["path"] if self.path is not None else []
        buf = io.StringIO()
        w = _csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        for row in self.rows():
            cells = []
            for key in header:
                v = row[key]
                if key == "score":
                    v = "" if math.isnan(v) else f"{v:.6g}"
                elif key == "confidence":
                    v = f"{v:.4f}"
                cells.append(v)
            w.writerow(cells)
        return buf.getvalue()

    def write_csv(self, path: str | Path) -> None:
        """The CSV, and beside it ``PATH.json``: what made it (strategy, git commit, command line, versions,
        platform), since a CSV has no place for that.  Both are written whole or not at all (renames)."""
        from metaal.io import atomic_write_json, atomic_write_text, compute_platform, package_versions, provenance

        try:
            atomic_write_text(path, self.to_csv())
            atomic_write_json(f"{path}.json", {"strategy": self.strategy, "items": len(self), "info": self.info,
                                                "provenance": provenance(), "versions": package_versions(),
                                                "platform": compute_platform()})
        except OSError as exc:
            raise MetaalError(f"cannot write {path}: {exc.strerror or exc}") from None


def pool_statistics(X: np.ndarray, chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature (tabular) or per-channel (images) mean and std over the pool, in chunks (no full copy)."""
    axes = (0,) if X.ndim == 2 else (0, 2, 3)
    shape = (1, X.shape[1]) if X.ndim == 2 else (1, X.shape[1], 1, 1)
    s = np.zeros(X.shape[1])
    s2 = np.zeros(X.shape[1])
    count = 0
    for start in range(0, len(X), chunk):
        block = np.asarray(X[start : start + chunk], dtype=np.float64)
        if not np.isfinite(block).all():
            bad = start + int(np.flatnonzero(~np.isfinite(block).reshape(len(block), -1).all(axis=1))[0])
            raise MetaalError(f"the pool contains NaN or infinite values (first at item {bad})")
        s += block.sum(axis=axes)
        s2 += (block * block).sum(axis=axes)
        count += block.size // X.shape[1]
    mean = s / count
    std = np.sqrt(np.maximum(s2 / count - mean * mean, 0.0))
    std = np.where(std < 1e-8, 1.0, std)
    return mean.reshape(shape).astype(np.float32), std.reshape(shape).astype(np.float32)


# ------------------------------------------------------------------------------------------ model outputs


class ArrayOutputs:
    """Model outputs a user hands over: probabilities (N, C) for the whole pool; embeddings (N, E) and MC-dropout
    probabilities (T, N, C) as arrays, or as functions of row indices (computed only for the rows needed)."""

    def __init__(self, proba, embeddings=None, mc_proba=None):
        proba = np.asarray(proba)
        if proba.ndim != 2 or proba.shape[1] < 2 or len(proba) == 0:
            raise MetaalError(f"proba must have shape (pool size, classes >= 2), got {proba.shape}")
        self._proba = proba
        self.n, self.n_classes = proba.shape
        self._emb = self._check(embeddings, 2, "embeddings")
        self._mc = self._check(mc_proba, 3, "mc_proba")

    def _check(self, a, ndim, name):
        if a is None or callable(a):
            return a
        a = np.asarray(a)
        n_axis = 1 if ndim == 3 else 0
        if a.ndim != ndim or a.shape[n_axis] != self.n:
            raise MetaalError(f"{name} must have {ndim} dimensions with the pool ({self.n} items) on axis {n_axis}, got {a.shape}")
        return a

    def proba_chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, self.n, CHUNK):
            yield start, np.asarray(self._proba[start : start + CHUNK], dtype=np.float64)

    def proba(self, idx) -> np.ndarray:
        return np.asarray(self._proba[idx], dtype=np.float64)

    @property
    def has_embeddings(self) -> bool:
        return self._emb is not None

    @property
    def has_mc(self) -> bool:
        return self._mc is not None

    def embed(self, idx) -> np.ndarray:
        if self._emb is None:
            raise MetaalError("this strategy needs embeddings (pass embeddings=..., an (N, E) array or a function of indices)")
        out = self._emb(np.asarray(idx)) if callable(self._emb) else self._emb[idx]
        return np.asarray(out, dtype=np.float64).reshape(len(idx), -1)

    def mc_proba(self, idx) -> np.ndarray | None:
        if self._mc is None:
            return None
        return np.asarray(self._mc(np.asarray(idx)) if callable(self._mc) else self._mc[:, idx], dtype=np.float64)


class LearnerOutputs:
    """Outputs of a trained metaal ``Learner`` on a raw pool, standardised chunk by chunk."""

    def __init__(self, learner, X: np.ndarray, mean: np.ndarray, std: np.ndarray, classes: list | None = None):
        self.learner, self.X, self.mean, self.std = learner, X, mean, std
        self.classes = list(range(learner.n_classes)) if classes is None else list(classes)
        self.n, self.n_classes = len(X), learner.n_classes
        self.has_embeddings = self.has_mc = True

    def rows(self, idx) -> np.ndarray:
        return ((np.asarray(self.X[idx], dtype=np.float32) - self.mean) / self.std).astype(np.float32, copy=False)

    def proba_chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, self.n, CHUNK):
            yield start, self.learner.predict_proba(self.rows(slice(start, start + CHUNK)))

    def proba(self, idx) -> np.ndarray:
        return self.learner.predict_proba(self.rows(idx))

    def embed(self, idx) -> np.ndarray:
        return self.learner.embed(self.rows(idx))

    def mc_proba(self, idx) -> np.ndarray:
        return self.learner.mc_proba(self.rows(idx), seed=0)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (N, C) of raw items shaped like the pool; columns in ``classes`` order."""
        X = np.asarray(X)
        if X.ndim == 3 and len(self.X.shape) == 4:
            X = X[:, None]
        return self.learner.predict_proba(((X.astype(np.float32) - self.mean) / self.std).astype(np.float32, copy=False))

    def predict(self, X) -> list:
        """Predicted labels (the labels as given) of raw items shaped like the pool."""
        return [self.classes[j] for j in self.predict_proba(X).argmax(1)]


def _labelled_stats(proba: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(cross-entropy, accuracy) of the model on the labelled items, as the learner reports after training."""
    if len(y) == 0:
        return float("nan"), float("nan")
    p_true = np.clip(proba[np.arange(len(y)), y], 1e-12, 1.0)
    return float(-np.log(p_true).mean()), float((proba.argmax(1) == y).mean())


class _Rows:
    """A model output of pool rows, computed once a row (the rows asked first, in one call) and kept."""

    def __init__(self, compute, rows: np.ndarray | None = None, values: np.ndarray | None = None):
        self.compute = compute
        self.rows = np.zeros(0, np.int64) if rows is None else np.asarray(rows, np.int64)  # sorted
        self.values = values

    def __call__(self, idx) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        if self.values is None and not len(idx):
            return np.zeros((0, 0))
        missing = np.setdiff1d(idx, self.rows)
        if len(missing):
            new = np.asarray(self.compute(missing))
            rows = np.concatenate([self.rows, missing])
            values = new if self.values is None else np.concatenate([self.values, new.astype(self.values.dtype)])
            order = np.argsort(rows, kind="stable")
            self.rows, self.values = rows[order], values[order]
        return self.values[np.searchsorted(self.rows, idx)]


class PoolState:
    """The ``AcquisitionState`` (metaal.state) of a user's pool: its labelled rows, their labels and a model's
    outputs (``ArrayOutputs`` or ``LearnerOutputs``).  Every strategy, the policy's candidate pipeline included,
    runs on it as on the loop's ``ALState``.  Outputs are read lazily: probabilities are streamed for the whole
    pool (``proba_chunks``), and probabilities and embeddings of single rows are computed once a row, when first
    asked for; only ``pool_proba`` / ``pool_embedding`` (strategies that need the whole pool) hold every row."""

    def __init__(self, outputs, labelled: np.ndarray, labelled_y: np.ndarray | None, seed: int = 0,
                 budget_used: float = 0.0):
        self.outputs = outputs
        self.labelled = np.asarray(labelled, dtype=np.int64)
        self.labelled_y = None if labelled_y is None else np.asarray(labelled_y, dtype=np.int64)
        self.n_classes = outputs.n_classes
        self.has_mc = outputs.has_mc
        self.seed, self.round, self.budget_used = seed, 0, budget_used
        self._cache: dict = {}
        self.proba = _Rows(outputs.proba)
        self.embedding = _Rows(outputs.embed)

    n_labelled = property(lambda self: len(self.labelled))

    def hold(self, rows: np.ndarray, proba: np.ndarray) -> None:
        """Keep only these rows' probabilities (read by a streaming pass) for ``proba``."""
        self.proba = _Rows(self.outputs.proba, rows, proba)

    @property
    def unlabelled(self) -> np.ndarray:
        return self.cached("unlabelled", lambda: np.flatnonzero(_unlabelled_mask(self.outputs.n, self.labelled)))

    def cached(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def rng(self, purpose: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.round, purpose])

    def proba_chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        return self.outputs.proba_chunks()

    def pool_proba(self) -> np.ndarray:
        return self.cached("proba", lambda: np.concatenate([p for _, p in self.outputs.proba_chunks()]))

    def pool_embedding(self) -> np.ndarray:
        n = self.outputs.n
        return self.cached("embed", lambda: np.concatenate(
            [self.outputs.embed(np.arange(s, min(s + CHUNK, n))) for s in range(0, n, CHUNK)]))

    def mc_proba(self, idx) -> np.ndarray:
        if not self.has_mc:
            raise MetaalError("bald needs MC-dropout probabilities (pass mc_proba=..., (T, N, C) or a function of indices)")
        return self.outputs.mc_proba(idx)

    def grad_embedding(self, idx) -> np.ndarray:
        """BADGE's gradient embedding (p - onehot(argmax p)) x e, flattened per item."""
        g = self.proba(idx).copy()
        g[np.arange(len(g)), g.argmax(1)] -= 1.0
        emb = self.embedding(idx)
        return (g[:, :, None] * emb[:, None, :]).reshape(len(g), -1)

    def grad_norm(self, idx) -> np.ndarray:
        """Norms of ``grad_embedding(idx)``, without forming it: |p - onehot(argmax p)| |e|."""
        g = self.proba(idx).astype(np.float64)
        g[np.arange(len(g)), g.argmax(1)] -= 1.0
        return np.linalg.norm(g, axis=1) * np.linalg.norm(self.embedding(idx), axis=1)

    def labelled_stats(self) -> tuple[float, float]:
        if self.labelled_y is None:
            return float("nan"), float("nan")
        return _labelled_stats(self.proba(self.labelled), self.labelled_y)


# ------------------------------------------------------------------------------------------ ranking


def resolve_strategy(strategy, device: str = "cpu", trust_pickle: bool = False) -> Strategy:
    """A strategy name, ``policy`` (the shipped policy), ``policy:DIR`` or a ``Strategy`` instance; the oracle (it
    reads true labels) is refused."""
    if isinstance(strategy, Strategy):
        return strategy
    name = str(strategy).strip()
    if name == "oracle":
        raise MetaalError("the oracle reads the true labels of candidates: it cannot choose what to label")
    if is_policy_name(name):
        return get_strategy(name, device="cpu" if device == "auto" else device, trust_pickle=trust_pickle)
    return get_strategy(name)


def _rank(outputs, labelled: np.ndarray, labelled_y: np.ndarray | None, n: int, strategy: Strategy, seed: int,
          prefilter: int | None, budget_used: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(pool indices best first, their scores)."""
    from metaal.policy.inference import Policy

    if getattr(strategy, "uses_true_labels", False):
        raise MetaalError(f"strategy {strategy.name} reads true labels: it cannot choose what to label")
    _check_n(n, outputs.n, len(labelled))
    if budget_used is None:
        budget_used = len(labelled) / (len(labelled) + n)
    state = PoolState(outputs, labelled, labelled_y, seed, budget_used)
    if isinstance(strategy, Policy):
        if labelled_y is None:
            raise MetaalError("the policy needs the labels of the labelled items (labels=...)")
        if not outputs.has_embeddings:
            raise MetaalError("the policy needs embeddings (pass embeddings=..., an (N, E) array or a function of indices)")
        return strategy.rank(state, n, prefilter=prefilter or 0)
    if isinstance(strategy, ScoreStrategy):
        return _rank_scores(state, n, strategy)
    picked = np.asarray(strategy.select(state, n), dtype=np.int64)
    return picked, np.full(len(picked), np.nan)


def _check_n(n: int, n_pool: int, n_labelled: int) -> None:
    if n < 1:
        raise MetaalError(f"the number of items to select (--n) must be at least 1, got {n}")
    if n > n_pool - n_labelled:
        raise MetaalError(f"cannot select {n} items: only {n_pool - n_labelled} unlabelled items are left "
                          f"(pool {n_pool}, labelled {n_labelled})")


def _unlabelled_mask(n_pool: int, labelled: np.ndarray) -> np.ndarray:
    mask = np.ones(n_pool, bool)
    mask[labelled] = False
    return mask


def _rank_scores(state: PoolState, n: int, strategy: ScoreStrategy) -> tuple[np.ndarray, np.ndarray]:
    """Stream the pool, scoring each chunk's unlabelled rows; the same picks as ``strategy.select(state, n)``."""
    unl = state.unlabelled
    s_unl = np.empty(len(unl))
    for start, p in state.proba_chunks():
        lo, hi = np.searchsorted(unl, [start, start + len(p)])
        if hi > lo:
            rows = unl[lo:hi]
            state.hold(rows, p[rows - start])
            s_unl[lo:hi] = np.asarray(strategy.score(state, rows), dtype=np.float64)
    order = top_k(s_unl, n, state.rng(7).random(len(unl)))  # ScoreStrategy's tie-break
    return unl[order], s_unl[order]


def _strategy_label(strategy, resolved: Strategy) -> str:
    return str(strategy) if isinstance(strategy, str) else resolved.name


def rank_pool(
    proba,
    embeddings=None,
    *,
    labelled,
    n: int,
    labels=None,
    strategy="margin",
    mc_proba=None,
    classes=None,
    seed: int = 0,
    prefilter: int | None = DEFAULT_PREFILTER,
    budget_used: float | None = None,
) -> Selection:
    """Rank an unlabelled pool from your own model's outputs and return the n items to label next.

    proba: (N, C) predicted class probabilities for every pool item (labelled ones included).
    embeddings: (N, E) array, or a function ``f(indices) -> (len(indices), E)`` (the policy then asks only for
        the rows it needs); needed by the policy, coreset and badge.
    labelled: pool indices of the items labelled so far (or a boolean mask).
    labels: their labels, in the same order; labels are column indices of ``proba`` unless ``classes`` names
        the columns (``classes=["cat", "dog"]``).  Needed by the policy (class balance, training fit).
    strategy: a name from ``metaal strategies`` (``"policy"``: the policy shipped inside metaal), ``"policy:DIR"``,
        or a ``Strategy`` (e.g. ``load_policy(DIR)``).
    mc_proba: MC-dropout probabilities (T, N, C) or a function of indices; needed by bald, used by the policy's
        BALD feature (0 without it).
    prefilter: the policy featurises only this many smallest-margin items, at least 10 n (None or 0: the whole pool).
    budget_used: how far along your labelling budget you are, in [0, 1], for the policy
        (default: labelled / (labelled + n)).
    """
    resolved = resolve_strategy(strategy)
    out = ArrayOutputs(proba, embeddings, mc_proba)
    idx = check_labelled(labelled, out.n, "rank_pool")
    col_names = list(range(out.n_classes)) if classes is None else list(classes)
    if len(col_names) != out.n_classes:
        raise MetaalError(f"classes names {len(col_names)} columns but proba has {out.n_classes}")
    y = None
    if labels is not None:
        labels = list(labels.tolist() if isinstance(labels, np.ndarray) else labels)
        if len(labels) != len(idx):
            raise MetaalError(f"labels has {len(labels)} entries but {len(idx)} items are labelled")
        col = {c: j for j, c in enumerate(col_names)}
        missing = [v for v in dict.fromkeys(labels) if v not in col]
        if missing:
            hint = "" if classes is not None else "; pass classes=[...] to name proba's columns"
            raise MetaalError(f"label(s) {few(missing)} are not classes of proba's columns{hint}")
        y = np.asarray([col[v] for v in labels], dtype=np.int64)
    picked, s = _rank(out, idx, y, int(n), resolved, seed, prefilter, budget_used)
    p = out.proba(picked)
    return Selection(index=picked, score=s, strategy=_strategy_label(strategy, resolved),
                     predicted=[col_names[j] for j in p.argmax(1)], confidence=p.max(1),
                     info={"pool": out.n, "labelled": len(idx), "classes": col_names})


def _read_labelled(labels, pool: Pool) -> tuple[np.ndarray, np.ndarray, list]:
    """The labelled items of ``pool``: (indices, encoded labels, class names), or a one-line error."""
    if isinstance(labels, Mapping):
        keys = list(labels)
        if pool.paths is not None:
            where = {p: k for k, p in enumerate(pool.paths)}
            keys = [where.get(k, k) for k in keys]
        try:
            idx = np.asarray([int(k) for k in keys], dtype=np.int64)
        except (TypeError, ValueError):
            raise MetaalError("label keys must be integer pool indices") from None
        raw = list(labels.values())
        where_labels = "labels"
    else:
        idx, raw = read_labels_csv(labels, pool.paths)
        where_labels = str(labels)
    idx = check_labelled(idx, len(pool), where_labels)
    classes, y = encode_labels(raw)
    if len(classes) < 2:
        found = f"only {classes[0]!r}" if classes else "none"
        raise MetaalError(f"{where_labels}: the labels need at least 2 classes to train a model (found {found})")
    return idx, y, classes


def select_next(
    data,
    labels,
    n: int = SelectConfig.n,
    strategy=SelectConfig.strategy,
    *,
    model: str = LearnerConfig.model,
    learner=None,
    seed: int = SelectConfig.seed,
    device: str = SelectConfig.device,
    budget: int | None = SelectConfig.budget,
    prefilter: int | None = SelectConfig.prefilter,
    label_column: str = SelectConfig.label_column,
    data_root: str | None = SelectConfig.data_root,
    download: bool = SelectConfig.download,
    trust_pickle: bool = False,
    out: str | Path | None = None,
) -> Selection:
    """Train metaal's learner on the labelled items of a pool and return the n items to label next.

    data: ``npz:PATH``, ``csv:PATH``, a folder of images, an array (N, D) / (N, C, H, W), or a task spec, or a
        ``Pool`` from ``load_pool``.
    labels: a CSV file with columns ``index,label`` or a mapping {index: label}; any hashable labels.
    learner: a ``LearnerConfig`` (default: ``LearnerConfig(model=model)``).
    budget: the number of labels you plan to have in total (tells the policy how far along the loop is;
        default: the labelled count plus n).
    trust_pickle: let a policy's pickle-based files load (they can run code; see ``load_policy``).
    out: where the caller will write the selection (checked with the rest, before the model trains).
    The order of the result depends only on the inputs and ``seed``.  Every problem with the inputs is
    reported together, before any training.
    """
    from metaal.errors import Problems
    from metaal.io import check_output_file
    from metaal.learners import Learner, derive_seed, resolve_device

    problems = Problems()
    if budget is not None and budget < 1:
        problems.add(f"--budget must be at least 1, got {budget}")
    if out is not None:
        with problems.check():
            check_output_file(out, "the selection")
    resolved = None
    with problems.check():
        resolved = resolve_strategy(strategy, device, trust_pickle)
    pool = None
    with problems.check():
        pool = data if isinstance(data, Pool) else load_pool(data, label_column=label_column, data_root=data_root,
                                                             download=download)
    if pool is not None:
        with problems.check():
            idx, y, classes = _read_labelled(labels, pool)
            _check_n(n, len(pool), len(idx))
    problems.raise_any()
    mean, std = pool_statistics(pool.X)
    cfg = learner or LearnerConfig(model=model)
    net = Learner(cfg, pool.input_shape, len(classes), seed=derive_seed(seed, 0x11), device=resolve_device(device))
    outputs = LearnerOutputs(net, pool.X, mean, std, classes)
    net.fit(outputs.rows(idx), y, round_seed=0)
    budget_used = None if not budget else min(1.0, len(idx) / budget)
    picked, s = _rank(outputs, idx, y, int(n), resolved, seed, prefilter, budget_used)
    p = outputs.proba(picked)
    return Selection(
        index=picked,
        score=s,
        strategy=_strategy_label(strategy, resolved),
        predicted=[classes[j] for j in p.argmax(1)],
        confidence=p.max(1),
        path=None if pool.paths is None else [pool.paths[i] for i in picked],
        info={"pool": len(pool), "labelled": len(idx), "classes": classes, "train_accuracy": net.train_accuracy,
              "model": net.kind},
        model=outputs,
    )


__all__ = [
    "DEFAULT_PREFILTER",
    "ArrayOutputs",
    "LearnerOutputs",
    "Pool",
    "PoolState",
    "Selection",
    "encode_labels",
    "load_image_folder",
    "load_pool",
    "rank_pool",
    "read_labels_csv",
    "select_next",
]
