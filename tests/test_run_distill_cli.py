"""End to end: `metaal run --quick`, then the distill CLI and transfer-eval --policy on the same store."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from metaal.cli import cli


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "study"
    r = CliRunner().invoke(cli, ["run", "--quick", "--quiet", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out, r.output


def test_run_quick_leaves_every_stage_and_prints_the_table(quick_run):
    out, output = quick_run
    assert (out / "store.zarr").is_dir()
    assert (out / "policy" / "metaal-policy.json").is_file() and (out / "policy" / "scorer.pt").is_file()
    # the sources run again from 3 labels into a second store, distilled with the first on per-class counts
    from metaal.store import read_trajectories

    meta = json.loads((out / "policy" / "metaal-policy.json").read_text())
    assert [Path(s["path"]).name for s in meta["sources"]] == ["store.zarr", "store-initial-3.zarr"]
    assert meta["count_context"] == "per-class" and meta["dropped_features"] == []
    assert read_trajectories(out / "store-initial-3.zarr").attrs["config"]["loop"]["initial"] == 3
    for name in ("summary.json", "curves.csv", "report.md"):
        assert (out / "results" / name).is_file()
    assert "policy" in output and "mean rank" in output and "report:" in output
    res = json.loads((out / "results" / "summary.json").read_text())
    tasks = res["config"]["tasks"]
    from metaal.run import DEFAULT_SOURCES

    assert not set(tasks) & set(DEFAULT_SOURCES), "targets must be held out from the sources"
    # the default study runs on the task split: KEEL sources, held-out targets with digits and breast_cancer,
    # and prints the statistics over its targets (metaal benchmark's, written beside the results)
    meta_store = read_trajectories(out / "store.zarr").attrs["config"]
    assert meta_store["tasks"] and all(t.startswith("keel:") for t in meta_store["tasks"])
    assert {"sklearn:digits", "sklearn:breast_cancer"} <= set(tasks) and len(tasks) >= 3
    bench = json.loads((out / "results" / "benchmark.json").read_text())
    assert bench["tasks"] == tasks and bench["reference"] == "policy"
    assert "across tasks:" in output and "mean rank over tasks" in output and "Friedman p" in output
    # the policy is paired with the baselines: same start, same round-0 accuracy
    for task in tasks:
        for seed in range(res["config"]["seeds"]):
            firsts = {r["accuracy"][0] for r in res["runs"] if r["task"] == task and r["seed"] == seed}
            assert len(firsts) == 1
    rep = res["policy_report"]
    assert set(rep["mean_rank"]) >= {"policy", "random", "margin"}
    assert all(set(t["vs"]) >= {"random", "margin"} for t in rep["tasks"])
    md = (out / "results" / "report.md").read_text()
    assert "## The learned policy" in md and "paired t-test" in md and "labels saved" in md.lower() or "never reached" in md


def test_run_reuses_finished_stages(quick_run):
    out, _ = quick_run
    before = (out / "policy" / "metaal-policy.json").stat().st_mtime_ns
    r = CliRunner().invoke(cli, ["run", "--quick", "--quiet", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "reusing" in r.output
    assert (out / "policy" / "metaal-policy.json").stat().st_mtime_ns == before


def test_distill_cli_inspect_and_policy_in_transfer_eval(quick_run, tmp_path):
    out, _ = quick_run
    pol = tmp_path / "pol"
    r = CliRunner().invoke(cli, ["distill", str(out / "store.zarr"), "--algo", "gain", "--steps", "50", "--quiet", "--out", str(pol)])
    assert r.exit_code == 0, r.output
    assert "agreement" in r.output and "regret" in r.output
    meta = json.loads((pol / "metaal-policy.json").read_text())
    assert set(meta["validation"]) >= {"policy", "heuristics", "episodes"}
    assert set(meta["validation"]["policy"]) == {"agreement", "topb_overlap", "regret"}
    r = CliRunner().invoke(cli, ["inspect", str(pol)])
    assert r.exit_code == 0 and "algorithm gain" in r.output and "agreement" in r.output
    assert "inputs: label count raw; held at 0: none; batch built by items" in r.output
    r = CliRunner().invoke(cli, ["inspect", str(out / "policy")])  # metaal run's policy
    assert "inputs: label count per-class; held at 0: none; batch built by items" in r.output, r.output
    # the learned policy plugs into the strategy interface, on a user's image npz
    rng = np.random.default_rng(0)
    X = (rng.random((260, 1, 28, 28)) * 255).astype(np.uint8)
    y = rng.integers(0, 3, 260)
    X[y == 1, :, :14] = 255
    np.savez(tmp_path / "img.npz", X=X, y=y)
    r = CliRunner().invoke(cli, ["transfer-eval", "--policy", str(pol), "--tasks", f"npz:{tmp_path / 'img.npz'}",
                                 "--strategies", "random,margin", "--seeds", "1", "--initial", "6", "--budget", "10",
                                 "--query-size", "5", "--epochs-steps", "5", "--quiet", "--out", str(tmp_path / "res")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "res" / "summary.json").read_text())
    assert {s["strategy"] for s in res["summary"]} == {"random", "margin", "policy"}


def test_distill_schema_mismatch_and_bad_store(quick_run, tmp_path):
    out, _ = quick_run
    import shutil

    pol = tmp_path / "pol"
    shutil.copytree(out / "policy", pol)
    meta = json.loads((pol / "metaal-policy.json").read_text())
    meta["schema"]["features"] = meta["schema"]["features"][::-1]
    (pol / "metaal-policy.json").write_text(json.dumps(meta))
    r = CliRunner().invoke(cli, ["transfer-eval", "--policy", str(pol), "--tasks", "sklearn:iris", "--budget", "20",
                                 "--seeds", "1", "--quiet", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "feature schema" in r.output
    r = CliRunner().invoke(cli, ["distill", str(tmp_path / "missing.zarr"), "--out", str(tmp_path / "p2")])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert not (tmp_path / "p2" / "metaal-policy.json").exists()


def test_run_rejects_overlapping_sources_and_targets(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text('[run]\nsources = ["sklearn:iris"]\ntargets = ["sklearn:iris"]\n')
    r = CliRunner().invoke(cli, ["run", "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "overlap" in r.output


def test_run_rejects_a_source_that_is_a_targets_twin(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text('[run]\nsources = ["keel:optdigits"]\ntargets = ["sklearn:digits"]\n')
    r = CliRunner().invoke(cli, ["run", "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "error: source keel:optdigits and target sklearn:digits are the same data under two names" in r.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_run_config_refuses_retired_options(tmp_path):
    """Options of levers tried and not adopted are gone from the run's config too (an unknown key, exit 2)."""
    cfg = tmp_path / "s.toml"
    for table, key in (("evaluate", "policy_margin_prior = 0.3"), ("evaluate", "policy_shortlist = 3"),
                       ("generate", "oracle_repeats = 3"), ("distill", "step_weight = \"spread\"")):
        cfg.write_text(f"[{table}]\n{key}\n")
        r = CliRunner().invoke(cli, ["run", "--config", str(cfg), "--out", str(tmp_path / "o")])
        assert r.exit_code == 2 and f"unknown key '{key.split()[0]}'" in r.output, r.output


def test_distill_refuses_store_with_another_feature_schema(quick_run, tmp_path):
    import shutil

    import zarr

    out, _ = quick_run
    store = tmp_path / "other.zarr"
    shutil.copytree(out / "store.zarr", store)
    group = zarr.open_group(str(store), mode="r+")
    schema = dict(group.attrs["schema"])
    schema["version"] = 99
    group.attrs["schema"] = schema
    r = CliRunner().invoke(cli, ["distill", str(store), "--steps", "10", "--quiet", "--out", str(tmp_path / "p")])
    assert r.exit_code == 2, r.output
    assert "schema" in r.output and len([ln for ln in r.output.splitlines() if ln.startswith("error:")]) == 1
    assert not (tmp_path / "p").exists()


def test_shipped_configs_parse_and_the_embedded_default_is_the_embedded_study():
    from pathlib import Path

    from metaal.run import embedded_study, study_from_file

    root = Path(__file__).resolve().parents[1] / "scripts" / "configs"
    written, default = study_from_file(str(root / "embedded_default.toml")), embedded_study()
    for part in ("sources", "targets", "workers", "generate", "distill", "evaluate", "extra_initial"):
        assert getattr(written, part) == getattr(default, part), part
    image = study_from_file(str(root / "image_study.toml"))
    assert image.generate.oracle == default.generate.oracle and not set(image.sources) & set(image.targets)
