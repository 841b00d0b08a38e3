import json

import numpy as np
import pytest
from click.testing import CliRunner

from metaal.cli import cli

FAST = ["--epochs-steps", "15", "--initial", "6", "--budget", "12", "--query-size", "6", "--quiet"]


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_transfer_eval_writes_every_file_and_resumes(tmp_path):
    out = tmp_path / "res"
    r = invoke("transfer-eval", "--tasks", "sklearn:iris", "--strategies", "margin,coreset,badge,bald", "--seeds", "2", *FAST, "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "margin" in r.output and "report:" in r.output
    res = json.loads((out / "summary.json").read_text())
    assert res["format"] == "metaal-results" and res["format_version"] == 1
    assert {s["strategy"] for s in res["summary"]} == {"random", "margin", "coreset", "badge", "bald"}
    row = res["summary"][0]
    for key in ("task", "strategy", "n_seeds", "aulc_mean", "aulc_std", "aulc_ci95", "final_accuracy_mean", "labels_to_random_final_mean"):
        assert key in row
    assert len(res["runs"]) == 10
    run = res["runs"][0]
    assert run["labels"] == [6, 12, 18] and len(run["accuracy"]) == 3
    assert run["aulc"] == pytest.approx(np.mean(run["accuracy"]))
    # every run records the items it queried, round by round: margin's first round is margin's pick
    # from the paired start, and no item is queried twice or taken from the initial set
    from metaal.learners import LearnerConfig
    from metaal.loop import LoopConfig, initial_labelled, new_state
    from metaal.registry import get_strategy
    from metaal.tasks import load_task

    margin = next(r for r in res["runs"] if r["strategy"] == "margin" and r["seed"] == 1)
    state = new_state(load_task("sklearn:iris", 1), LearnerConfig(steps=15), LoopConfig(6, 12, 6), seed=1, device="cpu")
    assert margin["queried"][0] == [int(i) for i in get_strategy("margin").select(state, 6)]
    for r in res["runs"]:
        flat = [i for rnd in r["queried"] for i in rnd]
        initial = initial_labelled(load_task("sklearn:iris", r["seed"]), 6, r["seed"]).tolist()
        assert [len(q) for q in r["queried"]] == [6, 6] and len(set(flat)) == 12 and not set(flat) & set(initial)
    # paired: every strategy has the same round-0 accuracy for a seed
    for seed in (0, 1):
        firsts = {r["accuracy"][0] for r in res["runs"] if r["seed"] == seed}
        assert len(firsts) == 1
    csv = (out / "curves.csv").read_text().splitlines()
    assert csv[0] == "task,strategy,seed,round,n_labeled,test_accuracy" and len(csv) == 1 + 10 * 3
    assert (out / "curve_sklearn_iris.png").stat().st_size > 5000
    report = (out / "report.md").read_text()
    assert "## sklearn:iris" in report and "W/T/L vs random" in report
    # where the numbers were computed: torch's CPU kernels change last bits, and so the curves
    import torch

    assert res["platform"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert f"torch CPU kernels: {res['platform']['torch_cpu_capability']}" in report
    # rerun: finished runs are skipped and results are identical
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.json")}
    r2 = invoke("transfer-eval", "--tasks", "sklearn:iris", "--strategies", "margin,coreset,badge,bald", "--seeds", "2", *FAST, "--out", str(out))
    assert r2.exit_code == 0
    assert mtimes == {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.json")}
    assert json.loads((out / "summary.json").read_text())["summary"] == res["summary"]


def test_transfer_eval_on_user_npz_and_config(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    np.savez(tmp_path / "mine.npz", X=X, y=y)
    cfg = tmp_path / "study.toml"
    cfg.write_text(f'[evaluate]\ntasks = ["npz:{tmp_path / "mine.npz"}"]\nstrategies = ["margin"]\nseeds = 1\nbudget = 12\n')
    r = invoke("transfer-eval", "--config", str(cfg), "--epochs-steps", "10", "--initial", "6", "--query-size", "6", "--quiet", "--out", str(tmp_path / "o"))
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert res["config"]["loop"]["budget"] == 12 and res["config"]["seeds"] == 1
    assert {s["strategy"] for s in res["summary"]} == {"random", "margin"}


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--tasks", "sklearn:nope"], "unknown scikit-learn task"),
        (["--tasks", "mnist"], "unknown task spec"),
        (["--tasks", "npz:/does/not/exist.npz"], "file not found"),
        (["--tasks", "sklearn:iris", "--strategies", "magic"], "unknown strategy"),
        (["--tasks", "sklearn:iris", "--query-size", "0"], "query-size"),
        (["--tasks", "sklearn:iris", "--query-size", "50", "--budget", "20"], "larger than the budget"),
        (["--tasks", "sklearn:iris", "--budget", "500"], "too few samples"),
        (["--tasks", "sklearn:iris", "--seeds", "0"], "--seeds"),
        (["--tasks", "sklearn:iris", "--device", "cuda:7"], "device"),
        (["--tasks", "sklearn:iris", "--model", "cnn", "--budget", "20"], "needs image inputs"),
        (["--tasks", "sklearn:iris", "--config", "/no/such.toml"], "config file"),
        (["--tasks", "sklearn:iris", "--policy", "/no/such/policy"], "not a policy directory"),
    ],
)
def test_transfer_eval_errors_exit_2_one_line(tmp_path, args, needle):
    seeds = [] if "--seeds" in args else ["--seeds", "1"]
    seeds += [] if "--budget" in args else ["--budget", "20"]  # iris fits: each case has one problem
    r = CliRunner().invoke(cli, ["transfer-eval", *args, *seeds, "--epochs-steps", "5", "--quiet", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    err = r.stderr if hasattr(r, "stderr") else r.output
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in r.output
    assert not (tmp_path / "o" / "summary.json").exists()


def test_bad_config_and_unwritable_out(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[evaluate\ntasks=")
    r = CliRunner().invoke(cli, ["transfer-eval", "--config", str(bad), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "not valid TOML" in r.output
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[evaluate]\ntasks = ["sklearn:iris"]\nbudgett = 3\n')
    r = CliRunner().invoke(cli, ["transfer-eval", "--config", str(unknown), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "unknown key 'budgett'" in r.output
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = CliRunner().invoke(cli, ["transfer-eval", "--tasks", "sklearn:iris", "--out", str(blocker / "sub")])
    assert r.exit_code == 2 and "cannot create results directory" in r.output


def test_listing_commands():
    r = invoke("datasets")
    assert r.exit_code == 0 and "sklearn:digits" in r.output and "torchvision:cifar10" in r.output
    r = invoke("strategies")
    for name in ("random", "least_confidence", "margin", "entropy", "bald", "coreset", "badge"):
        assert name in r.output


def test_local_workers_write_the_runs_one_process_writes(tmp_path):
    """--workers 2 spreads (task, seed) groups over two processes; every run file and number is the same."""
    args = ["transfer-eval", "--tasks", "sklearn:iris,sklearn:wine", "--strategies", "margin,coreset", "--seeds", "2", *FAST]
    one, two = tmp_path / "one", tmp_path / "two"
    assert invoke(*args, "--out", str(one)).exit_code == 0
    r = invoke(*args, "--workers", "2", "--out", str(two))
    assert r.exit_code == 0, r.output
    a, b = (json.loads((d / "summary.json").read_text()) for d in (one, two))
    assert a["summary"] == b["summary"] and a["runs"] == b["runs"] and len(b["runs"]) == 12
    assert (one / "curves.csv").read_text() == (two / "curves.csv").read_text()
    for f in (one / "runs").rglob("*.json"):
        assert json.loads(f.read_text()) == json.loads((two / f.relative_to(one)).read_text())


@pytest.mark.parametrize("extra,needle", [(["--workers", "0"], "--workers must be at least 1"),
                                          (["--workers", "2", "--backend", "ray"], "--workers is for the local backend")])
def test_bad_workers(extra, needle, tmp_path):
    r = CliRunner().invoke(cli, ["transfer-eval", "--tasks", "sklearn:iris", "--seeds", "1", *FAST, *extra,
                                 "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output


def _runs(d):
    return {f.relative_to(d): json.loads(f.read_text()) for f in sorted((d / "runs").rglob("*.json"))}


def test_stacked_lockstep_evaluation_against_the_reference_loop(tmp_path):
    """--stack (lockstep runs, one stacked retrain a round) against --no-stack (one run at a time).

    Training agrees to float32 rounding, which can flip a near-tie between two items' scores; on this
    tiny task (measured: no run differs) at least 3/4 of the runs must query the very same items, and
    each strategy's mean AULC may move by at most 0.02.  Then resumability: deleted runs are redone in
    a smaller lockstep bit for bit, finished ones are skipped (never rewritten), and --workers 2 writes
    the same files as one process.
    """
    args = ["transfer-eval", "--tasks", "sklearn:iris,sklearn:wine", "--strategies", "margin,badge", "--seeds", "2", *FAST]
    ref, stk = tmp_path / "ref", tmp_path / "stk"
    assert invoke(*args, "--no-stack", "--out", str(ref)).exit_code == 0
    r = invoke(*args, "--stack", "--out", str(stk))
    assert r.exit_code == 0, r.output
    a, b = _runs(ref), _runs(stk)
    assert a.keys() == b.keys() and len(a) == 12
    same = sum(a[k]["queried"] == b[k]["queried"] and a[k]["accuracy"] == b[k]["accuracy"] for k in a)
    assert same >= 0.75 * len(a), f"{len(a) - same} of {len(a)} runs differ"
    for name in ("random", "margin", "badge"):
        mean = [np.mean([run["aulc"] for k, run in runs.items() if run["strategy"] == name]) for runs in (a, b)]
        assert abs(mean[0] - mean[1]) <= 0.02, (name, mean)
    for k in a:  # the same identity: a stacked run resumes a reference run's results directory and vice versa
        assert a[k]["identity"] == b[k]["identity"] and a[k]["labels"] == b[k]["labels"]

    # resume: drop three runs of one task; the rerun stacks only those and reproduces them exactly
    gone = [k for k in b if "wine" in str(k)][:3]
    kept = {k: (stk / k).stat().st_mtime_ns for k in b if k not in gone}
    for k in gone:
        (stk / k).unlink()
    assert invoke(*args, "--stack", "--out", str(stk)).exit_code == 0
    assert _runs(stk) == b
    assert all((stk / k).stat().st_mtime_ns == t for k, t in kept.items())

    two = tmp_path / "two"
    assert invoke(*args, "--stack", "--workers", "2", "--out", str(two)).exit_code == 0
    assert _runs(two) == b
