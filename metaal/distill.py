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
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from metaal.acquisition import features
from metaal.acquisition.agreement import decision_metrics, heuristic_metrics
from metaal.errors import MetaalError
from metaal.io import compute_platform, hold_lock, provenance
from metaal.metrics import accuracy_then_loss
from metaal.policy.artefact import (
    MODEL_FILE,
    POLICY_FORMAT,
    POLICY_FORMAT_VERSION,
    SCORER_FILE,
    is_policy,
    write_policy,
)
from metaal.store.records import Trajectories

ALGOS = ("bc", "cql", "bcq", "gain")
GAIN_TARGETS = ("loss", "accuracy")
COUNT_CONTEXTS = ("raw", "per-class")  # features.count_context also reads older policies' per-class-with-classes
# DistillConfig fields of levers tried and not adopted (docs/results.md), with the value that meant "off": older
# policies record them in their hyperparameters; a policy with these values is the same as one without them
RETIRED = {"step_weight": "uniform", "ensemble": 1, "choice": "items"}
# the DistillConfig fields a [distill] TOML section may set (`metaal distill --config`, `metaal run --config`)
CONFIG_KEYS = frozenset({"algo", "target", "steps", "batch_size", "lr", "hidden", "val_fraction", "seed", "device",
                         "drop_features", "count_context"})
CHECKPOINT_FORMAT = "metaal-distill-checkpoint"
CHECKPOINT_FILE = "checkpoint.pt"
STAGING_DIR = "staging"
WORK_LOCK = ".lock"  # in OUT.partial: held by the running distill (metaal.io.hold_lock)


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
    # feature ablation: these candidate or context features are held at 0 in training and at inference
    drop_features: list[str] = dataclasses.field(default_factory=list)
    # the label count the policy sees (features.count_context): "raw", or "per-class": log((1 + labelled) /
    # classes) in place of log_labelled, log_classes held at 0 (recorded in the artifact; Policy.score does the same)
    count_context: str = "raw"
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
        features.feature_columns(self.drop_features)  # unknown names are errors
        if self.count_context not in COUNT_CONTEXTS:
            raise MetaalError(f"unknown count context '{self.count_context}' (choose from {', '.join(COUNT_CONTEXTS)})")
        if self.count_context.startswith("per-class") and "log_labelled" in self.drop_features:
            raise MetaalError(f"count_context '{self.count_context}' puts the per-class count in log_labelled's column: "
                              "do not drop log_labelled as well")

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
    from metaal.policy.networks import flatten_observations, import_d3rlpy

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


def partial_dir(out_dir: str | Path) -> Path:
    """The work directory of a distillation into ``out_dir``: ``OUT.partial`` beside it.

    It holds ``checkpoint.pt`` (the training state, rewritten atomically every 1/20 of the steps) and
    ``staging/`` (the artifact being written).  ``staging/`` becomes ``out_dir`` by one rename, and the
    whole work directory is removed once that is done, so ``out_dir`` is never seen half-written.
    A killed run leaves it behind; the same command resumes from the checkpoint.
    """
    out_dir = Path(out_dir)
    return out_dir.parent / f"{out_dir.name}.partial"


class Checkpoints:
    """Periodic training state of one distillation (``OUT.partial/checkpoint.pt``).

    The file is a ``torch.save`` of tensors, state dicts and a JSON string only, read back with
    ``torch.load(weights_only=True)``: a planted checkpoint cannot run code.  ``key`` identifies the
    sources and the settings; a checkpoint with another key is discarded (training restarts, and
    ``notify`` says so).
    """

    def __init__(self, work_dir: Path, key: str, notify):
        self.dir = Path(work_dir)
        self.file = self.dir / CHECKPOINT_FILE
        self.key = key
        self.notify = notify

    def load(self) -> dict | None:
        """The saved state (``meta`` a dict, the rest tensors / state dicts), or None to start afresh."""
        if not self.file.is_file():
            return None
        try:
            state = torch.load(self.file, map_location="cpu", weights_only=True)
            meta = json.loads(state["meta"])
            if not isinstance(meta, dict):
                raise ValueError("no metadata")
        except Exception as exc:  # truncated, corrupt, or not weights-only (refused without running it)
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
            self.notify(f"distill: ignoring unreadable checkpoint {self.file} ({msg}); training from scratch")
            return None
        if meta.get("format") != CHECKPOINT_FORMAT or meta.get("key") != self.key:
            self.notify(f"distill: checkpoint {self.file} was made from other stores or settings; training from scratch")
            return None
        state["meta"] = meta
        return state

    @contextlib.contextmanager
    def restoring(self):
        """Around restoring a loaded state: a state that does not fit is a one-line error (and the
        work directory is then removed, so that the next run starts afresh)."""
        try:
            yield
        except Exception as exc:
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise MetaalError(f"checkpoint {self.file} does not fit this training run ({type(exc).__name__}: {msg}); "
                              "it was discarded, run the command again to train from scratch") from None

    def save(self, step: int, meta: dict, tensors: dict) -> None:
        """Write the state atomically (temp file, fsync, rename): a kill leaves the old or the new one."""
        self.dir.mkdir(parents=True, exist_ok=True)
        payload = {**tensors, "meta": json.dumps({"format": CHECKPOINT_FORMAT, "key": self.key, "step": int(step), **meta})}
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".checkpoint.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(payload, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _checkpoint_key(sources: list[dict], cfg: DistillConfig, train_ids: np.ndarray) -> str:
    """What a checkpoint must match to be resumed: source fingerprints, settings, training episodes."""
    settings = {k: v for k, v in cfg.to_dict().items() if k not in ("verbose", "threads")}
    ident = {"sources": [s.get("fingerprint") for s in sources], "settings": settings,
             "train_episodes": [int(i) for i in train_ids], "format": CHECKPOINT_FORMAT, "version": 1}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


def _numpy_global_rng_state() -> tuple[dict, dict]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}, {
        "np_global_keys": torch.as_tensor(np.asarray(keys, dtype=np.int64))
    }


def _set_numpy_global_rng_state(meta: dict, tensors: dict) -> None:
    keys = tensors["np_global_keys"].numpy().astype(np.uint32)
    np.random.set_state((meta["name"], keys, meta["pos"], meta["has_gauss"], meta["cached_gaussian"]))


def target_gain(steps: dict, target: str) -> np.ndarray:
    """The oracle gain the regressor ranks.

    Validation loss rewards confident, well-calibrated predictions as much as correct ones;
    accuracy gain is what AULC measures, but it is coarse, so loss gain breaks its ties.
    Without an accuracy gain (first-order oracle) the loss gain is used.
    """
    return ranked_gain(steps["oracle_gain"], steps["oracle_acc_gain"], target)


def ranked_gain(loss, acc, target: str) -> np.ndarray:
    """``target_gain`` from the loss and accuracy gains themselves (per candidate or per batch)."""
    loss = np.asarray(loss, np.float64)
    if target == "loss":
        return loss
    acc = np.asarray(acc, np.float64)
    return np.where(np.isfinite(acc), accuracy_then_loss(loss, acc), loss)


def _train_gain(trajs: Trajectories, train_ids, cfg: DistillConfig, bar, ckpt: Checkpoints | None = None) -> tuple[torch.nn.Module, dict]:
    """Every step: each candidate's score regresses its gain's rank percentile among the step's candidates."""
    st, _ = subset_steps(trajs.steps, train_ids)
    mask = np.asarray(st["mask"], bool)
    gain = target_gain(st, cfg.target)
    weight = mask & np.isfinite(gain)
    keep = weight.sum(1) >= 2  # a step with one valid candidate has no ranking to learn
    if not keep.any():
        raise MetaalError("no training step has two or more valid candidates with an oracle gain")
    dev = torch.device(cfg.device)
    tgt = torch.as_tensor(rank_percentiles(gain[keep], mask[keep]), device=dev)
    w = torch.as_tensor(weight[keep].astype(np.float32), device=dev)

    def loss(pred, b):
        wb = w[b]
        return ((pred - tgt[b]) ** 2 * wb).sum() / wb.sum().clamp_min(1.0)

    scorer, curve, start = _fit_scorer(st["candidates"][keep], st["context"][keep], mask[keep], loss, cfg, bar, ckpt)
    return scorer, {"loss_name": "rank_mse", "curve": curve, "resumed_from_step": start}


def _fit_scorer(candidates, context, mask, loss_fn, cfg: DistillConfig, bar, ckpt: Checkpoints | None):
    """Adam on ``loss_fn(scores of a minibatch of rows, row indices)``; resumable from ``ckpt``.
    Returns (scorer, loss curve, step resumed from)."""
    from metaal.policy.networks import CandidateScorer

    dev = torch.device(cfg.device)
    cand = torch.as_tensor(np.nan_to_num(np.asarray(candidates, np.float32)), device=dev)
    ctx = torch.as_tensor(np.nan_to_num(np.asarray(context, np.float32)), device=dev)
    m = torch.as_tensor(np.asarray(mask, bool), device=dev)
    n = cand.shape[0]

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    scorer = CandidateScorer(cand.shape[2], ctx.shape[1], cfg.hidden).to(dev)
    opt = torch.optim.Adam(scorer.parameters(), lr=cfg.lr)
    curve, window = [], []
    every = max(1, cfg.steps // 20)
    start = 0
    state = ckpt.load() if ckpt is not None else None
    if state is not None:  # resume: weights, optimiser, both RNGs and the loss curve
        with ckpt.restoring():
            meta = state["meta"]
            scorer.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            rng.bit_generator.state = meta["rng"]
            torch.set_rng_state(state["torch_rng"])
            curve, start = meta["curve"], int(meta["step"])
        ckpt.notify(f"distill: resuming from the checkpoint at step {start} of {cfg.steps}")
        bar.update(start)
    for step in range(start + 1, cfg.steps + 1):
        b = torch.as_tensor(rng.integers(0, n, size=cfg.batch_size), device=dev)
        loss = loss_fn(scorer(cand[b], ctx[b], m[b]), b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        window.append(float(loss.detach()))
        if step % every == 0 or step == cfg.steps:
            curve.append([step, float(np.mean(window))])
            window = []
            if ckpt is not None:  # the window is empty here: nothing else to save
                ckpt.save(step, {"rng": rng.bit_generator.state, "curve": curve},
                          {"model": scorer.state_dict(), "optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state()})
        bar.update(1)
    scorer.eval()
    return scorer.cpu(), curve, start


def _d3rlpy_config(cfg: DistillConfig, F: int, G: int):
    from metaal.policy.networks import import_d3rlpy, register_d3rlpy

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


def _train_d3rlpy(trajs: Trajectories, train_ids, cfg: DistillConfig, work_dir: Path, bar, ckpt: Checkpoints | None = None):
    from metaal.policy.networks import (
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
    modules = algo.impl._checkpointer.modules  # every network and optimiser of the algorithm, by name
    state = ckpt.load() if ckpt is not None else None
    if state is not None:  # resume: networks, optimisers, grad step, the RNGs d3rlpy samples with
        with ckpt.restoring():
            meta = state["meta"]
            for name, module in modules.items():
                module.load_state_dict(state["modules"][name])
            algo.set_grad_step(int(meta["grad_step"]))
            _set_numpy_global_rng_state(meta["np_global"], state)
            random.setstate((meta["py_random"][0], tuple(meta["py_random"][1]), meta["py_random"][2]))
            torch.set_rng_state(state["torch_rng"])
            curve, first, last, done = meta["curve"], meta["first"], meta["last"], int(meta["step"])
        ckpt.notify(f"distill: resuming from the checkpoint at step {done} of {cfg.steps}")
        bar.update(done)
        # the rest of the plan: finish the interrupted chunk run, then the remainder
        start, rest = done, []
        for n_steps, per_epoch in plan:
            if start >= n_steps:
                start -= n_steps
                continue
            rest.append((n_steps - start, per_epoch))
            start = 0
        plan = rest

    def save_checkpoint():
        np_meta, np_tensors = _numpy_global_rng_state()
        py = random.getstate()
        ckpt.save(done, {"curve": curve, "first": first, "last": last, "grad_step": int(algo.grad_step),
                         "np_global": np_meta, "py_random": [py[0], list(py[1]), py[2]]},
                  {"modules": {k: v.state_dict() for k, v in modules.items()}, "torch_rng": torch.get_rng_state(),
                   **np_tensors})

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
            if ckpt is not None:
                save_checkpoint()
    mods = d3rlpy_modules(algo)
    if cfg.algo == "bcq":
        scorer = BCQScorer(F, G, cfg.hidden, cfg.action_flexibility)
        scorer.q.load_state_dict(mods["q"].state_dict())
        scorer.imitator.load_state_dict(mods["imitator"].state_dict())
    else:
        scorer = CandidateScorer(F, G, cfg.hidden)
        scorer.load_state_dict(mods["imitator" if cfg.algo == "bc" else "q"].state_dict())
    scorer = scorer.cpu().eval()
    resumed = state["meta"]["step"] if state is not None else 0
    return scorer, {"loss_name": "loss", "curve": curve, "losses_start": first, "losses_end": last,
                    "resumed_from_step": resumed}, algo


def score_steps(scorer: torch.nn.Module, steps: dict, batch: int = 4096) -> np.ndarray:
    """Scores (N, K) of a scorer on stored steps (masked candidates far below every valid one)."""
    from metaal.policy.networks import flatten_observations

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


def _policy_inputs(trajs: Trajectories, names: list[str], count_context: str) -> Trajectories:
    """A copy of ``trajs`` as the policy sees them (the store itself is not touched): the count context
    transformed (features.count_context), then the ``names`` columns held at 0."""
    if not names and count_context == "raw":
        return trajs
    cand_cols, ctx_cols = features.feature_columns(names)
    steps = dict(trajs.steps)
    steps["candidates"] = np.array(steps["candidates"], copy=True)
    steps["candidates"][..., cand_cols] = 0.0
    steps["context"] = np.array(features.count_context(steps["context"], count_context), copy=True)
    steps["context"][..., ctx_cols] = 0.0
    return dataclasses.replace(trajs, steps=steps)


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


def _prepare_out(out_dir: Path):
    """The work directory ``OUT.partial`` (kept: it may hold a checkpoint) with an empty ``staging/``, and the
    lock (``OUT.partial/.lock``, an open file: close it to release) that keeps a second distill out of it.

    Refuses to replace a directory that is not a policy, or to use an ``OUT.partial`` that holds
    anything but a previous run's work."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise MetaalError(f"{out_dir} exists and is not a directory")
        if any(out_dir.iterdir()) and not is_policy(out_dir):
            raise MetaalError(f"{out_dir} is a non-empty directory that is not a policy; refusing to replace it")
    work = partial_dir(out_dir)
    if work.exists() and not work.is_dir():
        raise MetaalError(f"{work} exists and is not a directory; remove it to distil into {out_dir}")
    if work.is_dir():
        foreign = [p.name for p in work.iterdir()
                   if p.name not in (CHECKPOINT_FILE, STAGING_DIR, WORK_LOCK) and not p.name.startswith(".checkpoint.")]
        if foreign:
            raise MetaalError(f"{work} holds files that metaal did not write ({', '.join(sorted(foreign)[:3])}); refusing to use it")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        work.mkdir(exist_ok=True)
    except OSError as exc:
        raise MetaalError(f"cannot write policy to {out_dir}: {exc.strerror or exc}") from None
    lock = hold_lock(work / WORK_LOCK, f"policy {out_dir}")  # before touching another run's staging
    try:
        staging = work / STAGING_DIR
        if staging.exists():  # a killed run's half-written artifact: never used
            shutil.rmtree(staging)
        for stale in work.glob(".checkpoint.*.tmp"):
            stale.unlink()
        staging.mkdir()
        return work, lock
    except OSError as exc:
        lock.close()
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


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def check_distill(stores: list[str] | str | Trajectories, cfg: DistillConfig, out_dir: str | Path | None):
    """Every input of a distill, checked before its first training step, all problems reported together
    and nothing written: the settings, the stores (exist, readable to the last chunk, one schema and K,
    committed steps) and the policy location (a policy or
    nothing, not a file, writable).  Returns the loaded trajectories and their sources."""
    from metaal.errors import Problems
    from metaal.io import check_output_dir

    problems = Problems()
    with problems.check():
        cfg.validate()
    trajs = sources = None
    with problems.check():
        trajs, sources = _load(stores)
        where = ", ".join(str(s.get("path") or "trajectories") for s in sources)
        _check_store(trajs, where)
    if out_dir is not None:
        out_dir = Path(out_dir)
        with problems.check():
            if out_dir.is_dir() and any(out_dir.iterdir()) and not is_policy(out_dir):
                raise MetaalError(f"{out_dir} is a non-empty directory that is not a policy; refusing to replace it")
            try:
                check_output_dir(out_dir.parent, "policy directory")
            except MetaalError:
                raise MetaalError(f"cannot write policy to {out_dir}: {out_dir.parent} is not a writable directory") from None
            if out_dir.exists() and not out_dir.is_dir():
                raise MetaalError(f"{out_dir} exists and is not a directory")
    problems.raise_any()
    return trajs, sources


def distill(stores: list[str] | str | Trajectories, config: DistillConfig | None = None, out_dir: str | Path = "policy",
            progress: bool = True, notify=_stderr) -> dict:
    """Train a policy on trajectory stores and write the artifact to ``out_dir``; returns its metadata.

    Crash-safe: training state is checkpointed in ``OUT.partial`` (see ``partial_dir``); running the
    same call again after a kill resumes from the last checkpoint (the ``gain`` algorithm then ends
    with the same weights as an uninterrupted run).  ``out_dir`` appears only complete, by a rename.
    ``notify`` receives one-line messages about resuming or discarding a checkpoint."""
    cfg = config or DistillConfig()
    trajs, sources = check_distill(stores, cfg, out_dir)
    oracle = trajs.attrs.get("oracle") or {}
    stored = trajs  # the heuristics in the validation table read the stored features, dropped or not
    trajs = _policy_inputs(trajs, cfg.drop_features, cfg.count_context)
    train_ids, val_ids = split_episodes(trajs, cfg.val_fraction, cfg.seed)
    out_dir = Path(out_dir)
    work, lock = _prepare_out(out_dir)
    tmp = work / STAGING_DIR
    ckpt = Checkpoints(work, _checkpoint_key(sources, cfg, train_ids), notify or (lambda _m: None))
    try:
        with _threads(cfg.threads), _quiet(cfg.verbose), tqdm(
            total=cfg.steps, desc=f"distill {cfg.algo}", unit="step", disable=not progress, leave=False
        ) as bar:
            t0 = time.perf_counter()
            algo = None
            if cfg.algo == "gain":
                scorer, summary = _train_gain(trajs, train_ids, cfg, bar, ckpt)
            else:
                scorer, summary, algo = _train_d3rlpy(trajs, train_ids, cfg, tmp, bar, ckpt)
            seconds = time.perf_counter() - t0
        resumed = int(summary.get("resumed_from_step") or 0)

        val_steps, _ = subset_steps(trajs.steps, val_ids)
        if len(val_ids):
            stored_val = subset_steps(stored.steps, val_ids)[0]
            validation = {
                "policy": decision_metrics(score_steps(scorer, val_steps), val_steps),
                "heuristics": heuristic_metrics(stored_val, seed=cfg.seed),
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
            # candidates at deployment must be drawn the way the expert's were (see Policy.proposals)
            "proposals": "batches" if oracle.get("mode") == "batch" else "random",
            "margin_pool": int(oracle.get("margin_pool") or 0),
            "algorithm": cfg.algo,
            "dropped_features": list(cfg.drop_features),  # held at 0: Policy.score zeroes them too
            "count_context": cfg.count_context,  # Policy.score transforms the context the same way
            "scorer": scorer_info,
            "d3rlpy_model": MODEL_FILE if algo is not None else None,
            "d3rlpy_model_note": (
                "d3rlpy's pickle; load only with d3rlpy.load_learnable after `import metaal.policy.networks`, and only if trusted"
                if algo is not None
                else "no d3rlpy model: the gain regressor is trained in plain PyTorch"
            ),
            "hyperparameters": cfg.to_dict(),
            "training": {
                "steps": cfg.steps,
                "seconds": round(seconds, 3),
                "steps_per_second": round((cfg.steps - resumed) / seconds, 2) if seconds > 0 else None,
                **({"resumed_from_step": resumed} if resumed else {}),
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
            "platform": compute_platform(),
            "provenance": provenance(),
            "validation": validation,
        }
        meta = write_policy(tmp, scorer, meta, d3rlpy_algo=algo)
        _commit(tmp, out_dir)
    except MetaalError:
        shutil.rmtree(work, ignore_errors=True)  # a problem with the input: nothing worth resuming
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if not ckpt.file.is_file():
            shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        lock.close()
    shutil.rmtree(work, ignore_errors=True)
    return meta
