"""Compare two `metaal run` output directories: are they the same results?

Checks every evaluation run's accuracy curve (results/runs/**.json), the policy's scorer weights
(sha256 of every scorer file) and every array of every trajectory store (*.zarr), value for value
(NaN equals NaN).  Metadata that may legitimately differ (timings, paths, versions) is not compared.
Why: a refactor must leave `metaal run --quick` bit-identical; this says where it does not.

Usage: python scripts/compare_runs.py DIR_A DIR_B   (exit 0: identical, 1: differences listed)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import warnings
from pathlib import Path

import numpy as np


def run_curves(d: Path) -> dict[str, list]:
    """{run file relative path: its accuracy curve and queried rows}."""
    out = {}
    for f in sorted((d / "results" / "runs").rglob("*.json")):
        run = json.loads(f.read_text())
        out[str(f.relative_to(d))] = {k: run.get(k) for k in ("labels", "accuracy", "queried", "aulc", "final_accuracy")
                                      if k in run}
    return out


def scorer_hashes(d: Path) -> dict[str, str]:
    return {str(f.relative_to(d)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(d.rglob("*.pt")) if ".partial" not in str(f)}


def store_arrays(d: Path) -> dict[str, np.ndarray]:
    import zarr

    warnings.filterwarnings("ignore", message=".*not recognized as a component")  # the writer's lock file

    out = {}

    def walk(group, prefix):
        for name, arr in group.arrays():
            out[f"{prefix}{name}"] = arr[...]
        for name, sub in group.groups():
            walk(sub, f"{prefix}{name}/")

    for store in sorted(d.glob("*.zarr")):
        walk(zarr.open_group(str(store), mode="r"), f"{store.name}/")
    return out


def compare(a: Path, b: Path) -> list[str]:
    problems = []
    for what, fa, fb in (("run", run_curves(a), run_curves(b)), ("scorer", scorer_hashes(a), scorer_hashes(b))):
        for key in sorted(set(fa) | set(fb)):
            if key not in fa or key not in fb:
                problems.append(f"{what} {key}: only in {'B' if key not in fa else 'A'}")
            elif fa[key] != fb[key]:
                problems.append(f"{what} {key}: differs")
        if not fa:
            problems.append(f"no {what} files in {a}")
    sa, sb = store_arrays(a), store_arrays(b)
    if not sa:
        problems.append(f"no store arrays in {a}")
    for key in sorted(set(sa) | set(sb)):
        if key not in sa or key not in sb:
            problems.append(f"store array {key}: only in {'B' if key not in sa else 'A'}")
            continue
        x, y = sa[key], sb[key]
        same = x.shape == y.shape and x.dtype == y.dtype and (
            np.array_equal(x, y, equal_nan=True) if x.dtype.kind in "fc" else np.array_equal(x, y))
        if not same:
            problems.append(f"store array {key}: differs ({x.shape} {x.dtype} vs {y.shape} {y.dtype})")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    args = ap.parse_args(argv)
    problems = compare(args.a, args.b)
    n_runs, n_arrays = len(run_curves(args.a)), len(store_arrays(args.a))
    for p in problems:
        print(p)
    print(f"{'DIFFERENT' if problems else 'identical'}: {n_runs} runs, {len(scorer_hashes(args.a))} scorer files, "
          f"{n_arrays} store arrays compared")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
