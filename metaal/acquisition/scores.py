"""Uncertainty scores on probability matrices: pure numpy, higher means "query first".

Kept apart from the strategies so that features, heuristics and tests share one definition.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-12


def least_confidence(proba: np.ndarray) -> np.ndarray:
    return 1.0 - proba.max(axis=1)


def margin(proba: np.ndarray) -> np.ndarray:
    """Gap between the two most likely classes (small = uncertain)."""
    top2 = np.partition(proba, -2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def entropy(proba: np.ndarray) -> np.ndarray:
    return -(proba * np.log(np.clip(proba, _EPS, 1.0))).sum(axis=1)


def bald(mc_proba: np.ndarray) -> np.ndarray:
    """Mutual information between prediction and weights from MC-dropout samples (T, N, C)."""
    mean = mc_proba.mean(axis=0)
    return entropy(mean) - np.mean([entropy(p) for p in mc_proba], axis=0)
