"""How well a scoring rule agrees with the lookahead expert, on stored steps.

Shared by distillation's validation and ``metaal inspect``.  Every function takes the
store's step arrays (or a ``Trajectories``) and a score per candidate; masked candidates
are never chosen.

- agreement: share of steps where the best valid candidate by score is the expert's action.
- regret: (max valid gain - gain of the chosen candidate) / (max - min valid gain), 0 when
  the spread is 0; mean over steps.
- topb_overlap: per AL round (b = its number of steps), |top-b by score ∩ top-b by oracle
  gain| / b on the round's first step; mean over rounds.
"""

from __future__ import annotations

import numpy as np

from metaal.acquisition.features import FEATURE_NAMES, HEURISTIC_FEATURES

METRICS = ("agreement", "topb_overlap", "regret")


def heuristic_names() -> list[str]:
    return [*HEURISTIC_FEATURES, "random"]


def heuristic_scores(candidates: np.ndarray, name: str, seed: int = 0, feature_names=None) -> np.ndarray:
    """Scores (N, K) of a classic heuristic ("pick the extreme value of one feature") or "random"."""
    cand = np.asarray(candidates)
    if name == "random":
        return np.random.default_rng(seed).random(cand.shape[:2])
    if name not in HEURISTIC_FEATURES:
        raise ValueError(f"unknown heuristic '{name}' (choose from {', '.join(heuristic_names())})")
    feature, sign = HEURISTIC_FEATURES[name]
    names = list(FEATURE_NAMES if feature_names is None else feature_names)
    return sign * cand[..., names.index(feature)].astype(np.float64)


def _steps(trajs_or_steps) -> dict:
    return trajs_or_steps.steps if hasattr(trajs_or_steps, "steps") else trajs_or_steps


def _masked(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).copy()
    s[~np.isfinite(s)] = -1e300
    s[~mask] = -np.inf
    return s


def round_starts(steps: dict) -> tuple[np.ndarray, np.ndarray]:
    """(first step, number of steps) of every AL round, from round_end and episode changes."""
    n = len(steps["action"])
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    end = np.asarray(steps.get("round_end", np.zeros(n, bool)), bool).copy()
    ep = np.asarray(steps.get("episode", np.zeros(n, np.int64)))
    end[:-1] |= ep[1:] != ep[:-1]
    end[-1] = True
    ends = np.flatnonzero(end)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return starts, ends - starts + 1


def decision_metrics(scores: np.ndarray, trajs_or_steps) -> dict:
    """{"agreement", "topb_overlap", "regret"} of ``scores`` (N, K) on the given steps."""
    st = _steps(trajs_or_steps)
    mask = np.asarray(st["mask"], bool)
    N = len(mask)
    if N == 0:
        return {k: None for k in METRICS}
    s = _masked(scores, mask)
    gain = np.asarray(st["oracle_gain"], dtype=np.float64)
    g_valid = mask & np.isfinite(gain)
    chosen = s.argmax(1)
    agreement = float(np.mean(chosen == np.asarray(st["expert_action"])))

    g_hi = np.where(g_valid, gain, -np.inf).max(1)
    g_lo = np.where(g_valid, gain, np.inf).min(1)
    g_ch = gain[np.arange(N), chosen]
    spread = g_hi - g_lo
    ok = np.isfinite(spread) & np.isfinite(g_ch)
    regret = np.zeros(N)
    pos = ok & (spread > 0)
    regret[pos] = (g_hi[pos] - g_ch[pos]) / spread[pos]
    regret_mean = float(regret[ok].mean()) if ok.any() else None

    starts, sizes = round_starts(st)
    overlaps = []
    for i, b in zip(starts, sizes):
        valid = np.flatnonzero(g_valid[i])
        b = min(int(b), len(valid))
        if b == 0:
            continue
        top_s = valid[np.argsort(-s[i, valid], kind="stable")[:b]]
        top_g = valid[np.argsort(-gain[i, valid], kind="stable")[:b]]
        overlaps.append(len(np.intersect1d(top_s, top_g)) / b)
    return {
        "agreement": agreement,
        "topb_overlap": float(np.mean(overlaps)) if overlaps else None,
        "regret": regret_mean,
    }


def heuristic_metrics(trajs_or_steps, seed: int = 0, feature_names=None) -> dict[str, dict]:
    """decision_metrics of every heuristic (and random) on the given steps."""
    st = _steps(trajs_or_steps)
    return {
        name: decision_metrics(heuristic_scores(st["candidates"], name, seed=seed, feature_names=feature_names), st)
        for name in heuristic_names()
    }


def validation_table(validation: dict) -> str:
    """Printable table: one row for the policy (when present) and one per heuristic."""
    rows = []
    if validation.get("policy"):
        rows.append(("policy", validation["policy"]))
    rows += list((validation.get("heuristics") or {}).items())

    def fmt(v):
        return "-" if v is None else f"{v:.3f}"

    head = ("strategy", "agreement", "top-b overlap", "regret")
    body = [(name, fmt(m.get("agreement")), fmt(m.get("topb_overlap")), fmt(m.get("regret"))) for name, m in rows]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(4)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if validation.get("episodes") is not None:
        lines.append(f"({validation['episodes']} held-out episodes; regret: lower is better)")
    return "\n".join(lines)
