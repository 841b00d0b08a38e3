"""Benchmark stacked training against the one-copy-at-a-time loop: evaluation and the batch oracle.

In one run on one machine it times

* **evaluation**: ``transfer_eval`` with the reference loop (``stack=False``: one run at a time, one
  ``Learner.fit`` a round) and in lockstep (``stack=True``: the runs of a task advance together and each
  round's retrains are one stacked computation), in rounds per second (runs x rounds / wall seconds),
  for M = strategies x seeds runs in lockstep, on an MLP (a tabular task) and a CNN (small images);
* **the batch oracle**: ``batch_gains`` one retrain after another against one stacked call, in oracle
  rounds per second, for M = proposers x repeats copies,

and prints the speed-up ratios and the achieved training FLOP/s (analytic: 3 x forward FLOPs of every
minibatch row of every Adam step) against the float32 GEMM peak it measures with a large matmul.  It also
checks that both paths agree within the numerical noise floor: how many runs' curves differ at all, how far
each strategy's mean AULC moves (evaluation), and the largest gain difference and how often the winning
batch changes (oracle).  ``scripts/kernel_noise.py`` measures that floor (native against scalar CPU
kernels); ``--noise-floor`` runs it here on the MLP evaluation settings so both numbers come from one run.

Timings mean something only on an otherwise idle machine.

    python scripts/bench_eval.py --out bench_eval.json            # 8 strategies x 10 seeds, several M
    python scripts/bench_eval.py --quick                          # a smaller version, a few minutes
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling scripts, also when loaded as a module
from bench_oracle import forward_flops_per_row, gemm_peak, sync  # noqa: E402

from metaal.evaluate import EvalConfig, transfer_eval  # noqa: E402
from metaal.learners import LearnerConfig, resolve_device, set_threads  # noqa: E402
from metaal.loop import LoopConfig, new_state  # noqa: E402
from metaal.tasks import load_task  # noqa: E402

STRATEGIES = "random,margin,entropy,least_confidence,bald,coreset,badge,typiclust"
CASES = {"mlp": "sklearn:digits", "cnn": "sklearn:digits_image"}


def training_flops(task_spec: str, learner: LearnerConfig, runs: int, rounds: int) -> float:
    """Analytic FLOPs of the retrains: runs x (rounds + the initial fit) x steps x batch x 3 x forward."""
    task = load_task(task_spec, 0)
    state = new_state(task, learner, LoopConfig(initial=10, budget=10, query_size=10), 0, "cpu", retrain=False)
    fwd = forward_flops_per_row(state.learner.net, state.learner.tensor(task.X[:1]))
    return runs * (rounds + 1) * learner.steps * learner.batch_size * 3.0 * fwd


def bench_eval_case(model: str, spec: str, strategies: list[str], seeds: int, ref_seeds: int, loop: LoopConfig,
                    learner: LearnerConfig, device: str, peak: float, work: Path, progress: bool) -> dict:
    """Reference loop on the first ``ref_seeds`` seeds, lockstep on all ``seeds``; rates and curve agreement."""
    rounds = len(loop.rounds())

    def run(stack: bool, n_seeds: int) -> tuple[float, dict]:
        config = EvalConfig(tasks=[spec], strategies=strategies, seeds=n_seeds, loop=loop, learner=learner, device=device)
        out = work / f"{model}_{'stack' if stack else 'ref'}_{n_seeds}"
        t0 = time.perf_counter()
        res = transfer_eval(config, out, progress=progress, stack=stack)
        return time.perf_counter() - t0, res

    n_strat = len(EvalConfig(tasks=[spec], strategies=strategies).strategy_list())
    t_ref, ref = run(False, ref_seeds)
    t_stk, stk = run(True, seeds)
    ref_rps = n_strat * ref_seeds * rounds / t_ref
    stk_rps = n_strat * seeds * rounds / t_stk
    flops = training_flops(spec, learner, n_strat * seeds, rounds)
    a = {(r["strategy"], r["seed"]): r for r in ref["runs"]}
    b = {(r["strategy"], r["seed"]): r for r in stk["runs"]}
    shared = [k for k in a if k in b]
    differ = sum(a[k]["accuracy"] != b[k]["accuracy"] for k in shared)
    moves = {}
    for name in dict.fromkeys(k[0] for k in shared):
        keys = [k for k in shared if k[0] == name]
        moves[name] = float(np.mean([b[k]["aulc"] for k in keys]) - np.mean([a[k]["aulc"] for k in keys]))
    return {"part": "evaluation", "model": model, "task": spec, "M": n_strat * seeds, "rounds": rounds,
            "ref_runs": n_strat * ref_seeds, "ref_rounds_per_s": ref_rps, "stack_rounds_per_s": stk_rps,
            "speedup": stk_rps / ref_rps, "stack_gflops": flops / t_stk / 1e9, "peak_share": flops / t_stk / peak,
            "runs_compared": len(shared), "runs_differ": differ, "aulc_mean_move": moves,
            "max_abs_aulc_move": max((abs(v) for v in moves.values()), default=0.0)}


def bench_oracle_case(model: str, spec: str, query: int, repeats: int, learner: LearnerConfig, device, peak: float,
                      rounds: int) -> dict:
    """``batch_gains`` one retrain after another against one stacked call, on ``rounds`` states of one episode."""
    from metaal.acquisition.proposals import heuristic_batches
    from metaal.oracle.batch import batch_gains

    task = load_task(spec, 0)
    Xv, yv = task.X[task.val], task.y[task.val]
    state = new_state(task, learner, LoopConfig(initial=20, budget=query * rounds, query_size=query), 0, device)
    t_ref = t_stk = 0.0
    worst, flips, m = 0.0, 0, 0
    for r in range(1, rounds + 1):
        batches = heuristic_batches(state, query)
        m = len(batches) * repeats
        sync(device)
        t0 = time.perf_counter()
        seq = batch_gains(state, batches, Xv, yv, round_seed=r, repeats=repeats, stack=False)
        sync(device)
        t1 = time.perf_counter()
        stk = batch_gains(state, batches, Xv, yv, round_seed=r, repeats=repeats, stack=True)
        sync(device)
        t_ref, t_stk = t_ref + t1 - t0, t_stk + time.perf_counter() - t1
        worst = max(worst, max(abs(seq[k][0] - stk[k][0]) for k in seq))
        flips += max(seq, key=lambda k: seq[k][0]) != max(stk, key=lambda k: stk[k][0])
        state.round = r  # the loop's next state: margin's batch, retrained
        state.add_labels(batches["margin"] if "margin" in batches else next(iter(batches.values())))
        state.retrain()
    fwd = forward_flops_per_row(copy.deepcopy(state.learner.net), state.learner.tensor(task.X[:1]))
    flops = rounds * m * learner.steps * learner.batch_size * 3.0 * fwd
    return {"part": "batch oracle", "model": model, "task": spec, "M": m, "rounds": rounds, "repeats": repeats,
            "ref_rounds_per_s": rounds / t_ref, "stack_rounds_per_s": rounds / t_stk, "speedup": t_ref / t_stk,
            "stack_gflops": flops / t_stk / 1e9, "peak_share": flops / t_stk / peak,
            "max_abs_loss_gain_diff": worst, "winner_changed": flips}


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 strategies x 2 seeds, budget 40, fewer oracle rounds")
    ap.add_argument("--models", default="mlp,cnn", help="mlp (sklearn:digits) and/or cnn (sklearn:digits_image)")
    ap.add_argument("--tasks", default=None, help="MODEL=SPEC[,MODEL=SPEC] to replace the default tasks")
    ap.add_argument("--strategies", default=None, help=f"default: {STRATEGIES} (3 of them with --quick)")
    ap.add_argument("--seeds", default=None, help="comma list: lockstep runs strategies x seeds (default 1,4,10; 2 quick)")
    ap.add_argument("--ref-seeds", type=int, default=None, help="seeds run through the reference loop (default: the "
                    "largest of --seeds; its rate per round does not depend on M)")
    ap.add_argument("--budget", type=int, default=None, help="labels queried per run (default 150, 40 quick)")
    ap.add_argument("--initial", type=int, default=10)
    ap.add_argument("--query-size", type=int, default=10)
    ap.add_argument("--steps", type=int, default=None, help="Adam steps per retrain (default metaal's, 30 quick)")
    ap.add_argument("--repeats", default=None, help="batch oracle: comma list of repeats, M = proposers x repeats "
                    "(default 1,3; 1 quick)")
    ap.add_argument("--oracle-rounds", type=int, default=None, help="batch-oracle rounds timed (default 5, 2 quick)")
    ap.add_argument("--parts", default="oracle,eval")
    ap.add_argument("--noise-floor", action="store_true", help="also run scripts/kernel_noise.py on the MLP settings")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=None, help="keep the results directories here (default: a temporary folder)")
    ap.add_argument("--out", default=None, help="write the rows as JSON")
    ap.add_argument("--progress", action="store_true")
    a = ap.parse_args(argv)
    set_threads(a.threads)
    device = resolve_device(a.device)
    q = a.quick
    strategies = (a.strategies or ("random,margin,badge" if q else STRATEGIES)).split(",")
    seeds = [int(s) for s in (a.seeds or ("2" if q else "1,4,10")).split(",")]
    repeats = [int(s) for s in (a.repeats or ("1" if q else "1,3")).split(",")]
    loop = LoopConfig(a.initial, a.budget or (40 if q else 150), a.query_size)
    learner = LearnerConfig(steps=a.steps or (30 if q else LearnerConfig().steps))
    cases = dict(CASES)
    if a.tasks:
        cases.update(dict(item.split("=", 1) for item in a.tasks.split(",")))
    models = [m for m in a.models.split(",") if m]
    peak = gemm_peak(device, n=1024 if q else 2048) * 1e9  # bench_oracle.gemm_peak returns GFLOP/s
    print(f"{platform.node()} · {platform.processor() or platform.machine()} · torch {torch.__version__} · "
          f"{a.threads} threads · {device} · float32 GEMM peak {peak / 1e9:.1f} GFLOP/s")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work or tmp)
        for model in models:
            if "oracle" in a.parts:
                for rep in repeats:
                    rows.append(bench_oracle_case(model, cases[model], a.query_size, rep, learner, device, peak,
                                                  a.oracle_rounds or (2 if q else 5)))
                    _print(rows[-1])
            if "eval" in a.parts:
                ref_seeds = a.ref_seeds or max(seeds)
                for n in seeds:
                    rows.append(bench_eval_case(model, cases[model], strategies, n, min(ref_seeds, n), loop, learner,
                                                str(device), peak, work, a.progress))
                    _print(rows[-1])
        if a.noise_floor and "mlp" in models:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            import kernel_noise

            floor = kernel_noise.main(["--tasks", cases["mlp"], "--strategies", ",".join(strategies), "--seeds",
                                       str(max(seeds)), "--budget", str(loop.budget), "--initial", str(loop.initial),
                                       "--query-size", str(loop.query_size), "--epochs-steps", str(learner.steps),
                                       "--out", str(work / "kernel_noise")])
            rows.append({"part": "noise floor", "model": "mlp", "task": cases["mlp"], "rows": floor,
                         "max_abs_aulc_move": max(abs(r["mean_difference"]) for r in floor)})
            print(f"noise floor (native vs scalar kernels): largest per-strategy mean AULC move "
                  f"{rows[-1]['max_abs_aulc_move']:.4f}")
    if a.out:
        Path(a.out).write_text(json.dumps({"machine": platform.node(), "threads": a.threads, "device": str(device),
                                           "gemm_peak_gflops": peak / 1e9, "rows": rows}, indent=2) + "\n")
    return rows


def _print(row: dict) -> None:
    head = f"{row['part']:>12} {row['model']:>4} M={row['M']:<4}"
    rates = (f"reference {row['ref_rounds_per_s']:8.2f} rounds/s  stacked {row['stack_rounds_per_s']:8.2f} rounds/s  "
             f"x{row['speedup']:.2f}  {row['stack_gflops']:.2f} GFLOP/s ({100 * row['peak_share']:.1f}% of peak)")
    if row["part"] == "evaluation":
        check = (f"curves differ {row['runs_differ']}/{row['runs_compared']}, "
                 f"largest strategy mean-AULC move {row['max_abs_aulc_move']:.4f}")
    else:
        check = f"max |loss gain diff| {row['max_abs_loss_gain_diff']:.2e}, winner changed {row['winner_changed']}x"
    print(f"{head} {rates}  {check}", flush=True)


if __name__ == "__main__":
    main()
