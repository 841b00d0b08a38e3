"""Crash-safety check: SIGKILL metaal commands at random moments, resume, compare with uninterrupted runs.

    python scripts/kill_resume.py [--kills 30] [--distill-kills 10] [--eval-kills 4] [--bench-kills 4]
                                  [--final-kills 3] [--seed 0]
                                  [--mode subprocess|fork] [--work DIR] [--json kill_resume.json]

For each command (``generate``, ``distill``, ``transfer-eval``, ``benchmark``) it first runs the command once without
interruption (the reference), then runs the same command on a fresh output again and again, killing it
with SIGKILL after a seeded random delay, until it has been killed ``--kills`` times; a last run
finishes the job.  After every kill it checks what a reader sees, and at the end it compares the
result with the reference:

* generate: every committed episode equals the reference episode with the same id (every step array
  and every episode field), no id twice, no partial episode visible; at the end the same episodes, the
  same fingerprint, and nothing uncommitted left in the store.
* distill (``gain``): the policy directory either does not exist or loads and equals the reference;
  at the end the weights, the loss curve and the validation block equal the reference's.
* transfer-eval (the one-run-at-a-time loop, then again with ``--stack``) and benchmark: every finished
  run file equals the reference's and is never rewritten; every final file present (summary.json,
  curves.csv, report.md, the plots, benchmark.json, benchmark.md, cd_diagram.png) is complete and equals
  the reference's (provenance aside).  Besides the kills during the runs, ``--final-kills`` reruns of the
  finished directory are killed while they rewrite the final files; no temporary file survives the last run.

Delays: most kills wait until the command has made progress in this run (a new committed episode, a new
checkpoint, a new finished run) and then a random 0..``--span`` seconds more, so they land anywhere in
the work, appends and renames included; one in five kills lands at a random moment of start-up.

``--mode subprocess`` (default) runs the real console entry point (``python -m metaal.cli``) in a new
process each time.  ``--mode fork`` forks each run from a server process that has already imported
metaal and torch (multiprocessing's forkserver), which removes ~3-5 s of start-up per run; the command
code that runs and is killed is the same.  tests/test_crash_safety.py uses this module in fork mode.
Prints one line per command (runs, kills, kills that left a partial episode behind, items compared,
mismatches) and writes them all as JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GENERATE_ARGS = ["--tasks", "sklearn:iris", "--candidates", "4", "--initial", "4", "--budget", "8", "--query-size", "4",
                 "--oracle-steps", "2", "--epochs-steps", "5", "--seed", "3", "--quiet"]
DISTILL_ARGS = ["--algo", "gain", "--batch-size", "32", "--hidden", "16", "--seed", "1", "--quiet"]
EVAL_ARGS = ["--tasks", "sklearn:iris,sklearn:wine", "--strategies", "random,margin,entropy,least_confidence", "--seeds", "3",
             "--initial", "6", "--budget", "12", "--query-size", "6", "--epochs-steps", "5", "--quiet"]
PRELOAD = ["metaal.cli", "metaal.generate", "metaal.distill", "metaal.evaluate", "metaal.report", "metaal.store",
           "metaal.benchmark", "metaal.bench_report",
           "metaal.oracle", "metaal.acquisition.strategies", "metaal.acquisition.agreement", "torch._dynamo",
           "sklearn.datasets", "scipy.stats", "zarr", "matplotlib.pyplot"]


# ------------------------------------------------------------------------------------------ launching
def _child(argv: list[str]) -> None:  # runs in a process forked by the forkserver
    import threading

    from tqdm import std

    fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    # tqdm's default lock includes a multiprocessing semaphore, which a SIGKILLed child would leak
    std.TqdmDefaultWriteLock.mp_lock = None
    std.tqdm.set_lock(threading.RLock())
    from metaal.cli import cli

    cli.main(args=argv, prog_name="metaal", standalone_mode=True)  # its SystemExit gives the exit code


class Launcher:
    """Starts ``metaal ARGS`` as a real subprocess or as a child forked from a preloaded server."""

    def __init__(self, mode: str = "subprocess"):
        if mode not in ("subprocess", "fork"):
            raise ValueError(f"mode must be subprocess or fork, got {mode!r}")
        self.mode = mode
        os.environ.setdefault("METAAL_THREADS", "1")
        self.env = {**os.environ, "METAAL_THREADS": os.environ.get("METAAL_THREADS", "1")}
        if mode == "fork":
            self.ctx = mp.get_context("forkserver")
            self.ctx.set_forkserver_preload(PRELOAD)

    def start(self, argv: list[str]):
        if self.mode == "subprocess":
            return _Proc(subprocess.Popen([sys.executable, "-m", "metaal.cli", *argv], env=self.env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        p = self.ctx.Process(target=_child, args=(list(argv),), daemon=True)
        p.start()
        return _Fork(p)

    def run(self, argv: list[str], timeout: float = 600) -> int:
        h = self.start(argv)
        code = h.wait(timeout)
        if code != 0:
            raise RuntimeError(f"metaal {' '.join(argv)} exited with {code}: {h.stderr()}")
        return code


class _Proc:
    def __init__(self, p: subprocess.Popen):
        self.p = p

    def poll(self):
        return self.p.poll()

    def kill(self):
        self.p.send_signal(signal.SIGKILL)

    def wait(self, timeout=None):
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.p.wait()
            raise
        return self.p.returncode

    def stderr(self) -> str:
        return self.p.stderr.read()[-2000:] if self.p.stderr else ""


class _Fork:
    def __init__(self, p):
        self.p = p

    def poll(self):
        return self.p.exitcode

    def kill(self):
        os.kill(self.p.pid, signal.SIGKILL)

    def wait(self, timeout=None):
        self.p.join(timeout)
        if self.p.exitcode is None:
            self.kill()
            self.p.join()
            raise TimeoutError("child did not finish")
        return self.p.exitcode

    def stderr(self) -> str:
        return "(fork mode: rerun with --mode subprocess to see the error)"


def kill_loop(launcher: Launcher, argv: list[str], kills: int, rng: random.Random, progress, check,
              span: float, startup_kill_rate: float = 0.2, max_runs: int | None = None, timeout: float = 600,
              done=None) -> dict:
    """Run ``argv`` until it has been SIGKILLed ``kills`` times, then once more to completion.

    ``progress()`` returns a number that grows as the command works (polled); ``check(killed)`` is
    called after every run and returns a dict of counters to add up; ``done()`` (optional) says that
    nothing is left to interrupt (the loop then stops early)."""
    stats = {"runs": 0, "kills": 0, "finished_early": 0}
    max_runs = max_runs or 4 * kills + 10
    t_start = time.monotonic()
    while stats["kills"] < kills and stats["runs"] < max_runs and not (done and done()):
        before = progress()
        h = launcher.start(argv)
        stats["runs"] += 1
        t0 = time.monotonic()
        if rng.random() < startup_kill_rate:
            deadline = t0 + rng.uniform(0.0, 1.0 if launcher.mode == "fork" else 4.0)
        else:  # wait for progress in this run, then a random moment after it
            while h.poll() is None and progress() <= before and time.monotonic() - t0 < timeout:
                time.sleep(0.01)
            deadline = time.monotonic() + rng.uniform(0.0, span)
        while h.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        killed = h.poll() is None
        if killed:
            h.kill()
            stats["kills"] += 1
        code = h.wait(timeout)
        if not killed:
            stats["finished_early"] += 1
            if code != 0:
                raise RuntimeError(f"metaal {' '.join(argv)} failed with {code}: {h.stderr()}")
        for k, v in check(killed).items():
            stats[k] = stats.get(k, 0) + v
    launcher.run(argv, timeout)  # the final, uninterrupted resume
    stats["runs"] += 1
    stats["seconds"] = round(time.monotonic() - t_start, 1)
    return stats


# ------------------------------------------------------------------------------------------ generate
def _episode_table(trajs) -> dict[int, dict]:
    """episode id -> {field: value, step array name: that episode's rows}."""
    out = {}
    eps = trajs.episodes
    for r, eid in enumerate(eps["id"].tolist()):
        first, length = int(eps["first_step"][r]), int(eps["length"][r])
        row = {f: eps[f][r] for f in eps if f != "first_step"}
        row.update({f"steps/{k}": v[first:first + length] for k, v in trajs.steps.items()})
        out[int(eid)] = row
    return out


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def compare_episodes(got: dict[int, dict], ref: dict[int, dict]) -> list[str]:
    """Mismatches between committed episodes and the reference ones with the same ids."""
    bad = []
    for eid, row in got.items():
        if eid not in ref:
            bad.append(f"episode {eid} is not in the reference")
            continue
        for k, v in row.items():
            if not _same(v, ref[eid][k]):
                bad.append(f"episode {eid}: {k} differs")
    return bad


def _committed_rows(store: Path) -> int:
    """Rows of episodes/id (committed or not) of every group: cheap progress signal (one small JSON each)."""
    total = 0
    for meta in [store / "episodes" / "id" / "zarr.json", *store.glob("shards/*/episodes/id/zarr.json")]:
        try:
            total += json.loads(meta.read_text())["shape"][0]
        except (OSError, ValueError, KeyError):
            pass
    return total


def kill_resume_generate(work: Path, kills: int = 30, episodes: int = 40, seed: int = 0, mode: str = "subprocess",
                         span: float = 0.3, launcher: Launcher | None = None, reference: Path | None = None,
                         name: str = "gen_killed.zarr") -> dict:
    """Kill/resume ``metaal generate`` into ``work/name``; ``reference``: an existing uninterrupted store of
    the same command (default: made first, as ``work/gen_ref.zarr``)."""
    from metaal.store import fingerprint, read_trajectories, store_status

    launcher = launcher or Launcher(mode)
    args = ["generate", *GENERATE_ARGS, "--episodes", str(episodes)]
    ref_path, path = reference or work / "gen_ref.zarr", work / name
    t0 = time.monotonic()
    if reference is None:
        launcher.run([*args, "--out", str(ref_path)])
    ref_seconds = round(time.monotonic() - t0, 1)
    ref = _episode_table(read_trajectories(ref_path))
    assert sorted(ref) == list(range(episodes)), "reference run is incomplete"
    mismatches: list[str] = []

    def check(killed: bool) -> dict:
        st = store_status(path) if path.exists() and (path / "zarr.json").exists() else None
        got = _episode_table(read_trajectories(path)) if st else {}
        bad = compare_episodes(got, ref)
        if st and st["duplicates"]:
            bad.append(f"{st['duplicates']} duplicate episode(s)")
        mismatches.extend(bad)
        partial = bool(st) and any(g["uncommitted_steps"] or g["uncommitted_rows"] for g in st["shards"].values())
        return {"kills_leaving_partial_episode": int(killed and partial), "episodes_checked": len(got)}

    stats = kill_loop(launcher, [*args, "--out", str(path)], kills, random.Random(seed), lambda: _committed_rows(path),
                      check, span, done=lambda: _committed_rows(path) >= episodes)
    final = _episode_table(read_trajectories(path))
    mismatches += compare_episodes(final, ref)
    if sorted(final) != sorted(ref):
        mismatches.append(f"final store has episodes {sorted(final)}, reference {sorted(ref)}")
    st = store_status(path)
    if st["duplicates"] or any(g["uncommitted_steps"] or g["uncommitted_rows"] for g in st["shards"].values()):
        mismatches.append(f"final store not clean: {st['shards']}, duplicates {st['duplicates']}")
    if fingerprint(path) != fingerprint(ref_path):
        mismatches.append("fingerprints differ")
    return {"command": "generate", "reference_seconds": ref_seconds, **stats, "episodes_compared": len(final), "mismatches": len(mismatches),
            "mismatch_examples": mismatches[:10], "reference": str(ref_path), "store": str(path)}


# ------------------------------------------------------------------------------------------ distill
def _policy_state(path: Path) -> dict:
    import torch

    meta = json.loads((path / "metaal-policy.json").read_text())
    weights = torch.load(path / "scorer.pt", weights_only=True)
    return {"weights": {k: v.numpy() for k, v in weights.items()}, "curve": meta["training"]["curve"],
            "validation": meta["validation"], "sha256": meta["scorer"].get("sha256")}


def _same_policy(a: dict, b: dict) -> list[str]:
    bad = [f"scorer {k} differs" for k in a["weights"] if not _same(a["weights"][k], b["weights"].get(k))]
    for k in ("curve", "validation", "sha256"):
        if a[k] != b[k]:
            bad.append(f"{k} differs")
    return bad


def kill_resume_distill(work: Path, store: Path, kills: int = 10, steps: int = 4000, seed: int = 0,
                        mode: str = "subprocess", span: float = 0.3, launcher: Launcher | None = None) -> dict:
    from metaal.distill import CHECKPOINT_FILE, partial_dir
    from metaal.errors import MetaalError
    from metaal.policy import load_policy

    launcher = launcher or Launcher(mode)
    args = ["distill", str(store), *DISTILL_ARGS, "--steps", str(steps)]
    ref_path, path = work / "pol_ref", work / "pol_killed"
    t0 = time.monotonic()
    launcher.run([*args, "--out", str(ref_path)])
    ref_seconds = round(time.monotonic() - t0, 1)
    ref = _policy_state(ref_path)
    ckpt = partial_dir(path) / CHECKPOINT_FILE
    mismatches: list[str] = []

    def progress() -> float:
        try:
            return ckpt.stat().st_mtime_ns
        except FileNotFoundError:
            return 1 if path.exists() else 0

    def check(killed: bool) -> dict:
        if path.exists():  # only ever complete: it must load, and equal the reference
            try:
                load_policy(path)
                mismatches.extend(_same_policy(_policy_state(path), ref))
            except MetaalError as exc:
                mismatches.append(f"a policy directory that does not load: {exc}")
        resumable = int(killed and ckpt.is_file())
        return {"kills_leaving_checkpoint": resumable}

    stats = kill_loop(launcher, [*args, "--out", str(path)], kills, random.Random(seed + 1), progress, check, span)
    load_policy(path)
    mismatches += _same_policy(_policy_state(path), ref)
    if partial_dir(path).exists():
        mismatches.append(f"{partial_dir(path)} left behind after a finished run")
    return {"command": "distill", "reference_seconds": ref_seconds, **stats, "policies_compared": 1, "mismatches": len(mismatches),
            "mismatch_examples": mismatches[:10]}


# ------------------------------------------------------------------------------------------ transfer-eval
PNG_HEAD, PNG_TAIL = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


def _final_files(out: Path) -> dict[str, Path]:
    """The files a results directory gets once every run is done (written after them, each atomically)."""
    names = ["summary.json", "curves.csv", "report.md", "benchmark.json", "benchmark.md"]
    files = {n: out / n for n in names if (out / n).exists()}
    files.update({p.name: p for p in sorted(out.glob("*.png"))})
    return files


def _comparable(name: str, path: Path):
    """What must equal the reference: provenance (command line, time) and the report line naming them aside."""
    if name.endswith(".png"):
        data = path.read_bytes()
        return "complete png" if data.startswith(PNG_HEAD) and data.endswith(PNG_TAIL) else "truncated png"
    text = path.read_text()
    if name.endswith(".json"):
        obj = json.loads(text)
        if name == "summary.json":
            return {k: obj[k] for k in ("summary", "runs", "config")}
        return {k: v for k, v in obj.items() if k != "provenance"}
    return [ln for ln in text.splitlines() if not ln.startswith("Made by metaal")]


def _temporaries(out: Path) -> list[Path]:
    return [p for p in out.rglob(".*") if p.is_file() and ".tmp" in p.name]


def kill_resume_results(work: Path, command: str, args: list[str], kills: int = 4, final_kills: int = 2, seed: int = 0,
                        mode: str = "subprocess", span: float = 0.1, final_span: float = 0.3,
                        launcher: Launcher | None = None, tag: str = "") -> dict:
    """Kill/resume a command that writes a results directory (transfer-eval, benchmark).

    First ``kills`` kills while the runs are being made (after a new run file, as the other commands); then
    ``final_kills`` reruns of the finished directory killed while they rewrite the final files: each is killed
    0..``final_span`` s after its first temporary file appears (or a final file changes), so the kill lands in
    the writing of curves.csv, the plots, report.md, summary.json or the benchmark files.  After every run each
    final file present must be complete and equal the reference's (provenance aside), each run file equal the
    reference's and never be rewritten."""
    launcher = launcher or Launcher(mode)
    name = command + tag
    ref_path, path = work / f"{name}_ref", work / f"{name}_killed"
    t0 = time.monotonic()
    launcher.run([*args, "--out", str(ref_path)])
    ref_seconds = round(time.monotonic() - t0, 1)
    ref_runs = {p.relative_to(ref_path): json.loads(p.read_text()) for p in (ref_path / "runs").rglob("*.json")}
    ref_final = {n: _comparable(n, p) for n, p in _final_files(ref_path).items()}
    first_seen: dict[Path, int] = {}
    mismatches: list[str] = []

    def runs_now() -> list[Path]:
        return sorted((path / "runs").rglob("*.json")) if (path / "runs").is_dir() else []

    def check(killed: bool) -> dict:
        for p in runs_now():
            rel = p.relative_to(path)
            try:
                same = json.loads(p.read_text()) == ref_runs.get(rel)
            except ValueError:
                same = False
            if not same:
                mismatches.append(f"{rel} differs from the reference (or does not parse)")
            mtime = p.stat().st_mtime_ns
            if first_seen.setdefault(rel, mtime) != mtime:
                mismatches.append(f"{rel} was rewritten by a rerun")
        for n, p in _final_files(path).items():
            try:
                got = _comparable(n, p)
            except ValueError:
                got = "does not parse"
            if got != ref_final.get(n):
                mismatches.append(f"{n} is not the reference's ({'killed run' if killed else 'finished run'})")
        return {}

    cmd = [*args, "--out", str(path)]
    stats = kill_loop(launcher, cmd, kills, random.Random(seed + 2), lambda: len(runs_now()),
                      check, span, done=lambda: len(runs_now()) >= len(ref_runs))
    check(False)
    # the finished directory, rerun and killed while it rewrites the final files
    rng = random.Random(seed + 3)
    final = {"final_runs": 0, "final_kills": 0, "final_kills_during_writing": 0}
    while final["final_kills"] < final_kills and final["final_runs"] < 4 * final_kills + 4:
        before = {n: p.stat().st_mtime_ns for n, p in _final_files(path).items()}
        h = launcher.start(cmd)
        final["final_runs"] += 1
        writing = False
        while h.poll() is None:
            now = {n: p.stat().st_mtime_ns for n, p in _final_files(path).items() if p.exists()}
            if _temporaries(path) or now != before:
                writing = True
                break
            time.sleep(0.001)
        if writing:
            deadline = time.monotonic() + rng.uniform(0.0, final_span)
            while h.poll() is None and time.monotonic() < deadline:
                time.sleep(0.001)
        killed = h.poll() is None
        if killed:
            h.kill()
            final["final_kills"] += 1
            final["final_kills_during_writing"] += int(writing)
        code = h.wait(600)
        if not killed and code != 0:
            raise RuntimeError(f"metaal {' '.join(cmd)} failed with {code}: {h.stderr()}")
        check(killed)
    launcher.run(cmd)
    check(False)
    if sorted(_final_files(path)) != sorted(ref_final):
        mismatches.append(f"final files {sorted(_final_files(path))}, reference {sorted(ref_final)}")
    if len(runs_now()) != len(ref_runs):
        mismatches.append(f"{len(runs_now())} run files, reference {len(ref_runs)}")
    left = _temporaries(path)
    if left:
        mismatches.append(f"temporary files left after the last run: {[p.name for p in left][:3]}")
    return {"command": command, "reference_seconds": ref_seconds, **stats,
            "runs": stats["runs"] + final["final_runs"] + 1, "kills": stats["kills"] + final["final_kills"],
            "kills_during_runs": stats["kills"], **final, "runs_compared": len(ref_runs),
            "final_files_compared": len(ref_final), "mismatches": len(mismatches), "mismatch_examples": mismatches[:10]}


def kill_resume_eval(work: Path, kills: int = 4, seed: int = 0, mode: str = "subprocess", span: float = 0.1,
                     launcher: Launcher | None = None, extra: tuple[str, ...] = (), final_kills: int = 2) -> dict:
    """``extra``: more transfer-eval options for both the reference and the killed runs (e.g. ``--stack``)."""
    tag = "".join(a.strip("-").replace("-", "_") for a in extra)
    r = kill_resume_results(work, "transfer-eval", ["transfer-eval", *EVAL_ARGS, *extra], kills, final_kills, seed, mode,
                            span, launcher=launcher, tag=tag)
    r["command"] = " ".join(["transfer-eval", *extra])
    return r


def kill_resume_benchmark(work: Path, kills: int = 4, seed: int = 0, mode: str = "subprocess", span: float = 0.1,
                          launcher: Launcher | None = None, final_kills: int = 2, args: list[str] | None = None) -> dict:
    """metaal benchmark: transfer-eval's runs, then the across-task files (benchmark.json, benchmark.md,
    cd_diagram.png).  ``args``: the benchmark's options (default: transfer-eval's here)."""
    return kill_resume_results(work, "benchmark", ["benchmark", *(args or EVAL_ARGS)], kills, final_kills, seed, mode,
                               span, launcher=launcher)


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=30, help="SIGKILLs of metaal generate (default 30)")
    ap.add_argument("--episodes", type=int, default=80, help="episodes of the generate runs (default 80)")
    ap.add_argument("--distill-kills", type=int, default=10, help="SIGKILLs of metaal distill (default 10)")
    ap.add_argument("--distill-steps", type=int, default=6000)
    ap.add_argument("--eval-kills", type=int, default=4, help="SIGKILLs of metaal transfer-eval (default 4)")
    ap.add_argument("--bench-kills", type=int, default=4, help="SIGKILLs of metaal benchmark during its runs (default 4)")
    ap.add_argument("--final-kills", type=int, default=3,
                    help="SIGKILLs of transfer-eval and of benchmark while they write their final files (default 3 each)")
    ap.add_argument("--span", type=float, default=None, help="seconds after progress within which to kill "
                    "(default 0.3 fork, 0.6 subprocess)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mode", choices=["subprocess", "fork"], default="subprocess")
    ap.add_argument("--work", default=None, help="working directory (default: a temporary one, removed)")
    ap.add_argument("--json", default="kill_resume.json", help="where to write the results")
    a = ap.parse_args(argv)
    span = a.span if a.span is not None else (0.3 if a.mode == "fork" else 0.6)
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="metaal-kill-"))
    work.mkdir(parents=True, exist_ok=True)
    launcher = Launcher(a.mode)
    t0 = time.time()
    results = []
    try:
        g = kill_resume_generate(work, a.kills, a.episodes, a.seed, span=span, launcher=launcher)
        results.append(g)
        _print(g)
        if a.distill_kills:
            results.append(kill_resume_distill(work, Path(g["reference"]), a.distill_kills, a.distill_steps, a.seed,
                                               span=span, launcher=launcher))
            _print(results[-1])
        if a.eval_kills or a.final_kills:
            for extra in ((), ("--stack",)):  # the one-run-at-a-time loop and lockstep runs
                results.append(kill_resume_eval(work, a.eval_kills, a.seed, span=span / 3, launcher=launcher, extra=extra,
                                                final_kills=a.final_kills))
                _print(results[-1])
        if a.bench_kills or a.final_kills:
            results.append(kill_resume_benchmark(work, a.bench_kills, a.seed, span=span / 3, launcher=launcher,
                                                 final_kills=a.final_kills))
            _print(results[-1])
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    out = {"mode": a.mode, "seed": a.seed, "seconds": round(time.time() - t0, 1), "results": results}
    Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    total_bad = sum(r["mismatches"] for r in results)
    print(f"total: {sum(r['runs'] for r in results)} runs, {sum(r['kills'] for r in results)} kills, "
          f"{total_bad} mismatches, {out['seconds']} s -> {a.json}")
    return 1 if total_bad else 0


def _print(r: dict) -> None:
    keys = [k for k in r if k not in ("command", "mismatch_examples", "reference", "store")]
    print(f"{r['command']:<14} " + ", ".join(f"{k} {r[k]}" for k in keys), flush=True)
    for m in r.get("mismatch_examples", []):
        print(f"    mismatch: {m}")


if __name__ == "__main__":
    sys.exit(main())
