"""How much of the batch oracle's choice is training noise: one retrain per batch against the mean of R.

On the sources' states (initial 10 and 3, margin roll-out, `metaal run`'s generation settings), each round's six
heuristic batches are retrained R times (the loop's round seed, then ``oracle.batch.REPEAT_SEED_STRIDE`` apart).
Printed: how often the batch that wins on the first retrain is the batch that wins on the mean of R (the expert's
accuracy key, loss breaking ties, as `metaal run` distils), by round, and the accuracy gain's spread across retrains
of one batch against its spread across the batches.  A diagnostic of the expert, never a tuning input.

    python scripts/oracle_noise.py --tasks sklearn:wine,sklearn:iris --seeds 4 --rounds 4 --repeats 3
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np


def oracle_noise(tasks: list[str], seeds: int = 4, rounds: int = 4, repeats: int = 3, initials=(10, 3),
                 train_steps: int | None = None) -> dict:
    import torch

    from metaal.acquisition.features import BATCH_PROPOSERS
    from metaal.acquisition.proposals import heuristic_batches, uncertain_pool
    from metaal.loop import LoopConfig, new_state
    from metaal.oracle.batch import REPEAT_SEED_STRIDE, batch_gains
    from metaal.oracle.lookahead import expert_key
    from metaal.run import embedded_study
    from metaal.tasks import load_task

    torch.set_num_threads(1)
    gen = embedded_study().generate
    learner = gen.learner if train_steps is None else replace(gen.learner, steps=train_steps)
    size, pool = gen.loop.query_size, int(gen.oracle.get("margin_pool", 0))
    same: dict[int, list[bool]] = {}
    within, between = [], []
    for spec in tasks:
        for seed in range(seeds):
            for initial in initials:
                loop = LoopConfig(initial, rounds * size, size)
                task = load_task(spec, seed, gen.split, min_pool=loop.initial + loop.budget)
                state = new_state(task, learner, loop, seed, "cpu")
                Xv, yv = task.X[task.val], task.y[task.val]
                for r in range(1, rounds + 1):
                    batches = heuristic_batches(state, size, uncertain_pool(state, size, pool))
                    names = [n for n in BATCH_PROPOSERS if n in batches]
                    runs = [batch_gains(state, batches, Xv, yv, r + k * REPEAT_SEED_STRIDE) for k in range(repeats)]
                    loss = np.array([[g[n][0] for n in names] for g in runs])  # (repeats, batches)
                    acc = np.array([[g[n][1] for n in names] for g in runs])
                    first = int(np.argmax(expert_key(list(loss[0]), list(acc[0]), "accuracy")))
                    mean = int(np.argmax(expert_key(list(loss.mean(0)), list(acc.mean(0)), "accuracy")))
                    same.setdefault(r, []).append(first == mean)
                    within.append(float(acc.std(0, ddof=1).mean()))
                    between.append(float(acc.mean(0).std(ddof=1)))
                    state.round = r
                    state.add_labels(batches["margin"])
                    state.retrain()
    states = sum(len(v) for v in same.values())
    return {"states": states, "same_winner": sum(sum(v) for v in same.values()) / states,
            "same_winner_by_round": {r: float(np.mean(v)) for r, v in same.items()},
            "sd_across_retrains": float(np.mean(within)), "sd_across_batches": float(np.mean(between))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="sklearn:wine,sklearn:iris")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.repeats < 2:
        raise SystemExit("--repeats must be at least 2 (one retrain is compared with the mean of all)")
    out = oracle_noise(args.tasks.split(","), args.seeds, args.rounds, args.repeats)
    print(f"{out['states']} states: the first retrain's winning batch is the mean's in {out['same_winner']:.0%}")
    print("by round: " + ", ".join(f"{r}: {v:.0%}" for r, v in out["same_winner_by_round"].items()))
    print(f"accuracy gain: sd across retrains of one batch {out['sd_across_retrains']:.4f}, "
          f"across the batches (means of {args.repeats}) {out['sd_across_batches']:.4f}")


if __name__ == "__main__":
    main()
