"""Train many copies of a learner as one: stacked weights, each copy with its own rows, order and dropout.

Why: ``Learner.fit`` spends about 2.7 ms per Adam step on the small MLP, nearly all of it per-step
Python and dispatch overhead.  The batch oracle retrains six or seven copies a round and lockstep
evaluation retrains every run of a task each round; stacked, M copies pay that overhead once a step.

:func:`fit_many` equals M sequential ``Learner.fit`` calls to float32 rounding.  Copy i draws

* its minibatch order from a ``torch.Generator`` seeded as ``fit`` seeds it,
  ``derive_seed(seed, round_seed, 2)``, with the same epoch rule;
* its dropout masks from a generator seeded as ``fit`` seeds torch's global one,
  ``derive_seed(seed, round_seed, 3)``: per step, per dropout layer in call order, one
  ``bernoulli_(1 - p)`` on a tensor of the layer input's shape (drawn as ``models.bernoulli_mask``), divided by
  ``1 - p`` -- the very calls ``nn.Dropout`` makes on CPU, so the masks are the same bits (copies with the same seed, round
  seed and minibatch rows -- the strategies of one (task, seed) in lockstep evaluation -- have the same
  stream, which is drawn once and shared);
* the same optimiser: ``torch.optim.Adam``'s single-tensor step (L2 weight decay added to the
  gradient), fresh moments every call, from ``init_state`` unless ``warm_start``.

Only the order of the arithmetic differs (batched products, padded rows).  On CUDA ``nn.Dropout`` uses a
fused kernel whose bits another generator cannot reproduce: there the masks have the same distribution,
not the same bits.

Ragged labelled sets: a copy's minibatch has ``min(batch_size, n_i)`` rows, padded to ``batch_size`` with
rows of weight zero and a zero dropout mask, so padding adds exact zeros.  Every shape a copy's arithmetic
sees is then its own (a lone copy trains beside a twin), so a copy's weights do not depend on which other
copies share its stack or chunk: a resumed evaluation that stacks fewer runs reproduces them bit for bit.  Plain MLPs
take the hand-written stacked forward/backward of :mod:`metaal.learners.fused`; any other network (the
CNN) ``torch.func``: ``vmap`` over ``grad`` of ``functional_call``.  Networks with BatchNorm update
running statistics in train mode, which vmap cannot share out: they train one by one with ``Learner.fit``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from metaal.learners.fused import FusedMLP, MaskedDropout, plan
from metaal.learners.learner import Learner, derive_seed
from metaal.learners.models import PLAIN_DROPOUTS, bernoulli_mask

ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, which Learner.fit uses
ADAM_EPS = 1e-8
CPU_CHUNK_BYTES = 512 << 20  # training tensors of one stacked chunk on CPU
CUDA_MEMORY_FRACTION = 0.25  # of the free device memory


def adam_step(params: dict, grads: dict, exp_avg: dict, exp_avg_sq: dict, step: int, lr: float, weight_decay: float,
              scratch: dict | None = None) -> None:
    """``torch.optim.Adam``'s single-tensor step (L2 weight decay added to the gradient), in place, on stacked tensors.

    The same element-wise kernels in the same order; ``grads`` is overwritten (the weight decay is added in place)
    and ``scratch`` (a buffer per parameter, allocated on first use) holds the denominator, so a step allocates
    nothing.
    """
    beta1, beta2 = ADAM_BETAS
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    step_size = lr / bias_correction1
    bias_correction2_sqrt = bias_correction2**0.5
    for n, p in params.items():
        g = grads[n].add_(p, alpha=weight_decay) if weight_decay != 0 else grads[n]
        exp_avg[n].lerp_(g, 1 - beta1)
        exp_avg_sq[n].mul_(beta2).addcmul_(g, g, value=1 - beta2)
        if scratch is None:
            denom = (exp_avg_sq[n].sqrt() / bias_correction2_sqrt).add_(ADAM_EPS)
        else:
            if n not in scratch:
                scratch[n] = torch.empty_like(p)
            denom = torch.sqrt(exp_avg_sq[n], out=scratch[n]).div_(bias_correction2_sqrt).add_(ADAM_EPS)
        p.addcdiv_(exp_avg[n], denom, value=-step_size)


def fit_many(learners: Sequence[Learner], data: Sequence[tuple[np.ndarray, np.ndarray]], round_seeds: Sequence[int],
             *, chunk: int | None = None) -> None:
    """Train ``learners[i]`` on ``data[i] = (X, y)`` as ``learners[i].fit(X, y, round_seeds[i])`` would, all at once.

    The learners must share model, configuration, input shape, class count and device (copies of one
    learner, or the paired runs of one task); each keeps its own seed, weights and labelled rows.
    ``chunk``: copies per stacked computation (default: as many as fit the memory cap).
    """
    m = len(learners)
    if len(data) != m or len(round_seeds) != m:
        raise ValueError(f"fit_many: {m} learners, {len(data)} data sets, {len(round_seeds)} round seeds")
    if m == 0:
        return
    first = learners[0]
    for lrn in learners[1:]:
        if (lrn.config, lrn.kind, lrn.n_classes, lrn.device) != (first.config, first.kind, first.n_classes, first.device) \
                or [p.shape for p in lrn.net.parameters()] != [p.shape for p in first.net.parameters()]:
            raise ValueError("fit_many: the learners differ in model, configuration, classes or device")
    for X, y in data:
        if len(y) == 0 or len(X) != len(y):
            raise ValueError(f"fit_many: every copy needs at least one labelled row (got X {len(X)}, y {len(y)})")
    if any(isinstance(mod, nn.modules.batchnorm._BatchNorm) for mod in first.net.modules()):
        for lrn, (X, y), rs in zip(learners, data, round_seeds):
            lrn.fit(X, y, round_seed=rs)
        return
    # Copies that would train identically (same seed and round seed, same rows, same starting weights) train
    # once: in lockstep evaluation every strategy of a (task, seed) shares the initial fit, and on two classes
    # margin, entropy and least-confidence pick the same items throughout.  A copy's arithmetic does not
    # depend on its stack-mates, so the copies get the very bits they would have got.
    first_of: dict[tuple, int] = {}
    twin_of = [first_of.setdefault(_identity(lrn, X, y, rs), i) for i, (lrn, (X, y), rs) in enumerate(zip(learners, data, round_seeds))]
    unique = sorted(first_of.values())
    trainer = _Trainer(first)
    size = chunk or trainer.auto_chunk(first.config.batch_size)
    for s in range(0, len(unique), size):
        part = unique[s : s + size]
        trainer.fit([learners[i] for i in part], [data[i] for i in part], [round_seeds[i] for i in part])
    for i, j in enumerate(twin_of):
        if i != j:
            _copy_fit(learners[j], learners[i])


def _identity(lrn: Learner, X: np.ndarray, y: np.ndarray, round_seed: int) -> tuple:
    """What a copy's training depends on besides the shared configuration (its weights via its seed, or as they
    are when warm-starting)."""
    tensors = lrn.net.parameters() if lrn.config.warm_start else lrn.init_state.values()
    start = b"".join(t.detach().cpu().numpy().tobytes() for t in tensors)
    X, y = np.ascontiguousarray(X), np.ascontiguousarray(y)
    return (lrn.seed, int(round_seed), X.shape, X.dtype.str, X.tobytes(), y.dtype.str, y.tobytes(), start)


@torch.no_grad()
def _copy_fit(source: Learner, target: Learner) -> None:
    """``target`` as if trained like ``source``: the same weights and training statistics."""
    for p, q in zip(target.net.parameters(), source.net.parameters()):
        p.copy_(q)
    target.net.eval()
    target.train_loss, target.train_accuracy = source.train_loss, source.train_accuracy


class _Trainer:
    """What every chunk shares: the network's dropout layers, its kernel (fused MLP or torch.func)."""

    def __init__(self, learner: Learner):
        self.config = learner.config
        self.device = learner.device
        self.names = [n for n, _ in learner.net.named_parameters()]
        self.n_params = sum(p.numel() for p in learner.net.parameters())
        self.layers, self.act_per_row = _probe(learner.net, learner.tensor(np.zeros((1, *learner.input_shape))))
        found = plan(learner.net, PLAIN_DROPOUTS)
        self.fused = FusedMLP(*found) if found is not None else None
        if self.fused is None:  # torch.func over a private copy whose dropouts take their masks from outside
            self.net = copy.deepcopy(learner.net)
            for module in list(self.net.modules()):
                for name, child in list(module.named_children()):
                    if type(child) in PLAIN_DROPOUTS:
                        setattr(module, name, MaskedDropout(child.p))
            self.slots = dict(self.net.named_modules())
            self.net.train()
            self.grad_fn = vmap(grad(self._loss), in_dims=(0, 0, 0, 0, 0), randomness="error")

    def auto_chunk(self, rows: int) -> int:
        per_copy = 4 * (6 * self.n_params + 3 * rows * self.act_per_row)  # weights, gradient, moments, temporaries
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            cap = int(free * CUDA_MEMORY_FRACTION)
        else:
            cap = CPU_CHUNK_BYTES
        return max(1, cap // max(1, per_copy))

    # ------------------------------------------------------------------ one chunk
    def fit(self, learners, data, round_seeds) -> None:
        if len(learners) == 1:  # a batch of one takes other kernels (mm, not bmm): train it beside a twin
            learners, data, round_seeds = [learners[0], copy.deepcopy(learners[0])], [data[0]] * 2, [round_seeds[0]] * 2
        cfg, dev = self.config, self.device
        m = len(learners)
        Xs = [learners[0].tensor(X) for X, _ in data]
        ys = [torch.as_tensor(y, dtype=torch.long, device=dev) for _, y in data]
        sizes = [len(y) for y in ys]
        bss = [min(cfg.batch_size, n) for n in sizes]
        width = cfg.batch_size  # not max(bss): a copy's arithmetic then never depends on the others
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        index = torch.empty((cfg.steps, m, width), dtype=torch.long)
        weight = torch.zeros((m, width), device=dev)
        schedules: dict[tuple, torch.Tensor] = {}  # copies with the same seed, round seed and rows share an order
        for i, (lrn, n, bs, rs) in enumerate(zip(learners, sizes, bss, round_seeds)):
            key = (lrn.seed, rs, n, bs)
            if key not in schedules:
                schedules[key] = _schedule(n, bs, cfg.steps, derive_seed(lrn.seed, rs, 2))
            index[:, i, :] = int(offsets[i])  # padding rows: the copy's first row, weight zero
            index[:, i, :bs] = schedules[key] + int(offsets[i])
            weight[i, :bs] = 1.0 / bs
        index = index.to(dev)
        X_all, y_all = torch.cat(Xs), torch.cat(ys)
        # Dropout masks depend only on (seed, round seed, minibatch rows): the paired runs of one (task, seed) --
        # every strategy -- draw the very same masks, so each distinct stream is drawn once and shared out.
        streams: dict[tuple, int] = {}
        group = [streams.setdefault((lrn.seed, rs, bs), len(streams)) for lrn, rs, bs in zip(learners, round_seeds, bss)]
        firsts = [group.index(u) for u in range(len(streams))]
        gens = [_generator(derive_seed(learners[i].seed, round_seeds[i], 3), dev) for i in firsts]
        share = None if len(streams) == m else torch.as_tensor(group, dtype=torch.long, device=dev)
        masks = {name: torch.zeros((len(gens), width, *shape), device=dev) for name, p, shape in self.layers if 0 < p < 1}

        params = {}
        with torch.no_grad():
            for n in self.names:
                rows = []
                for lrn in learners:
                    rows.append(dict(lrn.net.named_parameters())[n] if cfg.warm_start else lrn.init_state[n])
                params[n] = torch.stack([r.detach().to(dev, torch.float32) for r in rows]).contiguous()
        exp_avg = {n: torch.zeros_like(p) for n, p in params.items()}
        exp_avg_sq = {n: torch.zeros_like(p) for n, p in params.items()}
        scratch: dict = {}
        for t in range(cfg.steps):
            step_masks = self._draw(masks, gens, [bss[i] for i in firsts], share, m, max(bss))
            idx = index[t]
            x, y = X_all[idx], y_all[idx]
            with torch.no_grad():
                g = self._grads(params, x, y, weight, step_masks)
                adam_step(params, g, exp_avg, exp_avg_sq, t + 1, float(cfg.lr), float(cfg.weight_decay), scratch)
        with torch.no_grad():
            for i, lrn in enumerate(learners):
                for n, p in lrn.net.named_parameters():
                    p.copy_(params[n][i])
                lrn.net.eval()
                lrn._fit_stats(Xs[i], ys[i])

    def _draw(self, masks: dict, gens: list, bss: list[int], share: torch.Tensor | None, m: int, max_bs: int) -> dict:
        """This step's masks of every copy, in the order nn.Dropout draws them: layer by layer within a stream.

        ``gens``/``bss``: one per distinct mask stream; ``share[i]``: copy i's stream (None: one stream per copy).
        """
        for i, (gen, bs) in enumerate(zip(gens, bss)):
            for name, p, shape in self.layers:
                if 0 < p < 1:
                    if gen.device.type == "cpu":
                        masks[name][i, :bs] = bernoulli_mask((bs, *shape), 1 - p, gen)
                    else:
                        masks[name][i, :bs].bernoulli_(1 - p, generator=gen)
        out = {}
        for name, p, shape in self.layers:
            if 0 < p < 1:
                scaled = masks[name].div(1 - p)
                out[name] = scaled if share is None else scaled.index_select(0, share)
            elif p >= 1:  # nn.Dropout(1.0) zeroes without drawing
                out[name] = torch.zeros((m, max_bs, *shape), device=self.device)
            else:
                out[name] = None
        return out

    def _grads(self, params, x, y, weight, masks) -> dict:
        if self.fused is not None:
            return self._fused_grads(params, x, y, weight, masks)
        mask_args = tuple(masks[name] for name, p, _s in self.layers if p > 0)
        with torch.enable_grad():
            return self.grad_fn(params, x, y, weight, mask_args)

    def _fused_grads(self, params, x, y, weight, masks) -> dict:
        fused = self.fused
        wb = fused.weights(params)
        ordered = [masks[name] for name, p, _s in self.layers if p > 0]  # plan() numbers the dropouts with p > 0
        h = x.reshape(x.shape[0], x.shape[1], -1)
        logits, saved = fused.forward(wb, h, ordered)
        err = torch.softmax(logits, dim=-1)
        err.scatter_add_(-1, y.unsqueeze(-1), torch.full_like(y, -1, dtype=err.dtype).unsqueeze(-1))
        delta = err.mul_(weight.unsqueeze(-1))
        return fused.backward_gradients(wb, delta, saved, ordered)

    def _loss(self, params, x, y, weight, mask_args):
        dropped = [name for name, p, _shape in self.layers if p > 0]
        for name, mask in zip(dropped, mask_args):
            self.slots[name].mask = mask
        try:
            logits = functional_call(self.net, params, (x,))
        finally:
            for name in dropped:
                self.slots[name].mask = None
        return (F.cross_entropy(logits, y, reduction="none") * weight).sum()


def _schedule(n: int, bs: int, steps: int, seed: int) -> torch.Tensor:
    """(steps, bs) row indices drawn exactly as Learner.fit draws them."""
    gen = torch.Generator().manual_seed(seed)
    order, pos, rows = torch.randperm(n, generator=gen), 0, []
    for _ in range(steps):
        if pos + bs > n:
            order, pos = torch.randperm(n, generator=gen), 0
        rows.append(order[pos : pos + bs])
        pos += bs
    return torch.stack(rows)


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed) % (2**63))


@torch.no_grad()
def _probe(net: nn.Module, x: torch.Tensor) -> tuple[list[tuple[str, float, tuple[int, ...]]], int]:
    """The dropout layers in call order as (module name, p, input shape per row), and activations per row."""
    names = {mod: name for name, mod in net.named_modules()}
    layers: list[tuple[str, float, tuple[int, ...]]] = []
    total = [0]

    def on_dropout(mod, inputs):
        layers.append((names[mod], float(mod.p), tuple(inputs[0].shape[1:])))

    def on_leaf(_m, _i, out):
        if isinstance(out, torch.Tensor):
            total[0] += out.numel()

    handles = [m.register_forward_pre_hook(on_dropout) for m in net.modules() if type(m) in PLAIN_DROPOUTS]
    handles += [m.register_forward_hook(on_leaf) for m in net.modules() if not list(m.children())]
    was_training = net.training
    try:
        net.eval()
        net(x)
    finally:
        net.train(was_training)
        for h in handles:
            h.remove()
    return layers, max(1, total[0] // max(1, len(x)))
