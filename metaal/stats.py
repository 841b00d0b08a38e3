"""Statistics over tasks for `metaal benchmark`: is a strategy better across tasks, not on one task.

A task is the unit of replication (Demšar, 2006): per-seed results are first averaged within a task,
then strategies are compared over tasks by mean rank with the Friedman test and Nemenyi's
critical difference, and the reference against each baseline by Wilcoxon's signed-rank test with
Holm's correction.  Per task, a baseline against the reference over paired seeds (Wilcoxon, Holm
over tasks) says on how many tasks it wins significantly.  The tests are scipy's, Holm is
statsmodels', Nemenyi and the diagram scikit-posthocs': nothing here is hand-written statistics.
"""

from __future__ import annotations

import math

import numpy as np

from metaal.metrics import win_tie_loss

TIE = 0.002  # a difference in mean AULC within ±TIE is a tie (the per-seed tolerance of transfer-eval's W/T/L)
EARLY_ROUNDS = 3  # early AULC: round 0 and the first three query rounds; late AULC: every later round
ALPHA = 0.05


def early_late(accuracy) -> tuple[float, float]:
    """(early, late) AULC of one curve: mean accuracy over points 0..EARLY_ROUNDS, and over the points after."""
    acc = np.asarray(accuracy, dtype=float)
    late = acc[EARLY_ROUNDS + 1:]
    return float(acc[: EARLY_ROUNDS + 1].mean()), float(late.mean()) if len(late) else float("nan")


def per_seed(runs: list[dict], tasks: list[str], strategies: list[str], key: str = "aulc") -> np.ndarray:
    """(tasks, strategies, seeds) array of a run metric (``aulc``, ``early``, ``late`` or ``final_accuracy``),
    seeds in sorted order; NaN where a run is missing."""
    seeds = sorted({r["seed"] for r in runs})
    t_of, s_of, k_of = ({v: i for i, v in enumerate(x)} for x in (tasks, strategies, seeds))
    out = np.full((len(tasks), len(strategies), len(seeds)), np.nan)
    for r in runs:
        if r["task"] in t_of and r["strategy"] in s_of:
            if key in ("early", "late"):
                value = early_late(r["accuracy"])[key == "late"]
            else:
                value = r[key]
            out[t_of[r["task"]], s_of[r["strategy"]], k_of[r["seed"]]] = value
    return out


def task_means(cube: np.ndarray) -> np.ndarray:
    """(tasks, strategies) mean over seeds, ignoring missing seeds."""
    with np.errstate(invalid="ignore"):
        counts = np.isfinite(cube).sum(-1)
        sums = np.where(np.isfinite(cube), cube, 0.0).sum(-1)
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def normalised(table: np.ndarray, strategies: list[str], low: str = "random", high: str = "oracle") -> np.ndarray | None:
    """(strategy - random) / (oracle - random) per task: 0 is random, 1 the oracle; None when either did not run.
    A task where the oracle does not beat random (no room to gain) is NaN."""
    if low not in strategies or high not in strategies:
        return None
    lo, hi = table[:, [strategies.index(low)]], table[:, [strategies.index(high)]]
    span = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(span > 0, (table - lo) / np.where(span > 0, span, 1.0), np.nan)


def ranks(table: np.ndarray) -> np.ndarray:
    """Rank of each strategy within each task, 1 = highest value, ties share their mean rank (scipy rankdata)."""
    from scipy.stats import rankdata

    return np.vstack([rankdata(-row, method="average") for row in table]) if len(table) else np.zeros((0, table.shape[1]))


def friedman(table: np.ndarray) -> dict | None:
    """Friedman's test that all strategies rank alike over tasks (scipy); None with < 3 strategies or < 2 tasks."""
    from scipy.stats import friedmanchisquare

    n, k = table.shape
    if k < 3 or n < 2:
        return None
    res = friedmanchisquare(*table.T)
    return {"statistic": float(res.statistic), "p_value": float(res.pvalue), "n_tasks": n, "n_strategies": k}


def nemenyi(table: np.ndarray, strategies: list[str]):
    """Nemenyi's post-hoc p-values for every pair of strategies (scikit-posthocs), as a DataFrame."""
    import pandas as pd
    import scikit_posthocs as sp

    return sp.posthoc_nemenyi_friedman(pd.DataFrame(table, columns=strategies))


def critical_difference(n_tasks: int, n_strategies: int, alpha: float = ALPHA) -> float:
    """Nemenyi's critical difference of mean ranks: q_alpha * sqrt(k (k + 1) / (6 N)), q from the studentised range."""
    from scipy.stats import studentized_range

    q = studentized_range.ppf(1 - alpha, n_strategies, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(n_strategies * (n_strategies + 1) / (6.0 * n_tasks)))


def holm(p_values) -> list[float]:
    """Holm-adjusted p-values (statsmodels' multipletests); NaN stays NaN."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out.tolist()


def wilcoxon(a, b, alternative: str = "two-sided") -> float:
    """Wilcoxon's signed-rank p of paired values a vs b (scipy; zero differences dropped, as Wilcoxon did);
    1.0 when every difference is zero, NaN with fewer than two pairs."""
    from scipy.stats import wilcoxon as scipy_wilcoxon

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return float("nan")
    if not np.any(d != 0):
        return 1.0
    return float(scipy_wilcoxon(d, alternative=alternative).pvalue)


def versus_reference(table: np.ndarray, strategies: list[str], reference: str, tie: float = TIE) -> list[dict]:
    """The reference against each other strategy over tasks (one mean AULC per task): mean difference, win/tie/loss
    (ties within ±``tie``), Wilcoxon two-sided and one-sided ("reference > baseline") p, each Holm-corrected over
    the baselines."""
    r = strategies.index(reference)
    rows = []
    for j, name in enumerate(strategies):
        if j == r:
            continue
        a, b = table[:, r], table[:, j]
        ok = np.isfinite(a) & np.isfinite(b)
        rows.append({"baseline": name, "n_tasks": int(ok.sum()), "mean_difference": float(np.mean(a[ok] - b[ok])) if ok.any() else float("nan"),
                     "win_tie_loss": list(win_tie_loss(a[ok], b[ok], tie)),
                     "p_two_sided": wilcoxon(a[ok], b[ok]), "p_greater": wilcoxon(a[ok], b[ok], "greater")})
    for key in ("p_two_sided", "p_greater"):
        for row, p in zip(rows, holm([row[key] for row in rows])):
            row[f"{key}_holm"] = p
    return rows


def per_task_significance(cube: np.ndarray, tasks: list[str], strategies: list[str], reference: str,
                          alpha: float = ALPHA) -> list[dict]:
    """Each baseline against the reference on each task over paired seeds (Wilcoxon two-sided, Holm over tasks):
    the tasks where the baseline is significantly better or worse, and their share of the tasks."""
    r = strategies.index(reference)
    rows = []
    for j, name in enumerate(strategies):
        if j == r:
            continue
        p = [wilcoxon(cube[t, j], cube[t, r]) for t in range(len(tasks))]
        adj = holm(p)
        diff = [float(np.nanmean(cube[t, j] - cube[t, r])) for t in range(len(tasks))]
        better = [tasks[t] for t in range(len(tasks)) if adj[t] < alpha and diff[t] > 0]
        worse = [tasks[t] for t in range(len(tasks)) if adj[t] < alpha and diff[t] < 0]
        rows.append({"baseline": name, "better_on": better, "worse_on": worse,
                     "share_better": len(better) / len(tasks) if tasks else float("nan"),
                     "p_holm": dict(zip(tasks, adj))})
    return rows


def round_difference(runs: list[dict], tasks: list[str], a: str, b: str) -> tuple[list[int], np.ndarray] | None:
    """Per round, a's minus b's test accuracy, mean over paired seeds, for each task: (labels of task 0, (tasks,
    rounds) array).  None when either strategy is missing on a task or the tasks' curves differ in length."""
    rows, labels = [], None
    for task in tasks:
        mine = {(r["strategy"], r["seed"]): r for r in runs if r["task"] == task}
        seeds = sorted(s for (name, s) in mine if name == a and (b, s) in mine)
        if not seeds:
            return None
        d = np.mean([np.subtract(mine[(a, s)]["accuracy"], mine[(b, s)]["accuracy"]) for s in seeds], axis=0)
        if rows and len(d) != len(rows[0]):
            return None
        rows.append(d)
        labels = labels or list(mine[(a, seeds[0])]["labels"])
    return labels, np.vstack(rows)
