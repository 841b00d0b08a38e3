"""Gradient steps per second of distillation on synthetic trajectories (20k steps x K=32 by default).

    .venv/bin/python scripts/bench_distill.py --out bench_distill.json

Measures bc, cql (d3rlpy, batch sampling included) and gain (plain PyTorch) with
torch.set_num_threads 1 and 2, after a short warm-up.  Target: >= 50 steps/s on 2 cores.
A busy machine (other processes on the same cores) slows the 2-thread runs most: the load
average is recorded next to the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metaal.acquisition import features  # noqa: E402
from metaal.store.records import Trajectories  # noqa: E402


def synthetic(n_steps: int = 20_000, K: int = 32, b: int = 10, rounds: int = 10, seed: int = 0) -> Trajectories:
    """Random trajectories with the store's shapes: episodes of `rounds` rounds of `b` picks."""
    rng = np.random.default_rng(seed)
    F, G = len(features.FEATURE_NAMES), len(features.CONTEXT_NAMES)
    ep_len = b * rounds
    n_ep = max(1, n_steps // ep_len)
    N = n_ep * ep_len
    cand = rng.random((N, K, F), dtype=np.float32)
    gain = (cand[..., 1] - 0.5 + 0.1 * rng.standard_normal((N, K))).astype(np.float32)
    mask = np.ones((N, K), bool)
    action = np.zeros(N, np.int32)
    expert = np.zeros(N, np.int32)
    for r0 in range(0, N, b):  # within a round the same candidates, the mask shrinking
        cand[r0 : r0 + b] = cand[r0]
        gain[r0 : r0 + b] = gain[r0]
        m = rng.random(K) > 0.05
        m[rng.integers(K)] = True
        for t in range(b):
            if m.sum() == 0:
                m[:] = True
            mask[r0 + t] = m
            g = np.where(m, gain[r0], -np.inf)
            expert[r0 + t] = int(np.argmax(g))
            action[r0 + t] = expert[r0 + t] if rng.random() < 0.5 else int(rng.choice(np.flatnonzero(m)))
            m = m.copy()
            m[action[r0 + t]] = False
    pos = np.arange(N)
    round_end = (pos % b) == b - 1
    terminal = (pos % ep_len) == ep_len - 1
    steps = {
        "candidates": cand,
        "context": rng.random((N, G), dtype=np.float32),
        "mask": mask,
        "oracle_gain": np.where(mask, gain, np.nan).astype(np.float32),
        "oracle_acc_gain": np.where(mask, gain, np.nan).astype(np.float32),
        "action": action,
        "expert_action": expert,
        "reward": np.where(round_end, rng.standard_normal(N) * 0.01, 0.0).astype(np.float32),
        "terminal": terminal,
        "episode": (pos // ep_len).astype(np.int32),
        "round_end": round_end,
    }
    attrs = {"schema": features.schema(), "feature_names": list(features.FEATURE_NAMES),
             "context_names": list(features.CONTEXT_NAMES), "K": K}
    episodes = {"id": np.arange(n_ep), "first_step": np.arange(n_ep) * ep_len, "length": np.full(n_ep, ep_len)}
    return Trajectories(attrs=attrs, steps=steps, episodes=episodes)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300, help="timed gradient steps per (algorithm, threads)")
    ap.add_argument("--n-steps", type=int, default=20_000, help="synthetic trajectory steps")
    ap.add_argument("--K", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--algos", default="bc,cql,gain")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)

    from metaal.distill import DistillConfig, distill

    trajs = synthetic(args.n_steps, args.K)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for threads in [int(t) for t in args.threads.split(",")]:
            for algo in args.algos.split(","):
                cfg = DistillConfig(algo=algo, steps=args.steps, batch_size=args.batch_size, hidden=args.hidden,
                                    val_fraction=0.05, threads=threads)
                distill(trajs, DistillConfig(**{**cfg.to_dict(), "steps": 20}), Path(tmp) / "warm", progress=False)
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                meta = distill(trajs, cfg, Path(tmp) / f"{algo}-{threads}", progress=False)
                total = time.perf_counter() - t0
                row = {
                    "algorithm": algo,
                    "threads": threads,
                    "steps": args.steps,
                    "steps_per_second": meta["training"]["steps_per_second"],
                    "train_seconds": meta["training"]["seconds"],
                    "total_seconds": round(total, 2),
                    "load_average_before": round(load, 2),
                }
                results.append(row)
                print(f"{algo:5s} threads={threads}  {row['steps_per_second']:8.1f} steps/s  "
                      f"(train {row['train_seconds']:.1f}s, total {total:.1f}s, load {load:.1f})", flush=True)
    import torch

    out = {
        "benchmark": "distill gradient steps per second",
        "data": {"n_steps": trajs.n_steps, "K": args.K, "F": len(features.FEATURE_NAMES),
                 "G": len(features.CONTEXT_NAMES), "batch_size": args.batch_size, "hidden": args.hidden},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__},
        "results": results,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
