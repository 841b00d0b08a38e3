"""Benchmark the batched lookahead oracle against the per-candidate reference loop.

For each model and K it times ``lookahead_gains`` (all K candidates batched, with the kernel
the oracle picks by default: the fused MLP kernel where it applies, torch.func elsewhere), the
generic torch.func kernel on its own, and ``reference_gains`` (deepcopy + torch.optim per
candidate) in finetune mode.  It reports candidates per second, the speed-up over the reference,
the fused-over-torch.func ratio, the largest gain difference, the achieved GFLOP/s of the batched
run (analytic FLOP count) and a float32 GEMM peak measured in the same run.

The reference cost per candidate does not depend on K, so for large K only the first
``--ref-max`` candidates go through the reference and its rate is taken from them (the table
says so); ``max_abs_diff`` is then over those candidates.

    python scripts/bench_oracle.py --quick --out bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np
import torch
from torch import nn

from metaal.learners import Learner, LearnerConfig, resolve_device
from metaal.oracle import OracleConfig, lookahead_gains, reference_gains


def forward_flops_per_row(net: nn.Module, x: torch.Tensor) -> float:
    """Multiply-adds x 2 of every Linear and Conv2d for one input row (analytic, from a probe forward)."""
    total = [0.0]

    def linear(m, _i, out):
        total[0] += 2.0 * m.in_features * m.out_features * (out.numel() // out.shape[-1])

    def conv(m, _i, out):
        kh, kw = m.kernel_size
        total[0] += 2.0 * (m.in_channels // m.groups) * kh * kw * out.numel()

    handles = []
    for m in net.modules():
        if isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear))
        elif isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv))
    was_training = net.training
    net.eval()
    with torch.no_grad():
        net(x[:1])
    net.train(was_training)
    for h in handles:
        h.remove()
    return total[0]


def gemm_peak(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(repeats + 1):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best / 1e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_case(model: str, k: int, device: torch.device, n_lab: int = 100, n_val: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    shape = (64,) if model == "mlp" else (1, 28, 28)
    n_classes = 10
    n = n_lab + k + n_val
    # class-dependent means so the task is learnable (digits-sized for the MLP)
    means = rng.standard_normal((n_classes, *shape)).astype(np.float32)
    y = rng.integers(0, n_classes, n)
    X = (means[y] + rng.standard_normal((n, *shape)).astype(np.float32)).astype(np.float32)
    learner = Learner(LearnerConfig(model=model), shape, n_classes, seed=seed, device=device)
    learner.fit(X[:n_lab], y[:n_lab], round_seed=0)
    lab = (X[:n_lab], y[:n_lab])
    cand = (X[n_lab : n_lab + k], y[n_lab : n_lab + k])
    val = (X[n_lab + k :], y[n_lab + k :])
    return learner, lab, cand, val


def timed(fn, device, repeats: int, budget_s: float = 12.0) -> tuple[float, object]:
    """Best of ``repeats`` runs (fewer once ``budget_s`` is spent, at least two): the least disturbed
    by other processes on a shared machine."""
    best, out, start = float("inf"), None, time.perf_counter()
    for i in range(repeats):
        sync(device)
        t = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
        if i >= 1 and time.perf_counter() - start > budget_s:
            break
    return best, out


def bench_row(model: str, k: int, device: torch.device, config: OracleConfig, repeats: int, ref_max: int, peak: float) -> dict:
    learner, (Xl, yl), (Xc, yc), (Xv, yv) = make_case(model, k, device)
    k_ref = min(k, ref_max)
    # warm-up (first calls pay for lazy initialisation)
    lookahead_gains(learner, Xl, yl, Xc[:2], yc[:2], Xv, yv, config, seed=1)
    reference_gains(learner, Xl, yl, Xc[:1], yc[:1], Xv, yv, config, seed=1)
    t_batched, res_b = timed(lambda: lookahead_gains(learner, Xl, yl, Xc, yc, Xv, yv, config, seed=1), device, repeats)
    t_func, res_f = timed(lambda: lookahead_gains(learner, Xl, yl, Xc, yc, Xv, yv, config, seed=1, kernel="func"), device, repeats)
    t_ref, res_r = timed(
        lambda: reference_gains(learner, Xl, yl, Xc[:k_ref], yc[:k_ref], Xv, yv, config, seed=1), device, max(1, repeats // 2)
    )
    diff = float(
        max(
            np.abs(res_b.loss_gain[:k_ref] - res_r.loss_gain).max(),
            np.abs(res_b.acc_gain[:k_ref] - res_r.acc_gain).max(),
            np.abs(res_f.loss_gain[:k_ref] - res_r.loss_gain).max(),
        )
    )
    fwd = forward_flops_per_row(learner.net, learner.tensor(Xl[:1]))
    batch = min(config.batch_size - 1, len(yl)) + 1
    flops = 3.0 * fwd * batch * config.steps * k + fwd * len(yv) * (k + 1)
    return {
        "model": model,
        "k": k,
        "reference_cps": k_ref / t_ref,
        "batched_cps": k / t_batched,
        "speedup": (k / t_batched) / (k_ref / t_ref),
        "func_cps": k / t_func,
        "fused_over_func": t_func / t_batched,
        "max_abs_diff": diff,
        "gflops": flops / t_batched / 1e9,
        "gemm_peak_gflops": peak,
        "reference_candidates_timed": k_ref,
        "batched_seconds": t_batched,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the rows as JSON to this file")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--ks", default="8,32,64,128")
    ap.add_argument("--steps", type=int, default=10, help="finetune steps S (default 10)")
    ap.add_argument("--ref-max", type=int, default=None, help="candidates timed through the reference (default 32, 16 with --quick)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    repeats = 3 if args.quick else 7
    ref_max = args.ref_max or (16 if args.quick else 32)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    ks = [int(k) for k in args.ks.split(",") if k.strip()]
    config = OracleConfig(mode="finetune", steps=args.steps)
    peak = gemm_peak(device)

    rows = []
    header = (f"{'model':<5} {'K':>4} {'ref cand/s':>11} {'batched cand/s':>15} {'speed-up':>9} {'func cand/s':>12} "
              f"{'batched/func':>13} {'max|diff|':>10} {'GFLOP/s':>8} {'GEMM peak':>10}")
    print(f"device {device}, threads {torch.get_num_threads()}, finetune S={config.steps}, batch {config.batch_size}, "
          f"|L|=100, |val|=300; reference timed on the first min(K, {ref_max}) candidates and scaled")
    print(header)
    print("-" * len(header))
    for model in models:
        for k in ks:
            row = bench_row(model, k, device, config, repeats, ref_max, peak)
            rows.append(row)
            scaled = "*" if row["reference_candidates_timed"] < k else " "
            print(f"{model:<5} {k:>4} {row['reference_cps']:>10.1f}{scaled} {row['batched_cps']:>15.1f} {row['speedup']:>8.1f}x "
                  f"{row['func_cps']:>12.1f} {row['fused_over_func']:>12.2f}x "
                  f"{row['max_abs_diff']:>10.1e} {row['gflops']:>8.2f} {row['gemm_peak_gflops']:>10.1f}", flush=True)
    print("* reference rate from a subset of the candidates (its cost per candidate does not depend on K)")
    print("batched = the oracle's default kernel (fused for the MLP, torch.func for the CNN); func = torch.func alone")
    result = {
        "rows": rows,
        "device": str(device) if device.type == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})",
        "threads": torch.get_num_threads(),
        "config": config.to_dict(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
