"""The decision rule of the 2026-12-05 tuning study (docs/research-log.md) on its results directory.

A variant's score on a task is its AULC averaged over its two draws (generation seeds 0 and 1) and 10 seeds;
variant B is adopted over A iff the mean difference over the tuning tasks is above 0 and a one-sided Wilcoxon
signed-rank test over the tasks gives p < 0.10.  Writes the per-task table as Markdown.

    python scripts/tuning_decision.py runs/tuning-keel/eval --out docs/results/tuning-keel.md
"""

from __future__ import annotations

import argparse
import collections
import glob
import json

import numpy as np
from scipy.stats import wilcoxon

# policy directory (as it appears in the strategy name) -> (variant, draw)
DRAWS = {"default_policy": ("V0", 0), "v0-g1": ("V0", 1), "v1-g0": ("V1", 0), "v1-g1": ("V1", 1),
         "v3-g0": ("V3", 0), "v3-g1": ("V3", 1), "v4-g0": ("V4", 0), "v4-g1": ("V4", 1),
         "d1-g0": ("D1", 0), "d1-g1": ("D1", 1), "d2-g0": ("D2", 0), "d2-g1": ("D2", 1),
         "c-g0": ("C", 0), "c-g1": ("C", 1), "a25-g0": ("A25", 0), "a25-g1": ("A25", 1), "a50-g0": ("A50", 0),
         "a50-g1": ("A50", 1), "r-g0": ("R", 0), "r-g1": ("R", 1)}
VARIANTS = ("V1", "V3", "V4", "D1", "D2", "C", "A25", "A50", "R")


def scores(results: str) -> dict[str, dict[str, float]]:
    runs = collections.defaultdict(dict)
    for f in glob.glob(f"{results}/runs/*/*.json"):
        d = json.load(open(f))
        runs[(d["task"], d["strategy"])][d["seed"]] = d["aulc"]
    out: dict[str, dict[str, list[float]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for (task, strategy), seeds in runs.items():
        flat = strategy.replace("/", "_")
        name = next((v for k, (v, _g) in DRAWS.items() if k in flat), strategy)
        out[name][task].append(float(np.mean(list(seeds.values()))))
    return {name: {t: float(np.mean(v)) for t, v in per.items()} for name, per in out.items()}


def decide(a: dict[str, float], b: dict[str, float]) -> tuple[float, int, int, float, bool]:
    tasks = sorted(set(a) & set(b))
    d = np.array([b[t] - a[t] for t in tasks])
    p = float(wilcoxon(d, alternative="greater").pvalue)
    return float(d.mean()), int((d > 0).sum()), int((d < 0).sum()), p, bool(d.mean() > 0 and p < 0.10)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    s = scores(a.results)
    cols = [c for c in ("random", "margin", "V0", *VARIANTS) if c in s]
    tasks = sorted(s["margin"])
    lines = ["| task | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for t in tasks:
        lines.append(f"| {t} | " + " | ".join(f"{s[c][t]:.4f}" for c in cols) + " |")
    lines.append("| **mean** | " + " | ".join(f"**{np.mean([s[c][t] for t in tasks]):.4f}**" for c in cols) + " |")
    lines += ["", "| comparison | mean difference | W/L | one-sided Wilcoxon p | adopted |", "|---|---|---|---|---|"]
    for base, var in [("V0", v) for v in VARIANTS if v in s] + [("margin", "V0"), ("random", "V0")]:
        m, w, lo, p, ok = decide(s[base], s[var])
        lines.append(f"| {var} − {base} | {m:+.4f} | {w}/{lo} | {p:.3f} | {'yes' if ok else 'no'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        head = ("# The 2026-12-05 tuning study: per-task AULC on the KEEL tuning group\n\n"
                "12 tuning units x 10 paired seeds, pools capped at 1000, initial 10, budget 150, query size 10; each "
                "variant's two draws averaged (docs/research-log.md has the rule and the variants).\n"
                f"Made by `python scripts/tuning_decision.py RESULTS --out {a.out}`.\n\n")
        open(a.out, "w").write(head + text)


if __name__ == "__main__":
    main()
