"""Every named task with its size, class count and imbalance: what `metaal datasets` prints.

Stratifying the task split and choosing a suite both need these numbers, so they are computed from
the loaded arrays (after one-hot coding and dropped rows), never copied from a paper's table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metaal.errors import MetaalError
from metaal.tasks.dataset import Dataset
from metaal.tasks.keel import keel_index
from metaal.tasks.sources import SKLEARN_SETS

FAMILIES = ("sklearn", "keel", "keel-imbalanced")


@dataclass(frozen=True)
class TaskInfo:
    spec: str
    family: str
    items: int
    features: str  # "64" for tabular, "1x8x8" for images
    classes: int
    imbalance: float  # largest class count / smallest

    def row(self) -> dict:
        return {"spec": self.spec, "family": self.family, "items": self.items, "features": self.features,
                "classes": self.classes, "imbalance": round(self.imbalance, 2)}


def named_tasks(family: str | None = None) -> list[str]:
    """The specs of every fixed, bundled task (no download, no parameters), optionally of one family."""
    if family is not None and family not in FAMILIES:
        raise MetaalError(f"unknown task family '{family}' (choose from {', '.join(FAMILIES)})")
    specs = [f"sklearn:{n}" for n in SKLEARN_SETS] + [f"keel:{n}" for n in keel_index()]
    return [s for s in specs if family is None or family_of(s) == family]


def family_of(spec: str) -> str:
    prefix, _, name = spec.partition(":")
    if prefix == "keel":
        family = keel_index().get(name, ("balanced", ""))[0]
        return "keel" if family == "balanced" else "keel-imbalanced"
    return prefix


def describe(dataset: Dataset) -> TaskInfo:
    counts = np.bincount(dataset.y, minlength=dataset.n_classes)
    features = "x".join(map(str, dataset.X.shape[1:])) if dataset.is_image else str(dataset.X.shape[1])
    return TaskInfo(dataset.spec, family_of(dataset.spec), len(dataset.y), features, dataset.n_classes,
                    float(counts.max() / max(counts.min(), 1)))


def task_infos(specs: list[str]) -> list[TaskInfo]:
    """Load each spec (bundled sets only: a few seconds for all 148) and describe it."""
    from metaal.tasks import load_dataset

    return [describe(load_dataset(s)) for s in specs]
