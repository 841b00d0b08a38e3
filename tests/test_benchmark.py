"""metaal benchmark through the CLI: a suite of the task split, the across-task files, resuming, bad inputs."""

import json

import numpy as np
from click.testing import CliRunner

from metaal.bench_report import CD_FILE, JSON_FILE, REPORT_FILE, ROUNDS_FILE, write_benchmark
from metaal.cli import cli

FAST = ["--epochs-steps", "10", "--initial", "6", "--budget", "12", "--query-size", "6", "--quiet"]
PNG = b"\x89PNG\r\n\x1a\n"
SYNTH = "synthetic:n=200,dim=4,classes=3,seed=1"


def _splits(tmp_path):
    f = tmp_path / "splits.toml"
    f.write_text(f"""[rule]
seed = 1
description = "by hand, for the test"
[groups]
sources = ["sklearn:breast_cancer"]
tuning = ["sklearn:digits"]
heldout = ["sklearn:iris", "sklearn:wine", "{SYNTH}"]
[folds]
0 = ["sklearn:breast_cancer", "sklearn:iris"]
1 = ["sklearn:digits", "sklearn:wine", "{SYNTH}"]
[twins]
"w" = ["sklearn:wine", "{SYNTH}"]
""")
    return str(f)


def test_benchmark_on_a_suite_writes_the_across_task_files_and_resumes(tmp_path):
    out = tmp_path / "bench"
    args = ["benchmark", "--suite", "heldout", "--splits", _splits(tmp_path), "--strategies", "margin,typiclust",
            "--seeds", "2", *FAST, "--out", str(out)]
    r = CliRunner().invoke(cli, [*args, "--stack"], catch_exceptions=False)  # transfer-eval's lockstep runs
    assert r.exit_code == 0, r.output
    assert "reference margin" in r.output and "typiclust" in r.output
    bench = json.loads((out / JSON_FILE).read_text())
    assert bench["tasks"] == ["sklearn:iris", "sklearn:wine", SYNTH] and bench["suite"] == "heldout"
    # twin units from the --splits file the suite came from, not metaal's own split
    assert bench["over_units"]["units"] == {"sklearn:iris": ["sklearn:iris"], "w (2 tasks)": ["sklearn:wine", SYNTH]}
    assert bench["strategies"] == ["random", "margin", "typiclust"] and bench["n_seeds"] == 2
    assert set(bench["mean_rank"]) == {"random", "margin", "typiclust"}
    assert sum(bench["mean_rank"].values()) == 6  # 1 + 2 + 3 on every task
    assert bench["friedman"]["n_tasks"] == 3 and 0 <= bench["friedman"]["p_value"] <= 1
    vs = {row["baseline"]: row for row in bench["versus_reference"]}
    assert set(vs) == {"random", "typiclust"} and sum(vs["random"]["win_tie_loss"]) == 3
    summary = json.loads((out / "summary.json").read_text())  # transfer-eval's per-task files are there too
    by = {(s["task"], s["strategy"]): s["aulc_mean"] for s in summary["summary"]}
    assert bench["aulc"]["sklearn:wine"]["margin"] == by[("sklearn:wine", "margin")]
    assert (out / CD_FILE).read_bytes()[:8] == PNG
    md = (out / REPORT_FILE).read_text()
    assert "Friedman" in md and CD_FILE in md and "| sklearn:iris |" in md and "Early and late" in md
    runs = sorted((out / "runs").rglob("*.json"))
    assert len(runs) == 3 * 2 * 3
    before = {p: p.stat().st_mtime_ns for p in runs}
    r = CliRunner().invoke(cli, args, catch_exceptions=False)  # a rerun (one run at a time) reads every run back
    assert r.exit_code == 0
    assert {p: p.stat().st_mtime_ns for p in runs} == before
    again = json.loads((out / JSON_FILE).read_text())
    assert again.pop("provenance")["command"].startswith("metaal benchmark --suite heldout")
    assert again == {k: v for k, v in bench.items() if k != "provenance"}  # the same statistics


def test_every_bad_input_is_reported_at_once_before_any_run(tmp_path):
    out = tmp_path / "o"
    r = CliRunner().invoke(cli, ["benchmark", "--tasks", "sklearn:iris,keel:nosuch", "--strategies", "margin,nosuch",
                                 "--reference", "entropy", "--seeds", "1", *FAST, "--out", str(out)])
    assert r.exit_code == 2
    assert "keel:nosuch" in r.output and "nosuch'" in r.output and "--reference entropy" in r.output
    assert not (out / "runs").exists()
    for args, message in [(["--suite", "fold:9", "--splits", _splits(tmp_path)], "fold:0 .. fold:1"),
                          (["--suite", "heldout", "--tasks", "sklearn:iris"], "not both"),
                          ([], "missing --suite"),
                          (["--tasks", "sklearn:iris", "--strategies", "random,entropy"], "no reference strategy")]:
        r = CliRunner().invoke(cli, ["benchmark", *args, *FAST, "--out", str(out)])
        assert r.exit_code == 2 and message in r.output, (args, r.output)


def test_config_file_sets_the_suite(tmp_path):
    cfg = tmp_path / "b.toml"
    cfg.write_text(f'[benchmark]\nsuite = "fold:7"\nsplits = "{_splits(tmp_path)}"\nseeds = 12\nreference = "margin"\n'
                   'oracle = {mode = "batch", margin_pool = 5}\n')  # the oracle's options are a table, as in [evaluate]
    r = CliRunner().invoke(cli, ["benchmark", "--config", str(cfg), *FAST, "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "unknown suite 'fold:7'" in r.output, r.output


def test_the_shipped_study_config_reads(tmp_path):
    from pathlib import Path

    from metaal.cli import BENCH_KEYS
    from metaal.config import read_config, section

    path = Path(__file__).parents[1] / "scripts" / "configs" / "benchmark-heldout.toml"
    table = section(read_config(str(path)), "benchmark", BENCH_KEYS, str(path))
    assert table["suite"] == "heldout" and table["seeds"] >= 10 and "typiclust" in table["strategies"]
    # the shipped policy, so that a fresh clone reproduces the README's table without training one first
    assert "policy" in table["strategies"] and "policy" not in table


def _runs():
    """Hand-made runs of 3 tasks x 2 seeds: the oracle is best, the policy ahead of margin early."""
    runs = []
    base = {"random": 0.5, "margin": 0.6, "policy": 0.62, "oracle": 0.7}
    for t, task in enumerate(["a", "b", "c"]):
        for seed in range(2):
            for name, level in base.items():
                acc = [0.4, level - 0.05, level, level + 0.02, level + 0.03 * (name != "policy")]
                runs.append({"task": task, "strategy": name, "seed": seed, "labels": [5, 10, 15, 20, 25],
                             "accuracy": [a + 0.01 * t for a in acc], "aulc": float(np.mean(acc)) + 0.01 * t,
                             "final_accuracy": acc[-1]})
    return runs


def test_report_normalises_by_the_oracle_and_plots_policy_minus_margin(tmp_path):
    results = {"config": {"tasks": ["a", "b", "c"], "loop": {"initial": 5, "budget": 20, "query_size": 5},
                          "learner": {"model": "mlp"}}, "runs": _runs()}
    bench = write_benchmark(tmp_path, results, "policy")
    assert bench["strategies"] == ["random", "margin", "policy"]  # the oracle is a ceiling, not ranked
    norm = bench["normalised_aulc"]["mean"]
    assert norm["random"] == 0 and norm["oracle"] == 1 and 0 < norm["margin"] < norm["policy"] < 1
    d = bench["policy_minus_margin"]
    assert d["labels"] == [5, 10, 15, 20, 25] and np.allclose(d["mean"], [0, 0.02, 0.02, 0.02, -0.01])
    assert d["tasks_above"] == [0, 3, 3, 3, 0]
    assert (tmp_path / ROUNDS_FILE).read_bytes()[:8] == PNG and (tmp_path / CD_FILE).read_bytes()[:8] == PNG
    assert bench["early_aulc"]["mean_rank"]["policy"] == 1.0 and bench["mean_rank"]["random"] == 3.0
    assert "Policy minus margin by round" in (tmp_path / REPORT_FILE).read_text()
    json.loads((tmp_path / JSON_FILE).read_text())  # strict JSON (NaN written as null)


def test_twins_count_once_over_units(tmp_path):
    """Tasks a and b are twins (the same data under two names): over units they are one row, their runs averaged."""
    from metaal.bench_report import UNITS_CD_FILE, merge_units, twin_units

    runs = _runs()
    units = twin_units(["a", "b", "c"], {"ab": ["a", "b", "x"]})
    assert units == {"ab (2 tasks)": ["a", "b"], "c": ["c"]}
    assert twin_units(["a", "c"], {"ab": ["a", "b"]}) is None  # no two of the tasks are twins
    merged = merge_units(runs, units)
    assert len(merged) == 2 * 2 * 4  # (units, seeds, strategies)
    one = next(r for r in merged if r["task"] == "ab (2 tasks)" and r["strategy"] == "margin" and r["seed"] == 1)
    a, b = (next(r for r in runs if r["task"] == t and r["strategy"] == "margin" and r["seed"] == 1) for t in "ab")
    assert np.isclose(one["aulc"], (a["aulc"] + b["aulc"]) / 2)
    assert np.allclose(one["accuracy"], np.add(a["accuracy"], b["accuracy"]) / 2)
    assert merge_units([r for r in runs if not (r["task"] == "b" and r["seed"] == 0)], units) != merged  # b missing
    results = {"config": {"tasks": ["a", "b", "c"], "loop": {"initial": 5, "budget": 20, "query_size": 5},
                          "learner": {"model": "mlp"}}, "runs": runs}
    bench = write_benchmark(tmp_path, results, "policy", twins={"ab": ["a", "b"]})
    u = bench["over_units"]
    assert u["tasks"] == ["ab (2 tasks)", "c"] and u["friedman"]["n_tasks"] == 2
    assert u["aulc"]["c"] == bench["aulc"]["c"]
    assert np.isclose(u["aulc"]["ab (2 tasks)"]["margin"], (bench["aulc"]["a"]["margin"] + bench["aulc"]["b"]["margin"]) / 2)
    assert (tmp_path / UNITS_CD_FILE).read_bytes()[:8] == PNG
    md = (tmp_path / REPORT_FILE).read_text()
    assert "## Over twin units" in md and "ab (2 tasks): a, b" in md and UNITS_CD_FILE in md
    assert "over_units" not in write_benchmark(tmp_path, results, "policy", twins={})


def test_max_pool_caps_every_pool_and_is_checked_first(tmp_path):
    out = tmp_path / "o"
    args = ["transfer-eval", "--tasks", "sklearn:digits", "--strategies", "margin", "--seeds", "1", *FAST]
    r = CliRunner().invoke(cli, [*args, "--max-pool", "40", "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["split"]["max_pool"] == 40
    run = json.loads(next((out / "runs").rglob("margin__seed0.json")).read_text())
    assert run["labels"][-1] == 6 + 12
    r = CliRunner().invoke(cli, [*args, "--max-pool", "0", "--out", str(tmp_path / "nocap")], catch_exceptions=False)
    assert r.exit_code == 0, r.output  # 0: no cap, as in metaal run's [evaluate] table
    assert json.loads((tmp_path / "nocap" / "summary.json").read_text())["config"]["split"]["max_pool"] is None
    for bad, message in [("-1", "--max-pool must be a whole number (0: no cap)"), ("10", "pool has only 10 items")]:
        r = CliRunner().invoke(cli, [*args, "--max-pool", bad, "--out", str(tmp_path / "bad")])
        assert r.exit_code == 2 and message in r.output and not (tmp_path / "bad" / "runs").exists(), r.output
