"""`metaal inspect`: what is in a store or a policy, and is there anything to learn."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from metaal.errors import MetaalError


def store_heuristic_table(trajs) -> dict:
    """Agreement with the expert and regret of each classic heuristic, from stored features."""
    from metaal.acquisition.agreement import decision_metrics, heuristic_scores
    from metaal.acquisition.features import HEURISTIC_FEATURES

    out = {}
    for name in [*HEURISTIC_FEATURES, "random"]:
        out[name] = decision_metrics(heuristic_scores(trajs.steps["candidates"], name), trajs.steps)
    return out


_SLICE_RE = re.compile(r"^(?P<kind>[sw])(?P<i>\d+)-of-(?P<n>\d+)$")


def round_of_step(steps: dict) -> np.ndarray:
    """Each step's round within its episode (0 = the first); steps are ordered by episode."""
    ends = np.asarray(steps["round_end"]).astype(np.int64)
    before = np.cumsum(ends) - ends  # round ends before each step, counted over the whole store
    episode = np.asarray(steps["episode"])
    starts = np.r_[0, np.flatnonzero(np.diff(episode)) + 1]
    first = starts[np.searchsorted(starts, np.arange(len(episode)), side="right") - 1]
    return before - before[first]


def oracle_metric(attrs: dict) -> str:
    """What the store's expert maximised (``generate --oracle-metric``; "loss", generate's default, when unrecorded)."""
    return (attrs.get("oracle") or {}).get("metric") or "loss"


def expert_signal_by_round(trajs) -> list[dict]:
    """Per round (1 = the first): how often no candidate raises validation accuracy, and the mean share of
    candidates tied at the best accuracy gain.

    A small validation set makes the accuracy gain coarse (27 items: steps of 0.037), so on a task that
    saturates early most candidates tie and the loss tie-break decides the expert's pick: the accuracy
    target then teaches little from those rounds."""
    s = trajs.steps
    acc = np.where(s["mask"], s["oracle_acc_gain"], -np.inf)
    keep = np.isfinite(acc).any(axis=1)
    if not keep.any():
        return []
    rounds = round_of_step(s)
    best = acc.max(axis=1, keepdims=True)
    tied = (np.isclose(acc, best) & s["mask"]).sum(axis=1) / np.maximum(s["mask"].sum(axis=1), 1)
    out = []
    for r in np.unique(rounds[keep]):
        sel = keep & (rounds == r)
        out.append({"round": int(r) + 1, "steps": int(sel.sum()), "no_gain": float(np.mean(best[sel, 0] <= 0)),
                    "tied": float(np.mean(tied[sel]))})
    return out


def batch_outcomes_by_round(trajs, metric: str | None = None) -> list[dict]:
    """Per round (1 = the first), for each heuristic whose batch the batch oracle retrained: the mean accuracy gain
    of its whole batch, its mean rank percentile among the round's batches (1 = always the best) and the share of
    rounds it wins.  Batches are ranked as the expert ranked them: by ``metric``, by default the store's own
    ``--oracle-metric`` ("loss": the loss gain; "accuracy": the accuracy gain, loss breaking ties), with
    ``BATCH_PROPOSERS`` order after that, so the winner is the batch oracle's own pick.

    Which heuristic's batch is best, and when, is what a policy trained on the store can learn at most: a heuristic
    whose batch wins often but has a low mean gain wins by luck a label-free policy cannot see.  [] for stores
    without per-batch gains (other oracles, or written before metaal recorded them)."""
    from metaal.acquisition.agreement import round_starts
    from metaal.acquisition.features import BATCH_PROPOSERS
    from metaal.distill import rank_percentiles, ranked_gain

    s = trajs.steps
    if "batch_acc_gain" not in s or len(s["batch_acc_gain"]) == 0:
        return []
    metric = metric or oracle_metric(trajs.attrs)
    starts, _ = round_starts(s)
    acc = np.asarray(s["batch_acc_gain"], np.float64)[starts]
    gain = ranked_gain(np.asarray(s["batch_gain"])[starts], acc, metric)
    valid = np.isfinite(gain)
    keep = valid.sum(1) >= 2
    if not keep.any():
        return []
    rounds = round_of_step(s)[starts]
    pct = np.where(valid, rank_percentiles(gain, valid), np.nan)
    winner = np.where(valid, gain, -np.inf).argmax(1)
    out = []
    for r in np.unique(rounds[keep]):
        sel = keep & (rounds == r)
        row = {"round": int(r) + 1, "rounds": int(sel.sum()), "batches": {}}
        for j, name in enumerate(BATCH_PROPOSERS):
            if valid[sel, j].any():
                row["batches"][name] = {"acc_gain": float(np.nanmean(acc[sel, j])), "rank": float(np.nanmean(pct[sel, j])),
                                        "wins": float(np.mean(winner[sel] == j))}
        out.append(row)
    return out


def batch_outcome_lines(rows: list[dict], metric: str) -> list[str]:
    if not rows:
        return []
    names = list(dict.fromkeys(n for r in rows for n in r["batches"]))
    ranked = "the loss gain" if metric == "loss" else "the accuracy gain, loss breaking ties"
    lines = [f"  heuristic batches by round (mean accuracy gain / mean rank among the round's batches by {ranked}, as the "
             "expert ranked them, 1 = best / share of rounds won):",
             "    round  n  " + "  ".join(f"{n:>20}" for n in names)]
    for r in rows:
        cells = [(f"{b['acc_gain']:+.4f} / {b['rank']:.2f} / {b['wins']:.2f}" if (b := r["batches"].get(n)) else "-")
                 for n in names]
        lines.append(f"    {r['round']:5d} {r['rounds']:2d}  " + "  ".join(f"{c:>20}" for c in cells))
    return lines


def shard_report(status: dict) -> list[str]:
    """Lines on every writer group of a store: its counts, what a killed writer left, and the shards missing.

    ``s{i}-of-{N}`` groups are written by ``generate --shard i/N`` and ``w{i}-of-{W}`` by ``--workers W``;
    group i of N owns the episode ids with ``id % N == i``.  A job whose group is absent, or whose ids
    are not all committed (in any group), is reported as missing or incomplete."""
    groups = status.get("shards", {})
    ids = set(status.get("ids", []))
    planned = status.get("planned")
    lines, problems = [], []
    slices: dict[tuple[str, int], set[int]] = {}
    for name, g in sorted(groups.items(), key=lambda kv: (kv[0] != "root", kv[0])):
        notes, bad = [], False
        if g.get("uncommitted_steps") or g.get("uncommitted_rows"):
            notes.append("a partial episode left by a killed writer (invisible; cut off when this shard resumes)")
            bad = True
        m = _SLICE_RE.match(name)
        own = None
        if m:
            i, n = int(m["i"]), int(m["n"])
            slices.setdefault((m["kind"], n), set()).add(i)
            if isinstance(planned, int) and 0 <= i < n:
                own = range(i, planned, n)
                done = sum(e in ids for e in own)
                if done < len(own):
                    notes.append(f"incomplete: {done} of its {len(own)} episodes committed")
                    bad = True
        if g["episodes"] == 0 and (own is None or len(own)):
            notes.append("no completed episode")
        label = "root" if name == "root" else f"shard {name}"
        lines.append(f"  {label}: {g['episodes']} episodes, {g['steps']} steps" + "".join(f"; {x}" for x in notes))
        if bad:
            problems.append(name)
    for name in status.get("uninitialised_shards", []):
        lines.append(f"  shard {name}: created but holds no episode index (a writer stopped while setting it up)")
        problems.append(name)
        m = _SLICE_RE.match(name)
        if m:
            slices.setdefault((m["kind"], int(m["n"])), set()).add(int(m["i"]))
    for (kind, n), present in sorted(slices.items()):
        absent = [i for i in range(n) if i not in present]
        if absent:
            shown = ", ".join(f"{kind}{i}-of-{n}" for i in absent[:20]) + (" ..." if len(absent) > 20 else "")
            what = "--shard i/N jobs" if kind == "s" else "--workers shards"
            lines.append(f"  MISSING SHARDS: {len(absent)} of {n} {what} never wrote here: {shown}")
    if len({n for kind, n in slices if kind == "s"}) > 1:
        lines.append("  note: shard jobs with different N wrote here (" + ", ".join(
            str(n) for kind, n in sorted(slices) if kind == "s") + "); each reads fine, but check the job arrays")
    if problems:
        lines.append(f"  INCOMPLETE SHARDS: {', '.join(problems)} (rerun the same command(s) to finish them)")
    return lines


def describe_store(path: str) -> str:
    from metaal.acquisition.agreement import validation_table
    from metaal.store import read_trajectories, store_status

    if not Path(path).exists():
        raise MetaalError(f"{path}: no such store or policy directory")
    _refuse_distill_work_dir(Path(path))
    status = store_status(path)
    trajs = read_trajectories(path)
    attrs = trajs.attrs
    cfg = attrs.get("config", {})
    lines = [f"store {path}", f"  format {attrs.get('format')} v{attrs.get('format_version')}, K={attrs.get('K')}, "
             f"oracle {attrs.get('oracle', {}).get('mode')}"]
    lines.append(f"  episodes {status['episodes']} (planned {cfg.get('episodes', '?')}), steps {status['steps']}")
    lines += shard_report(status)
    if status.get("missing_ids"):
        ids = status["missing_ids"]
        shown = ", ".join(map(str, ids[:20])) + (" ..." if len(ids) > 20 else "")
        lines.append(f"  INCOMPLETE: {len(ids)} planned episodes missing: {shown}")
    if status.get("duplicates"):
        lines.append(f"  {status['duplicates']} episode(s) present in more than one shard (read once)")
    schema = attrs.get("schema", {})
    lines.append(f"  schema v{schema.get('version')}: features {', '.join(attrs.get('feature_names', []))}")
    lines.append(f"                context {', '.join(attrs.get('context_names', []))}")
    if trajs.n_episodes:
        tasks = Counter(str(t).split(",")[0] if str(t).startswith("synthetic") else str(t) for t in trajs.episodes["task"])
        lines.append("  tasks: " + ", ".join(f"{t} ×{n}" for t, n in tasks.most_common()))
        fin = trajs.episodes["final_accuracy"]
        lines.append(f"  final test accuracy {np.mean(fin):.4f} ± {np.std(fin):.4f}, AULC {np.mean(trajs.episodes['aulc']):.4f}")
    if trajs.n_steps == 0:
        lines.append("  (no committed steps)")
        return "\n".join(lines)
    mask = trajs.steps["mask"]
    gains = trajs.steps["oracle_gain"]
    valid = gains[mask & np.isfinite(gains)]
    spread = np.nanmax(np.where(mask, gains, -np.inf), axis=1) - np.nanmin(np.where(mask, gains, np.inf), axis=1)
    q = np.quantile(valid, [0.05, 0.5, 0.95])
    lines.append(f"  oracle loss gain: mean {valid.mean():.3g}, std {valid.std():.3g}, 5/50/95% {q[0]:.3g}/{q[1]:.3g}/{q[2]:.3g}, "
                 f"positive {np.mean(valid > 0):.1%}, mean per-step spread {np.mean(spread):.3g}")
    acc = trajs.steps["oracle_acc_gain"][mask]
    if np.isfinite(acc).any():
        lines.append(f"  oracle accuracy gain: mean {np.nanmean(acc):.3g}, positive {np.nanmean(acc > 0):.1%}")
        lines.append("  expert accuracy signal by round (no candidate gains accuracy / candidates tied at the best):")
        lines += [f"    round {r['round']}: {r['steps']} steps, no gain {r['no_gain']:.0%}, tied at the best {r['tied']:.0%}"
                  for r in expert_signal_by_round(trajs)]
    lines += batch_outcome_lines(batch_outcomes_by_round(trajs), oracle_metric(attrs))
    agree = float(np.mean(trajs.steps["action"] == trajs.steps["expert_action"]))
    lines.append(f"  roll-in took the expert's pick at {agree:.1%} of steps; mean round reward {np.mean(trajs.steps['reward'][trajs.steps['round_end']]):.4f}")
    lines.append("")
    lines.append("  Classic heuristics against the expert (from stored features; higher agreement, lower regret is better):")
    table = validation_table({"heuristics": store_heuristic_table(trajs)})
    lines += ["  " + row for row in table.splitlines()]
    return "\n".join(lines)


def _refuse_distill_work_dir(path: Path) -> None:
    """``OUT.partial`` of an unfinished distill is neither a store nor a policy: say what it is."""
    from metaal.distill import CHECKPOINT_FILE, STAGING_DIR

    if not path.name.endswith(".partial") or not ((path / CHECKPOINT_FILE).is_file() or (path / STAGING_DIR).is_dir()):
        return
    step = "no checkpoint yet"
    try:
        import torch

        step = f"checkpoint at step {json.loads(torch.load(path / CHECKPOINT_FILE, weights_only=True)['meta'])['step']}"
    except Exception:  # no checkpoint, or an unreadable one: the message stays generic
        pass
    raise MetaalError(f"{path} is the work directory of an unfinished `metaal distill` ({step}), not a policy; "
                      "rerun the same distill command to finish it")


def describe_policy(path: str, trust_pickle: bool = False) -> str:
    """Metadata, validation, and whether the weights load (safely: no pickle is opened without ``trust_pickle``)."""
    from metaal.acquisition.agreement import validation_table
    from metaal.policy.artefact import read_meta

    meta = read_meta(path, strict=False)  # an unsupported format is described, then reported as not usable
    schema = meta.get("schema", {})
    training = meta.get("training", {})
    lines = [
        f"policy {path}",
        f"  algorithm {meta.get('algorithm')}, K={meta.get('K')}, format v{meta.get('format_version')}",
        f"  schema v{schema.get('version')}: features {', '.join(schema.get('features', []))}",
        f"                context {', '.join(schema.get('context', []))}",
        f"  inputs: label count {meta.get('count_context') or 'raw'}; held at 0: "
        + (", ".join(meta.get("dropped_features") or []) or "none") + f"; batch built by {meta.get('choice') or 'items'}",
        "  hyper-parameters: " + ", ".join(f"{k}={v}" for k, v in meta.get("hyperparameters", {}).items()),
        "  training: " + ", ".join(f"{k}={_fmt(v)}" for k, v in training.items() if not isinstance(v, list | dict)),
    ]
    for src in meta.get("sources", []):
        lines.append(f"  source {src.get('path')} (fingerprint {src.get('fingerprint')})")
    lines += _policy_files(path, meta, trust_pickle)
    val = meta.get("validation")
    if val:
        lines.append(f"\n  Validation on {val.get('episodes')} held-out episodes:")
        lines += ["  " + row for row in validation_table(val).splitlines()]
    return "\n".join(lines)


def _policy_files(path: str, meta: dict, trust_pickle: bool) -> list[str]:
    """Lines on the weights (loaded weights-only, checksum verified) and on d3rlpy's pickle."""
    from metaal.acquisition import features
    from metaal.policy.artefact import load_policy, scorer_file_name

    try:
        features.check_schema(meta.get("schema") or {}, str(path))
    except MetaalError as exc:
        return [f"  NOT USABLE by this metaal: {exc}"]
    policy = load_policy(path, trust_pickle=trust_pickle)  # a MetaalError (exit 2) if the weights do not load
    scorer = scorer_file_name(meta)
    checked = "sha256 verified" if (meta.get("scorer") or {}).get("sha256") else "no sha256 recorded"
    if (Path(path) / str(scorer)).is_file():
        lines = [f"  weights {scorer}: loaded weights-only, {checked}"]
    else:
        lines = [f"  weights: no {scorer}; taken from d3rlpy's {meta.get('d3rlpy_model')} (--trust-pickle)"]
    d3 = meta.get("d3rlpy_model")
    if d3 and (Path(path) / str(d3)).is_file():
        if not trust_pickle:
            lines.append(f"  {d3}: d3rlpy's own file, a pickle: not opened (--trust-pickle opens it; unpickling can run code)")
        else:
            algo = policy.d3rlpy_model()
            lines.append(f"  {d3}: opened (--trust-pickle): {type(algo).__name__}")
    return lines


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else v
