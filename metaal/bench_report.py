"""Across-task results of `metaal benchmark`: benchmark.json, benchmark.md, cd_diagram.png and the
policy-minus-margin plot, written beside transfer-eval's per-task files from the same runs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from metaal import stats
from metaal.io import atomic_output, atomic_write_json, atomic_write_text, provenance

BENCH_FORMAT = "metaal-benchmark"
BENCH_VERSION = 1
JSON_FILE, REPORT_FILE, CD_FILE, ROUNDS_FILE = "benchmark.json", "benchmark.md", "cd_diagram.png", "policy_minus_margin.png"
UNITS_CD_FILE = "cd_diagram_units.png"


def twin_units(tasks: list[str], twins: dict[str, list[str]]) -> dict[str, list[str]] | None:
    """Tasks grouped into their twin units (the split file's ``[twins]``: the same data under several names), in
    task order; a task without twins is its own unit.  None when no two of ``tasks`` are twins."""
    unit_of = {t: name for name, members in twins.items() for t in members}
    units: dict[str, list[str]] = {}
    for t in tasks:
        units.setdefault(unit_of.get(t, t), []).append(t)
    if all(len(members) == 1 for members in units.values()):
        return None
    return {(members[0] if len(members) == 1 else f"{name} ({len(members)} tasks)"): members
            for name, members in units.items()}


def merge_units(runs: list[dict], units: dict[str, list[str]]) -> list[dict]:
    """One run per (unit, strategy, seed): the mean of its twin tasks' runs (accuracy by round, AULC, final
    accuracy), so that data sets counted under several names weigh once in every statistic over tasks.  A unit
    whose tasks do not all have the run is left without it."""
    by_key = {(r["task"], r["strategy"], r["seed"]): r for r in runs}
    merged = []
    for unit, members in units.items():
        for strategy, seed in dict.fromkeys((r["strategy"], r["seed"]) for r in runs if r["task"] in members):
            parts = [by_key.get((t, strategy, seed)) for t in members]
            if any(p is None for p in parts) or len({len(p["accuracy"]) for p in parts}) > 1:
                continue
            merged.append({"task": unit, "strategy": strategy, "seed": seed, "labels": list(parts[0]["labels"]),
                           "accuracy": np.mean([p["accuracy"] for p in parts], axis=0).tolist(),
                           "aulc": float(np.mean([p["aulc"] for p in parts])),
                           "final_accuracy": float(np.mean([p["final_accuracy"] for p in parts]))})
    return merged


def default_reference(strategies: list[str]) -> str | None:
    """The policy when it ran, else margin (the heuristic a learned policy has to beat), else None."""
    return next((s for s in ("policy", "margin") if s in strategies), None)


def across_tasks(runs: list[dict], tasks: list[str], strategies: list[str], reference: str) -> dict:
    """Every statistic over tasks, as plain JSON-able values.  The oracle (it reads true labels) is a ceiling for
    normalisation, not a competitor: it is left out of ranks and tests."""
    compared = [s for s in strategies if s != "oracle"]
    cube = stats.per_seed(runs, tasks, compared)
    table = stats.task_means(cube)
    complete = np.isfinite(table).all(1)
    full, full_tasks = table[complete], [t for t, ok in zip(tasks, complete) if ok]
    rank = stats.ranks(full)
    out: dict = {
        "tasks": tasks, "strategies": compared, "reference": reference, "n_seeds": int(cube.shape[-1]),
        "tie": stats.TIE, "alpha": stats.ALPHA, "early_rounds": stats.EARLY_ROUNDS,
        "aulc": {t: dict(zip(compared, _floats(row))) for t, row in zip(tasks, table)},
        "ranked_tasks": full_tasks,
        "mean_rank": dict(zip(compared, _floats(rank.mean(0)))) if len(full) else {},
        "friedman": stats.friedman(full),
        "critical_difference": stats.critical_difference(len(full), len(compared)) if len(full) and len(compared) > 1 else None,
        "versus_reference": stats.versus_reference(table, compared, reference),
        "per_task_significance": stats.per_task_significance(cube, tasks, compared, reference),
    }
    if len(full) >= 2 and len(compared) >= 3:
        out["nemenyi"] = {a: dict(zip(compared, _floats(row))) for a, row in zip(compared, stats.nemenyi(full, compared).to_numpy())}
    for part in ("early", "late"):
        t = stats.task_means(stats.per_seed(runs, tasks, compared, key=part))
        ok = np.isfinite(t).all(1)
        out[f"{part}_aulc"] = {"mean": dict(zip(compared, _floats(_nanmean(t)))),
                               "mean_rank": dict(zip(compared, _floats(stats.ranks(t[ok]).mean(0)))) if ok.any() else {}}
    with_oracle = stats.task_means(stats.per_seed(runs, tasks, strategies))
    norm = stats.normalised(with_oracle, strategies)
    if norm is not None:
        out["normalised_aulc"] = {"per_task": {t: dict(zip(strategies, _floats(row))) for t, row in zip(tasks, norm)},
                                  "mean": dict(zip(strategies, _floats(_nanmean(norm)))),
                                  "median": dict(zip(strategies, _floats(_nanmean(norm, np.nanmedian))))}
    diff = stats.round_difference(runs, tasks, "policy", "margin") if {"policy", "margin"} <= set(strategies) else None
    if diff is not None:
        labels, d = diff
        out["policy_minus_margin"] = {"labels": labels, "mean": _floats(d.mean(0)), "min": _floats(d.min(0)),
                                      "max": _floats(d.max(0)), "tasks_above": [int(x) for x in (d > 0).sum(0)]}
    return out


def _nanmean(table: np.ndarray, fn=np.nanmean) -> np.ndarray:
    """Column mean (or ``fn``) over tasks ignoring NaN; NaN, without a warning, for an all-NaN column (no late rounds)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(table, 0)


def _floats(values) -> list:
    """JSON-safe floats (NaN -> None)."""
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v) for v in np.asarray(values, float).tolist()]


def plot_cd(path: Path, bench: dict) -> None:
    """The critical-difference diagram (scikit-posthocs, Nemenyi p-values): strategies on the mean-rank axis, a bar
    joins those whose ranks do not differ significantly."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import scikit_posthocs as sp

    names = bench["strategies"]
    fig, ax = plt.subplots(figsize=(7.5, 0.6 + 0.32 * len(names)), dpi=120)
    if "nemenyi" in bench:
        sig = pd.DataFrame([[bench["nemenyi"][a][b] for b in names] for a in names], index=names, columns=names)
        sp.critical_difference_diagram(pd.Series(bench["mean_rank"]), sig.fillna(1.0), ax=ax)
        fr = bench["friedman"]
        ax.set_title(f"mean rank over {len(bench['ranked_tasks'])} tasks (1 = best AULC); Friedman p = {fr['p_value']:.3g}, "
                     f"Nemenyi CD = {bench['critical_difference']:.2f}", fontsize=8)
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, "a critical-difference diagram needs >= 2 tasks and >= 3 strategies", ha="center", va="center")
    _save(fig, path)


def plot_round_difference(path: Path, bench: dict) -> None:
    """Policy minus margin test accuracy by labelled-set size: mean over tasks, with the range over tasks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = bench["policy_minus_margin"]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.fill_between(d["labels"], d["min"], d["max"], alpha=0.15, label="range over tasks")
    ax.plot(d["labels"], d["mean"], marker="o", markersize=3, label=f"mean over {len(bench['tasks'])} tasks")
    ax.set_xlabel("labelled examples")
    ax.set_ylabel("policy − margin test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _p(p) -> str:
    return "–" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{p:.3g}"


def _f(x, digits: int = 4) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def benchmark_markdown(bench: dict, config: dict, suite: str | None) -> str:
    names, ref = bench["strategies"], bench["reference"]
    loop = config["loop"]
    out = [
        "# metaal benchmark", "",
        f"Suite: {suite or 'the tasks given'} ({len(bench['tasks'])} tasks). Seeds per task: {bench['n_seeds']} "
        f"(paired: the same split, initial set and model initialisation for every strategy). Initial {loop['initial']}, "
        f"budget {loop['budget']}, query size {loop['query_size']}, model {config['learner']['model']}. "
        f"Reference: **{ref}**. Per-task curves and tables: report.md beside this file.", "",
        "AULC = mean test accuracy over the rounds (round 0 included), averaged over seeds within a task; tasks are the "
        f"unit of every test below. Ties: mean AULC within ±{bench['tie']}. Significance level {bench['alpha']}.", "",
    ]
    out += _ranks_and_tests(bench, CD_FILE, "tasks")
    if "over_units" in bench:
        u = bench["over_units"]
        twins = "; ".join(f"{name}: {', '.join(members)}" for name, members in u["units"].items() if len(members) > 1)
        out += ["## Over twin units", "",
                f"The same data under several names (the split's twins: {twins}) would count several times over tasks. "
                f"Here each twin unit counts once: its tasks' runs are averaged per strategy and seed, giving "
                f"{len(u['units'])} units.", ""]
        out += _ranks_and_tests(u, UNITS_CD_FILE, "units", level=3)
    out += ["## Early and late AULC", "",
            f"Early: round 0 and the first {bench['early_rounds']} query rounds; late: every later round. "
            "Mean over tasks (mean rank over tasks in brackets).", "",
            "| strategy | early AULC | late AULC |", "|---|---|---|"]
    for s in names:
        e, la = bench["early_aulc"], bench["late_aulc"]
        out.append(f"| {s} | {_f(e['mean'].get(s))} ({_f(e['mean_rank'].get(s), 2)}) | "
                   f"{_f(la['mean'].get(s))} ({_f(la['mean_rank'].get(s), 2)}) |")
    out.append("")
    if "normalised_aulc" in bench:
        n = bench["normalised_aulc"]
        out += ["## Normalised AULC", "", "(strategy − random) / (oracle − random) per task: 0 = random, 1 = the oracle "
                "(it reads true labels: a ceiling). Tasks where the oracle does not beat random are left out.", "",
                "| strategy | mean | median |", "|---|---|---|"]
        out += [f"| {s} | {_f(n['mean'][s], 3)} | {_f(n['median'][s], 3)} |" for s in n["mean"]] + [""]
    if "policy_minus_margin" in bench:
        d = bench["policy_minus_margin"]
        out += ["## Policy minus margin by round", "", f"![policy minus margin]({ROUNDS_FILE})", "",
                "| labelled | mean Δ accuracy | tasks where policy is ahead |", "|---|---|---|"]
        out += [f"| {n} | {m:+.4f} | {a}/{len(bench['tasks'])} |" for n, m, a in zip(d["labels"], d["mean"], d["tasks_above"])]
        out.append("")
    out += ["## AULC per task", "", "Mean over seeds; the best of each task in bold.", "",
            "| task | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for t in bench["tasks"]:
        row = bench["aulc"][t]
        best = max((v for v in row.values() if v is not None), default=None)
        cells = [("**" + _f(row[s]) + "**") if row[s] is not None and row[s] == best else _f(row[s]) for s in names]
        out.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _ranks_and_tests(bench: dict, cd_file: str, unit: str, level: int = 2) -> list[str]:
    """Mean ranks, Friedman and the CD diagram, then the reference against each baseline, over ``unit``s."""
    ref, h = bench["reference"], "#" * level
    out = [f"{h} Mean rank over {unit}", ""]
    fr = bench["friedman"]
    if bench["mean_rank"]:
        order = sorted(bench["mean_rank"], key=lambda s: bench["mean_rank"][s])
        out += ["| strategy | mean rank |", "|---|---|"] + [f"| {s} | {bench['mean_rank'][s]:.2f} |" for s in order] + [""]
    if fr:
        out += [f"Friedman χ² = {fr['statistic']:.2f} over {fr['n_tasks']} {unit} and {fr['n_strategies']} strategies, "
                f"p = {_p(fr['p_value'])}; Nemenyi critical difference of mean ranks {bench['critical_difference']:.2f} "
                "(α = 0.05): strategies joined by a bar in the diagram do not differ significantly.", "",
                f"![critical-difference diagram]({cd_file})", ""]
    else:
        out += ["Friedman test and diagram need at least 2 tasks with every strategy and at least 3 strategies.", ""]
    out += [f"{h} {ref} against each baseline over {unit}", "",
            f"Wilcoxon signed-rank test over {unit} (scipy), Holm-corrected over the baselines (statsmodels). "
            f"One-sided: H1 \"{ref} > baseline\". W/T/L: {unit} where {ref}'s mean AULC is higher / within the tie "
            "threshold / lower. Tasks where the baseline is significantly better (worse): Wilcoxon over the paired "
            f"seeds of that task, Holm-corrected over {unit}.", "",
            f"| baseline | mean Δ AULC ({ref} − baseline) | W/T/L | p two-sided (Holm) | p one-sided (Holm) | "
            f"{unit} baseline significantly better | {unit} significantly worse |", "|---|---|---|---|---|---|---|"]
    per_task = {r["baseline"]: r for r in bench["per_task_significance"]}
    for r in bench["versus_reference"]:
        pt = per_task[r["baseline"]]
        out.append(f"| {r['baseline']} | {_f(r['mean_difference'])} | {'/'.join(map(str, r['win_tie_loss']))} | "
                   f"{_p(r['p_two_sided'])} ({_p(r['p_two_sided_holm'])}) | {_p(r['p_greater'])} ({_p(r['p_greater_holm'])}) | "
                   f"{len(pt['better_on'])} ({100 * pt['share_better']:.0f}%) | {len(pt['worse_on'])} |")
    worst = max(bench["per_task_significance"], key=lambda r: r["share_better"], default=None)
    if worst is not None:
        out += ["", f"The most {unit} on which one baseline beats {ref} significantly: {len(worst['better_on'])} of "
                f"{len(bench['tasks'])} ({100 * worst['share_better']:.0f}%, {worst['baseline']}). With n seeds the "
                f"smallest two-sided Wilcoxon p is 2/2^n ({2 / 2 ** bench['n_seeds']:.3g} here), before Holm."]
    out.append("")
    return out


def format_benchmark(bench: dict) -> str:
    """Plain-text summary for the terminal: mean ranks, Friedman, and the reference against each baseline."""
    lines = [f"{len(bench['tasks'])} tasks x {bench['n_seeds']} seeds; reference {bench['reference']}", ""]
    if bench["mean_rank"]:
        lines.append("mean rank over tasks (1 = best AULC):")
        lines += [f"  {s:<20} {r:.2f}" for s, r in sorted(bench["mean_rank"].items(), key=lambda kv: kv[1])]
    if bench["friedman"]:
        lines.append(f"Friedman p = {_p(bench['friedman']['p_value'])}, Nemenyi CD = {bench['critical_difference']:.2f}")
    lines += ["", f"{bench['reference']} against each baseline over tasks (Wilcoxon, Holm):",
              f"  {'baseline':<20} {'mean diff':>9} {'W/T/L':>9} {'p (Holm)':>9} {'p >':>9} {'sig. better on':>15}"]
    per_task = {r["baseline"]: r for r in bench["per_task_significance"]}
    for r in bench["versus_reference"]:
        better = len(per_task[r["baseline"]]["better_on"])
        lines.append(f"  {r['baseline']:<20} {_f(r['mean_difference']):>9} {'/'.join(map(str, r['win_tie_loss'])):>9} "
                     f"{_p(r['p_two_sided_holm']):>9} {_p(r['p_greater_holm']):>9} {better:>9} tasks")
    if "over_units" in bench:
        u = bench["over_units"]
        lines += ["", f"over {len(u['units'])} twin units (twins averaged): mean rank "
                  + ", ".join(f"{s} {r:.2f}" for s, r in sorted(u["mean_rank"].items(), key=lambda kv: kv[1]))]
        lines += [f"  {r['baseline']:<20} {_f(r['mean_difference']):>9} {'/'.join(map(str, r['win_tie_loss'])):>9} "
                  f"{_p(r['p_two_sided_holm']):>9} {_p(r['p_greater_holm']):>9}" for r in u["versus_reference"]]
    return "\n".join(lines)


def write_benchmark(out: Path, results: dict, reference: str, suite: str | None = None,
                    twins: dict[str, list[str]] | None = None) -> dict:
    """Compute the statistics over tasks from transfer-eval's results and write the benchmark files.  ``twins``
    (default: the committed split's): where two tasks are twins, every statistic is also computed over twin units
    (``over_units``, with its own CD diagram)."""
    config = results["config"]
    strategies = list(dict.fromkeys(r["strategy"] for r in results["runs"]))
    bench = {"format": BENCH_FORMAT, "format_version": BENCH_VERSION, "suite": suite,
             **across_tasks(results["runs"], config["tasks"], strategies, reference),
             # beside summary.json's config, versions and platform: the commit and command that made these files
             "provenance": results.get("provenance") or provenance()}
    if twins is None:
        from metaal.tasks.splits import load_splits

        twins = load_splits().twins
    units = twin_units(config["tasks"], twins)
    if units is not None:
        bench["over_units"] = {"units": units, **across_tasks(merge_units(results["runs"], units), list(units),
                                                              strategies, reference)}
        plot_cd(out / UNITS_CD_FILE, bench["over_units"])
    plot_cd(out / CD_FILE, bench)
    if "policy_minus_margin" in bench:
        plot_round_difference(out / ROUNDS_FILE, bench)
    atomic_write_text(out / REPORT_FILE, benchmark_markdown(bench, config, suite))
    bench = _clean(bench)
    atomic_write_json(out / JSON_FILE, bench)
    return bench


def _clean(obj):
    """NaN -> None everywhere (strict JSON), numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    return None if isinstance(obj, float) and math.isnan(obj) else obj
