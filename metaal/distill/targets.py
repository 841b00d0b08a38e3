"""Training targets from the oracle's gains: which gain is ranked, and within-step rank percentiles."""

from __future__ import annotations

import numpy as np

from metaal.metrics import accuracy_then_loss


def target_gain(steps: dict, target: str) -> np.ndarray:
    """The oracle gain the regressor ranks.

    Validation loss rewards confident, well-calibrated predictions as much as correct ones;
    accuracy gain is what AULC measures, but it is coarse, so loss gain breaks its ties.
    Without an accuracy gain (first-order oracle) the loss gain is used.
    """
    return ranked_gain(steps["oracle_gain"], steps["oracle_acc_gain"], target)

def ranked_gain(loss, acc, target: str) -> np.ndarray:
    """``target_gain`` from the loss and accuracy gains themselves (per candidate or per batch)."""
    loss = np.asarray(loss, np.float64)
    if target == "loss":
        return loss
    acc = np.asarray(acc, np.float64)
    return np.where(np.isfinite(acc), accuracy_then_loss(loss, acc), loss)

def rank_percentiles(gain: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Within-step rank percentile of each valid gain (0 = worst, 1 = best, ties averaged; 0.5 if alone)."""
    from scipy.stats import rankdata

    valid = valid & np.isfinite(gain)
    g = np.where(valid, gain, -np.inf).astype(np.float64)
    ranks = rankdata(g, axis=1, method="average")  # masked (-inf) take the lowest ranks
    n_masked = (~valid).sum(1, keepdims=True)
    n_valid = valid.sum(1, keepdims=True)
    pct = (ranks - n_masked - 1) / np.maximum(n_valid - 1, 1)
    pct = np.where(n_valid > 1, pct, 0.5)
    return np.where(valid, pct, 0.0).astype(np.float32)
