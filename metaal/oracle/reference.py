"""The lookahead oracle, slow and obvious: one deep copy, one torch.optim optimiser, one loop per candidate.

This is the ground truth the batched :func:`metaal.oracle.lookahead_gains` is tested and
benchmarked against.  It shares only the common-random-numbers plumbing with it (the minibatch
schedule, the explicit dropout masks and the BatchNorm-in-eval lookahead mode, see
``metaal.oracle.lookahead``), so both see exactly the same data and noise.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from metaal.errors import MetaalError
from metaal.learners.learner import Learner
from metaal.learners.stacked import ADAM_BETAS, ADAM_EPS
from metaal.oracle.lookahead import (
    OracleConfig,
    OracleResult,
    batch_rows,
    draw_masks,
    empty_result,
    lookahead_copy,
    minibatch_schedule,
    prepare_inputs,
    probe,
    set_lookahead_mode,
    set_masks,
)


@torch.no_grad()
def _val_stats(net, X_val, y_val) -> tuple[float, float]:
    net.eval()
    logits = net(X_val)
    return float(F.cross_entropy(logits, y_val)), float((logits.argmax(1) == y_val).float().mean())


def reference_gains(learner: Learner, X_lab, y_lab, X_cand, y_cand, X_val, y_val, config: OracleConfig, seed: int) -> OracleResult:
    """Per-candidate loop with ``copy.deepcopy`` and torch.optim; same contract as ``lookahead_gains``."""
    if not isinstance(config, OracleConfig):
        raise MetaalError(f"oracle config must be an OracleConfig, got {type(config).__name__}")
    inp = prepare_inputs(learner, X_lab, y_lab, X_cand, y_cand, X_val, y_val)
    if inp.k == 0:
        return empty_result(config.mode)
    seed, device = int(seed), learner.device

    if config.mode == "first-order":
        net = lookahead_copy(learner.net)
        net.eval()
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(inp.X_val), inp.y_val).backward()
        g_val = [p.grad.detach().clone() for p in net.parameters()]
        gains = np.zeros(inp.k, np.float32)
        for i in range(inp.k):
            net.zero_grad(set_to_none=True)
            F.cross_entropy(net(inp.X_cand[i : i + 1]), inp.y_cand[i : i + 1]).backward()
            dot = sum(float((p.grad * g).sum()) for p, g in zip(net.parameters(), g_val))
            gains[i] = config.lr * dot
        return OracleResult(gains, np.full(inp.k, np.nan, np.float32))

    retrain = config.mode == "retrain"
    batch_size = learner.config.batch_size if retrain else config.batch_size
    steps = learner.config.steps if retrain else config.steps
    schedule = minibatch_schedule(len(inp.y_lab), batch_size, steps, seed).to(device)

    # the learner as it is now; the same copy probes the dropout shapes for the masks
    template = lookahead_copy(learner.net)
    probe(template, batch_rows(inp, batch_size))
    before_loss, before_acc = _val_stats(template, inp.X_val, inp.y_val)

    loss_gain = np.zeros(inp.k, np.float32)
    acc_gain = np.zeros(inp.k, np.float32)
    for i in range(inp.k):
        net = lookahead_copy(template)
        if retrain:
            net.load_state_dict(learner.init_state)
            opt = torch.optim.Adam(
                net.parameters(), lr=learner.config.lr, betas=ADAM_BETAS, eps=ADAM_EPS,
                weight_decay=learner.config.weight_decay,
            )
        else:
            opt = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=0.0)
        xc, yc = inp.X_cand[i : i + 1], inp.y_cand[i : i + 1]
        for t in range(steps):
            set_lookahead_mode(net)
            set_masks(net, draw_masks(template, seed, t, device))
            idx = schedule[t]
            x = torch.cat([inp.X_lab[idx], xc])
            y = torch.cat([inp.y_lab[idx], yc])
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        after_loss, after_acc = _val_stats(net, inp.X_val, inp.y_val)
        loss_gain[i] = before_loss - after_loss
        acc_gain[i] = after_acc - before_acc
    return OracleResult(loss_gain, acc_gain)
