"""``distill``: stores in, a policy artefact out (``metaal.policy.artefact``), validated on held-out episodes."""

from __future__ import annotations

import contextlib
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from metaal.acquisition import features
from metaal.acquisition.agreement import decision_metrics, heuristic_metrics
from metaal.distill.checkpoint import STAGING_DIR, Checkpoints, checkpoint_key, commit, prepare_out
from metaal.distill.config import DistillConfig, GainConfig
from metaal.distill.data import check_store, load_sources, policy_inputs, split_episodes, subset_steps
from metaal.distill.gain import train_gain
from metaal.distill.offline import quiet, train_d3rlpy
from metaal.errors import MetaalError
from metaal.io import compute_platform, provenance
from metaal.policy.artefact import (
    MODEL_FILE,
    POLICY_FORMAT,
    POLICY_FORMAT_VERSION,
    SCORER_FILE,
    is_policy,
    write_policy,
)
from metaal.store.records import Trajectories


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

def _versions() -> dict:
    from metaal.io import package_versions

    v = package_versions()
    v["python"] = platform.python_version()
    return v

def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)

def check_distill(stores: list[str] | str | Trajectories, cfg: DistillConfig, out_dir: str | Path | None):
    """Every input of a distill, checked before its first training step, all problems reported together
    and nothing written: the settings, the stores (exist, readable to the last chunk, one schema and K,
    committed steps) and the policy location (a policy or nothing, not a
    file, writable).  Returns the loaded trajectories and their sources."""
    from metaal.errors import Problems
    from metaal.io import check_output_dir

    problems = Problems()
    with problems.check():
        cfg.validate()
    trajs = sources = None
    with problems.check():
        trajs, sources = load_sources(stores)
        where = ", ".join(str(s.get("path") or "trajectories") for s in sources)
        check_store(trajs, where)
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


def train(cfg: DistillConfig, trajs: Trajectories, train_ids, bar, ckpt: Checkpoints | None, work_dir: Path):
    """The chosen algorithm's trainer: (scorer, training summary, the d3rlpy algorithm or None)."""
    algo = cfg.algo_config()
    if isinstance(algo, GainConfig):
        scorer, summary = train_gain(trajs, train_ids, cfg, algo.target, bar, ckpt)
        return scorer, summary, None
    return train_d3rlpy(algo, trajs, train_ids, cfg, work_dir, bar, ckpt)


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
    trajs = policy_inputs(trajs, cfg.drop_features, cfg.count_context)
    train_ids, val_ids = split_episodes(trajs, cfg.val_fraction, cfg.seed)
    out_dir = Path(out_dir)
    work, lock = prepare_out(out_dir)
    tmp = work / STAGING_DIR
    ckpt = Checkpoints(work, checkpoint_key(sources, cfg, train_ids), notify or (lambda _m: None))
    try:
        with _threads(cfg.threads), quiet(cfg.verbose), tqdm(
            total=cfg.steps, desc=f"distill {cfg.algo}", unit="step", disable=not progress, leave=False
        ) as bar:
            t0 = time.perf_counter()
            scorer, summary, algo = train(cfg, trajs, train_ids, bar, ckpt, tmp)
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
        commit(tmp, out_dir)
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
