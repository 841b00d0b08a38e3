"""The numerical noise floor: the same transfer-eval under torch's native CPU kernels and under its scalar ones.

torch picks vectorised kernels by instruction set (AVX-512, AVX2, scalar); their results differ in the last bits.
Nothing else changes between the two runs here (same code, seeds, splits, initial sets and weights), so every
difference in AULC is what last-bit arithmetic does to an active-learning run: a near-tie between two items'
scores flips, a different item is queried, and the run diverges.  A strategy difference smaller than this cannot
be told apart on another machine.  Printed per strategy: mean AULC under each kernel set, their mean difference
and the share of (task, seed) runs whose curve changed at all.

    python scripts/kernel_noise.py --policy runs/default/policy --tasks sklearn:digits,sklearn:breast_cancer \\
        --seeds 10 --budget 150 --out runs/kernel_noise

Each kernel set runs in a fresh ``metaal transfer-eval`` process (ATEN_CPU_CAPABILITY is read once, at import).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

STRATEGIES = "random,margin,entropy,least_confidence,bald,coreset,badge"


def run_eval(out: Path, capability: str | None, args: list[str]) -> dict:
    """One transfer-eval under ``capability`` (None: torch's own choice); its summary.json."""
    env = dict(os.environ)
    env.pop("ATEN_CPU_CAPABILITY", None)
    if capability:
        env["ATEN_CPU_CAPABILITY"] = capability
    cmd = [sys.executable, "-m", "metaal.cli", "transfer-eval", *args, "--quiet", "--out", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"transfer-eval failed under {capability or 'native'} kernels:\n{done.stdout}{done.stderr}")
    return json.loads((out / "summary.json").read_text())


def compare(native: dict, scalar: dict) -> list[dict]:
    """Per strategy: mean AULC under each kernel set, mean difference (native - scalar), share of runs changed."""
    def by_run(res):
        return {(r["strategy"], r["task"], r["seed"]): r for r in res["runs"]}

    a, b = by_run(native), by_run(scalar)
    rows = []
    for strategy in dict.fromkeys(k[0] for k in a):
        keys = [k for k in a if k[0] == strategy and k in b]
        if not keys:
            continue
        aulc_a = [a[k]["aulc"] for k in keys]
        aulc_b = [b[k]["aulc"] for k in keys]
        changed = sum(a[k]["accuracy"] != b[k]["accuracy"] for k in keys)
        rows.append({"strategy": strategy, "runs": len(keys), "native": sum(aulc_a) / len(keys),
                     "scalar": sum(aulc_b) / len(keys),
                     "mean_difference": sum(x - y for x, y in zip(aulc_a, aulc_b)) / len(keys),
                     "mean_abs_difference": sum(abs(x - y) for x, y in zip(aulc_a, aulc_b)) / len(keys),
                     "changed": changed / len(keys)})
    return rows


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", required=True)
    ap.add_argument("--strategies", default=STRATEGIES)
    ap.add_argument("--policy", default=None, help="a policy directory: adds the strategy 'policy'")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=150)
    ap.add_argument("--initial", type=int, default=10)
    ap.add_argument("--query-size", type=int, default=10)
    ap.add_argument("--epochs-steps", type=int, default=None, help="learner steps per round (default: metaal's)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", default="runs/kernel_noise")
    a = ap.parse_args(argv)
    strategies = a.strategies + (",policy" if a.policy else "")
    args = ["--tasks", a.tasks, "--strategies", strategies, "--seeds", str(a.seeds), "--budget", str(a.budget),
            "--initial", str(a.initial), "--query-size", str(a.query_size), "--workers", str(a.workers)]
    if a.policy:
        args += ["--policy", a.policy]
    if a.epochs_steps:
        args += ["--epochs-steps", str(a.epochs_steps)]
    native = run_eval(Path(a.out) / "native", None, args)
    scalar = run_eval(Path(a.out) / "scalar", "default", args)
    rows = compare(native, scalar)
    kernels = native.get("platform", {}).get("torch_cpu_capability")
    print(f"native kernels: {kernels}; scalar: ATEN_CPU_CAPABILITY=default; {a.seeds} seeds on {a.tasks}")
    print(f"{'strategy':<18}{'native':>9}{'scalar':>9}{'mean diff':>11}{'mean |diff|':>13}{'runs changed':>14}")
    for r in rows:
        print(f"{r['strategy']:<18}{r['native']:>9.4f}{r['scalar']:>9.4f}{r['mean_difference']:>+11.4f}"
              f"{r['mean_abs_difference']:>13.4f}{r['changed']:>13.0%}")
    return rows


if __name__ == "__main__":
    main()
