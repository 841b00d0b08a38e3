"""Training for ``gain`` (its config: ``metaal.distill.config.GainConfig``): plain PyTorch regression of every valid candidate's oracle gain, turned into a within-step rank
percentile in [0, 1] (gamma = 0, LAL-style; rank targets beat z-scored gains in DESIGN's study).  No d3rlpy
model is written for it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from metaal.distill.checkpoint import Checkpoints
from metaal.distill.data import subset_steps
from metaal.distill.targets import rank_percentiles, target_gain
from metaal.errors import MetaalError
from metaal.store.records import Trajectories

if TYPE_CHECKING:
    from metaal.distill.config import DistillConfig


def train_gain(trajs: Trajectories, train_ids, cfg: DistillConfig, target: str, bar,
               ckpt: Checkpoints | None = None) -> tuple[torch.nn.Module, dict]:
    """Every step: each candidate's score regresses its gain's rank percentile among the step's candidates."""
    st, _ = subset_steps(trajs.steps, train_ids)
    mask = np.asarray(st["mask"], bool)
    gain = target_gain(st, target)
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
