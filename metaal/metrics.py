"""Learning-curve metrics and across-seed statistics (definitions tested on hand-computed curves)."""

from __future__ import annotations

import math

import numpy as np


def aulc(accuracy) -> float:
    """Area under the learning curve: mean test accuracy over all evaluation points (round 0 included)."""
    acc = np.asarray(accuracy, dtype=float)
    return float(acc.mean()) if len(acc) else float("nan")


def labels_to_reach(labels, accuracy, target: float) -> int | None:
    """Fewest labels at which the curve first reaches ``target``; None when it never does."""
    for n, a in zip(labels, accuracy):
        if a >= target - 1e-12:
            return int(n)
    return None


def mean_std_ci95(values) -> tuple[float, float, tuple[float, float]]:
    """Mean, sample std and a t-based 95% confidence interval of the mean."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan"), (float("nan"), float("nan"))
    mean = float(v.mean())
    if len(v) == 1:
        return mean, 0.0, (mean, mean)
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.975, len(v) - 1) * std / math.sqrt(len(v)))
    return mean, std, (mean - half, mean + half)


def win_tie_loss(a, b, tolerance: float = 0.002) -> tuple[int, int, int]:
    """Per-seed comparison of paired values: a wins when it beats b by more than ``tolerance``."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    return int((d > tolerance).sum()), int((np.abs(d) <= tolerance).sum()), int((d < -tolerance).sum())


def paired_test(a, b, alpha: float = 0.05) -> dict:
    """Two-sided paired t-test on per-seed values; verdict win/loss only when significant."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = a - b
    if len(d) < 2 or np.allclose(d, d[0]):
        p = 0.0 if len(d) >= 2 and d[0] != 0 else 1.0
    else:
        p = float(stats.ttest_rel(a, b).pvalue)
    mean = float(d.mean()) if len(d) else float("nan")
    verdict = "tie"
    if p < alpha and mean > 0:
        verdict = "win"
    elif p < alpha and mean < 0:
        verdict = "loss"
    return {"mean_difference": mean, "p_value": p, "verdict": verdict, "test": "paired t-test, two-sided, alpha=0.05"}


def accuracy_then_loss(loss_gain, acc_gain) -> np.ndarray:
    """Accuracy gain with the loss gain breaking its ties, along the last axis (float64).

    Accuracy gain is what AULC measures but it moves in steps of one validation item; the loss gain,
    scaled by its largest magnitude to stay below 1e-3 of such a step, orders the ties.  NaN in, NaN out."""
    loss = np.asarray(loss_gain, np.float64)
    acc = np.asarray(acc_gain, np.float64)
    spread = np.max(np.abs(np.where(np.isfinite(loss), loss, 0.0)), axis=-1, keepdims=True)
    return acc + 1e-3 * loss / np.where(spread > 0, spread, 1.0)
