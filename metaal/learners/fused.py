"""A fused lookahead for plain MLPs: hand-written forward and backward over stacked weights.

``torch.func`` (``vmap(grad(functional_call))``) works for any network but rebuilds an autograd
graph for every step.  For the networks metaal trains most (``Flatten -> Linear -> ReLU ->
Dropout -> ... -> Linear``) the whole step is a handful of batched matrix products, so this module
writes them out: the forward keeps each layer's input, the backward turns the softmax
cross-entropy error into every layer's gradient and folds the SGD update into the same product
(``W.baddbmm_(delta^T, h, alpha=-lr)``, no gradient tensor at all).

Two more savings, both exact in real arithmetic:

* **Step 0 is shared.**  Every copy starts from the same weights, so the labelled rows of the
  first minibatch give every copy the same gradient.  Step 0 runs one network over the labelled
  rows plus all candidate rows and adds each candidate's own rank-one term to a shared update.
* **The first layer's validation product is one GEMM.**  The validation rows are shared, so
  ``X_val @ [W_1 ... W_K]^T`` is a single large matrix product instead of K small ones.

The results equal the torch.func path and the reference loop to float32 rounding (the tests hold
all three to 1e-5).  :func:`plan` returns None for any network outside this shape, and the
oracle then uses torch.func.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Op:
    kind: str  # "linear" | "relu" | "mask"
    index: int  # linear: position in the weight list; mask: position in the mask list


def plan(net: nn.Module, dropout_types: tuple[type, ...]) -> tuple[list[Op], list[str]] | None:
    """The op list and the parameter names (weight, bias per linear) of ``net``, or None if unsupported.

    Supported: a ``Net`` whose body is an ``nn.Sequential`` of Flatten (first only), Linear (with
    bias), ReLU, Identity and the oracle's masked dropout, followed by ``Net.dropout`` and ``Net.head``.
    """
    body, drop, head = getattr(net, "body", None), getattr(net, "dropout", None), getattr(net, "head", None)
    if not isinstance(body, nn.Sequential) or not isinstance(head, nn.Linear) or drop is None:
        return None
    if type(net).forward is not _net_forward():
        return None
    modules = list(body) + [drop, head]
    names = [f"body.{i}" for i in range(len(body))] + ["dropout", "head"]
    ops: list[Op] = []
    params: list[str] = []
    masks = 0
    for pos, (name, m) in enumerate(zip(names, modules)):
        if isinstance(m, nn.Flatten):
            if pos != 0 or m.start_dim != 1 or m.end_dim != -1:
                return None
        elif type(m) is nn.Linear:
            if m.bias is None:
                return None
            ops.append(Op("linear", len(params) // 2))
            params += [f"{name}.weight", f"{name}.bias"]
        elif type(m) is nn.ReLU:
            ops.append(Op("relu", -1))
        elif type(m) is nn.Identity:
            continue
        elif type(m) in dropout_types:
            if m.p > 0:
                ops.append(Op("mask", masks))
                masks += 1
        else:
            return None
    if not ops or ops[0].kind != "linear" or ops[-1].kind != "linear":
        return None
    return ops, params


def _is_product(saved: list) -> bool:
    """True once the running activation is a tensor this forward made (never the caller's input)."""
    return any(s is not None for s in saved)


def _net_forward():
    from metaal.learners.models import Net

    return Net.forward


class FusedMLP:
    """Stacked-weight forward/backward for a network :func:`plan` accepted."""

    def __init__(self, ops: list[Op], param_names: list[str]):
        self.ops = ops
        self.param_names = param_names
        self.n_linear = len(param_names) // 2

    # ------------------------------------------------------------------ pieces
    def weights(self, params: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        n = self.param_names
        return [(params[n[2 * i]], params[n[2 * i + 1]]) for i in range(self.n_linear)]

    def forward(self, wb, h, masks=None):
        """h (Kc, B, d) -> logits (Kc, B, C); with ``masks`` (train mode) it also returns what backward needs."""
        saved = []
        for op in self.ops:
            if op.kind == "linear":
                w, b = wb[op.index]
                saved.append(h)
                h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            elif op.kind == "relu":
                h = torch.relu_(h)  # h is a fresh product here or below: safe in place
                saved.append(h)
            elif masks is not None and masks[op.index] is not None:
                # in place: a saved ReLU output then reads zero where the mask is zero, which changes
                # nothing because the mask zeroes the error there too (the mask is never negative)
                h = h.mul_(masks[op.index]) if _is_product(saved) else h * masks[op.index]
                saved.append(None)
            else:
                saved.append(None)
        return h, saved

    def backward(self, wb, delta, saved, masks, apply):
        """Walk the ops backwards from ``delta`` (dLoss/dlogits); ``apply(i, delta, h_in)`` updates linear i.

        The error for the layer below is computed before ``apply`` changes the weights.
        """
        for op, s in zip(reversed(self.ops), reversed(saved)):
            if op.kind == "linear":
                w, _ = wb[op.index]
                below = torch.bmm(delta, w) if op.index > 0 else None
                apply(op.index, delta, s)
                delta = below
            elif op.kind == "relu":
                delta = torch.ops.aten.threshold_backward(delta, s, 0.0)  # autograd's ReLU backward
            elif masks[op.index] is not None:
                delta = delta.mul_(masks[op.index]) if delta.is_contiguous() else delta * masks[op.index]
        return delta

    @staticmethod
    def output_error(logits: torch.Tensor, y: torch.Tensor, batch: int) -> torch.Tensor:
        """d(mean cross-entropy over ``batch`` rows)/d logits: (softmax - onehot) / batch."""
        err = torch.softmax(logits, dim=-1)
        err.scatter_add_(-1, y.unsqueeze(-1), torch.full_like(y, -1, dtype=err.dtype).unsqueeze(-1))
        return err.div_(batch)

    # ------------------------------------------------------------------ training
    def shared_first_step(self, start, x_lab, y_lab, xc, yc, masks, lr):
        """Step 0 of SGD for Kc copies that all start at ``start``: one network, shared labelled gradient.

        Returns the stacked weights after the step (a fresh dict of (Kc, ...) tensors).
        """
        m, kc = len(y_lab), len(yc)
        batch = m + 1
        wb = [(w.unsqueeze(0), b.unsqueeze(0)) for w, b in self.weights(start)]
        rows = torch.cat([x_lab, xc]).unsqueeze(0)  # (1, m + Kc, d)
        y = torch.cat([y_lab, yc])
        row_masks = None
        if masks is not None:  # labelled rows keep their own mask rows; every candidate gets the candidate row's
            row_masks = [None if mk is None else torch.cat([mk[:m], mk[m:].expand(kc, *mk.shape[1:])]) for mk in masks]
        logits, saved = self.forward(wb, rows, row_masks)
        delta = self.output_error(logits, y.unsqueeze(0), batch)
        new: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * self.n_linear

        def apply(i, d, h):
            w, b = wb[i]
            d, h = d[0], h[0]
            w_shared = torch.addmm(w[0], d[:m].T, h[:m], alpha=-lr)
            b_shared = b[0] - lr * d[:m].sum(0)
            w_new = w_shared.unsqueeze(0).repeat(kc, 1, 1)
            w_new.baddbmm_(d[m:].unsqueeze(2), h[m:].unsqueeze(1), alpha=-lr)
            b_new = b_shared.unsqueeze(0) - lr * d[m:]
            new[i] = (w_new, b_new)

        self.backward(wb, delta, saved, row_masks, apply)
        out = {}
        for i, (w, b) in enumerate(new):
            out[self.param_names[2 * i]], out[self.param_names[2 * i + 1]] = w, b
        return out

    def _minibatch(self, params, x_lab, y_lab, xc, yc, masks):
        """Forward of every copy on (its own candidate + the shared labelled rows): weights, output error, saved."""
        kc, m = len(yc), len(y_lab)
        wb = self.weights(params)
        rows = torch.cat([x_lab.unsqueeze(0).expand(kc, *x_lab.shape), xc.unsqueeze(1)], dim=1)
        y = torch.cat([y_lab.unsqueeze(0).expand(kc, m), yc.unsqueeze(1)], dim=1)
        logits, saved = self.forward(wb, rows, masks)
        return wb, self.output_error(logits, y, m + 1), saved

    def sgd_step(self, params, x_lab, y_lab, xc, yc, masks, lr):
        """One in-place SGD step of every copy on (its own candidate + the shared labelled rows)."""
        wb, delta, saved = self._minibatch(params, x_lab, y_lab, xc, yc, masks)

        def apply(i, d, h):
            w, b = wb[i]
            w.baddbmm_(d.transpose(1, 2), h, alpha=-lr)
            b.sub_(d.sum(1), alpha=lr)

        self.backward(wb, delta, saved, masks, apply)

    def gradients(self, params, x_lab, y_lab, xc, yc, masks) -> dict[str, torch.Tensor]:
        """Per-copy gradients of the minibatch loss (for optimisers that need them, e.g. Adam)."""
        wb, delta, saved = self._minibatch(params, x_lab, y_lab, xc, yc, masks)
        return self.backward_gradients(wb, delta, saved, masks)

    def backward_gradients(self, wb, delta, saved, masks) -> dict[str, torch.Tensor]:
        """Per-copy gradients of every weight and bias, back-propagated from the output error ``delta``."""
        grads = {}

        def apply(i, d, h):
            grads[self.param_names[2 * i]] = torch.bmm(d.transpose(1, 2), h)
            grads[self.param_names[2 * i + 1]] = d.sum(1)

        self.backward(wb, delta, saved, masks, apply)
        return grads

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def val_stats(self, params, X_val, y_val, block: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean validation loss and accuracy of every copy (eval mode: no dropout)."""
        wb = self.weights(params)
        kc = wb[0][0].shape[0]
        w1, b1 = wb[0]
        rest = self.ops[1:]  # plan() puts linear 0 first
        w1_flat = w1.reshape(kc * w1.shape[1], w1.shape[2])
        loss = torch.zeros(kc, device=w1.device)
        correct = torch.zeros(kc, device=w1.device)
        for s in range(0, len(y_val), block):
            xb, yb = X_val[s : s + block], y_val[s : s + block]
            # the shared rows meet all Kc first layers in one GEMM: (b, d) @ (d, Kc*o)
            h = (xb @ w1_flat.T).view(len(yb), kc, -1).transpose(0, 1) + b1.unsqueeze(1)
            for op in rest:
                if op.kind == "linear":
                    w, b = wb[op.index]
                    h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
                elif op.kind == "relu":
                    h = torch.relu(h)
            loss += F.cross_entropy(h.transpose(1, 2), yb.expand(kc, -1), reduction="none").sum(1)
            correct += (h.argmax(2) == yb).sum(1)
        return loss / len(y_val), correct / len(y_val)


class MaskedDropout(nn.Module):
    """``nn.Dropout`` whose (pre-scaled) mask is set from outside: the mechanism behind common random numbers.

    With ``mask`` unset it records the shape it sees (a probe pass) and passes the input through.
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)
        self.mask: torch.Tensor | None = None
        self.shape: tuple[int, ...] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.mask is None:
            self.shape = tuple(x.shape)
            return x
        return x * self.mask
