"""Quality study: which levers make the learned policy good, measured on tuning tasks only.

Every variant generates its own store on the source tasks, distils a policy and evaluates
it on *tuning* targets (unseen synthetic instances).  The reported targets of `metaal run`
(sklearn:digits, sklearn:breast_cancer) are never used here, so choosing defaults from this
table does not tune on the tasks the README reports.

The variants and the tuning sets are data: `scripts/studies/*.toml` (read in file-name order); the
prose of the tables is `docs/study-notes.md`.  A variant is a change to a pinned base study
(`base_study()`); `extends` starts from an earlier variant, `distill_seeds` adds the rows
NAME-distill-seed-K, and `retired` marks a lever whose option left metaal (its rows stay in docs/).

    python scripts/study.py --out runs/study            # all variants, writes docs/results.md
    python scripts/study.py --only base,bc --workers 2  # a subset, two processes

Variants run in parallel processes (one torch thread each); finished stages are reused.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import re
import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np

STUDIES = Path(__file__).resolve().parent / "studies"
NOTES = Path(__file__).resolve().parents[1] / "docs" / "study-notes.md"
VARIANT_KEYS = {"extends", "sources", "extra_initial", "generate", "distill", "evaluate", "dagger", "distill_seeds"}


def _merge(base: dict, change: dict) -> dict:
    """``base`` with ``change`` on top, table by table (a value that is not a table replaces)."""
    out = dict(base)
    for key, value in change.items():
        out[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def read_studies(folder: Path = STUDIES) -> tuple[dict, dict[str, dict], dict[str, str]]:
    """Every TOML file of ``folder`` in name order: its ``sets``, ``sources`` and ``variants`` tables.

    Returns (sets and sources, runnable variants name -> change, retired variants name -> the option that
    left), both variant maps in file order with the distillation-seed rows expanded after their variant."""
    data: dict = {"sets": {}, "sources": {}}
    runnable: dict[str, dict] = {}
    retired: dict[str, str] = {}
    order: list[str] = []
    for path in sorted(Path(folder).glob("*.toml")):
        text = tomllib.loads(path.read_text())
        for key in ("sets", "sources"):
            data[key].update(text.get(key, {}))
        for name, entry in text.get("variants", {}).items():
            where = f"{path.name}: variant {name}"
            seeds = entry.get("distill_seeds", [])
            if "retired" in entry:
                if set(entry) - {"retired", "distill_seeds"}:
                    raise SystemExit(f"{where}: a retired variant keeps only its name, 'retired' and 'distill_seeds'")
                for row in [name, *(f"{name}-distill-seed-{s}" for s in seeds)]:
                    retired[row] = entry["retired"]
                    order.append(row)
                continue
            unknown = set(entry) - VARIANT_KEYS
            if unknown:
                raise SystemExit(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(VARIANT_KEYS)})")
            change = {k: v for k, v in entry.items() if k not in ("extends", "distill_seeds")}
            if "extends" in entry:
                if entry["extends"] not in runnable:
                    raise SystemExit(f"{where}: extends {entry['extends']!r}, which is no runnable variant above it")
                change = _merge(runnable[entry["extends"]], change)
            rows = {name: change}
            for seed in seeds:
                rows[f"{name}-distill-seed-{seed}"] = _merge(change, {"distill": {"seed": seed}})
            for row, row_change in rows.items():
                if row in runnable or row in retired:
                    raise SystemExit(f"{where}: {row} is defined twice")
                runnable[row] = row_change
                order.append(row)
    data["order"] = order
    return data, runnable, retired


_DATA, _VARIANTS, RETIRED = read_studies()
HISTORY = _DATA["order"]  # every variant ever run, retired ones included: the order of the docs tables
_SETS = _DATA["sets"]
TUNING_TARGETS = _SETS["first"]["targets"]
SECOND_TUNING_TARGETS = _SETS["second"]["targets"]
MANY_CLASS_TUNING_TARGETS = _SETS["many"]["targets"]
SPIKY_TUNING_TARGETS = _SETS["spiky"]["targets"]
REAL_TUNING_TARGETS = _SETS["real"]["targets"]
R_SOURCES = _DATA["sources"]["r"]  # never tuning targets
# extra tuning sets a row can be evaluated on: row key -> (targets, results directory)
EXTRA_SETS = {key: (s["targets"], s["results"]) for key, s in _SETS.items() if key != "first"}
STRATEGIES = ["random", "margin", "entropy", "least_confidence", "coreset", "badge"]
REAL = ["sklearn:wine", "sklearn:iris"]


def base_study():
    """What every variant changes: the first default study (finetune oracle, K = 32, synthetic and
    real sources, loss target), pinned here so the table stays comparable as `metaal run` moves on."""
    from metaal.run import embedded_study

    study = embedded_study()
    study.sources = ["synthetic", *REAL]
    study.generate = replace(study.generate, candidates=32, oracle={})
    study.distill = replace(study.distill, target="loss", drop_features=[], count_context="raw")
    study.extra_initial = []  # `metaal run` also runs the sources from 3 labels since session 6 (a variant key here)
    study.workers = 1  # the study runs its variants side by side itself (`metaal run` uses 2 processes since session 15)
    return study


def variants() -> dict[str, dict]:
    """name -> changes to the base study (runnable variants of scripts/studies/*.toml, in file order)."""
    return json.loads(json.dumps(_VARIANTS))  # a copy: callers may change theirs


def notes() -> dict[str, str]:
    """The prose sections of docs/study-notes.md by name (``intro``, ``set second``, ``paired``, ...)."""
    sections, name = {}, None
    for line in NOTES.read_text().splitlines():
        m = re.fullmatch(r"<!-- section (.+) -->", line)
        if m:
            name = m.group(1)
            sections[name] = []
        elif name is not None:
            sections[name].append(line)
    return {k: "\n".join(v).strip("\n") for k, v in sections.items()}


def build(name: str, change: dict, episodes: int | None, seeds: int, targets=TUNING_TARGETS):
    from metaal.evaluate import EvalConfig
    from metaal.loop import LoopConfig

    study = base_study()
    study.sources = change.get("sources", study.sources)
    study.targets = list(targets)
    gen = dict(change.get("generate", {}))
    if "oracle" in gen:
        gen["oracle"] = {**study.generate.oracle, **gen["oracle"]}
    if "split" in gen:  # the sources' split (fractions; the caps stay)
        gen["split"] = replace(study.generate.split, **gen["split"])
    if "initial" in gen:  # the sources' initial labelled set (the loop's other settings stay)
        gen["loop"] = replace(study.generate.loop, initial=gen.pop("initial"))
    study.generate = replace(study.generate, tasks=study.sources, **gen)
    if episodes and "episodes" not in gen:
        study.generate = replace(study.generate, episodes=episodes)
    study.distill = replace(study.distill, **change.get("distill", {}))
    study.extra_initial = list(change.get("extra_initial", study.extra_initial))
    study.evaluate = EvalConfig(tasks=list(targets), strategies=list(STRATEGIES), seeds=seeds,
                                loop=LoopConfig(10, 100, 10), learner=study.evaluate.learner,
                                **change.get("evaluate", {}))  # variants differ from one plain base
    return study


def reuse_baselines(source: Path, out: Path) -> int:
    """Copy finished baseline runs (every strategy but the policy) from another variant's results.

    transfer-eval keeps a finished run only if its recorded identity (task, seed, loop, learner, split)
    matches, so a copied run that does not fit this study is simply redone."""
    import shutil

    copied = 0
    for f in sorted(Path(source).glob("*/results*/runs/*/*.json")):
        if f.name.startswith("policy__"):
            continue
        dest = out / f.parents[2].name / "runs" / f.parent.name / f.name
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest)
            copied += 1
    return copied


def reuse_finished_baselines(root: Path, out: Path, baselines_from: str | None = None) -> int:
    """Copy into a variant's directory ``out`` the baseline runs that ``--baselines-from`` and the study's other
    variants (``root``'s subdirectories) have finished.

    Baseline runs are deterministic and independent of the policy, so every variant would otherwise redo the same
    thousand runs per tuning set (session 13: most of a 2 h 14 min study)."""
    return sum(reuse_baselines(Path(source), Path(out)) for source in [*([baselines_from] if baselines_from else []), root])


def store_groups(todo: dict[str, dict], episodes: int | None = None) -> list[list[str]]:
    """Variants that write the same stores (generation identity and extra initial sets), in ``todo``'s order.

    The distillation-seed rows of a lever share their stores; generating them once and copying saves two thirds
    of a lever's generation (generation is deterministic, so a copy is what the row would have written)."""
    groups: dict[str, list[str]] = {}
    for name, change in todo.items():  # a DAgger variant's first stores (stores_dir) are shared; its second ones are its own
        study = build(name, change, episodes, 3)
        key = json.dumps([study.generate.identity(), study.extra_initial], sort_keys=True, default=str)
        groups.setdefault(key, []).append(name)
    return list(groups.values())


def generate_stores(args) -> list[str]:
    """Write a variant's stores only (``metaal.run.generate_stores``, ``run_study``'s first step); their names."""
    name, change, out, episodes = args
    import torch

    torch.set_num_threads(1)
    from metaal.run import generate_stores as generate

    out = stores_dir(out, name, change)
    out.mkdir(parents=True, exist_ok=True)
    return [p.name for p in generate(build(name, change, episodes, 3), out, progress=False, echo=lambda _: None)]


def stores_dir(out, name: str, change: dict) -> Path:
    """Where a variant's expert-roll-in stores live: its directory, or ``iter0`` in it for a DAgger variant."""
    return Path(out) / name / "iter0" if change.get("dagger") else Path(out) / name


def share_stores(out: Path, names: list[str], store_dirs: list[str], todo: dict[str, dict] | None = None) -> int:
    """Copy the first variant's stores to the others that have none yet; returns how many were copied.
    ``todo`` (name -> change) places each variant's stores (``stores_dir``); without it, in its directory."""
    import shutil

    where = {name: stores_dir(out, name, (todo or {}).get(name, {})) for name in names}
    copied = 0
    for other in names[1:]:
        for store in store_dirs:
            dest = where[other] / store
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copytree(where[names[0]] / store, dest)
                copied += 1
    return copied


def dagger_seed_offset(change: dict) -> int:
    """The second iteration's generation seed minus the first's: ``"dagger": True`` keeps the sessions 1-3 rows' 1;
    ``{"seed_offset": k}`` sets it (session 15: 1000, so that a draw's roll-in store never shares its episodes'
    splits with the next generation seed's expert store)."""
    dagger = change.get("dagger")
    return int(dagger.get("seed_offset", 1)) if isinstance(dagger, dict) else 1


def dagger_policy(study, out: Path, seed_offset: int = 1) -> Path:
    """One DAgger iteration: the study's stores (``out/iter0``, expert roll-in) distilled into a first policy, then
    every store again (``out/iter1``: the default and each extra initial size) with a roll-in that takes that
    policy's pick or the expert's at random (beta 0.5), and all of them distilled together into ``out/policy``.

    Why: expert roll-in shows the policy only the states the expert reaches; the second stores label, with the
    expert's gains, states the policy's own picks lead to."""
    from metaal.distill import distill
    from metaal.run import generate_stores

    quiet = {"progress": False, "echo": lambda _: None}
    first = generate_stores(study, out / "iter0", **quiet)
    if not (out / "iter0" / "policy").exists():
        distill([str(p) for p in first], study.distill, out / "iter0" / "policy", progress=False)
    gen = replace(study.generate, rollin=f"policy:{out / 'iter0' / 'policy'}", beta=0.5,
                  seed=study.generate.seed + seed_offset)
    second = generate_stores(replace(study, generate=gen), out / "iter1", **quiet)
    if not (out / "policy").exists():
        distill([str(p) for p in [*first, *second]], study.distill, out / "policy", progress=False)
    return out / "policy"


def run_variant(args) -> dict:
    name, change, out, episodes, seeds, baselines_from, extra_sets, evaluate_only = args
    import torch

    torch.set_num_threads(1)
    from metaal.run import run_study

    root, out = Path(out), Path(out) / name
    reuse_finished_baselines(root, out, baselines_from)
    study = build(name, change, episodes, seeds)
    log = []
    if evaluate_only:  # a finished variant on more tuning sets: its stores, policy and first set stay untouched
        policy_dir = out / "policy"
        results = json.loads((out / "results" / "summary.json").read_text())
    elif change.get("dagger"):
        from metaal.evaluate import transfer_eval

        policy_dir = dagger_policy(study, out, dagger_seed_offset(change))
        results = transfer_eval(replace(study.evaluate, policy=str(policy_dir)), out / "results", progress=False)
    else:
        results = run_study(study, out, progress=False, echo=log.append)
        policy_dir = out / "policy"
    meta = json.loads((policy_dir / "metaal-policy.json").read_text())
    row = {"name": name, "change": change, "results": results, "validation": meta.get("validation")}
    for key in extra_sets:
        from metaal.evaluate import transfer_eval

        reuse_finished_baselines(root, out, baselines_from)  # a sibling may have finished this set's baselines meanwhile

        targets, results = EXTRA_SETS[key]
        evaluate = build(name, change, episodes, seeds, targets).evaluate
        row[key] = transfer_eval(replace(evaluate, policy=str(policy_dir)), out / results, progress=False)
    return row


def collect_variant(name: str, out: str | Path) -> dict:
    """The row of a finished variant directory, read from its files (``--collect``: nothing is run)."""
    d = Path(out) / name
    files = {"results": d / "results" / "summary.json", "policy": d / "policy" / "metaal-policy.json"}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise SystemExit(f"--collect: {name} is not finished ({', '.join(missing)} missing)")
    row = {"name": name, "change": variants().get(name), "results": json.loads(files["results"].read_text()),
           "validation": json.loads(files["policy"].read_text()).get("validation")}
    for key, (_targets, results) in EXTRA_SETS.items():
        summary = d / results / "summary.json"
        row[key] = json.loads(summary.read_text()) if summary.is_file() else None
    return row


def _versus(res: dict) -> dict:
    """Mean AULC over the targets of the policy, random and the best heuristic, and the policy's mean rank."""
    by = {}
    for s in res["summary"]:
        by.setdefault(s["strategy"], []).append(s["aulc_mean"])
    mean = {k: sum(v) / len(v) for k, v in by.items()}
    heur = {k: v for k, v in mean.items() if k not in ("policy", "random", "oracle")}
    best = max(heur, key=heur.get)
    rep = res.get("policy_report", {})
    beats_random = sum(1 for t in rep.get("tasks", []) if t["vs"]["random"]["mean_difference"] > 0)
    return {
        "policy": mean.get("policy"),
        "random": mean.get("random"),
        "best_heuristic": f"{best} {heur[best]:.4f}",
        "policy_minus_best": mean.get("policy", float("nan")) - heur[best],
        "mean_rank": rep.get("mean_rank", {}).get("policy"),
        "beats_random": f"{beats_random}/{len(rep.get('tasks', []))}",
    }


def summarise(row: dict) -> dict:
    val = (row.get("validation") or {}).get("policy") or {}
    out = {"variant": row["name"], "seeds": int(row["results"].get("config", {}).get("seeds", 3)),
           **_versus(row["results"]), "val_agreement": val.get("agreement"), "val_regret": val.get("regret")}
    for key in EXTRA_SETS:
        if row.get(key):
            out[key] = _versus(row[key])
    # per-(task, seed) AULC of the policy and of margin on every tuning set, for the paired tables
    out["cells"] = {}
    for res in (row["results"], *(row.get(key) for key in EXTRA_SETS)):
        for r in (res or {}).get("runs", []):
            if r["strategy"] in ("policy", "margin"):
                out["cells"].setdefault(r["strategy"], {})[f"{r['task']}|{r['seed']}"] = r["aulc"]
    return out


REFERENCE_GROUP = "margin-pool-5-no-count-context"  # the `metaal run` default of sessions 4 and 5
SESSION_6_DEFAULT = "margin-pool-5-per-class-count-with-initial-3-episodes"
_SEED_SUFFIX = re.compile(r"-distill-seed-\d+$")


def _distill_groups(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows that record their cells, grouped with their distillation-seed rows."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("cells", {}).get("policy"):
            groups.setdefault(_SEED_SUFFIX.sub("", r["variant"]), []).append(r)
    return groups


def _mean_cells(members: list[dict], strategy: str = "policy", keep_task=None) -> dict[str, float]:
    """A group's AULC per (task, seed) cell, averaged over its members, on the cells every member has."""
    keys = set.intersection(*(set(m["cells"].get(strategy, {})) for m in members))
    keys = {k for k in keys if keep_task is None or keep_task(k.rsplit("|", 1)[0])}
    return {k: float(np.mean([m["cells"][strategy][k] for m in members])) for k in keys}


def paired_groups(rows: list[dict], reference: str = REFERENCE_GROUP, keep_task=None) -> list[dict]:
    """Each variant with its distillation-seed rows as one group (their mean policy AULC per task and seed),
    paired against the reference group and against margin on the (task, seed) cells both have
    (only the cells whose task passes ``keep_task``, when given).

    The unpaired table above compares means over 3 seeds; a variant's picks change every later round, so
    that comparison carries the whole run-to-run spread.  Pairing by task and seed removes the spread the
    tasks and initial sets share, and averaging a group's distillation seeds removes part of the rest."""
    from metaal.metrics import mean_std_ci95, paired_test, win_tie_loss

    groups = _distill_groups(rows)
    if reference not in groups:
        return []
    ref = _mean_cells(groups[reference], keep_task=keep_task)
    out = []
    for name, members in groups.items():
        mine, margin = _mean_cells(members, keep_task=keep_task), _mean_cells(members, "margin", keep_task)
        if not mine:
            continue
        entry = {"group": name, "distill_seeds": len(members), "cells": len(mine),
                 "policy": float(np.mean(list(mine.values())))}
        for label, other in (("vs_reference", ref), ("vs_margin", margin)):
            keys = sorted(set(mine) & set(other))
            if (name == reference and label == "vs_reference") or len(keys) < 2:
                continue
            a, b = [mine[k] for k in keys], [other[k] for k in keys]
            d = np.subtract(a, b)
            entry[label] = {"cells": len(keys), "mean": float(d.mean()), "ci": list(mean_std_ci95(d)[2]),
                            "win_tie_loss": list(win_tie_loss(a, b)), "p": paired_test(a, b)["p_value"]}
        out.append(entry)
    return out


_GENERATE_SUFFIX = re.compile(r"-generate-seed-(\d+)$")
# the session-6 default's draws with generation seeds 1 and 2 are named after its recipe, not after its first row
DRAW_ARM_ALIASES = {"per-class-initial-3": SESSION_6_DEFAULT}


def task_set(task: str) -> str:
    """The tuning set a task belongs to, as the draw table names it (the first two sets count as one)."""
    if task in MANY_CLASS_TUNING_TARGETS:
        return "many-class"
    if task in SPIKY_TUNING_TARGETS:
        return "spiky"
    if task in REAL_TUNING_TARGETS:
        return "real"
    return "two sets"


DRAW_SETS = ("two sets", "many-class", "spiky", "all", "real")


def in_draw_set(cell: str, label: str) -> bool:
    """Whether a ``task|seed`` cell counts towards the set ``label`` of DRAW_SETS ("all": every synthetic cell, the
    160 of sessions 9 and 10; the real set is its own)."""
    kind = task_set(cell.rsplit("|", 1)[0])
    return kind == label or (label == "all" and kind != "real")


def draw_groups(rows: list[dict], reference: str = SESSION_6_DEFAULT) -> list[dict]:
    """Arms run over several generation seeds, compared draw against draw.

    A paired cell test holds one store fixed, yet the reference's own stores regenerated with another
    generation seed moved whole tuning sets by up to 0.006 (session 9): a lever that writes new stores is
    confounded with that spread.  Here one draw (one store, its distillation seeds averaged per cell) is one
    observation: per set, its mean policy AULC over the cells that every draw of both arms has; the arms'
    draw means are compared with Welch's t-test.  A draw is ``NAME-generate-seed-N`` (``NAME`` itself is
    generation seed 0); only arms with at least two draws are listed."""
    from scipy import stats

    arms: dict[str, dict[int, list[dict]]] = {}
    for name, members in _distill_groups(rows).items():
        m = _GENERATE_SUFFIX.search(name)
        arm, seed = (name[:m.start()], int(m.group(1))) if m else (name, 0)
        arms.setdefault(DRAW_ARM_ALIASES.get(arm, arm), {})[seed] = members
    arms = {a: draws for a, draws in arms.items() if len(draws) >= 2}
    if reference not in arms:
        return []
    ref_policy = {seed: _mean_cells(members) for seed, members in sorted(arms[reference].items())}
    out = []
    for arm, draws in arms.items():
        policy = ref_policy if arm == reference else {seed: _mean_cells(m) for seed, m in sorted(draws.items())}
        keys = set.intersection(*(set(c) for c in [*policy.values(), *ref_policy.values()]))
        margin = _mean_cells([m for members in draws.values() for m in members], "margin")
        entry = {"arm": arm, "generation_seeds": sorted(draws),
                 "distill_seeds": [len(draws[s]) for s in sorted(draws)], "sets": {}}
        for label in DRAW_SETS:
            cells = sorted(k for k in keys if in_draw_set(k, label))
            if not cells:
                continue
            mine = [float(np.mean([c[k] for k in cells])) for c in policy.values()]
            theirs = [float(np.mean([c[k] for k in cells])) for c in ref_policy.values()]
            row = {"cells": len(cells), "draw_means": mine, "mean": float(np.mean(mine))}
            if all(k in margin for k in cells):
                row["vs_margin"] = row["mean"] - float(np.mean([margin[k] for k in cells]))
            if arm != reference:
                row["vs_reference"] = row["mean"] - float(np.mean(theirs))
                row["p"] = float(stats.ttest_ind(mine, theirs, equal_var=False).pvalue)
            entry["sets"][label] = row
        out.append(entry)
    return out


def write_markdown(rows: list[dict], path: Path, seeds: int) -> None:
    """The study's tables; their prose is docs/study-notes.md."""
    prose = notes()
    lines = [
        *prose["intro"].format(targets=", ".join(TUNING_TARGETS), seeds=seeds).split("\n"),
        "",
        "| variant | seeds | policy AULC | random AULC | best heuristic | policy − best | policy mean rank | beats random | val agreement | val regret |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r.get('seeds', seeds)} | {r['policy']:.4f} | {r['random']:.4f} | {r['best_heuristic']} | {r['policy_minus_best']:+.4f} | "
            f"{r['mean_rank']:.2f} | {r['beats_random']} | {_f(r['val_agreement'])} | {_f(r['val_regret'])} |"
        )
    for key, (targets, _results) in EXTRA_SETS.items():
        extra = [r for r in rows if r.get(key)]
        if not extra:
            continue
        lines += ["", *prose[f"set {key}"].format(targets=", ".join(targets), seeds=seeds).split("\n"), "",
                  "| variant | seeds | policy AULC | random AULC | best heuristic | policy − best | policy mean rank | beats random |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in extra:
            t = r[key]
            lines.append(f"| {r['variant']} | {r.get('seeds', seeds)} | {t['policy']:.4f} | {t['random']:.4f} | {t['best_heuristic']} | "
                         f"{t['policy_minus_best']:+.4f} | {t['mean_rank']:.2f} | {t['beats_random']} |")
    many, spiky = set(MANY_CLASS_TUNING_TARGETS), set(SPIKY_TUNING_TARGETS)
    order = HISTORY

    def after_session_6(group):  # the levers measured against the session-6 default
        return group in order and order.index(group) >= order.index(SESSION_6_DEFAULT)

    for title, where, keep, reference, show in (
        ("Paired against the default", "over both tuning sets", lambda task: task_set(task) == "two sets",
         REFERENCE_GROUP, None),
        ("Paired against the default on the many-class set", "over the many-class set", lambda task: task in many,
         REFERENCE_GROUP, None),
        ("Paired against the session-6 default", "over both tuning sets", lambda task: task_set(task) == "two sets",
         SESSION_6_DEFAULT, after_session_6),
        ("Paired against the session-6 default on the many-class set", "over the many-class set",
         lambda task: task in many, SESSION_6_DEFAULT, after_session_6),
        ("Paired against the session-6 default on the spiky set", "over the spiky set", lambda task: task in spiky,
         SESSION_6_DEFAULT, after_session_6),
    ):
        paired = [g for g in paired_groups(rows, reference, keep_task=keep) if show is None or show(g["group"])]
        if len(paired) < 2:
            continue
        lines += [
            "",
            f"## {title}",
            "",
            prose["paired"].format(where=where, reference=reference, sessions="sessions 4 and 5" if reference == REFERENCE_GROUP
                                   else "session 6"),
            "",
            "| group | distill seeds | cells | policy AULC | Δ vs default [95% CI] | W/T/L | p | Δ vs margin [95% CI] | W/T/L | p |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for g in paired:
            cols = []
            for key in ("vs_reference", "vs_margin"):
                v = g.get(key)
                cols.append("–|–|–" if v is None else f"{v['mean']:+.4f} [{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}]|"
                            f"{'/'.join(map(str, v['win_tie_loss']))}|{v['p']:.3f}")
            lines.append(f"| {g['group']} | {g['distill_seeds']} | {g['cells']} | {g['policy']:.4f} | "
                         f"{cols[0].replace('|', ' | ')} | {cols[1].replace('|', ' | ')} |")
    drawn = draw_groups(rows)
    if len(drawn) >= 2:
        lines += [
            "",
            "## Arms over generation seeds (draw level)",
            "",
            prose["draws"].format(reference=SESSION_6_DEFAULT),
            "",
            "| arm | generation seeds (distillation seeds) | set | cells | draw means | mean | Δ vs margin | Δ vs session-6 default | Welch p |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for g in drawn:
            seeds_col = ", ".join(f"{s} ({n})" for s, n in zip(g["generation_seeds"], g["distill_seeds"]))
            for label, v in g["sets"].items():
                means = " / ".join(f"{m:.4f}" for m in v["draw_means"])
                ref = "–" if "vs_reference" not in v else f"{v['vs_reference']:+.4f}"
                p_col = "–" if "p" not in v else f"{v['p']:.3f}"
                lines.append(f"| {g['arm']} | {seeds_col} | {label} | {v['cells']} | {means} | {v['mean']:.4f} | "
                             f"{v.get('vs_margin', float('nan')):+.4f} | {ref} | {p_col} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _f(v):
    return "–" if v is None else f"{v:.3f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/study")
    ap.add_argument("--only", default=None, help="comma list of variant names")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--episodes", type=int, default=None, help="override the default episode count")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--markdown", default="docs/results.md")
    ap.add_argument("--baselines-from", default=None,
                    help="an earlier --out: its finished baseline runs are reused (same identity only)")
    ap.add_argument("--second-set", action="store_true",
                    help="also evaluate each policy on SECOND_TUNING_TARGETS (mostly two-class tasks)")
    ap.add_argument("--many-class-set", action="store_true",
                    help="also evaluate each policy on MANY_CLASS_TUNING_TARGETS (ten classes, one label each at first)")
    ap.add_argument("--spiky-set", action="store_true",
                    help="also evaluate each policy on SPIKY_TUNING_TARGETS (near-constant spike features, as digits has)")
    ap.add_argument("--real-set", action="store_true",
                    help="also evaluate each policy on REAL_TUNING_TARGETS (real R data sets; scripts/rdata_tasks.py first)")
    ap.add_argument("--evaluate-only", action="store_true",
                    help="only evaluate finished variants on the extra sets named (no generation, distillation or first set)")
    ap.add_argument("--merge", default=None,
                    help="an earlier study.json: its rows for (variant, seeds) not run now are kept in the table")
    ap.add_argument("--collect", action="store_true",
                    help="run nothing: read the rows of the --only variants from their finished directories in --out")
    ap.add_argument("--rows", default=None,
                    help="run nothing: the rows of an earlier study.json (e.g. docs/study-session12.json) make the tables")
    args = ap.parse_args()
    todo = variants()
    if args.only:
        names = args.only.split(",")
        unknown = [n for n in names if n not in todo and n not in RETIRED]
        if unknown:
            raise SystemExit(f"--only: no such variant in {STUDIES}: {', '.join(unknown)}")
        retired = [f"{n} ({RETIRED[n]})" for n in names if n in RETIRED]
        if retired and not args.rows:
            raise SystemExit(f"--only: retired levers (their option left metaal; their rows stay in docs/): {', '.join(retired)}")
        todo = {n: todo.get(n) for n in names}
    if args.rows:
        rows = json.loads(Path(args.rows).read_text())
        if args.only:
            rows = [r for r in rows if r["variant"] in todo]
    elif args.collect:
        rows = [summarise(collect_variant(name, args.out)) for name in todo]
    else:
        extra_sets = [key for key, on in (("second", args.second_set), ("many", args.many_class_set),
                                          ("spiky", args.spiky_set), ("real", args.real_set)) if on]
        if args.evaluate_only:
            unfinished = [n for n in todo if not (Path(args.out) / n / "results" / "summary.json").is_file()]
            if unfinished:
                raise SystemExit(f"--evaluate-only: not finished in {args.out}: {', '.join(unfinished)}")
        jobs = [(name, change, args.out, args.episodes, args.seeds, args.baselines_from, extra_sets, args.evaluate_only)
                for name, change in todo.items()]
        with mp.get_context("spawn").Pool(args.workers) as pool:
            shared = [] if args.evaluate_only else [g for g in store_groups(todo, args.episodes) if len(g) > 1]
            stores = pool.imap(generate_stores, [(g[0], todo[g[0]], args.out, args.episodes) for g in shared])
            for group, names in zip(shared, stores):
                share_stores(Path(args.out), group, names, todo)
            rows = [summarise(r) for r in pool.imap(run_variant, jobs)]
    if args.merge:
        ran = {(r["variant"], r.get("seeds", 3)) for r in rows}
        earlier = [r for r in json.loads(Path(args.merge).read_text()) if (r["variant"], r.get("seeds", 3)) not in ran]
        order = HISTORY
        rows = sorted(earlier + rows, key=lambda r: (order.index(r["variant"]) if r["variant"] in order else len(order),
                                                     r.get("seeds", 3)))
    for r in rows:
        print(json.dumps(r))
    if not args.rows:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "study.json").write_text(json.dumps(rows, indent=2))
    write_markdown(rows, Path(args.markdown), args.seeds)
    print(f"wrote {args.markdown}")


if __name__ == "__main__":
    main()
