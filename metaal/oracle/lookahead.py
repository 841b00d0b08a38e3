"""The lookahead oracle, batched: all K candidate lookaheads as one torch.func computation.

For each candidate c (with its true label) the oracle simulates adding it to the labelled set L
and measures how much a validation metric on the oracle-validation split improves:

* ``finetune`` (default): ``steps`` plain SGD steps (``lr``, no momentum) from the learner's
  current weights, each on ``batch_size - 1`` labelled rows plus c, in train mode.
* ``retrain``: ``learner.config.steps`` Adam steps (the learner's lr and weight decay, L2 added
  to the gradient exactly as ``torch.optim.Adam``) from ``learner.init_state``, minibatches of
  ``learner.config.batch_size`` rows with c in every one; compared with the learner as it is now.
* ``first-order``: ``lr * <grad L_val, grad l(c)>`` from per-sample gradients in eval mode, the
  first-order decrease of the validation loss after one SGD step on c alone (no accuracy: NaN).

How the K copies are batched: the parameters are stacked along a leading candidate axis
(``(Kc, *shape)``) and ``torch.func.vmap`` runs ``grad`` of ``functional_call`` over that axis;
the labelled minibatch and the validation rows are shared (``in_dims=None``).  Plain MLPs take a
hand-written path instead (:mod:`metaal.learners.fused`: batched matrix products with the SGD step
folded in, step 0 shared by all copies), 1.6-1.8x faster on CPU than torch.func and equal to it
to float32 rounding.  Candidates are processed in chunks of ``chunk`` so memory stays bounded
(see :func:`auto_chunk`).

Common random numbers (CRN).  Every candidate sees the same minibatch order (one index schedule
from a ``torch.Generator`` seeded by ``seed``, :func:`minibatch_schedule`) and the *same dropout
masks*.  The masks are explicit: on a private copy of the network every ``nn.Dropout`` is replaced
by :class:`MaskedDropout`, whose mask for step t is drawn outside any transform from a generator
seeded by ``(seed, t)`` (:func:`draw_masks`) and broadcast over the candidate axis.  vmap runs with
``randomness="error"``, so any other random op in a model is an error rather than silent noise.
The reference implementation uses the very same masks, which is what makes the two comparable
to float32 rounding.

BatchNorm.  During a lookahead, BatchNorm layers stay in eval mode: they normalise with the
running statistics they hold and those statistics are never updated (their affine weights still
train).  This keeps every candidate's copy a pure function of its parameters (no in-place buffer
updates under vmap, no dependence on batch composition beyond the loss) and is what a single
candidate added to a batch of 32 should perturb least.  ``finetune`` and ``first-order`` use the
learner's current running statistics; ``retrain`` uses those of ``learner.init_state`` (so the
retrained copy is normalised the same way in training and in evaluation).  Models without
BatchNorm (the default MLP and CNN) are unaffected.

The learner is never modified: the oracle works on a deep copy of the network, and its
optimiser updates (in place, to avoid a fresh allocation per step) act on its own stacked
copies of the weights, never on the learner's tensors.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from metaal.config import ALL_ORACLE_MODES, ORACLE_METRICS, ORACLE_MODES, OracleConfig
from metaal.errors import MetaalError
from metaal.learners.fused import FusedMLP, MaskedDropout
from metaal.learners.fused import plan as fused_plan
from metaal.learners.learner import Learner, derive_seed
from metaal.learners.models import PLAIN_DROPOUTS
from metaal.learners.stacked import adam_step
from metaal.metrics import accuracy_then_loss


def expert_key(loss_gain, acc_gain, metric: str = "loss") -> np.ndarray:
    """What the expert maximises, per candidate (float64): the loss gain, or the accuracy gain with the loss
    gain (scaled below one accuracy step) breaking ties.  NaN gains never win."""
    key = np.asarray(loss_gain, np.float64) if metric == "loss" else accuracy_then_loss(loss_gain, acc_gain)
    return np.where(np.isfinite(key), key, -np.inf)


CPU_MEMORY_CAP = 1 << 30  # bytes one chunk may use on CPU
CUDA_MEMORY_FRACTION = 0.25  # of the free device memory
CPU_CHUNK_ACT_BYTES = 64 << 20  # activations of one training chunk on CPU
CPU_VAL_BLOCK_BYTES = 32 << 20  # activations per validation block on CPU (cache-friendly)


@dataclass
class OracleResult:
    loss_gain: np.ndarray  # (K,) float32: validation loss before - after (positive = helps)
    acc_gain: np.ndarray  # (K,) float32: validation accuracy after - before (NaN for first-order)


# ============================================================================ shared by both paths
@dataclass
class Inputs:
    """Validated tensors on the learner's device."""

    X_lab: torch.Tensor
    y_lab: torch.Tensor
    X_cand: torch.Tensor
    y_cand: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor

    @property
    def k(self) -> int:
        return len(self.y_cand)


def prepare_inputs(learner: Learner, X_lab, y_lab, X_cand, y_cand, X_val, y_val) -> Inputs:
    """Check shapes and labels (one-line errors) and move everything to ``learner.device``."""
    arrays = {"labelled": (X_lab, y_lab), "candidate": (X_cand, y_cand), "validation": (X_val, y_val)}
    out = {}
    for name, (X, y) in arrays.items():
        X, y = np.asarray(X), np.asarray(y)
        if X.ndim < 2 or y.ndim != 1 or len(X) != len(y):
            raise MetaalError(f"oracle: {name} arrays disagree: X {X.shape}, y {y.shape} (need X (N, ...) and y (N,))")
        if len(y) and (y.min() < 0 or y.max() >= learner.n_classes):
            raise MetaalError(f"oracle: {name} labels must lie in [0, {learner.n_classes}), got [{y.min()}, {y.max()}]")
        out[name] = (learner.tensor(X), torch.as_tensor(y, dtype=torch.long, device=learner.device))
    if len(out["validation"][1]) == 0:
        raise MetaalError("oracle: the validation split is empty; the lookahead needs validation rows")
    feat = {tuple(v[0].shape[1:]) for v in out.values()}
    if len(feat) != 1:
        raise MetaalError(f"oracle: labelled, candidate and validation rows have different shapes {sorted(feat)}")
    (Xl, yl), (Xc, yc), (Xv, yv) = out["labelled"], out["candidate"], out["validation"]
    return Inputs(Xl, yl, Xc, yc, Xv, yv)


def minibatch_schedule(n_lab: int, batch_size: int, steps: int, seed: int) -> torch.Tensor:
    """(steps, m) labelled row indices, m = min(batch_size - 1, n_lab); the candidate is the extra row.

    Epochs without replacement (a fresh permutation whenever the current one runs out), drawn
    from one ``torch.Generator`` seeded by ``seed``: identical for every candidate.
    """
    m = max(0, min(batch_size - 1, n_lab))
    gen = torch.Generator().manual_seed(derive_seed(seed, 0x5C4ED))
    rows, order, pos = [], torch.randperm(n_lab, generator=gen), 0
    for _ in range(steps):
        if pos + m > n_lab:
            order, pos = torch.randperm(n_lab, generator=gen), 0
        rows.append(order[pos : pos + m])
        pos += m
    return torch.stack(rows) if rows else torch.zeros((0, m), dtype=torch.long)


def lookahead_copy(net: nn.Module) -> nn.Module:
    """A private deep copy of ``net`` with every ``nn.Dropout`` replaced by :class:`MaskedDropout`."""
    net = copy.deepcopy(net)
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if type(child) in PLAIN_DROPOUTS:
                setattr(module, name, MaskedDropout(child.p))
            elif isinstance(child, nn.modules.dropout._DropoutNd) and child.p > 0:
                raise MetaalError(
                    f"oracle: {type(child).__name__} layers are not supported (only nn.Dropout gets common random numbers)"
                )
    for p in net.parameters():
        p.grad = None
        p.requires_grad_(True)
    return net


def set_lookahead_mode(net: nn.Module) -> nn.Module:
    """Train mode (dropout on) with every BatchNorm layer in eval mode (frozen running statistics)."""
    net.train()
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return net


def dropout_layers(net: nn.Module) -> list[MaskedDropout]:
    return [m for m in net.modules() if isinstance(m, MaskedDropout)]


@torch.no_grad()
def probe(net: nn.Module, x: torch.Tensor) -> int:
    """One lookahead-mode forward on x: records every dropout layer's input shape; returns
    the activation elements per input row (sum of leaf-module outputs), for memory estimates."""
    total = [0]

    def hook(_m, _i, out):
        if isinstance(out, torch.Tensor):
            total[0] += out.numel()

    leaves = [m for m in net.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    layers = dropout_layers(net)
    try:
        for layer in layers:
            layer.mask, layer.shape = None, None
        set_lookahead_mode(net)
        net(x)
    finally:
        for h in handles:
            h.remove()
    return max(1, total[0] // max(1, len(x)))


def draw_masks(net: nn.Module, seed: int, step: int, device: torch.device) -> list[torch.Tensor | None]:
    """Step ``step``'s dropout masks, one per probed layer in module order, pre-scaled by 1/(1-p)."""
    gen = torch.Generator(device=device).manual_seed(derive_seed(seed, step, 0xD0))
    masks = []
    for layer in dropout_layers(net):
        if layer.shape is None:  # layer not reached, or p == 0
            masks.append(None)
        elif layer.p >= 1.0:
            masks.append(torch.zeros(layer.shape, device=device))
        else:
            keep = torch.rand(layer.shape, generator=gen, device=device) >= layer.p
            masks.append(keep.to(torch.float32) / (1.0 - layer.p))
    return masks


def set_masks(net: nn.Module, masks: list[torch.Tensor | None]) -> None:
    for layer, mask in zip(dropout_layers(net), masks):
        layer.mask = mask


def batch_rows(inputs: Inputs, batch_size: int) -> torch.Tensor:
    """A probe input: m labelled rows plus one candidate row (the shape every training step sees)."""
    m = max(0, min(batch_size - 1, len(inputs.y_lab)))
    return torch.cat([inputs.X_lab[:m], inputs.X_cand[:1]])


def empty_result(mode: str) -> OracleResult:
    return OracleResult(np.zeros(0, np.float32), np.zeros(0, np.float32))


# ============================================================================ memory
def memory_cap(device: torch.device) -> int:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return max(1 << 26, int(free * CUDA_MEMORY_FRACTION))
    return CPU_MEMORY_CAP


def auto_chunk(k: int, n_params: int, copies: int, rows: int, act_per_row: int, device: torch.device) -> int:
    """Candidates per chunk so that one chunk's tensors stay under the cap.

    Per candidate: ``copies`` parameter-sized tensors (finetune: weights, gradient, updated
    weights = 3; retrain: + Adam's two moments = 6 rounded up with temporaries; first-order:
    per-sample gradient + temporaries = 2) plus the activations of one minibatch kept for the
    backward pass (about 3x the forward activations).  Cap: 1 GiB on CPU, a quarter of the free
    memory on CUDA.  On CPU the activations of a chunk are also held to ``CPU_CHUNK_ACT_BYTES``
    (measured on 2 cores: the 28x28 CNN ran ~25% faster in chunks of 2-4 than of 32; the MLP's
    chunks stay in the hundreds).
    """
    per_candidate = 4 * (n_params * copies + 3 * rows * act_per_row)
    chunk = memory_cap(device) // max(1, per_candidate)
    if device.type == "cpu":  # keep a chunk's activations near cache size: big convolutional chunks run slower
        chunk = min(chunk, CPU_CHUNK_ACT_BYTES // max(1, 4 * 3 * rows * act_per_row))
    return int(max(1, min(k, chunk)))


def val_block(chunk: int, act_per_row: int, n_val: int, device: torch.device) -> int:
    """Validation rows per vmapped evaluation.

    On CUDA: as many as the memory cap allows.  On CPU: about ``CPU_VAL_BLOCK_BYTES`` of
    activations per block, which keeps a block in cache; measured on 2 cores, a vmapped CNN
    evaluated 300 rows x 8 copies about 3x faster in blocks of ~30 rows than in one block.
    """
    budget = memory_cap(device) // 2 if device.type == "cuda" else CPU_VAL_BLOCK_BYTES
    return int(max(1, min(n_val, budget // max(1, 4 * chunk * act_per_row))))


# ============================================================================ batched lookahead
KERNELS = ("auto", "fused", "func")


def lookahead_gains(
    learner: Learner, X_lab, y_lab, X_cand, y_cand, X_val, y_val, config: OracleConfig, seed: int, kernel: str = "auto"
) -> OracleResult:
    """Gains of every candidate, all K lookaheads batched (see the module docstring).

    ``kernel``: ``func`` = torch.func for any network; ``fused`` = the hand-written MLP path of
    :mod:`metaal.learners.fused` (an error for other networks); ``auto`` = fused where it applies.
    Both give the same gains to float32 rounding, so the choice is not part of a store's identity.
    """
    if not isinstance(config, OracleConfig):
        raise MetaalError(f"oracle config must be an OracleConfig, got {type(config).__name__}")
    if kernel not in KERNELS:
        raise MetaalError(f"unknown oracle kernel '{kernel}' (choose from {', '.join(KERNELS)})")
    if config.mode not in ORACLE_MODES:
        raise MetaalError(f"oracle mode '{config.mode}' scores whole batches: use metaal.oracle.batch, not lookahead_gains")
    inputs = prepare_inputs(learner, X_lab, y_lab, X_cand, y_cand, X_val, y_val)
    if inputs.k == 0:
        return empty_result(config.mode)
    return _Batched(learner, inputs, config, int(seed), kernel).run()


class _Batched:
    def __init__(self, learner: Learner, inputs: Inputs, config: OracleConfig, seed: int, kernel: str = "auto"):
        self.learner, self.inputs, self.config, self.seed = learner, inputs, config, seed
        self.device = learner.device
        self.net = lookahead_copy(learner.net)
        self.param_names = [n for n, _ in self.net.named_parameters()]
        self.buffers = {n: b.detach() for n, b in self.net.named_buffers()}
        self.n_params = sum(p.numel() for p in self.net.parameters())
        self.n_classes = learner.n_classes
        self.fused = None
        if kernel != "func" and config.mode != "first-order":
            found = fused_plan(self.net, (MaskedDropout,))
            if found is not None and set(found[1]) == set(self.param_names) and not self.buffers:
                self.fused = FusedMLP(*found)
            elif kernel == "fused":
                raise MetaalError("oracle kernel 'fused' needs a plain MLP (Linear/ReLU/Dropout); use 'auto' or 'func'")

    # ------------------------------------------------------------------ functional pieces
    def _forward(self, params, x):
        return functional_call(self.net, (params, self.buffers), (x,))

    def _batch_loss(self, params, xb, yb, xc, yc):
        x = torch.cat([xb, xc.unsqueeze(0)])
        y = torch.cat([yb, yc.unsqueeze(0)])
        return F.cross_entropy(self._forward(params, x), y)

    def _sample_loss(self, params, xc, yc):
        return F.cross_entropy(self._forward(params, xc.unsqueeze(0)), yc.unsqueeze(0))

    def _current_params(self, source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {n: source[n].detach() for n in self.param_names}

    @torch.no_grad()
    def _val_stats_single(self, params) -> tuple[float, float]:
        """Validation loss and accuracy of one parameter set (eval mode)."""
        self.net.eval()
        Xv, yv = self.inputs.X_val, self.inputs.y_val
        block = val_block(1, self.act_per_row, len(yv), self.device)
        loss, correct = 0.0, 0
        for s in range(0, len(yv), block):
            logits = self._forward(params, Xv[s : s + block])
            loss += float(F.cross_entropy(logits, yv[s : s + block], reduction="sum"))
            correct += int((logits.argmax(1) == yv[s : s + block]).sum())
        return loss / len(yv), correct / len(yv)

    @torch.no_grad()
    def _val_stats(self, params) -> tuple[torch.Tensor, torch.Tensor]:
        """Validation loss and accuracy of every stacked copy in one vmapped call per block: (Kc,), (Kc,)."""
        self.net.eval()
        Xv, yv = self.inputs.X_val, self.inputs.y_val
        kc = next(iter(params.values())).shape[0]
        block = val_block(kc, self.act_per_row, len(yv), self.device)
        if self.fused is not None:
            return self.fused.val_stats(params, Xv.reshape(len(yv), -1), yv, block)
        forward = vmap(self._forward, in_dims=(0, None))
        loss = torch.zeros(kc, device=self.device)
        correct = torch.zeros(kc, device=self.device)
        for s in range(0, len(yv), block):
            yb = yv[s : s + block]
            logits = forward(params, Xv[s : s + block])  # (Kc, b, C)
            loss += F.cross_entropy(logits.transpose(1, 2), yb.expand(kc, -1), reduction="none").sum(1)
            correct += (logits.argmax(2) == yb).sum(1)
        return loss / len(yv), correct / len(yv)

    # ------------------------------------------------------------------ modes
    def run(self) -> OracleResult:
        mode = self.config.mode
        if mode == "first-order":
            return self._first_order()
        current = self._current_params(dict(self.learner.net.named_parameters()))
        if mode == "finetune":
            batch_size, steps, copies = self.config.batch_size, self.config.steps, 3
        else:
            batch_size, steps, copies = self.learner.config.batch_size, self.learner.config.steps, 6
        probe_x = batch_rows(self.inputs, batch_size)
        self.act_per_row = probe(self.net, probe_x)
        # "before" is the learner as it is now, whatever the mode
        before_loss, before_acc = self._val_stats_single(current)
        if mode == "finetune":
            start = current
        else:  # from the initial weights, BatchNorm statistics included
            start = {n: self.learner.init_state[n].detach().to(self.device) for n in self.param_names}
            self.buffers = {n: self.learner.init_state[n].detach().to(self.device) for n in self.buffers}

        schedule = minibatch_schedule(len(self.inputs.y_lab), batch_size, steps, self.seed).to(self.device)
        masks = [draw_masks(self.net, self.seed, t, self.device) for t in range(steps)]
        k = self.inputs.k
        chunk = self.config.chunk or auto_chunk(k, self.n_params, copies, len(probe_x), self.act_per_row, self.device)
        loss_after = torch.empty(k, device=self.device)
        acc_after = torch.empty(k, device=self.device)
        train = self._finetune if mode == "finetune" else self._retrain
        for s in range(0, k, chunk):
            sl = slice(s, min(k, s + chunk))
            params = train(start, self.inputs.X_cand[sl], self.inputs.y_cand[sl], schedule, masks)
            loss_after[sl], acc_after[sl] = self._val_stats(params)
        loss_gain = (before_loss - loss_after).cpu().numpy().astype(np.float32)
        acc_gain = (acc_after - before_acc).cpu().numpy().astype(np.float32)
        return OracleResult(loss_gain, acc_gain)

    def _stack(self, start, kc):
        """Kc owned copies of the starting weights (later updated in place: no fresh allocations per step)."""
        return {n: p.unsqueeze(0).expand(kc, *p.shape).clone() for n, p in start.items()}

    def _grad_fn(self):
        """Per-copy gradients of the minibatch loss: vmap over the stacked copies of grad(functional_call)."""
        return vmap(grad(self._batch_loss), in_dims=(0, None, None, 0, 0), randomness="error")

    def _finetune(self, start, xc, yc, schedule, masks):
        lr, Xl, yl = self.config.lr, self.inputs.X_lab, self.inputs.y_lab
        if self.fused is not None:
            flat = Xl.reshape(len(yl), -1)
            xc = xc.reshape(len(yc), -1)
            params = self.fused.shared_first_step(start, flat[schedule[0]], yl[schedule[0]], xc, yc, masks[0], lr)
            for t in range(1, len(schedule)):
                self.fused.sgd_step(params, flat[schedule[t]], yl[schedule[t]], xc, yc, masks[t], lr)
            return params
        params = self._stack(start, len(yc))
        grad_fn = self._grad_fn()
        for t in range(len(schedule)):
            idx = schedule[t]
            set_lookahead_mode(self.net)
            set_masks(self.net, masks[t])
            g = grad_fn(params, Xl[idx], yl[idx], xc, yc)
            for n, p in params.items():  # torch.optim.SGD without momentum
                p.add_(g[n], alpha=-lr)
        return params

    def _retrain(self, start, xc, yc, schedule, masks):
        """Functional torch.optim.Adam (single-tensor algorithm, L2 weight decay added to the gradient)."""
        cfg = self.learner.config
        lr, wd = float(cfg.lr), float(cfg.weight_decay)
        params = self._stack(start, len(yc))
        exp_avg = {n: torch.zeros_like(p) for n, p in params.items()}
        exp_avg_sq = {n: torch.zeros_like(p) for n, p in params.items()}
        Xl, yl = self.inputs.X_lab, self.inputs.y_lab
        grad_fn = self._grad_fn() if self.fused is None else None
        flat, xf = Xl.reshape(len(yl), -1), xc.reshape(len(yc), -1)
        for t in range(len(schedule)):
            idx = schedule[t]
            if self.fused is not None:
                g = self.fused.gradients(params, flat[idx], yl[idx], xf, yc, masks[t])
            else:
                set_lookahead_mode(self.net)
                set_masks(self.net, masks[t])
                g = grad_fn(params, Xl[idx], yl[idx], xc, yc)
            adam_step(params, g, exp_avg, exp_avg_sq, t + 1, lr, wd)  # torch.optim.Adam's single-tensor step, in place
        return params

    def _first_order(self) -> OracleResult:
        params = self._current_params(dict(self.learner.net.named_parameters()))
        self.act_per_row = probe(self.net, self.inputs.X_cand[:1])
        self.net.eval()
        Xv, yv = self.inputs.X_val, self.inputs.y_val
        n_val = len(yv)
        block = val_block(1, self.act_per_row, n_val, self.device)

        def val_loss(p, xb, yb):
            return F.cross_entropy(self._forward(p, xb), yb, reduction="sum") / n_val

        g_val = None
        for s in range(0, n_val, block):
            gb = grad(val_loss)(params, Xv[s : s + block], yv[s : s + block])
            g_val = gb if g_val is None else {n: g_val[n] + gb[n] for n in gb}
        g_val_flat = {n: v.reshape(-1) for n, v in g_val.items()}

        k = self.inputs.k
        chunk = self.config.chunk or auto_chunk(k, self.n_params, 2, 1, self.act_per_row, self.device)
        per_sample = vmap(grad(self._sample_loss), in_dims=(None, 0, 0), randomness="error")
        gain = torch.empty(k, device=self.device)
        for s in range(0, k, chunk):
            sl = slice(s, min(k, s + chunk))
            gc = per_sample(params, self.inputs.X_cand[sl], self.inputs.y_cand[sl])
            dot = sum(gc[n].reshape(gc[n].shape[0], -1) @ g_val_flat[n] for n in self.param_names)
            gain[sl] = self.config.lr * dot
        loss_gain = gain.detach().cpu().numpy().astype(np.float32)
        return OracleResult(loss_gain, np.full(k, np.nan, np.float32))


__all__ = [
    "ALL_ORACLE_MODES",
    "ORACLE_METRICS",
    "ORACLE_MODES",
    "OracleConfig",
    "OracleResult",
    "auto_chunk",
    "expert_key",
    "lookahead_gains",
    "minibatch_schedule",
]
