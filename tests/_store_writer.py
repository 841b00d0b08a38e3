"""Helpers for tests/test_store.py, and a script that writes episodes into a trajectory store.

    python tests/_store_writer.py STORE START:STOP[:STEP] [SHARD]

opens (or resumes) STORE and appends every episode id in range(START, STOP, STEP) not yet committed, each with
content that depends only on its id; it prints "ready" once the writer is open.  The kill test SIGKILLs it
at random moments and runs it again until it finishes.
"""

from __future__ import annotations

import sys

import numpy as np

from metaal.store import STEP_ARRAYS, EpisodeRecord, open_writer

K, FEATURES, CONTEXT = 4, ["f0", "f1", "f2"], ["c0", "c1"]


def make_attrs(K: int = K, F: int = len(FEATURES), G: int = len(CONTEXT), **config) -> dict:
    return {
        "feature_names": [f"f{i}" for i in range(F)],
        "context_names": [f"c{i}" for i in range(G)],
        "schema": {"version": 1, "features": "test"},
        "K": K,
        "oracle": {"name": "lookahead", "steps": 1},
        "config": {"tasks": ["a", "b"], "seed": 0, **config},
        "versions": {"metaal": "test"},
    }


def make_record(
    eid: int, K: int = K, F: int = len(FEATURES), G: int = len(CONTEXT), length: int | None = None
) -> EpisodeRecord:
    """A random episode whose content is a function of its id only."""
    rng = np.random.default_rng(1000 + eid)
    T = int(length if length is not None else 2 + eid % 7)
    steps = {}
    for name, (dtype, shp) in STEP_ARRAYS.items():
        if name == "episode":
            continue
        shape = (T, *shp(K, F, G))
        if dtype is np.bool_:
            steps[name] = rng.random(shape) < 0.5
        elif dtype is np.int32:
            steps[name] = rng.integers(0, K, size=shape).astype(np.int32)
        else:
            steps[name] = rng.standard_normal(shape).astype(np.float32)
    steps["oracle_acc_gain"][:, 0] = np.nan
    return EpisodeRecord(
        episode_id=eid,
        task=["digits", "wine", "synth-ü"][eid % 3],
        seed=10_000 + eid,
        model=["logreg", "mlp"][eid % 2],
        steps=steps,
        final_accuracy=float(rng.random()),
        aulc=float(rng.random()),
        final_val_accuracy=float(rng.random()),
    )


def main(argv: list[str]) -> None:
    path, ids = argv[0], range(*(int(x) for x in argv[1].split(":")))
    shard = argv[2] if len(argv) > 2 else None
    writer = open_writer(path, make_attrs(), shard=shard)
    print("ready", flush=True)
    done = writer.committed_ids()
    for eid in ids:
        if eid not in done:
            writer.append(make_record(eid))
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
