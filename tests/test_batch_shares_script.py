"""scripts/batch_shares.py replays finished runs exactly: margin's recorded picks are, round after round, the
margin batch that the replayed state proposes; random's are not."""

from __future__ import annotations

import pytest
from _tiny import load_script

TASK = "synthetic:seed=5,classes=3,dim=6,n=300,spikes=2"


@pytest.fixture(scope="module")
def shares(tmp_path_factory):
    from metaal.evaluate import EvalConfig, transfer_eval
    from metaal.learners import LearnerConfig
    from metaal.loop import LoopConfig

    module = load_script("batch_shares")
    out = tmp_path_factory.mktemp("shares")
    transfer_eval(EvalConfig(tasks=[TASK], strategies=["random", "margin"], seeds=2, device="cpu",
                             loop=LoopConfig(initial=6, budget=40, query_size=5), learner=LearnerConfig(steps=20)),
                  out, progress=False)
    return {"out": out, "module": module, **{s: module.batch_shares(out, s, [TASK], [0, 1]) for s in ("margin", "random")}}


def test_margin_runs_replay_to_margin_batches_in_every_phase(shares):
    assert set(shares["margin"]) == {"rounds 1-3", "rounds 4-6", "rounds 7-"}
    for phase, row in shares["margin"].items():
        assert set(row) == {"margin", "entropy", "bald", "coreset", "badge", "random"}
        assert row["margin"] == pytest.approx(1.0), phase
        assert all(0.0 <= v <= 1.0 for v in row.values())


def test_random_picks_are_mostly_outside_margins_batch(shares):
    assert max(row["margin"] for row in shares["random"].values()) < 0.5


def test_a_run_file_without_recorded_picks_is_a_clear_error(shares, tmp_path):
    import json
    import shutil

    from metaal.evaluate import run_path

    old = tmp_path / "old"
    shutil.copytree(shares["out"], old)
    path = run_path(old, TASK, "margin", 0)
    run = json.loads(path.read_text())
    del run["queried"]  # as transfer-eval wrote it before session 6
    path.write_text(json.dumps(run))
    with pytest.raises(SystemExit, match="does not record the queried items"):
        shares["module"].batch_shares(old, "margin", [TASK], [0])
