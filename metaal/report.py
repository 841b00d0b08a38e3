"""Results files of `transfer-eval`: summary.json, curves.csv, one plot per task, report.md."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np

from metaal.io import (
    atomic_output,
    atomic_write_json,
    atomic_write_text,
    compute_platform,
    package_versions,
    provenance,
)
from metaal.metrics import labels_to_reach, mean_std_ci95, paired_test, win_tie_loss

RESULTS_FORMAT = "metaal-results"
RESULTS_VERSION = 1


def add_labels_to_random_final(runs: list[dict], reference: str = "random") -> None:
    """Labels each run needs to reach the reference strategy's final accuracy (same task and seed)."""
    final = {(r["task"], r["seed"]): r["final_accuracy"] for r in runs if r["strategy"] == reference}
    for r in runs:
        target = final.get((r["task"], r["seed"]))
        r["labels_to_random_final"] = None if target is None else labels_to_reach(r["labels"], r["accuracy"], target)


def summarise(runs: list[dict], tasks: list[str], strategies: list[str], reference: str = "random") -> list[dict]:
    rows = []
    for task in tasks:
        ref = {r["seed"]: r for r in runs if r["task"] == task and r["strategy"] == reference}
        for name in strategies:
            mine = sorted((r for r in runs if r["task"] == task and r["strategy"] == name), key=lambda r: r["seed"])
            if not mine:
                continue
            mean, std, ci = mean_std_ci95([r["aulc"] for r in mine])
            final_mean, final_std, _ = mean_std_ci95([r["final_accuracy"] for r in mine])
            reached = [r["labels_to_random_final"] for r in mine if r.get("labels_to_random_final") is not None]
            paired = [(r["aulc"], ref[r["seed"]]["aulc"]) for r in mine if r["seed"] in ref]
            row = {
                "task": task,
                "strategy": name,
                "n_seeds": len(mine),
                "uses_true_labels": any(r.get("uses_true_labels") for r in mine),
                "aulc_mean": mean,
                "aulc_std": std,
                "aulc_ci95": list(ci),
                "final_accuracy_mean": final_mean,
                "final_accuracy_std": final_std,
                "labels_to_random_final_mean": float(np.mean(reached)) if reached else None,
                "labels_to_random_final_reached": len(reached),
            }
            if name != reference and paired:
                a, b = zip(*paired)
                row["vs_random"] = {"win_tie_loss": list(win_tie_loss(a, b)), **paired_test(a, b)}
            rows.append(row)
    return rows


def curves_csv(runs: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["task", "strategy", "seed", "round", "n_labeled", "test_accuracy"])
    for r in runs:
        for i, (n, a) in enumerate(zip(r["labels"], r["accuracy"])):
            w.writerow([r["task"], r["strategy"], r["seed"], i, n, f"{a:.6f}"])
    return buf.getvalue()


def plot_task(path: Path, task: str, runs: list[dict], strategies: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for name in strategies:
        mine = [r for r in runs if r["task"] == task and r["strategy"] == name]
        if not mine:
            continue
        labels = np.asarray(mine[0]["labels"])
        acc = np.asarray([r["accuracy"] for r in mine])
        mean, std = acc.mean(0), acc.std(0)
        style = {"linestyle": "--", "color": "black"} if name == "random" else {}
        if any(r.get("uses_true_labels") for r in mine):
            style = {"linestyle": ":", "color": "grey"}
            name = f"{name} (true labels)"
        line = ax.plot(labels, mean, label=name, linewidth=2 if name == "policy" else 1.4, **style)[0]
        ax.fill_between(labels, mean - std, mean + std, alpha=0.12, color=line.get_color())
    ax.set_xlabel("labelled examples")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{task} (mean ± std over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")  # explicit: the temporary name's suffix must not decide the format
    plt.close(fig)


def slug(text: str) -> str:
    """A file-name-safe form of a task or strategy name (run files, plots)."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")[:80] or "task"


def plot_name(task: str) -> str:
    return f"curve_{slug(task)}.png"


def format_table(summary: list[dict]) -> str:
    """Plain-text table, one block per task (what the CLI prints at the end)."""
    lines = []
    for task in dict.fromkeys(r["task"] for r in summary):
        lines.append(f"\n{task}")
        lines.append(f"  {'strategy':<18} {'AULC':>16} {'final acc':>10} {'labels→rnd':>11} {'W/T/L vs rnd':>13}")
        for r in (r for r in summary if r["task"] == task):
            half = (r["aulc_ci95"][1] - r["aulc_ci95"][0]) / 2
            ltr = r["labels_to_random_final_mean"]
            ltr_s = "-" if ltr is None else f"{ltr:.0f} ({r['labels_to_random_final_reached']}/{r['n_seeds']})"
            wtl = "/".join(map(str, r["vs_random"]["win_tie_loss"])) if "vs_random" in r else "ref"
            name = r["strategy"] + ("*" if r.get("uses_true_labels") else "")
            lines.append(f"  {name:<18} {r['aulc_mean']:.4f} ± {half:.4f}  {r['final_accuracy_mean']:>9.4f} {ltr_s:>11} {wtl:>13}")
    if any(r.get("uses_true_labels") for r in summary):
        lines.append("\n  * the oracle reads true labels (lookahead or batch expert): a ceiling, not a competitor")
    return "\n".join(lines).lstrip("\n")


def _platform_line(results: dict) -> list[str]:
    """Where the numbers were computed: the same seeds give other curves on a CPU with other vector kernels."""
    plat, ver = results.get("platform") or {}, results.get("versions") or {}
    if not plat:
        return []
    lines = [f"Computed with torch {ver.get('torch')} on {plat.get('machine')} (torch CPU kernels: "
             f"{plat.get('torch_cpu_capability')}, {plat.get('torch_threads')} threads); the same seeds give slightly "
             "different curves with other CPU kernels.", ""]
    prov = results.get("provenance") or {}
    if prov:
        dirty = " with uncommitted changes" if prov.get("git_dirty") else ""
        lines += [f"Made by metaal {ver.get('metaal')} (runs from git commit {', '.join(prov.get('run_commits') or [])}; "
                  f"the report from {prov.get('git_commit')}{dirty}) with `{prov.get('command')}`.", ""]
    return lines


def report_markdown(results: dict) -> str:
    cfg = results["config"]
    out = [
        "# metaal transfer evaluation",
        "",
        f"Tasks: {', '.join(cfg['tasks'])}. Seeds: {cfg['seeds']} (from {cfg['seed']}). "
        f"Initial {cfg['loop']['initial']}, budget {cfg['loop']['budget']}, query size {cfg['loop']['query_size']}, "
        f"model {cfg['learner']['model']}.",
        "",
        "AULC = mean test accuracy over the rounds (round 0 included). CI = t-based 95% interval over seeds. "
        "Labels→random = labels needed to reach random sampling's final accuracy on the same task and seed "
        "(mean over the seeds that reached it; reached/total in brackets). W/T/L vs random: per-seed AULC "
        "differences beyond ±0.002; verdict from a two-sided paired t-test at α = 0.05.",
        "",
        *_platform_line(results),
    ]
    for task in cfg["tasks"]:
        rows = [r for r in results["summary"] if r["task"] == task]
        if not rows:
            continue
        out += [f"## {task}", "", f"![learning curves]({plot_name(task)})", ""]
        out.append("| strategy | AULC mean ± CI | final accuracy | labels→random | W/T/L vs random | paired test |")
        out.append("|---|---|---|---|---|---|")
        for r in rows:
            half = (r["aulc_ci95"][1] - r["aulc_ci95"][0]) / 2
            ltr = r["labels_to_random_final_mean"]
            ltr_s = "–" if ltr is None else f"{ltr:.0f} ({r['labels_to_random_final_reached']}/{r['n_seeds']})"
            if "vs_random" in r:
                v = r["vs_random"]
                wtl, test = "/".join(map(str, v["win_tie_loss"])), f"{v['verdict']} (p={v['p_value']:.3f})"
            else:
                wtl, test = "reference", ""
            name = r["strategy"] + (" (true labels: ceiling)" if r.get("uses_true_labels") else "")
            out.append(
                f"| {name} | {r['aulc_mean']:.4f} ± {half:.4f} | {r['final_accuracy_mean']:.4f} | {ltr_s} | {wtl} | {test} |"
            )
        out.append("")
    extra = results.get("policy_report")
    if extra:
        from metaal.policy_report import policy_markdown

        out += policy_markdown(extra)
    return "\n".join(out) + "\n"


def _run_commits(runs: list[dict]) -> list[str]:
    """The code commits the runs were made with (several when a results directory was resumed after an
    update); runs from before provenance was recorded count as "unknown"."""
    return sorted({str((r.get("code") or {}).get("commit") or "unknown") for r in runs})


def write_results(out: Path, config, runs: list[dict]) -> dict:
    """Write every results file atomically and return the summary.json content."""
    strategies = config.strategy_list()
    runs = sorted(runs, key=lambda r: (config.tasks.index(r["task"]), r["seed"], strategies.index(r["strategy"])))
    add_labels_to_random_final(runs)
    summary = summarise(runs, config.tasks, strategies)
    results = {
        "format": RESULTS_FORMAT,
        "format_version": RESULTS_VERSION,
        "config": config.to_dict(),
        "versions": package_versions(),
        "platform": compute_platform(),
        "provenance": {**provenance(), "run_commits": _run_commits(runs)},
        "summary": summary,
        "runs": [{k: v for k, v in r.items() if k not in ("identity", "code")} for r in runs],
    }
    if "policy" in strategies:
        from metaal.policy_report import policy_comparison

        results["policy_report"] = policy_comparison(runs, summary, config.tasks, strategies)
    atomic_write_text(out / "curves.csv", curves_csv(runs))
    for task in config.tasks:
        plot_task(out / plot_name(task), task, runs, strategies)
    atomic_write_text(out / "report.md", report_markdown(results))
    atomic_write_json(out / "summary.json", results)  # last: its presence means the set is complete
    return results
