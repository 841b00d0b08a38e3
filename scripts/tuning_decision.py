"""The decision rule of the 2026-12-05 tuning study (docs/research-log.md) on its results directory.

A variant's score on a task is its AULC averaged over its two draws (generation seeds 0 and 1) and 10 seeds;
variant B is adopted over A iff the mean difference over the tuning tasks is above 0 and a one-sided Wilcoxon
signed-rank test over the tasks gives p < 0.10.  Writes the per-task table as Markdown.

    python scripts/tuning_decision.py runs/tuning-keel/eval --out docs/results/tuning-keel.md

Levers S and E (second session of 2026-12-05): ``--draws`` lists the eight draws of V0's recipe on seeds 0-9 (with a
Friedman test over the (task, seed) blocks: do the draws differ beyond the evaluation's noise?) and names S, the
best one; ``--confirm DIR`` applies the rule on the fresh seeds 10-19 in DIR to S and E against the shipped policy.
``--powered`` judges M3, M10, N48, X0, T500, LOSS, NB, RB, ACC and CLEAN against V0, four draws each, on seeds 0-19 (RESULTS = that evaluation).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json

import numpy as np
from scipy.stats import friedmanchisquare, wilcoxon

# policy directory (as it appears in the strategy name) -> (variant, draw)
DRAWS = {"default_policy": ("V0", 0), "v0-g1": ("V0", 1), "v1-g0": ("V1", 0), "v1-g1": ("V1", 1),
         "v3-g0": ("V3", 0), "v3-g1": ("V3", 1), "v4-g0": ("V4", 0), "v4-g1": ("V4", 1),
         "d1-g0": ("D1", 0), "d1-g1": ("D1", 1), "d2-g0": ("D2", 0), "d2-g1": ("D2", 1),
         "c-g0": ("C", 0), "c-g1": ("C", 1), "a25-g0": ("A25", 0), "a25-g1": ("A25", 1), "a50-g0": ("A50", 0),
         "a50-g1": ("A50", 1), "r-g0": ("R", 0), "r-g1": ("R", 1)}
VARIANTS = ("V1", "V3", "V4", "D1", "D2", "C", "A25", "A50", "R")


def _runs(results: str) -> dict[tuple[str, str], dict[int, float]]:
    """AULC of every run in RESULTS: (task, strategy) -> {seed: AULC}."""
    runs = collections.defaultdict(dict)
    for f in glob.glob(f"{results}/runs/*/*.json"):
        d = json.load(open(f))
        runs[(d["task"], d["strategy"])][d["seed"]] = d["aulc"]
    return runs


def _by_variant(runs, name_of) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """A variant's score on a task: the mean over its draws (strategies ``name_of`` maps to it; None drops a
    strategy) of each draw's mean over seeds; and the fewest draws a variant has on any task."""
    out: dict[str, dict[str, list[float]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for (task, strategy), seeds in runs.items():
        name = name_of(strategy)
        if name is not None:
            out[name][task].append(float(np.mean(list(seeds.values()))))
    return ({n: {t: float(np.mean(v)) for t, v in per.items()} for n, per in out.items()},
            {n: min(len(v) for v in per.values()) for n, per in out.items()})


def scores(results: str) -> dict[str, dict[str, float]]:
    def name_of(strategy: str) -> str:
        flat = strategy.replace("/", "_")
        return next((v for k, (v, _g) in DRAWS.items() if k in flat), strategy)

    return _by_variant(_runs(results), name_of)[0]


def decide(a: dict[str, float], b: dict[str, float]) -> tuple[float, int, int, float, bool]:
    tasks = sorted(set(a) & set(b))
    d = np.array([b[t] - a[t] for t in tasks])
    p = float(wilcoxon(d, alternative="greater").pvalue)
    return float(d.mean()), int((d > 0).sum()), int((d < 0).sum()), p, bool(d.mean() > 0 and p < 0.10)


def _table(s: dict[str, dict[str, float]], cols: list[str], tasks: list[str], pairs, heading: str, verdict: str,
           extra: tuple[str, ...] = ()) -> str:
    """The per-task AULC table (a mean row, then ``extra`` rows) and the rule applied to each (base, variant)."""
    lines = ["| task | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {t} | " + " | ".join(f"{s[c][t]:.4f}" for c in cols) + " |" for t in tasks]
    lines.append("| **mean** | " + " | ".join(f"**{np.mean([s[c][t] for t in tasks]):.4f}**" for c in cols) + " |")
    lines += list(extra)
    lines += ["", f"| {heading} | mean difference | W/L | one-sided Wilcoxon p | {verdict} |", "|---|---|---|---|---|"]
    for base, var in pairs:
        m, w, lo, p, ok = decide(s[base], s[var])
        lines.append(f"| {var} − {base} | {m:+.4f} | {w}/{lo} | {p:.3f} | {'yes' if ok else 'no'} |")
    return "\n".join(lines) + "\n"


def main_table(results: str) -> str:
    """Every variant of the first study (two draws, seeds 0-9) against V0."""
    s = scores(results)
    cols = [c for c in ("random", "margin", "V0", *VARIANTS) if c in s]
    pairs = [("V0", v) for v in VARIANTS if v in s] + [("margin", "V0"), ("random", "V0")]
    return _table(s, cols, sorted(s["margin"]), pairs, "comparison", "adopted")


def draw_of(strategy: str) -> int | None:
    """The generation draw g of V0's recipe a strategy name points at (g0 = the default study rerun), else None."""
    flat = strategy.replace("/", "_")
    if flat.endswith("default_policy") and "metaal_policies" not in flat:
        return 0
    for g in range(1, 8):
        if flat.endswith(f"v0-g{g}_policy"):
            return g
    return None


def draws_table(results: str) -> tuple[str, int]:
    """Each draw's mean AULC over the tuning units (seeds 0-9) and the Friedman test across draws."""
    runs = _runs(results)
    per: dict[int, dict[tuple[str, int], float]] = collections.defaultdict(dict)
    for (task, strategy), seeds in runs.items():
        g = draw_of(strategy)
        if g is not None:
            per[g].update({(task, sd): a for sd, a in seeds.items()})
    draws = sorted(per)
    blocks = sorted(set.intersection(*(set(per[g]) for g in draws)))
    tasks = sorted({t for t, _ in blocks})
    means = {g: float(np.mean([np.mean([per[g][b] for b in blocks if b[0] == t]) for t in tasks])) for g in draws}
    stat, p = friedmanchisquare(*([per[g][b] for b in blocks] for g in draws))
    best = max(draws, key=lambda g: means[g])
    lines = ["| draw | " + " | ".join(f"g{g}" for g in draws) + " |", "|---" * (len(draws) + 1) + "|",
             "| mean AULC, 12 units x seeds 0-9 | " + " | ".join(f"{means[g]:.4f}" for g in draws) + " |", "",
             f"Friedman test over {len(blocks)} (task, seed) blocks, {len(draws)} draws: chi2 {stat:.2f}, p = {p:.3f}. "
             f"Spread of the draw means {min(means.values()):.4f}-{max(means.values()):.4f}; S = g{best}."]
    return "\n".join(lines) + "\n", best


def confirm_table(results: str) -> str:
    """The rule on fresh seeds: S and E against the shipped policy (and margin, random for reference)."""
    def name_of(strategy: str) -> str:
        flat = strategy.replace("/", "_")
        return ("shipped" if flat == "policy" or "metaal_policies_default" in flat else "E" if "ensemble" in flat
                else "S" if "v0-g" in flat or flat.endswith("default_policy") else strategy)

    s = _by_variant(_runs(results), name_of)[0]
    cols = [c for c in ("random", "margin", "shipped", "S", "E") if c in s]
    pairs = [(b, v) for b, v in [("shipped", "S"), ("shipped", "E"), ("margin", "shipped"), ("margin", "S"),
                                 ("margin", "E")] if b in s and v in s]
    return _table(s, cols, sorted(s["shipped"]), pairs, "comparison (seeds 10-19)", "passes the rule")


POWERED = ("M3", "M10", "N48", "X0", "T500", "LOSS", "NB", "RB", "ACC", "CLEAN")


def powered_table(results: str) -> str:
    """Each variant's four draws x 20 seeds against V0's, by the study's rule."""
    def name_of(strategy: str) -> str | None:
        flat = strategy.replace("/", "_")
        g = draw_of(strategy)
        name = "V0" if g is not None and g < 4 else next(
            (v for v in POWERED for d in range(4) if flat.endswith(f"{v.lower()}-g{d}_policy")), strategy)
        return name if name in ("V0", *POWERED, "margin", "random") else None

    s, draws = _by_variant(_runs(results), name_of)
    cols = [c for c in ("random", "margin", "V0", *POWERED) if c in s]
    pairs = [("V0", v) for v in POWERED if v in s] + [("margin", "V0"), ("random", "V0")]
    return _table(s, cols, sorted(s["V0"]), pairs, "comparison (4 draws x seeds 0-19)", "adopted",
                  extra=("| draws | " + " | ".join(str(draws[c]) for c in cols) + " |",))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--out", default=None)
    ap.add_argument("--draws", action="store_true", help="the eight draws of V0 on seeds 0-9, and S")
    ap.add_argument("--confirm", default=None, help="results directory of seeds 10-19: S and E against the shipped policy")
    ap.add_argument("--powered", action="store_true", help="M3, M10, N48, X0, T500, LOSS, NB, RB, ACC, CLEAN against V0 (four draws, seeds 0-19)")
    a = ap.parse_args(argv)
    if a.powered:
        text = powered_table(a.results)
        head = ("# The 2026-12-05 tuning study, levers M3, M10, N48, X0, T500, LOSS, NB, RB, ACC and CLEAN (four draws, 20 seeds)\n\n"
                f"Made by `python scripts/tuning_decision.py RESULTS --powered --out {a.out}`.\n\n")
    elif a.draws or a.confirm:
        text = draws_table(a.results)[0] if a.draws else ""
        text += ("\n" + confirm_table(a.confirm)) if a.confirm else ""
        head = ("# The 2026-12-05 tuning study, levers S and E: draws of V0's recipe\n\n"
                f"Made by `python scripts/tuning_decision.py RESULTS --draws --confirm CONFIRM --out {a.out}`.\n\n")
    else:
        text = main_table(a.results)
        head = ("# The 2026-12-05 tuning study: per-task AULC on the KEEL tuning group\n\n"
                "12 tuning units x 10 paired seeds, pools capped at 1000, initial 10, budget 150, query size 10; each "
                "variant's two draws averaged (docs/research-log.md has the rule and the variants).\n"
                f"Made by `python scripts/tuning_decision.py RESULTS --out {a.out}`.\n\n")
    print(text)
    if a.out:
        open(a.out, "w").write(head + text)

if __name__ == "__main__":
    main()
