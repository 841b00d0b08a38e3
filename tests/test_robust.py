"""Fail fast, never half-write (issue 28): every problem of a command reported together before any work,
one writer per output (a real second process is refused, naming the first; a killed owner's lock is taken
over), and the provenance every results file and policy records."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zarr
from _tiny import EVAL, invoke, make_policy, make_store

from metaal.errors import MetaalError, Problems
from metaal.io import _GIT, git_commit, hold_lock, provenance

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "METAAL_THREADS": "1", "PYTHONPATH": str(REPO)}
# about a minute of work: long enough for a second process to meet the first
LONG = ["transfer-eval", "--tasks", "sklearn:iris", "--strategies", "margin,entropy", "--seeds", "40", "--initial", "6",
        "--budget", "60", "--query-size", "6", "--epochs-steps", "20", "--quiet"]


def _lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.strip()]


# ------------------------------------------------------------------------------------------ all problems at once
def test_transfer_eval_reports_every_problem_together_and_writes_nothing(tmp_path):
    out = tmp_path / "new" / "res"
    r = invoke("transfer-eval", "--tasks", "sklearn:iris,keel:nosuch,npz:/no/such.npz", "--strategies", "margin,magic",
               "--budget", "200", "--seeds", "1", "--quiet", "--out", out)
    assert r.exit_code == 2, r.output
    lines = _lines(r.output)
    assert all(ln.startswith("error: ") for ln in lines) and "Traceback" not in r.output
    needles = ["unknown strategy 'magic'", "sklearn:iris: too few samples for the split", "unknown KEEL task 'keel:nosuch'",
               "npz:/no/such.npz: file not found"]
    assert len(lines) == len(needles) and all(any(n in ln for ln in lines) for n in needles), r.output
    assert not (tmp_path / "new").exists()


def test_generate_reports_every_problem_together(tmp_path):
    r = invoke("generate", "--tasks", "sklearn:iris,sklearn:nope", "--rollin", "cleverest", "--episodes", "1",
               "--candidates", "500", "--query-size", "4", "--budget", "8", "--initial", "4", "--quiet",
               "--out", tmp_path / "s.zarr")
    assert r.exit_code == 2, r.output
    lines = _lines(r.output)
    assert len(lines) == 3, r.output
    assert any("unknown strategy 'cleverest'" in ln for ln in lines)
    assert any("sklearn:iris: --candidates 500 is larger than the unlabelled pool" in ln for ln in lines)
    assert any("unknown scikit-learn task" in ln for ln in lines)
    assert not (tmp_path / "s.zarr").exists()


def test_generate_checks_an_existing_store_with_the_other_inputs(tmp_path):
    """A store made with other settings is one of the problems, reported before anything is opened for writing."""
    store = make_store(tmp_path / "s.zarr", 1)
    files = {p: p.stat().st_mtime_ns for p in store.rglob("*")}
    r = invoke("generate", "--tasks", "sklearn:iris,keel:nosuch", "--candidates", "4", "--initial", "4", "--budget", "8",
               "--query-size", "4", "--oracle-steps", "3", "--epochs-steps", "5", "--episodes", "2", "--quiet",
               "--out", store)
    assert r.exit_code == 2, r.output
    lines = _lines(r.output)
    assert len(lines) == 2 and "was created with a different" in lines[0] and "keel:nosuch" in lines[1], r.output
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*")} == files


def test_run_checks_the_evaluation_before_generating(tmp_path):
    """A bad target and a bad strategy of the last stage stop `metaal run` before its first episode."""
    cfg = tmp_path / "study.toml"
    cfg.write_text('[run]\nsources = ["sklearn:iris"]\ntargets = ["keel:nosuch", "sklearn:wine"]\n'
                   '[evaluate]\nstrategies = ["margin", "magic"]\nbudget = 500\n')
    r = invoke("run", "--quick", "--quiet", "--config", cfg, "--out", tmp_path / "study")
    assert r.exit_code == 2, r.output
    lines = _lines(r.output)
    assert len(lines) == 3 and all(ln.startswith("error: ") for ln in lines), r.output
    assert any("keel:nosuch" in ln for ln in lines) and any("magic" in ln for ln in lines)
    assert any("sklearn:wine: too few samples" in ln for ln in lines)
    assert not (tmp_path / "study").exists()


def test_problems_keep_one_line_each_and_the_library_message_names_them_all():
    problems = Problems()
    with problems.check():
        raise MetaalError("first\nproblem")
    with problems.check():
        raise MetaalError("x", problems=["second", "third"])
    with problems.check():
        raise MetaalError("second")  # the same problem from another check is reported once
    with pytest.raises(MetaalError) as exc:
        problems.raise_any()
    assert exc.value.problems == ["first problem", "second", "third"]
    assert str(exc.value) == "3 problems: first problem; second; third"
    Problems().raise_any()  # nothing found: nothing raised


# ------------------------------------------------------------------------------------------ one writer per output
def _wait_for_owner(lock: Path, proc: subprocess.Popen, timeout: float = 300) -> dict:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"the first process ended early: {proc.stderr.read()}")
        try:
            owner = json.loads(lock.read_text().splitlines()[-1])
            if owner["pid"] == proc.pid:
                return owner
        except (OSError, ValueError, IndexError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError("the first process never took the lock")


def test_second_process_on_the_same_out_exits_2_naming_the_first_and_a_killed_ones_lock_is_taken_over(tmp_path):
    out = tmp_path / "res"
    first = subprocess.Popen([sys.executable, "-m", "metaal.cli", *LONG, "--out", str(out)], env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        owner = _wait_for_owner(out / ".metaal.lock", first)
        assert owner["host"] == socket.gethostname() and owner["command"].startswith("metaal transfer-eval")
        second = subprocess.run([sys.executable, "-m", "metaal.cli", *LONG, "--out", str(out)], env=ENV,
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr
        assert second.stdout == "" and second.stderr.count("\n") == 1 and second.stderr.startswith("error: ")
        assert f"pid {first.pid} on {socket.gethostname()}" in second.stderr, second.stderr
        assert "in use by another metaal process" in second.stderr
        assert first.poll() is None  # the first one goes on
    finally:
        first.kill()
        first.wait()
    # the owner was SIGKILLed: the lock file still names it, but the lock died with it; the next run takes over
    assert json.loads((out / ".metaal.lock").read_text())["pid"] == first.pid
    r = invoke("transfer-eval", *EVAL, "--out", out)
    assert r.exit_code == 0, r.output
    assert (out / "summary.json").is_file()
    assert json.loads((out / ".metaal.lock").read_text())["pid"] == os.getpid()


def test_hold_lock_names_its_owner_and_releases_on_close(tmp_path):
    lock = tmp_path / "x.lock"
    fh = hold_lock(lock, "thing")
    try:
        # flock locks belong to the open file: a second open in this process conflicts as another process would
        with pytest.raises(MetaalError, match=rf"thing is in use by another metaal process \(pid {os.getpid()} on "):
            hold_lock(lock, "thing")
    finally:
        fh.close()
    hold_lock(lock, "thing").close()  # released: taken again


# ------------------------------------------------------------------------------------------ provenance
def _head() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def test_results_policy_and_store_record_commit_and_command(tmp_path):
    head = _head()
    out = tmp_path / "res"
    r = invoke("transfer-eval", *EVAL, "--out", out)
    assert r.exit_code == 0, r.output
    res = json.loads((out / "summary.json").read_text())
    prov = res["provenance"]
    assert prov["git_commit"] == head and prov["command"].startswith("metaal transfer-eval --tasks sklearn:iris")
    assert str(out) in prov["command"] and prov["host"] == socket.gethostname()
    assert prov["run_commits"] == [head] and prov["git_dirty"] in ((None,) if head == "unknown" else (True, False))
    for f in (out / "runs").rglob("*.json"):
        assert json.loads(f.read_text())["code"] == {"commit": head}
    assert f"runs from git commit {head}; the report from {head}" in (out / "report.md").read_text()
    assert res["config"] and res["versions"]["metaal"] and res["platform"]["torch_cpu_capability"]

    store = make_store(tmp_path / "s.zarr", 2)
    attrs = zarr.open_group(str(store), mode="r").attrs.asdict()
    assert attrs["provenance"]["git_commit"] == head and attrs["provenance"]["command"].startswith("metaal generate")
    policy = make_policy(store, tmp_path / "pol")
    meta = json.loads((policy / "metaal-policy.json").read_text())
    assert meta["provenance"]["git_commit"] == head and meta["provenance"]["command"].startswith("metaal distill")
    assert meta["platform"]["machine"] and meta["versions"]["torch"] and meta["hyperparameters"]


def test_commit_is_unknown_without_git_and_nothing_fails(monkeypatch):
    saved = dict(_GIT)
    _GIT.clear()
    monkeypatch.setenv("PATH", "/nonexistent")  # no git to run
    try:
        assert git_commit() == {"commit": "unknown", "dirty": None}
        assert provenance()["git_commit"] == "unknown"
    finally:
        _GIT.clear()
        _GIT.update(saved)
