"""`metaal inspect`: what is in a store or a policy, and is there anything to learn."""

from __future__ import annotations

import json
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


def describe_store(path: str) -> str:
    from metaal.acquisition.agreement import validation_table
    from metaal.store import read_trajectories, store_status

    if not Path(path).exists():
        raise MetaalError(f"{path}: no such store or policy directory")
    status = store_status(path)
    trajs = read_trajectories(path)
    attrs = trajs.attrs
    cfg = attrs.get("config", {})
    lines = [f"store {path}", f"  format {attrs.get('format')} v{attrs.get('format_version')}, K={attrs.get('K')}, "
             f"oracle {attrs.get('oracle', {}).get('mode')}"]
    lines.append(f"  episodes {status['episodes']} (planned {cfg.get('episodes', '?')}), steps {status['steps']}")
    for name, s in sorted(status.get("shards", {}).items()):
        extra = f", {s['uncommitted_steps']} uncommitted steps (discarded on resume)" if s.get("uncommitted_steps") else ""
        lines.append(f"  shard {name}: {s['episodes']} episodes, {s['steps']} steps{extra}")
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
    agree = float(np.mean(trajs.steps["action"] == trajs.steps["expert_action"]))
    lines.append(f"  roll-in took the expert's pick at {agree:.1%} of steps; mean round reward {np.mean(trajs.steps['reward'][trajs.steps['round_end']]):.4f}")
    lines.append("")
    lines.append("  Classic heuristics against the expert (from stored features; higher agreement, lower regret is better):")
    table = validation_table({"heuristics": store_heuristic_table(trajs)})
    lines += ["  " + row for row in table.splitlines()]
    return "\n".join(lines)


def describe_policy(path: str) -> str:
    from metaal.acquisition.agreement import validation_table

    meta_file = Path(path) / "metaal-policy.json"
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MetaalError(f"{meta_file}: cannot read policy metadata ({exc})") from None
    schema = meta.get("schema", {})
    training = meta.get("training", {})
    lines = [
        f"policy {path}",
        f"  algorithm {meta.get('algorithm')}, K={meta.get('K')}, format v{meta.get('format_version')}",
        f"  schema v{schema.get('version')}: features {', '.join(schema.get('features', []))}",
        f"                context {', '.join(schema.get('context', []))}",
        "  hyper-parameters: " + ", ".join(f"{k}={v}" for k, v in meta.get("hyperparameters", {}).items()),
        "  training: " + ", ".join(f"{k}={_fmt(v)}" for k, v in training.items() if not isinstance(v, list | dict)),
    ]
    for src in meta.get("sources", []):
        lines.append(f"  source {src.get('path')} (fingerprint {src.get('fingerprint')})")
    val = meta.get("validation")
    if val:
        lines.append(f"\n  Validation on {val.get('episodes')} held-out episodes:")
        lines += ["  " + row for row in validation_table(val).splitlines()]
    return "\n".join(lines)


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else v
