"""Benchmark `metaal select`'s ranking: the learned policy against margin sampling, by pool size.

    METAAL_THREADS=1 python scripts/bench_select.py --sizes 1000,10000,100000,1000000 --out bench_select.json

Synthetic tabular pools (20 features, 5 Gaussian classes), 50 labelled items, metaal's default MLP trained once
per pool; then the same selection of n items (default 20) by margin and by the policy (``policy:DIR``, the
default pre-filter).  Timed: ranking the whole pool (the model's forward passes over every item, scores,
the policy's features for its candidates, batch selection), best of ``--repeats`` after one untimed warm-up call, as wall-clock and as CPU time
of the process (steadier on a shared machine); training is reported apart because it is the same for both.
torch and numpy's BLAS both get ``$METAAL_THREADS`` threads (default 1).  Each (size, strategy) runs in its own process, so ``peak_mb`` (ru_maxrss) is
that process's peak resident memory; ``base_mb`` is its resident memory just before ranking (Python, torch and
the pool itself), ``pool_mb`` the pool's raw size.  Without ``--policy`` a small policy is generated and distilled
first (about a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_pool(n: int, dim: int = 20, classes: int = 5, seed: int = 0, chunk: int = 100_000):
    """Gaussian classes, written chunk by chunk into one float32 array (no float64 copy of the pool)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)).astype(np.float32) * 1.5
    y = rng.integers(0, classes, n)
    X = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        yy = y[start : start + chunk]
        X[start : start + chunk] = centres[yy] + rng.standard_normal((len(yy), dim), dtype=np.float32)
    return X, y


def worker(size: int, strategy: str, n: int, repeats: int, policy: str | None) -> dict:
    import torch

    from metaal.learners import Learner, LearnerConfig, derive_seed
    from metaal.select import DEFAULT_PREFILTER, LearnerOutputs, _rank, pool_statistics, resolve_strategy

    torch.set_num_threads(int(os.environ.get("METAAL_THREADS", "1")))
    X, y = make_pool(size)
    labelled = np.concatenate([np.flatnonzero(y == c)[:10] for c in range(5)])
    t0 = time.perf_counter()
    mean, std = pool_statistics(X)
    learner = Learner(LearnerConfig(), X.shape[1:], 5, seed=derive_seed(0, 0x11))
    out = LearnerOutputs(learner, X, mean, std)
    learner.fit(out.rows(labelled), y[labelled], round_seed=0)
    train_s = time.perf_counter() - t0
    strat = resolve_strategy(f"policy:{policy}" if strategy == "policy" else strategy)
    base = rss_mb()
    _rank(out, labelled, y[labelled], n, strat, 0, DEFAULT_PREFILTER, None)  # warm-up (lazy init), untimed, for both
    times, cpu, picked = [], [], None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        picked, _ = _rank(out, labelled, y[labelled], n, strat, 0, DEFAULT_PREFILTER, None)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"size": size, "strategy": strategy, "n": n, "seconds": min(times), "seconds_all": times,
            "cpu_seconds": min(cpu), "cpu_seconds_all": cpu,
            "train_seconds": train_s, "base_mb": base, "peak_mb": peak, "pool_mb": X.nbytes / 2**20,
            "picked_accuracy_of_model": float((learner.predict_proba(out.rows(picked)).argmax(1) == y[picked]).mean())}


def make_policy(folder: Path) -> str:
    """A small real policy of the `metaal run` kind (batch oracle, same margin pool): a few expert episodes on
    iris and wine, distilled with the gain regressor."""
    from metaal.distill import DistillConfig, distill
    from metaal.generate import GenerateConfig, generate
    from metaal.learners import LearnerConfig
    from metaal.loop import LoopConfig
    from metaal.run import ORACLE

    store = folder / "store.zarr"
    generate(GenerateConfig(tasks=["sklearn:iris", "sklearn:wine"], episodes=4, candidates=60, loop=LoopConfig(10, 30, 10),
                            oracle=dict(ORACLE), learner=LearnerConfig(steps=50), device="cpu"), str(store), progress=False)
    distill([str(store)], DistillConfig(algo="gain", steps=300, batch_size=64), folder / "policy", progress=False)
    return str(folder / "policy")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000,1000000")
    ap.add_argument("--n", type=int, default=20, help="items selected")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--policy", default=None, help="a policy directory (default: make a small one first)")
    ap.add_argument("--out", default="bench_select.json")
    ap.add_argument("--worker", nargs=2, metavar=("SIZE", "STRATEGY"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(int(args.worker[0]), args.worker[1], args.n, args.repeats, args.policy)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-select-") as tmp:
        policy = args.policy or make_policy(Path(tmp))
        rows = []
        for size in (int(s) for s in args.sizes.split(",")):
            res = {}
            for strategy in ("margin", "policy"):
                cmd = [sys.executable, __file__, "--worker", str(size), strategy, "--n", str(args.n), "--repeats",
                       str(args.repeats), "--policy", policy]
                threads = os.environ.get("METAAL_THREADS", "1")  # numpy's BLAS gets the same number of threads as torch
                env = {**os.environ, "METAAL_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
                if proc.returncode:
                    sys.exit(f"worker {size} {strategy} failed:\n{proc.stderr[-3000:]}")
                res[strategy] = json.loads(proc.stdout.strip().splitlines()[-1])
            row = {"size": size, "n": args.n, "margin_s": res["margin"]["seconds"], "policy_s": res["policy"]["seconds"],
                   "ratio": res["policy"]["seconds"] / res["margin"]["seconds"],
                   "margin_cpu_s": res["margin"]["cpu_seconds"], "policy_cpu_s": res["policy"]["cpu_seconds"],
                   "cpu_ratio": res["policy"]["cpu_seconds"] / res["margin"]["cpu_seconds"],
                   "margin_peak_mb": res["margin"]["peak_mb"], "policy_peak_mb": res["policy"]["peak_mb"],
                   "base_mb": res["policy"]["base_mb"], "pool_mb": res["policy"]["pool_mb"],
                   "train_s": res["policy"]["train_seconds"], "runs": res}
            rows.append(row)
            print(f"{size:>8} margin {row['margin_s']:.3f} s  policy {row['policy_s']:.3f} s  ratio {row['ratio']:.2f} "
                  f"(CPU time ratio {row['cpu_ratio']:.2f})  "
                  f"peak MB margin {row['margin_peak_mb']:.0f} policy {row['policy_peak_mb']:.0f} "
                  f"(before ranking {row['base_mb']:.0f}, pool {row['pool_mb']:.0f})", flush=True)
    from metaal.io import atomic_write_json, package_versions
    from metaal.select import DEFAULT_PREFILTER

    atomic_write_json(args.out, {"rows": rows, "threads": int(os.environ.get("METAAL_THREADS", "1")),
                                 "prefilter": DEFAULT_PREFILTER, "policy": args.policy or "generated",
                                 "versions": package_versions(), "cpu_count": os.cpu_count()})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
