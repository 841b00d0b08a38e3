"""Held-out check of study arms, draw by draw: do the tuning sets predict the held-out targets?

An arm is a ``scripts/study.py`` variant run over generation seeds (``NAME``, ``NAME-generate-seed-N``) and
distillation seeds (``…-distill-seed-N``), as ``study.draw_groups`` reads them.  Every policy of every arm is run on
`metaal run`'s held-out targets or ``--tasks`` (seeds 0-9 or ``--seeds``, budget 150, beside random and margin;
finished runs are kept, and baseline runs are copied from ``--baselines-from`` or a finished sibling).  The script prints, per arm and
generation seed, the policy minus margin AULC (distillation seeds averaged), the arms against the first one
(Welch's test on draw means, as the draw table of docs/results.md), and across all the policies how well each set
and target agrees with itself (even against odd seeds) and how each tuning set's policy minus margin correlates
with each target's.  Nothing is chosen from these numbers: they test the
tuning sets, not the levers.

    python scripts/heldout_draws.py --study-out runs/study --out runs/heldout_draws \\
        --arms margin-pool-5-per-class-count-with-initial-3-episodes,per-class-initial-3-source-val-35
    # the ten held-out synthetic tasks of docs/research-log.md, reported as their mean
    python scripts/heldout_draws.py --study-out runs/study --out runs/heldout_wide --arms … --seeds 5 --pool-tasks \\
        --tasks synthetic:seed=9101,…,synthetic:seed=9110 --baselines-from runs/synthetic_heldout
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np

_STUDY = Path(__file__).resolve().parent / "study.py"
HELDOUT_SEEDS = 10
HELDOUT_BUDGET = 150


def _load_study():
    spec = importlib.util.spec_from_file_location("metaal_study_script", _STUDY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def draw_names(arm: str, generation_seeds=(0, 1, 2), distill_seeds=(0, 1, 2), aliases=None) -> list[tuple[int, int, str]]:
    """(generation seed, distillation seed, variant name) of an arm's policies; ``aliases`` maps an arm to the stem
    its other draws are named after (the session-6 default's are ``per-class-initial-3-generate-seed-N``)."""
    stem = {v: k for k, v in (aliases or {}).items()}.get(arm, arm)
    out = []
    for g in generation_seeds:
        base = arm if g == 0 else f"{stem}-generate-seed-{g}"
        out += [(g, d, base if d == 0 else f"{base}-distill-seed-{d}") for d in distill_seeds]
    return out


def seed_differences(results_dir: Path, task: str, seeds: int = HELDOUT_SEEDS) -> tuple[np.ndarray, np.ndarray]:
    """Policy minus margin per seed 0..seeds-1, from transfer-eval's run files (each read once): the AULC (seeds,)
    and the test accuracy after each round (seeds, rounds; round 0 = the shared initial set)."""
    from metaal.evaluate import run_path

    def run(strategy, seed):
        return json.loads(run_path(Path(results_dir), task, strategy, seed).read_text())

    pairs = [(run("policy", s), run("margin", s)) for s in range(seeds)]
    return (np.array([p["aulc"] - m["aulc"] for p, m in pairs]),
            np.array([np.subtract(p["accuracy"], m["accuracy"]) for p, m in pairs]))


def policy_minus_margin(results_dir: Path, task: str, seeds: int = HELDOUT_SEEDS) -> float:
    """Mean over seeds 0..seeds-1 of the policy's AULC less margin's."""
    return float(seed_differences(results_dir, task, seeds)[0].mean())


def split_half(even: list[float], odd: list[float]) -> tuple[float, float]:
    """Pearson r (and p), across policies, of a set's policy minus margin on even against odd seeds.

    Why: a correlation between a tuning set and a target is bounded by how well each agrees with itself.  If
    one half of a target's seeds does not rank the policies as the other half does, their differences there
    are evaluation noise, and no tuning set can be expected to predict them."""
    from scipy import stats

    r, p = stats.pearsonr(even, odd)
    return float(r), float(p)


def _copy_baselines(source: Path, dest: Path) -> None:
    for f in Path(source).glob("runs/*/*.json"):
        if not f.name.startswith("policy__"):
            target = dest / "runs" / f.parent.name / f.name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, target)


def run_heldout(policy_dir: Path, out: Path, baselines_from: Path | None = None, tasks=None,
                seeds: int = HELDOUT_SEEDS, workers: int = 1) -> None:
    """transfer-eval of one policy on the held-out targets (`metaal run`'s unless ``tasks``); transfer-eval
    itself skips finished runs and redoes copied ones whose identity does not match."""
    from metaal.evaluate import EvalConfig, transfer_eval
    from metaal.loop import LoopConfig
    from metaal.run import EMBEDDED_TARGETS

    if baselines_from is not None:
        _copy_baselines(baselines_from, out)
    config = EvalConfig(tasks=list(tasks or EMBEDDED_TARGETS), strategies=["random", "margin"], seeds=seeds, seed=0,
                        loop=LoopConfig(10, HELDOUT_BUDGET, 10), policy=str(policy_dir))
    transfer_eval(config, out, progress=False, workers=workers)


def correlations(tuning: dict[str, list[float]], heldout: dict[str, list[float]]) -> list[dict]:
    """Pearson and Spearman correlation, across policies, of each tuning set's value with each target's."""
    from scipy import stats

    out = []
    for target, y in heldout.items():
        for label, x in tuning.items():
            r, p = stats.pearsonr(x, y)
            rho, p_rho = stats.spearmanr(x, y)
            out.append({"target": target, "set": label, "pearson": float(r), "p": float(p),
                        "spearman": float(rho), "p_spearman": float(p_rho)})
    return out


def main():
    from scipy import stats

    from metaal.evaluate import run_path
    from metaal.run import EMBEDDED_TARGETS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study-out", required=True, help="study.py's --out, where the arms' variants were run")
    ap.add_argument("--out", required=True, help="one transfer-eval directory per policy is kept here")
    ap.add_argument("--arms", required=True, help="comma list of arms; the first is the reference")
    ap.add_argument("--baselines-from", default=None, help="a transfer-eval directory with finished random and margin runs")
    ap.add_argument("--tasks", default=",".join(EMBEDDED_TARGETS), help="comma list of held-out tasks")
    ap.add_argument("--seeds", type=int, default=HELDOUT_SEEDS, help="evaluation seeds 0..N-1")
    ap.add_argument("--distill-seeds", default="0,1,2", help="the distillation seeds each draw has (session 15: 0)")
    ap.add_argument("--workers", type=int, default=2, help="processes for each policy's transfer-eval (same runs)")
    ap.add_argument("--pool-tasks", action="store_true",
                    help="report the mean over the tasks as one target instead of each task")
    args = ap.parse_args()
    import torch

    # One thread, as study.py's workers: two of these side by side on 2 cores with torch's default threads ran
    # 40x slower (1 min instead of 1.5 s per digits run, session 11); these small MLPs gain little from more
    torch.set_num_threads(1)
    study = _load_study()
    out, arms, tasks = Path(args.out), args.arms.split(","), args.tasks.split(",")
    targets = [f"mean of {len(tasks)} tasks"] if args.pool_tasks else tasks
    tuning = {label: [] for label in study.DRAW_SETS}
    heldout = {t: [] for t in targets}
    halves = {}  # set or target -> ([even-seed values], [odd-seed values]), one entry per policy
    gaps = {}  # (arm, task) -> per-round gap of each policy
    draws = {}
    distill_seeds = tuple(int(s) for s in args.distill_seeds.split(","))
    for arm in arms:
        for g, _, name in draw_names(arm, distill_seeds=distill_seeds, aliases=study.DRAW_ARM_ALIASES):
            dest = out / name
            if not all(run_path(dest, t, "policy", s).is_file() for t in tasks for s in range(args.seeds)):
                finished = next((p for p in sorted(out.glob("*")) if (p / "summary.json").is_file()), None)
                run_heldout(Path(args.study_out) / name / "policy", dest,
                            Path(args.baselines_from) if args.baselines_from else finished, tasks, args.seeds,
                            args.workers)
            row = study.summarise(study.collect_variant(name, args.study_out))
            cells = row["cells"]
            for label in study.DRAW_SETS:
                keys = [k for k in cells["policy"] if k in cells["margin"] and study.in_draw_set(k, label)]
                tuning[label].append(float(np.mean([cells["policy"][k] - cells["margin"][k] for k in keys])) if keys
                                     else np.nan)
                for parity in (0, 1):
                    half = [cells["policy"][k] - cells["margin"][k] for k in keys if int(k.rsplit("|", 1)[1]) % 2 == parity]
                    halves.setdefault(label, ([], []))[parity].append(float(np.mean(half)) if half else np.nan)
            differences = {t: seed_differences(dest, t, args.seeds) for t in tasks}
            values = {t: float(aulc.mean()) for t, (aulc, _) in differences.items()}
            for t, (_, accuracy) in differences.items():
                gaps.setdefault((arm, t), []).append(accuracy.mean(axis=0))
            for parity in (0, 1):
                half = {t: float(aulc[parity::2].mean()) for t, (aulc, _) in differences.items()}
                if args.pool_tasks:
                    half = {targets[0]: float(np.mean(list(half.values())))}
                for t, value in half.items():
                    halves.setdefault(t, ([], []))[parity].append(value)
            if args.pool_tasks:
                values = {targets[0]: float(np.mean(list(values.values())))}
            for t, value in values.items():
                heldout[t].append(value)
                draws.setdefault((arm, t), {}).setdefault(g, []).append(value)
    print(f"policy minus margin AULC, held out (seeds 0-{args.seeds - 1}, budget {HELDOUT_BUDGET}); "
          "per generation seed, distillation seeds averaged")
    for (arm, t), by_seed in draws.items():
        means = [float(np.mean(v)) for _, v in sorted(by_seed.items())]
        line = f"{arm} | {t} | draws {' '.join(f'{m:+.4f}' for m in means)} | mean {np.mean(means):+.4f}"
        if arm != arms[0]:
            ref = [float(np.mean(v)) for _, v in sorted(draws[(arms[0], t)].items())]
            p = stats.ttest_ind(means, ref, equal_var=False).pvalue
            line += f" | vs {arms[0]} {np.mean(means) - np.mean(ref):+.4f} (Welch p = {p:.2f})"
        print(line)
    print("policy minus margin test accuracy per round (round 0 first), mean over the arm's policies and the seeds")
    for (arm, t), curves in gaps.items():
        print(f"{arm} | {t} | {' '.join(f'{g:+.3f}' for g in np.mean(curves, axis=0))}")
    print(f"across the {len(heldout[targets[0]])} policies: split-half reliability, policy minus margin on even "
          "against odd seeds (sets without runs for every policy are left out)")
    for label, (even, odd) in halves.items():
        if not np.isnan(even).any() and not np.isnan(odd).any():
            r, p = split_half(even, odd)
            print(f"{label}: r = {r:+.2f} (p = {p:.2f})")
    tuning = {label: x for label, x in tuning.items() if not np.isnan(x).any()}
    print(f"across the {len(heldout[targets[0]])} policies: tuning set's policy minus margin against the target's")
    for c in correlations(tuning, heldout):
        print(f"{c['target']} ~ {c['set']}: Pearson r = {c['pearson']:+.2f} (p = {c['p']:.2f}), "
              f"Spearman {c['spearman']:+.2f} (p = {c['p_spearman']:.2f})")


if __name__ == "__main__":
    main()
