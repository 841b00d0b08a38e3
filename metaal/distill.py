"""Distillation: trajectory stores -> a small, permutation-equivariant acquisition policy.

Algorithms (``DistillConfig.algo``):

- ``bc``   d3rlpy DiscreteBC on the expert's actions (imitation).
- ``cql``  d3rlpy DiscreteCQL on the roll-in's actions and the store's rewards (offline RL).
- ``bcq``  d3rlpy DiscreteBCQ, same data as cql (its imitator has its own scorer).
- ``gain`` plain PyTorch: regress every valid candidate's oracle gain, turned into a
  within-step rank percentile in [0, 1] (gamma = 0, LAL-style; rank targets beat z-scored
  gains in DESIGN's study).  No d3rlpy model is written for it.

The bridge to d3rlpy (``build_dataset``): observation = flat K*F candidate features then G
context values; masked candidates have every feature set to ``networks.SENTINEL`` and the
scorer gives them a score below every valid one, so they are never chosen.  Action = the
candidate index (``action_size=K``).  Episodes are the store's episodes: the last step of
each ends with a terminal (when the store says terminal) or a timeout, so none is dropped.

Held-out *episodes* (``val_fraction``, chosen by ``seed``) give the validation block of
``metaal-policy.json``: agreement with the expert, top-b overlap and regret, for the policy
and for every classic heuristic on the same steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from metaal.acquisition import features
from metaal.acquisition.agreement import decision_metrics, heuristic_metrics
from metaal.errors import MetaalError
from metaal.io import json_default
from metaal.store.records import Trajectories

ALGOS = ("bc", "cql", "bcq", "gain")
GAIN_TARGETS = ("loss", "accuracy")
POLICY_FORMAT = "metaal-policy"
POLICY_FORMAT_VERSION = 1
POLICY_FILE = "metaal-policy.json"
SCORER_FILE = "scorer.pt"
MODEL_FILE = "model.d3"


@dataclasses.dataclass
class DistillConfig:
    """Small-problem defaults (d3rlpy's own are Atari-scale)."""

    algo: str = "bc"
    steps: int = 5000  # gradient steps
    batch_size: int = 256  # steps (not candidates) per minibatch
    lr: float = 1e-3
    hidden: int = 64
    val_fraction: float = 0.1  # share of episodes held out
    seed: int = 0
    device: str = "cpu"
    verbose: bool = False
    gamma: float = 0.9  # cql/bcq discount (per pick)
    target_update_interval: int = 200  # cql/bcq (d3rlpy default 8000)
    beta: float = 1e-3  # bc/bcq logit penalty (d3rlpy default 0.5)
    alpha: float = 1.0  # cql conservative weight
    action_flexibility: float = 0.3  # bcq imitator threshold
    target: str = "loss"  # gain: which oracle gain is ranked ("loss", or "accuracy" with loss breaking ties)
    # torch threads while training (restored afterwards); None leaves torch's setting.  1 is the
    # safe default for these small networks: extra threads gain little and, when other processes
    # share the cores, oversubscription made training ~10x slower here (see scripts/bench_distill.py).
    threads: int | None = 1

    def validate(self) -> None:
        if self.algo not in ALGOS:
            raise MetaalError(f"unknown distillation algorithm '{self.algo}' (choose from {', '.join(ALGOS)})")
        for name in ("steps", "batch_size", "hidden"):
            if int(getattr(self, name)) < 1:
                raise MetaalError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise MetaalError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.lr <= 0:
            raise MetaalError(f"lr must be positive, got {self.lr}")
        if self.target not in GAIN_TARGETS:
            raise MetaalError(f"unknown gain target '{self.target}' (choose from {', '.join(GAIN_TARGETS)})")
        if self.threads is not None and self.threads < 1:
            raise MetaalError(f"threads must be at least 1, got {self.threads}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------ data


def _episode_bounds(steps: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(episode ids, first step, length) of the contiguous episode runs in the step arrays."""
    ep = np.asarray(steps["episode"])
    if len(ep) == 0:
        return ep, np.zeros(0, np.int64), np.zeros(0, np.int64)
    change = np.flatnonzero(ep[1:] != ep[:-1]) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [len(ep)]]))
    ids = ep[starts]
    if len(np.unique(ids)) != len(ids):
        raise MetaalError("trajectory steps are not grouped by episode (an episode id appears in two runs)")
    return ids, starts, lengths


def split_episodes(trajs: Trajectories, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train episode ids, validation episode ids), a seeded split of whole episodes."""
    ids, _, _ = _episode_bounds(trajs.steps)
    n = len(ids)
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    else:
        n_val = 0
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(ids[perm[n_val:]]), np.sort(ids[perm[:n_val]])


def subset_steps(steps: dict, episode_ids: np.ndarray | None) -> tuple[dict, np.ndarray]:
    """The step arrays of the given episodes (order kept) and the selected step indices."""
    if episode_ids is None:
        idx = np.arange(len(steps["action"]))
    else:
        idx = np.flatnonzero(np.isin(steps["episode"], episode_ids))
    return {k: np.asarray(v)[idx] for k, v in steps.items()}, idx


def build_dataset(trajs: Trajectories, algo: str = "bc", episodes: np.ndarray | None = None, verbose: bool = False):
    """The d3rlpy bridge: (MDPDataset, info) for the given episodes (default: all).

    Observations are ``networks.flatten_observations`` (masked candidates -> SENTINEL);
    actions are ``expert_action`` for bc, the roll-in ``action`` otherwise; rewards are the
    store's; the last step of every episode is a terminal if the store marks it terminal,
    else a timeout.  ``info`` has K, F, G, the selected step indices and episode ids."""
    from metaal.acquisition.networks import flatten_observations, import_d3rlpy

    d3rlpy = import_d3rlpy()
    st, idx = subset_steps(trajs.steps, episodes)
    if len(idx) == 0:
        raise MetaalError("no trajectory steps to train on")
    N, K, F = st["candidates"].shape
    G = st["context"].shape[1]
    mask = np.asarray(st["mask"], bool)
    obs = flatten_observations(st["candidates"], st["context"], mask)
    actions = np.asarray(st["expert_action"] if algo == "bc" else st["action"]).astype(np.int64)
    bad = (actions < 0) | (actions >= K)
    if not bad.any():
        bad = ~mask[np.arange(N), actions]
    if bad.any():
        which = "expert_action" if algo == "bc" else "action"
        raise MetaalError(f"{int(bad.sum())} stored {which} values point at masked or out-of-range candidates")
    rewards = np.nan_to_num(np.asarray(st["reward"], np.float32), nan=0.0).reshape(-1, 1)
    ids, starts, lengths = _episode_bounds(st)
    last = np.zeros(N, bool)
    last[starts + lengths - 1] = True
    terminal = np.asarray(st["terminal"], bool)
    terminals = (last & terminal).astype(np.float32)
    timeouts = (last & ~terminal).astype(np.float32)
    with _quiet(verbose):
        dataset = d3rlpy.dataset.MDPDataset(
            observations=obs,
            actions=actions.reshape(-1, 1),
            rewards=rewards,
            terminals=terminals,
            timeouts=timeouts,
            action_space=d3rlpy.ActionSpace.DISCRETE,
            action_size=K,
        )
    return dataset, {"K": K, "F": F, "G": G, "steps": idx, "episodes": ids}


def rank_percentiles(gain: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Within-step rank percentile of each valid gain (0 = worst, 1 = best, ties averaged; 0.5 if alone)."""
    from scipy.stats import rankdata

    valid = valid & np.isfinite(gain)
    g = np.where(valid, gain, -np.inf).astype(np.float64)
    ranks = rankdata(g, axis=1, method="average")  # masked (-inf) take the lowest ranks
    n_masked = (~valid).sum(1, keepdims=True)
    n_valid = valid.sum(1, keepdims=True)
    pct = (ranks - n_masked - 1) / np.maximum(n_valid - 1, 1)
    pct = np.where(n_valid > 1, pct, 0.5)
    return np.where(valid, pct, 0.0).astype(np.float32)


# ------------------------------------------------------------------------------------------ training


@contextlib.contextmanager
def _quiet(verbose: bool):
    """Silence d3rlpy's structlog console output (info and warnings) unless verbose."""
    if verbose:
        yield
        return
    import structlog

    old = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    try:
        yield
    finally:
        structlog.configure(**old)


@contextlib.contextmanager
def _threads(n: int | None):
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def target_gain(steps: dict, target: str) -> np.ndarray:
    """The oracle gain the regressor ranks.

    Validation loss rewards confident, well-calibrated predictions as much as correct ones;
    accuracy gain is what AULC measures, but it is coarse, so loss gain breaks its ties.
    Without an accuracy gain (first-order oracle) the loss gain is used.
    """
    loss = np.asarray(steps["oracle_gain"], np.float64)
    if target == "loss":
        return loss
    acc = np.asarray(steps["oracle_acc_gain"], np.float64)
    spread = np.nanmax(np.abs(np.where(np.isfinite(loss), loss, np.nan)), axis=1, keepdims=True)
    tie_break = 1e-3 * loss / np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)
    return np.where(np.isfinite(acc), acc + tie_break, loss)


def _train_gain(trajs: Trajectories, train_ids, cfg: DistillConfig, bar) -> tuple[torch.nn.Module, dict]:
    from metaal.acquisition.networks import CandidateScorer

    st, _ = subset_steps(trajs.steps, train_ids)
    mask = np.asarray(st["mask"], bool)
    gain = target_gain(st, cfg.target)
    weight = mask & np.isfinite(gain)
    keep = weight.sum(1) >= 2  # a step with one valid candidate has no ranking to learn
    if not keep.any():
        raise MetaalError("no training step has two or more valid candidates with an oracle gain")
    dev = torch.device(cfg.device)
    cand = torch.as_tensor(np.nan_to_num(st["candidates"][keep].astype(np.float32)), device=dev)
    ctx = torch.as_tensor(np.nan_to_num(st["context"][keep].astype(np.float32)), device=dev)
    m = torch.as_tensor(mask[keep], device=dev)
    tgt = torch.as_tensor(rank_percentiles(gain[keep], mask[keep]), device=dev)
    w = torch.as_tensor(weight[keep].astype(np.float32), device=dev)
    n = cand.shape[0]

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    scorer = CandidateScorer(cand.shape[2], ctx.shape[1], cfg.hidden).to(dev)
    opt = torch.optim.Adam(scorer.parameters(), lr=cfg.lr)
    curve, window = [], []
    every = max(1, cfg.steps // 20)
    for step in range(1, cfg.steps + 1):
        b = torch.as_tensor(rng.integers(0, n, size=cfg.batch_size), device=dev)
        pred = scorer(cand[b], ctx[b], m[b])
        wb = w[b]
        loss = ((pred - tgt[b]) ** 2 * wb).sum() / wb.sum().clamp_min(1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        window.append(float(loss.detach()))
        if step % every == 0 or step == cfg.steps:
            curve.append([step, float(np.mean(window))])
            window = []
        bar.update(1)
    scorer.eval()
    return scorer.cpu(), {"loss_name": "rank_mse", "curve": curve}


def _d3rlpy_config(cfg: DistillConfig, F: int, G: int):
    from metaal.acquisition.networks import import_d3rlpy, register_d3rlpy

    d3rlpy = import_d3rlpy()
    glue = register_d3rlpy()
    CandidateEncoderFactory, IdentityQFunctionFactory = glue["CandidateEncoderFactory"], glue["IdentityQFunctionFactory"]
    enc = CandidateEncoderFactory(n_features=F, n_context=G, hidden=cfg.hidden)
    if cfg.algo == "bc":
        return d3rlpy.algos.DiscreteBCConfig(batch_size=cfg.batch_size, learning_rate=cfg.lr, encoder_factory=enc, beta=cfg.beta)
    common = dict(
        batch_size=cfg.batch_size,
        learning_rate=cfg.lr,
        encoder_factory=enc,
        q_func_factory=IdentityQFunctionFactory(),
        gamma=cfg.gamma,
        n_critics=1,
        target_update_interval=cfg.target_update_interval,
    )
    if cfg.algo == "cql":
        return d3rlpy.algos.DiscreteCQLConfig(alpha=cfg.alpha, **common)
    # the imitator gets its own scorer: with a shared encoder and identity heads its logits would be Q
    return d3rlpy.algos.DiscreteBCQConfig(
        action_flexibility=cfg.action_flexibility, beta=cfg.beta, share_encoder=False, **common
    )


def _train_d3rlpy(trajs: Trajectories, train_ids, cfg: DistillConfig, work_dir: Path, bar):
    from metaal.acquisition.networks import (
        BCQScorer,
        CandidateScorer,
        d3rlpy_modules,
        freeze_identity_head,
        import_d3rlpy,
    )

    d3rlpy = import_d3rlpy()
    dataset, info = build_dataset(trajs, cfg.algo, train_ids, verbose=cfg.verbose)
    F, G = info["F"], info["G"]
    d3rlpy.seed(cfg.seed)
    algo = _d3rlpy_config(cfg, F, G).create(device=cfg.device)
    algo.build_with_dataset(dataset)
    if hasattr(algo.impl.modules, "imitator"):
        freeze_identity_head(algo.impl.modules.imitator)
    if cfg.verbose:
        adapter = d3rlpy.logging.FileAdapterFactory(root_dir=str(work_dir / "d3rlpy_logs"))
    else:
        adapter = d3rlpy.logging.NoopAdapterFactory()

    def on_step(_algo, _epoch, _total):
        bar.update(1)

    chunk = max(1, cfg.steps // 20)
    plan = [(cfg.steps // chunk * chunk, chunk)]
    if cfg.steps % chunk:
        plan.append((cfg.steps % chunk, cfg.steps % chunk))
    curve, first, last, done = [], None, None, 0
    for i, (n_steps, per_epoch) in enumerate(plan):
        for _epoch, metrics in algo.fitter(
            dataset,
            n_steps=n_steps,
            n_steps_per_epoch=per_epoch,
            experiment_name=f"metaal_{cfg.algo}" + (f"_{i}" if i else ""),
            logger_adapter=adapter,
            show_progress=False,
            save_interval=10**9,
            callback=on_step,
        ):
            done += per_epoch
            losses = {k: float(v) for k, v in metrics.items() if k.endswith("loss")}
            first = first or losses
            last = losses
            curve.append([done, losses.get("loss")])
    mods = d3rlpy_modules(algo)
    if cfg.algo == "bcq":
        scorer = BCQScorer(F, G, cfg.hidden, cfg.action_flexibility)
        scorer.q.load_state_dict(mods["q"].state_dict())
        scorer.imitator.load_state_dict(mods["imitator"].state_dict())
    else:
        scorer = CandidateScorer(F, G, cfg.hidden)
        scorer.load_state_dict(mods["imitator" if cfg.algo == "bc" else "q"].state_dict())
    scorer = scorer.cpu().eval()
    return scorer, {"loss_name": "loss", "curve": curve, "losses_start": first, "losses_end": last}, algo


def score_steps(scorer: torch.nn.Module, steps: dict, batch: int = 4096) -> np.ndarray:
    """Scores (N, K) of a scorer on stored steps (masked candidates far below every valid one)."""
    from metaal.acquisition.networks import flatten_observations

    obs = flatten_observations(steps["candidates"], steps["context"], steps["mask"])
    out = []
    p = next(scorer.parameters())
    with torch.no_grad():
        for i in range(0, len(obs), batch):
            out.append(scorer(torch.as_tensor(obs[i : i + batch], device=p.device)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, steps["mask"].shape[1]), np.float32)


# ------------------------------------------------------------------------------------------ job


def _load(stores) -> tuple[Trajectories, list[dict]]:
    if isinstance(stores, Trajectories):
        attrs_sources = stores.attrs.get("sources")
        if isinstance(attrs_sources, list) and attrs_sources:
            return stores, attrs_sources
        return stores, [{"path": None, "fingerprint": _memory_fingerprint(stores)}]
    if isinstance(stores, str | os.PathLike):
        stores = [stores]
    paths = [str(p) for p in stores]
    if not paths:
        raise MetaalError("no trajectory store given")
    from metaal.store import fingerprint, read_trajectories

    trajs = read_trajectories(paths)
    return trajs, [{"path": p, "fingerprint": fingerprint(p)} for p in paths]


def _memory_fingerprint(trajs: Trajectories) -> str:
    h = hashlib.sha256()
    for k in sorted(trajs.steps):
        a = np.ascontiguousarray(trajs.steps[k])
        h.update(k.encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return "sha256:" + h.hexdigest()[:16]


def _check_store(trajs: Trajectories, where: str) -> None:
    schema = trajs.attrs.get("schema")
    if schema is None:
        raise MetaalError(f"{where}: no feature schema in the store attributes")
    features.check_schema(schema, where)
    F, G = len(features.FEATURE_NAMES), len(features.CONTEXT_NAMES)
    c, x = trajs.steps["candidates"], trajs.steps["context"]
    if c.ndim != 3 or c.shape[2] != F or x.ndim != 2 or x.shape[1] != G:
        raise MetaalError(f"{where}: step arrays have shape {c.shape} / {x.shape}, expected (N, K, {F}) / (N, {G})")
    if trajs.n_steps == 0:
        raise MetaalError(f"{where}: the store has no committed steps")


def _versions() -> dict:
    from metaal.io import package_versions

    v = package_versions()
    v["python"] = platform.python_version()
    return v


def _prepare_out(out_dir: Path) -> Path:
    """A fresh temp dir beside ``out_dir``; refuses to replace a directory that is not a policy."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise MetaalError(f"{out_dir} exists and is not a directory")
        if any(out_dir.iterdir()) and not (out_dir / POLICY_FILE).is_file():
            raise MetaalError(f"{out_dir} is a non-empty directory that is not a policy; refusing to replace it")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    except OSError as exc:
        raise MetaalError(f"cannot write policy to {out_dir}: {exc.strerror or exc}") from None


def _commit(tmp: Path, out_dir: Path) -> None:
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
        os.rmdir(old)
        os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def distill(stores: list[str] | str | Trajectories, config: DistillConfig | None = None, out_dir: str | Path = "policy", progress: bool = True) -> dict:
    """Train a policy on trajectory stores and write the artifact to ``out_dir``; returns its metadata."""
    cfg = config or DistillConfig()
    cfg.validate()
    trajs, sources = _load(stores)
    where = ", ".join(str(s.get("path") or "trajectories") for s in sources)
    _check_store(trajs, where)
    train_ids, val_ids = split_episodes(trajs, cfg.val_fraction, cfg.seed)
    out_dir = Path(out_dir)
    tmp = _prepare_out(out_dir)
    try:
        with _threads(cfg.threads), _quiet(cfg.verbose), tqdm(
            total=cfg.steps, desc=f"distill {cfg.algo}", unit="step", disable=not progress, leave=False
        ) as bar:
            t0 = time.perf_counter()
            algo = None
            if cfg.algo == "gain":
                scorer, summary = _train_gain(trajs, train_ids, cfg, bar)
            else:
                scorer, summary, algo = _train_d3rlpy(trajs, train_ids, cfg, tmp, bar)
            seconds = time.perf_counter() - t0
            if algo is not None:
                algo.save(str(tmp / MODEL_FILE))

        val_steps, _ = subset_steps(trajs.steps, val_ids)
        if len(val_ids):
            validation = {
                "policy": decision_metrics(score_steps(scorer, val_steps), val_steps),
                "heuristics": heuristic_metrics(val_steps, seed=cfg.seed),
                "episodes": int(len(val_ids)),
                "steps": int(len(val_steps["action"])),
            }
        else:
            validation = {"policy": None, "heuristics": {}, "episodes": 0, "steps": 0}

        curve = summary["curve"]
        losses = [c[1] for c in curve if c[1] is not None]
        scorer_info = {
            "file": SCORER_FILE,
            "class": type(scorer).__name__,
            "n_features": len(features.FEATURE_NAMES),
            "n_context": len(features.CONTEXT_NAMES),
            "hidden": cfg.hidden,
            "mask": "masked candidates: every feature = networks.SENTINEL in the flat observation (or mask=False)",
        }
        if cfg.algo == "bcq":
            scorer_info["action_flexibility"] = cfg.action_flexibility
        meta = {
            "format": POLICY_FORMAT,
            "format_version": POLICY_FORMAT_VERSION,
            "schema": features.schema(),
            "K": int(trajs.K),
            "algorithm": cfg.algo,
            "scorer": scorer_info,
            "d3rlpy_model": MODEL_FILE if algo is not None else None,
            "d3rlpy_model_note": (
                "d3rlpy's pickle; load only with d3rlpy.load_learnable after `import metaal.acquisition.networks`, and only if trusted"
                if algo is not None
                else "no d3rlpy model: the gain regressor is trained in plain PyTorch"
            ),
            "hyperparameters": cfg.to_dict(),
            "training": {
                "steps": cfg.steps,
                "seconds": round(seconds, 3),
                "steps_per_second": round(cfg.steps / seconds, 2) if seconds > 0 else None,
                "loss_name": summary["loss_name"],
                "loss_start": losses[0] if losses else None,
                "loss_end": losses[-1] if losses else None,
                "train_episodes": int(len(train_ids)),
                "train_steps": int(np.isin(trajs.steps["episode"], train_ids).sum()),
                "curve": curve,
                **({"losses_start": summary["losses_start"], "losses_end": summary["losses_end"]} if "losses_start" in summary else {}),
            },
            "sources": sources,
            "versions": _versions(),
            "validation": validation,
        }
        meta = _clean(meta)
        torch.save({k: v.detach().cpu() for k, v in scorer.state_dict().items()}, tmp / SCORER_FILE)
        (tmp / POLICY_FILE).write_text(json.dumps(meta, indent=2, default=json_default, allow_nan=False) + "\n")
        _commit(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _clean(o):
    """NaN/inf floats -> None, recursively (strict JSON)."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    if isinstance(o, float | np.floating):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, np.integer):
        return int(o)
    return o

