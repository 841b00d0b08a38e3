"""Validated in-memory data sets and their seeded pool / oracle-validation / test splits."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from metaal.config import SplitConfig
from metaal.errors import MetaalError


@dataclass(frozen=True)
class Dataset:
    """Arrays behind a task spec: ``X`` float32 (N, D) or (N, C, H, W), ``y`` int64 in 0..C-1."""

    spec: str
    X: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    info: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_image(self) -> bool:
        return self.X.ndim == 4


def validate_arrays(spec: str, X, y) -> Dataset:
    """Turn raw arrays into a Dataset or raise a one-line MetaalError naming the problem."""
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim == 3:  # (N, H, W) greyscale images
        X = X[:, None]
    if X.ndim not in (2, 4):
        raise MetaalError(f"{spec}: X must have shape (N, D) or (N, C, H, W), got {X.shape}")
    if y.ndim != 1:
        raise MetaalError(f"{spec}: y must be one-dimensional, got shape {y.shape}")
    if len(X) != len(y):
        raise MetaalError(f"{spec}: X has {len(X)} rows but y has {len(y)}")
    if len(X) == 0:
        raise MetaalError(f"{spec}: the data set is empty")
    if X.dtype == np.uint8:
        X = X.astype(np.float32) / 255.0
    elif not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise MetaalError(f"{spec}: X must be numeric, got dtype {X.dtype}")
    X = X.astype(np.float32, copy=False)
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X)).reshape(len(X), -1).any(axis=1).sum())
        raise MetaalError(f"{spec}: X contains NaN or infinite values in {bad} rows")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or not np.all(y == np.round(y)):
            raise MetaalError(f"{spec}: labels y must be integers or strings, got non-integer floats")
        y = y.astype(np.int64)
    if y.dtype.kind not in "iuUSOb":
        raise MetaalError(f"{spec}: labels y must be integers or strings, got dtype {y.dtype}")
    classes, y_codes = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise MetaalError(f"{spec}: needs at least 2 classes, found {len(classes)}")
    return Dataset(spec, X, y_codes.astype(np.int64), tuple(str(c) for c in classes))


@dataclass(frozen=True)
class Task:
    """One seeded instance of a data set: standardised arrays and disjoint index splits.

    ``val`` is the oracle-validation split (the lookahead expert may read its labels);
    ``test`` is only ever used to report accuracy.
    """

    spec: str
    seed: int
    X: np.ndarray
    y: np.ndarray
    pool: np.ndarray
    val: np.ndarray
    test: np.ndarray
    class_names: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.X.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.X.ndim == 4


def _stratified_take(rng: np.random.Generator, idx: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """Take n of idx with class proportions kept (at least one per class when possible)."""
    if n >= len(idx):
        return idx.copy()
    classes, counts = np.unique(y[idx], return_counts=True)
    quota = np.floor(counts / counts.sum() * n).astype(int)
    quota = np.maximum(quota, np.minimum(1, counts))
    while quota.sum() > n:
        quota[np.argmax(quota)] -= 1
    remainder = n - quota.sum()
    spare = counts - quota
    while remainder > 0:  # hand out the rest by largest spare capacity
        j = int(np.argmax(spare))
        quota[j] += 1
        spare[j] -= 1
        remainder -= 1
    taken = [rng.permutation(idx[y[idx] == c])[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(taken))


def make_task(dataset: Dataset, seed: int, config: SplitConfig | None = None, *, min_pool: int = 0) -> Task:
    """Split stratified by seed and standardise with pool statistics only."""
    config = config or SplitConfig()
    n = len(dataset.y)
    rng = np.random.default_rng([seed, 0x5EED])
    all_idx = np.arange(n)
    n_test = min(config.max_test, max(dataset.n_classes, int(round(n * config.test_fraction))))
    n_val = min(config.max_val, max(dataset.n_classes, int(round(n * config.val_fraction))))
    if n - n_test - n_val < max(min_pool, 2 * dataset.n_classes):
        need = max(min_pool, 2 * dataset.n_classes) + n_test + n_val
        raise MetaalError(
            f"{dataset.spec}: too few samples for the split: {n} samples, need at least {need} "
            f"({n_test} test + {n_val} validation + {max(min_pool, 2 * dataset.n_classes)} pool)"
        )
    test = _stratified_take(rng, all_idx, dataset.y, n_test)
    rest = np.setdiff1d(all_idx, test)
    val = _stratified_take(rng, rest, dataset.y, n_val)
    pool = np.setdiff1d(rest, val)
    # A loader may suggest a cap for its big sets (keel: 5000); an explicit SplitConfig.max_pool wins.
    max_pool = config.max_pool if config.max_pool is not None else dataset.info.get("max_pool")
    if max_pool is not None and len(pool) > max_pool:
        pool = _stratified_take(rng, pool, dataset.y, max_pool)
    X = _standardise(dataset.X, pool)
    order = np.concatenate([pool, val, test])  # contiguous layout: pool first
    X, y = X[order], dataset.y[order]
    n_pool, n_val = len(pool), len(val)
    return Task(
        spec=dataset.spec,
        seed=seed,
        X=X,
        y=y,
        pool=np.arange(n_pool),
        val=np.arange(n_pool, n_pool + n_val),
        test=np.arange(n_pool + n_val, len(order)),
        class_names=dataset.class_names,
    )


def _standardise(X: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Per feature (tabular) or per channel (images), from pool rows only, so no test leakage."""
    axes = (0,) if X.ndim == 2 else (0, 2, 3)
    ref = X[pool]
    mean = ref.mean(axis=axes, keepdims=True)
    std = ref.std(axis=axes, keepdims=True)
    std = np.where(std < 1e-8, 1.0, std)
    return ((X - mean) / std).astype(np.float32)
