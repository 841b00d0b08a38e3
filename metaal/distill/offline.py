"""Training for ``bc``, ``cql`` and ``bcq`` (their configs: ``metaal.distill.config``) through d3rlpy: the dataset
bridge (``build_dataset``) and one training loop, resumable from a checkpoint.

The bridge: observation = flat K*F candidate features then G context values; masked candidates have every
feature set to ``networks.SENTINEL`` and the scorer gives them a score below every valid one, so they are never
chosen.  Action = the candidate index (``action_size=K``).  Episodes are the store's episodes: the last step of
each ends with a terminal (when the store says terminal) or a timeout, so none is dropped.
"""

from __future__ import annotations

import contextlib
import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from metaal.distill.checkpoint import Checkpoints, numpy_global_rng_state, set_numpy_global_rng_state
from metaal.distill.data import episode_bounds, subset_steps
from metaal.errors import MetaalError
from metaal.store.records import Trajectories

if TYPE_CHECKING:
    from metaal.distill.config import D3rlpyConfig, DistillConfig


@contextlib.contextmanager
def quiet(verbose: bool):
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
    ids, starts, lengths = episode_bounds(st)
    last = np.zeros(N, bool)
    last[starts + lengths - 1] = True
    terminal = np.asarray(st["terminal"], bool)
    terminals = (last & terminal).astype(np.float32)
    timeouts = (last & ~terminal).astype(np.float32)
    with quiet(verbose):
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

def train_d3rlpy(algo_cfg: D3rlpyConfig, trajs: Trajectories, train_ids, cfg: DistillConfig, work_dir: Path, bar,
                 ckpt: Checkpoints | None = None):
    from metaal.policy.networks import d3rlpy_modules, freeze_identity_head, import_d3rlpy, register_d3rlpy

    d3rlpy = import_d3rlpy()
    dataset, info = build_dataset(trajs, cfg.algo, train_ids, verbose=cfg.verbose)
    F, G = info["F"], info["G"]
    d3rlpy.seed(cfg.seed)
    enc = register_d3rlpy()["CandidateEncoderFactory"](n_features=F, n_context=G, hidden=cfg.hidden)
    algo = algo_cfg.d3rlpy_config(cfg, enc).create(device=cfg.device)
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
            set_numpy_global_rng_state(meta["np_global"], state)
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
        np_meta, np_tensors = numpy_global_rng_state()
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
    scorer = algo_cfg.scorer(d3rlpy_modules(algo), F, G, cfg.hidden).cpu().eval()
    resumed = state["meta"]["step"] if state is not None else 0
    return scorer, {"loss_name": "loss", "curve": curve, "losses_start": first, "losses_end": last,
                    "resumed_from_step": resumed}, algo
