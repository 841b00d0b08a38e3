"""Crash safety: SIGKILL generate, distill and transfer-eval at random moments, resume, compare.

The kill loops are scripts/kill_resume.py's (which runs more of them).  Here each run is forked from a
server that has already imported metaal and torch (the command code that runs and is killed is the
real CLI), so that ten kills take seconds instead of a minute of interpreter start-ups; one test kills
the real console entry point in a fresh interpreter.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import kill_resume as kr  # noqa: E402

from metaal.distill import CHECKPOINT_FILE, STAGING_DIR, Checkpoints, distill, partial_dir  # noqa: E402
from metaal.errors import MetaalError  # noqa: E402
from metaal.policy import load_policy  # noqa: E402


@pytest.fixture(scope="module")
def launcher():
    return kr.Launcher("fork")


# Enough episodes that ten kills happen before the store is complete: each killed run commits an episode
# or more first, and with 30 a fast, idle machine sometimes finished the store after nine kills.
EPISODES = 45


@pytest.fixture(scope="module")
def generated(launcher, tmp_path_factory):
    work = tmp_path_factory.mktemp("kills")
    return work, kr.kill_resume_generate(work, kills=10, episodes=EPISODES, seed=0, span=0.3, launcher=launcher)


def test_generate_ten_sigkills_resume_to_the_uninterrupted_store(generated):
    _, r = generated
    assert r["kills"] >= 10, r
    assert r["mismatches"] == 0, r["mismatch_examples"]
    # every episode id of the reference, each compared array by array (steps and episode fields)
    assert r["episodes_compared"] == EPISODES and r["episodes_checked"] > 0


def test_generate_real_console_script_killed_and_resumed(generated):
    work, first = generated
    r = kr.kill_resume_generate(work, kills=1, episodes=EPISODES, seed=5, mode="subprocess", span=0.5,
                                reference=Path(first["reference"]), name="gen_console.zarr")
    assert r["kills"] == 1 and r["mismatches"] == 0, r


def test_distill_sigkills_resume_from_checkpoints_to_the_same_policy(generated, launcher):
    work, g = generated
    r = kr.kill_resume_distill(work, Path(g["reference"]), kills=3, steps=2000, seed=0, span=0.3, launcher=launcher)
    assert r["kills"] >= 3 and r["mismatches"] == 0, r
    assert r["kills_leaving_checkpoint"] >= 1  # at least one rerun resumed instead of restarting


def test_transfer_eval_keeps_finished_runs_after_sigkill(generated, launcher):
    work, _ = generated
    r = kr.kill_resume_eval(work, kills=2, seed=0, span=0.1, launcher=launcher)
    # run files from killed runs are identical to the reference's and never rewritten by the reruns
    assert r["kills"] >= 1 and r["mismatches"] == 0, r


def test_stacked_transfer_eval_resumes_after_sigkill(generated, launcher):
    """Lockstep runs (--stack) are written when their task's lockstep ends; a killed one is redone on the
    rerun, stacked with fewer runs, and must still give the reference's files bit for bit."""
    work, _ = generated
    r = kr.kill_resume_eval(work, kills=2, seed=1, span=0.1, launcher=launcher, extra=("--stack",))
    assert r["kills"] >= 1 and r["mismatches"] == 0, r


def test_benchmark_killed_during_runs_and_while_writing_its_final_files(generated, launcher):
    """Kills while the runs are made, then reruns of the finished directory killed while they rewrite summary.json,
    curves.csv, report.md, the plots and the benchmark files: every file present is always complete and equal to
    the uninterrupted run's, and no temporary file survives."""
    work, _ = generated
    args = ["--tasks", "sklearn:iris,sklearn:wine", "--strategies", "random,margin", "--seeds", "2", "--initial", "6",
            "--budget", "12", "--query-size", "6", "--epochs-steps", "5", "--quiet"]
    r = kr.kill_resume_benchmark(work, kills=1, seed=0, span=0.1, launcher=launcher, final_kills=2, args=args)
    assert r["mismatches"] == 0, r["mismatch_examples"]
    assert r["final_kills"] == 2 and r["final_kills_during_writing"] >= 1, r
    # summary.json, curves.csv, report.md, a plot per task, benchmark.json, benchmark.md, cd_diagram.png
    assert r["final_files_compared"] == 8


# ------------------------------------------------------------------------------------------ distill checkpoints
@pytest.fixture(scope="module")
def toy():
    from test_distill import toy_trajectories

    return toy_trajectories(n_episodes=12)


def _cfg(algo="gain", **kw):
    from test_distill import small_config

    return small_config(algo, **{"steps": 60, **kw})


class _Stop(Exception):
    pass


def _interrupt_after(monkeypatch, step: int):
    """Make the run stop right after it saved the checkpoint of ``step`` (as a kill would)."""
    orig = Checkpoints.save

    def save(self, s, *a):
        orig(self, s, *a)
        if s >= step:
            raise _Stop

    monkeypatch.setattr(Checkpoints, "save", save)


def _killed_at_30(toy, out, monkeypatch, algo="gain", **kw):
    """A distill into ``out`` stopped right after its step-30 checkpoint."""
    with monkeypatch.context() as m:
        _interrupt_after(m, 30)
        with pytest.raises(_Stop):
            distill(toy, _cfg(algo, **kw), out, progress=False)


def _weights(path):
    return torch.load(Path(path) / "scorer.pt", weights_only=True)


@pytest.mark.parametrize("algo", ["gain", "bc"])
def test_resumed_distill_equals_uninterrupted(toy, tmp_path, monkeypatch, algo):
    ref = distill(toy, _cfg(algo), tmp_path / "ref", progress=False)
    out = tmp_path / "pol"
    _killed_at_30(toy, out, monkeypatch, algo)
    assert not out.exists() and (partial_dir(out) / CHECKPOINT_FILE).is_file()
    with pytest.raises(MetaalError, match="not a policy"):
        load_policy(partial_dir(out))
    from _tiny import invoke

    r = invoke("inspect", partial_dir(out))
    assert r.exit_code == 2 and "unfinished `metaal distill` (checkpoint at step 30)" in r.output, r.output
    messages = []
    meta = distill(toy, _cfg(algo), out, progress=False, notify=messages.append)
    assert any("resuming from the checkpoint at step 30" in m for m in messages), messages
    assert meta["training"]["resumed_from_step"] == 30
    a, b = _weights(tmp_path / "ref"), _weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert meta["training"]["curve"] == ref["training"]["curve"] and meta["validation"] == ref["validation"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pol", "ref"]  # the work directory is gone


def test_checkpoint_of_other_settings_or_corrupt_restarts_and_says_so(toy, tmp_path, monkeypatch):
    out = tmp_path / "pol"
    _killed_at_30(toy, out, monkeypatch)
    messages = []
    meta = distill(toy, _cfg(lr=2e-3), out, progress=False, notify=messages.append)
    assert any("other stores or settings; training from scratch" in m for m in messages), messages
    assert "resumed_from_step" not in meta["training"]
    fresh = distill(toy, _cfg(lr=2e-3), tmp_path / "fresh", progress=False)
    assert fresh["training"]["curve"] == meta["training"]["curve"]
    # a truncated checkpoint: ignored with a message, training starts over
    work = partial_dir(tmp_path / "p2")
    work.mkdir()
    (work / CHECKPOINT_FILE).write_bytes(b"PK\x03\x04 truncated")
    messages.clear()
    distill(toy, _cfg(), tmp_path / "p2", progress=False, notify=messages.append)
    assert any("ignoring unreadable checkpoint" in m for m in messages), messages


def test_checkpoint_that_does_not_fit_is_a_one_line_error_then_a_fresh_start(toy, tmp_path, monkeypatch):
    out = tmp_path / "pol"
    _killed_at_30(toy, out, monkeypatch)
    file = partial_dir(out) / CHECKPOINT_FILE
    state = torch.load(file, weights_only=True)
    state["model"] = {"layer.weight": torch.zeros(3)}  # right key, wrong content
    torch.save(state, file)
    with pytest.raises(MetaalError, match="does not fit this training run") as exc:
        distill(toy, _cfg(), out, progress=False)
    assert "\n" not in str(exc.value) and not partial_dir(out).exists() and not out.exists()
    distill(toy, _cfg(), out, progress=False)
    load_policy(out)


def test_planted_checkpoint_pickle_is_never_executed(toy, tmp_path):
    from _tiny import Marker

    marker = tmp_path / "PWNED"
    work = partial_dir(tmp_path / "pol")
    work.mkdir()
    torch.save({"meta": "{}", "model": Marker(marker)}, work / CHECKPOINT_FILE)  # not weights-only
    messages = []
    distill(toy, _cfg(), tmp_path / "pol", progress=False, notify=messages.append)
    assert not marker.exists()
    assert any("ignoring unreadable checkpoint" in m for m in messages)


def test_half_written_policy_never_loads(toy, tmp_path):
    src = tmp_path / "src"
    distill(toy, _cfg(), src, progress=False)
    # what a killed writer could leave: weights without metadata, metadata with truncated weights
    a = tmp_path / "a"
    a.mkdir()
    shutil.copy(src / "scorer.pt", a / "scorer.pt")
    with pytest.raises(MetaalError, match="not a policy directory"):
        load_policy(a)
    b = tmp_path / "b"
    shutil.copytree(src, b)
    data = (b / "scorer.pt").read_bytes()
    (b / "scorer.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(MetaalError, match="sha256") as exc:
        load_policy(b)
    assert "\n" not in str(exc.value)
    c = tmp_path / "c"
    shutil.copytree(src, c)
    text = (c / "metaal-policy.json").read_text()
    (c / "metaal-policy.json").write_text(text[: len(text) // 2])
    with pytest.raises(MetaalError, match="cannot read policy metadata"):
        load_policy(c)
    # the staging directory of an interrupted run is wiped by the next run, never used
    out = tmp_path / "out"
    staging = partial_dir(out) / STAGING_DIR
    shutil.copytree(b, staging)
    distill(toy, _cfg(), out, progress=False)
    assert not partial_dir(out).exists()
    load_policy(out)
    meta = json.loads((out / "metaal-policy.json").read_text())
    assert len(meta["scorer"]["sha256"]) == 64
    assert np.isfinite(meta["training"]["loss_end"])


def test_partial_dir_with_foreign_files_is_refused(toy, tmp_path):
    work = partial_dir(tmp_path / "pol")
    work.mkdir()
    (work / "thesis.tex").write_text("precious")
    with pytest.raises(MetaalError, match="did not write"):
        distill(toy, _cfg(), tmp_path / "pol", progress=False)
    assert (work / "thesis.tex").exists() and not (tmp_path / "pol").exists()
