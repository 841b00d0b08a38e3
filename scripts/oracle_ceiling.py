"""How good is each expert when it acts itself (true labels)?  The ceiling a policy imitates.

Runs the ``oracle`` strategy with each oracle setting beside random and margin on the tuning
tasks of scripts/study.py (never the reported targets) and prints mean AULC per strategy.

    python scripts/oracle_ceiling.py --out runs/oracle_ceiling
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SETTINGS = {
    "finetune, random K=32": {},
    "finetune, heuristic proposals": {"proposals": "heuristics"},
    "retrain, random K=32": {"mode": "retrain"},
    "retrain, heuristic proposals": {"mode": "retrain", "proposals": "heuristics"},
    "first-order, random K=32": {"mode": "first-order"},
    "batch (heuristic batches retrained)": {"mode": "batch"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/oracle_ceiling")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--budget", type=int, default=60)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from study import TUNING_TARGETS

    from metaal.evaluate import EvalConfig, transfer_eval
    from metaal.loop import LoopConfig

    rows = []
    for i, (name, oracle) in enumerate(SETTINGS.items()):
        cfg = EvalConfig(tasks=list(TUNING_TARGETS), strategies=["random", "margin", "oracle"], seeds=args.seeds,
                         loop=LoopConfig(10, args.budget, 10), oracle=oracle)
        res = transfer_eval(cfg, Path(args.out) / f"setting{i}", progress=False)
        by: dict[str, list[float]] = {}
        for s in res["summary"]:
            by.setdefault(s["strategy"], []).append(s["aulc_mean"])
        row = {"setting": name, "oracle": oracle, **{k: sum(v) / len(v) for k, v in by.items()}}
        rows.append(row)
        print(f"{name:<38} random {row['random']:.4f}  margin {row['margin']:.4f}  oracle {row['oracle']:.4f}", flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "oracle_ceiling.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
