"""How the learned policy compares: paired win/tie/loss against every baseline, ranks,
share of the oracle-over-random gap recovered, and labels saved against random."""

from __future__ import annotations

import numpy as np

from metaal.metrics import paired_test, win_tie_loss

POLICY, ORACLE, REFERENCE = "policy", "oracle", "random"


def _aulc_by_seed(runs, task, name):
    return {r["seed"]: r["aulc"] for r in runs if r["task"] == task and r["strategy"] == name}


def policy_comparison(runs: list[dict], summary: list[dict], tasks: list[str], strategies: list[str]) -> dict:
    competitors = [s for s in strategies if s != ORACLE]
    per_task = []
    for task in tasks:
        mine = _aulc_by_seed(runs, task, POLICY)
        if not mine:
            continue
        rows = {r["strategy"]: r for r in summary if r["task"] == task}
        vs = {}
        for base in competitors:
            if base == POLICY:
                continue
            other = _aulc_by_seed(runs, task, base)
            seeds = sorted(set(mine) & set(other))
            a, b = [mine[s] for s in seeds], [other[s] for s in seeds]
            vs[base] = {"win_tie_loss": list(win_tie_loss(a, b)), **paired_test(a, b)}
        means = {s: rows[s]["aulc_mean"] for s in competitors if s in rows}
        order = sorted(means, key=lambda s: -means[s])
        ranks = {s: 1 + sum(means[o] > means[s] + 1e-12 for o in means) for s in means}
        entry = {"task": task, "vs": vs, "ranks": ranks, "policy_rank": ranks.get(POLICY), "order": order}
        if ORACLE in rows and REFERENCE in rows:
            gap = rows[ORACLE]["aulc_mean"] - rows[REFERENCE]["aulc_mean"]
            entry["oracle_gap"] = gap
            entry["gap_recovered"] = (means[POLICY] - rows[REFERENCE]["aulc_mean"]) / gap if abs(gap) > 1e-9 else None
        saved = []
        for r in runs:
            if r["task"] == task and r["strategy"] == POLICY and r.get("labels_to_random_final") is not None:
                saved.append(r["labels"][-1] - r["labels_to_random_final"])
        entry["labels_saved_mean"] = float(np.mean(saved)) if saved else None
        entry["labels_saved_reached"] = len(saved)
        entry["n_seeds"] = len(mine)
        per_task.append(entry)
    mean_ranks = {s: float(np.mean([t["ranks"][s] for t in per_task if s in t["ranks"]])) for s in competitors
                  if any(s in t["ranks"] for t in per_task)}
    recovered = [t["gap_recovered"] for t in per_task if t.get("gap_recovered") is not None]
    return {
        "tasks": per_task,
        "mean_rank": mean_ranks,
        "mean_gap_recovered": float(np.mean(recovered)) if recovered else None,
        "test": "paired t-test on per-seed AULC, two-sided, alpha=0.05; W/T/L per seed with tolerance 0.002",
    }


def policy_markdown(rep: dict) -> list[str]:
    out = ["## The learned policy", "", f"Test: {rep['test']}.", ""]
    if rep["mean_rank"]:
        ranks = ", ".join(f"{s} {r:.2f}" for s, r in sorted(rep["mean_rank"].items(), key=lambda kv: kv[1]))
        out += [f"Mean rank by AULC over tasks (1 = best, oracle excluded): {ranks}.", ""]
    if rep.get("mean_gap_recovered") is not None:
        out += [f"Share of the oracle-over-random AULC gap recovered by the policy, mean over tasks: "
                f"{rep['mean_gap_recovered']:.1%}.", ""]
    for t in rep["tasks"]:
        out.append(f"### {t['task']}: policy rank {t['policy_rank']} of {len(t['ranks'])}")
        extra = []
        if t.get("gap_recovered") is not None:
            extra.append(f"oracle gap recovered {t['gap_recovered']:.1%} (gap {t['oracle_gap']:.4f})")
        if t["labels_saved_mean"] is not None:
            extra.append(f"labels saved vs random to reach random's final accuracy: {t['labels_saved_mean']:.1f} "
                         f"(reached in {t['labels_saved_reached']}/{t['n_seeds']} seeds)")
        else:
            extra.append("never reached random's final accuracy")
        out += ["", "; ".join(extra) + ".", "", "| baseline | W/T/L (seeds) | mean AULC diff | p | verdict |", "|---|---|---|---|---|"]
        for base, v in t["vs"].items():
            out.append(f"| {base} | {'/'.join(map(str, v['win_tie_loss']))} | {v['mean_difference']:+.4f} | "
                       f"{v['p_value']:.3f} | {v['verdict']} |")
        out.append("")
    return out
