"""Which heuristics' batches a finished run's picks came from, round by round (a diagnostic, never a tuning input).

transfer-eval records the items each round queried.  This replays a run: it rebuilds the paired start, and at
every round computes the six heuristic batches the batch oracle and the policy choose among (drawn from the
margin_pool x query_size smallest margins), counts how many of the recorded picks lie in each, then adds the
picks and retrains as the loop did.  A share above 1/6 means a preference; shares add up to more than 1 where
batches overlap.

    python scripts/batch_shares.py RESULTS_DIR --strategy policy --tasks synthetic:seed=9241,... --seeds 4
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np

PHASES = ((1, 3, "rounds 1-3"), (4, 6, "rounds 4-6"), (7, 10**9, "rounds 7-"))


def batch_shares(results: str | Path, strategy: str, tasks: list[str], seeds: list[int],
                 margin_pool: int = 5) -> dict[str, dict[str, float]]:
    """Phase -> heuristic -> share of the run's picks in that heuristic's batch."""
    from metaal.acquisition.proposals import heuristic_batches, uncertain_pool
    from metaal.evaluate import run_path
    from metaal.learners import LearnerConfig
    from metaal.loop import LoopConfig, new_state
    from metaal.tasks import SplitConfig, load_task

    results = Path(results)
    config = json.loads((results / "summary.json").read_text())["config"]
    loop, learner = LoopConfig(**config["loop"]), LearnerConfig(**config["learner"])
    split = SplitConfig(**config["split"])
    inside = collections.defaultdict(collections.Counter)
    total = collections.Counter()
    for task_spec in tasks:
        for seed in seeds:
            path = run_path(results, task_spec, strategy, seed)
            run = json.loads(path.read_text())
            if "queried" not in run:  # written before transfer-eval recorded the picks (session 6)
                raise SystemExit(f"{path} does not record the queried items: rerun transfer-eval into a new --out")
            task = load_task(task_spec, seed, split, min_pool=loop.initial + loop.budget)
            state = new_state(task, learner, loop, seed=seed, device="cpu")
            for r, picked in enumerate(run["queried"], start=1):
                phase = next(name for lo, hi, name in PHASES if lo <= r <= hi)
                chosen, n = set(picked), len(picked)
                batches = heuristic_batches(state, n, uncertain_pool(state, n, margin_pool, state.unlabelled))
                for name, batch in batches.items():
                    inside[phase][name] += len(chosen.intersection(np.asarray(batch).tolist()))
                total[phase] += n
                state.round = r
                state.add_labels(np.asarray(picked, dtype=np.int64))
                state.retrain()
    return {phase: {name: c / total[phase] for name, c in inside[phase].items()} for phase in inside}


def main():
    from metaal.tasks import parse_task_list

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="a transfer-eval --out directory")
    ap.add_argument("--strategy", default="policy")
    ap.add_argument("--tasks", required=True, help="comma list of task specs evaluated in RESULTS")
    ap.add_argument("--seeds", type=int, default=4, help="seeds 0 .. N-1")
    ap.add_argument("--margin-pool", type=int, default=5)
    args = ap.parse_args()
    shares = batch_shares(args.results, args.strategy, parse_task_list(args.tasks), list(range(args.seeds)),
                          args.margin_pool)
    for phase, row in shares.items():
        print(f"{args.strategy:8s} {phase:11s} " + "  ".join(f"{k} {v:.2f}" for k, v in row.items()))


if __name__ == "__main__":
    main()
