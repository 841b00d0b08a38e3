"""A few tasks of a group of the task split, chosen by a written rule: what `metaal run`'s default study uses.

The full study runs every task of a group; a default that must finish in minutes on a laptop runs a
subset.  The subset is chosen from the split file and the tasks' sizes only -- never from any result on
held-out tasks -- so that it cannot be tuned to make the policy look good.

The rule (``study_subset``):

1. Candidates: the tasks of the group, optionally only those whose spec starts with ``prefix``
   (``"keel:"``: the default study learns from KEEL sets only), that fit the study: a pool of at least
   ``min_pool`` rows under the study's split (seed 0) and a smallest class of at least ``min_class`` rows.
2. A seeded order: every candidate gets a number from ``random.Random(seed)`` in sorted-name order.
3. Twins count once: of each twin unit (``[twins]`` of the split file; a task outside them is its own
   unit) only the first candidate in the seeded order is kept, so that no family (19 ``ecoli-*``
   binarisations) fills the subset.
4. Stratified like the split: each kept task's stratum is the split's (size < 500, < 2000, more;
   classes 2, 3-5, 6 or more; imbalance < 3, < 10, 10 or more), the strata get a seeded order too, and
   the tasks are dealt round-robin over the strata: the first of every stratum, then the second of
   every stratum, ...  Any prefix of the order is as spread over the strata as its length allows.
5. ``first`` (tasks that must be in, e.g. sklearn:digits and sklearn:breast_cancer) go in front, and
   their twin units are not used again; then the order of step 4.  The subset is the first ``n``.

``n`` (and the pool caps) is the only setting left: the default study takes the largest ``n`` that
keeps `metaal run` within its time budget (docs/run-study.md), measured, not chosen by results.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from metaal.errors import MetaalError
from metaal.tasks.splits import TaskSplits

SUBSET_SEED = 20261204  # the split file's own seed ([rule] seed), fixed before any run


@dataclass(frozen=True)
class SubsetStats:
    spec: str
    items: int
    classes: int
    imbalance: float
    pool: int
    smallest: int

    def stratum(self) -> tuple[int, int, int]:
        """The task split's strata (the rule of scripts/make_splits.py, which uses this class): size, class count,
        imbalance."""
        size = 0 if self.items < 500 else 1 if self.items < 2000 else 2
        classes = 0 if self.classes == 2 else 1 if self.classes <= 5 else 2
        imbalance = 0 if self.imbalance < 3 else 1 if self.imbalance < 10 else 2
        return size, classes, imbalance


def subset_stats(spec: str, split=None) -> SubsetStats:
    """Size, classes and imbalance of the whole set; pool under ``split`` at seed 0 (pool caps apply)."""
    from metaal.tasks import load_dataset, make_task

    ds = load_dataset(spec)
    counts = np.bincount(ds.y, minlength=ds.n_classes)
    pool = len(make_task(ds, 0, split).pool)
    return SubsetStats(spec, len(ds.y), ds.n_classes, float(counts.max() / max(counts.min(), 1)), pool, int(counts.min()))


def study_order(splits: TaskSplits, group: str, *, seed: int = SUBSET_SEED, first: tuple[str, ...] | list[str] = (),
                prefix: str | None = None, min_pool: int = 0, min_class: int = 1, split=None, stats=None) -> list[str]:
    """Every kept task of ``group`` in the rule's order (module docstring); ``stats`` maps spec -> SubsetStats
    (computed when missing: loads each candidate)."""
    members = splits.suite(group)
    missing = [t for t in first if t not in members]
    if missing:
        raise MetaalError(f"{missing[0]} is not in the task split's group '{group}'")
    unit = {t: name for name, twins in splits.twins.items() for t in twins}
    candidates = sorted(t for t in members if prefix is None or t.startswith(prefix) or t in first)
    stats = dict(stats or {})
    for t in candidates:
        if t not in stats:
            stats[t] = subset_stats(t, split)
    rng = random.Random(seed)
    order = {t: rng.random() for t in candidates}
    taken_units = {unit.get(t, t) for t in first}
    kept: dict[str, str] = {}  # unit -> its first fitting candidate in the seeded order
    for t in sorted(candidates, key=order.get):
        u = unit.get(t, t)
        if u in taken_units or u in kept:
            continue
        if stats[t].pool >= min_pool and stats[t].smallest >= min_class and (prefix is None or t.startswith(prefix)):
            kept[u] = t
    strata = sorted({stats[t].stratum() for t in kept.values()})
    stratum_order = {s: rng.random() for s in strata}
    rank: dict[str, int] = {}
    seen: dict[tuple, int] = {}
    for t in sorted(kept.values(), key=order.get):
        s = stats[t].stratum()
        rank[t] = seen.get(s, 0)
        seen[s] = rank[t] + 1
    dealt = sorted(kept.values(), key=lambda t: (rank[t], stratum_order[stats[t].stratum()], order[t]))
    return [*first, *dealt]


def study_subset(splits: TaskSplits, group: str, n: int, **rule) -> list[str]:
    """The first ``n`` tasks of ``study_order`` (an error if the group has fewer)."""
    order = study_order(splits, group, **rule)
    if n < 1 or n > len(order):
        raise MetaalError(f"a subset of {n} tasks of '{group}': the rule keeps {len(order)}")
    return order[:n]
