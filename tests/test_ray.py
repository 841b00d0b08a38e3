"""The Ray backend and determinism: same seed -> the same store and the same transfer-eval numbers
whatever the backend (local, local workers, Ray) or the order in which the work finishes.

Ray is started once for the module (a local instance with 2 CPUs); metaal reuses it and leaves it running.
"""

import json
import logging
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from metaal.cli import cli
from metaal.errors import MetaalError

# the settings of tests/test_generate.py: two source tasks (one synthetic), 2 rounds of 4 picks from K = 8
GEN = ["--tasks", "sklearn:wine,synthetic:n=400", "--candidates", "8", "--initial", "6", "--budget", "8",
       "--query-size", "4", "--oracle-steps", "3", "--epochs-steps", "15", "--seed", "5", "--quiet"]
EVAL = ["--tasks", "sklearn:iris", "--strategies", "margin", "--seeds", "2", "--epochs-steps", "15", "--initial", "6",
        "--budget", "12", "--query-size", "6", "--quiet"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def generate(out, *extra, episodes=4):
    r = invoke("generate", *GEN, "--episodes", episodes, *extra, "--out", out)
    assert r.exit_code == 0, r.output
    return out


def read(out):
    from metaal.store import read_trajectories

    return read_trajectories(str(out))


def assert_same_episodes(a, b):
    """Same episodes (by id, whichever group holds them): every step array and every episode field."""
    assert a.episodes["id"].tolist() == b.episodes["id"].tolist()
    assert a.n_steps == b.n_steps
    for k in a.steps:
        np.testing.assert_array_equal(a.steps[k], b.steps[k], err_msg=f"steps/{k}")
    for k in a.episodes:
        np.testing.assert_array_equal(a.episodes[k], b.episodes[k], err_msg=f"episodes/{k}")
    skip = {"versions", "provenance"}  # package versions and the command line are recorded, not part of the content
    assert {k: v for k, v in a.attrs.items() if k not in skip} == {k: v for k, v in b.attrs.items() if k not in skip}


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local_store(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("local") / "local.zarr")


def test_ray_store_has_the_local_episodes(ray_local, local_store, tmp_path):
    from metaal.store import store_status

    out = generate(tmp_path / "ray.zarr", "--backend", "ray")
    assert_same_episodes(read(out), read(local_store))
    status = store_status(str(out))
    assert status["episodes"] == 4 and status["duplicates"] == 0 and status["missing_ids"] == []
    assert set(status["shards"]) <= {"r0", "r1"} and "root" not in status["shards"]  # one shard per lane of 2 CPUs
    assert ray_local.is_initialized()  # metaal leaves a Ray it did not start running


def test_ray_resumes_a_store_without_duplicates(ray_local, local_store, tmp_path):
    from metaal.store import store_status

    out = tmp_path / "mixed.zarr"
    generate(out, "--shard", "0/2")  # episodes 0 and 2 by a local job-array shard
    generate(out, "--backend", "ray", "--workers", "1")  # Ray does only 1 and 3, in one lane
    status = store_status(str(out))
    assert status["duplicates"] == 0 and status["shards"]["r0"]["episodes"] == 2
    assert_same_episodes(read(out), read(local_store))
    generate(out, "--backend", "ray")  # nothing left to do
    assert store_status(str(out)) == status


def test_transfer_eval_same_numbers_every_time_and_backend(ray_local, tmp_path):
    def summary(out):
        res = json.loads((out / "summary.json").read_text())
        return res["summary"], res["runs"], (out / "curves.csv").read_text()

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "ray"
    for out, extra in ((a, []), (b, []), (c, ["--backend", "ray"])):
        r = invoke("transfer-eval", *EVAL, *extra, "--out", out)
        assert r.exit_code == 0, r.output
    assert summary(a) == summary(b) == summary(c)
    assert len(summary(c)[1]) == 4  # (random, margin) x 2 seeds
    # a rerun with either backend reuses every run file the other wrote
    mtimes = {p: p.stat().st_mtime_ns for p in (c / "runs").rglob("*.json")}
    for extra in ([], ["--backend", "ray"]):
        assert invoke("transfer-eval", *EVAL, *extra, "--out", c).exit_code == 0
    assert mtimes == {p: p.stat().st_mtime_ns for p in (c / "runs").rglob("*.json")}
    assert summary(c) == summary(a)


def test_a_user_error_inside_a_ray_task_is_the_same_one_line_error(ray_local):
    from metaal.backends import ray_map
    from metaal.tasks import load_task

    with pytest.raises(MetaalError) as local:
        load_task("sklearn:nope", 0)
    with pytest.raises(MetaalError) as remote:
        list(ray_map(load_task, [("sklearn:iris", 0), ("sklearn:nope", 0)]))
    assert str(remote.value) == str(local.value) and type(remote.value) is MetaalError
    assert "\n" not in str(remote.value)


def test_gpus_the_local_instance_does_not_have(ray_local, tmp_path):
    if ray_local.cluster_resources().get("GPU", 0):
        pytest.skip("this machine has a GPU")
    r = invoke("generate", *GEN, "--episodes", 1, "--backend", "ray", "--gpus-per-episode", "1", "--out", tmp_path / "g.zarr")
    assert r.exit_code == 2 and "cannot run an episode" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("command", ["generate", "transfer-eval"])
def test_backend_ray_without_ray_says_how_to_install_it(command, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    args = [*GEN, "--episodes", 1] if command == "generate" else EVAL
    r = invoke(command, *args, "--backend", "ray", "--out", tmp_path / "out")
    assert r.exit_code == 2, r.output
    assert r.output.strip() == "error: --backend ray needs Ray: pip install 'metaal[ray]'"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "command,extra,needle",
    [
        ("generate", ["--backend", "ray", "--shard", "0/2"], "--shard and --backend ray conflict"),
        ("generate", ["--address", "auto"], "--address is an option of --backend ray"),
        ("generate", ["--gpus-per-episode", "1"], "--gpus-per-episode is an option of --backend ray"),
        ("generate", ["--backend", "ray", "--gpus-per-episode", "-1"], "--gpus-per-episode must be 0 or more"),
        ("generate", ["--backend", "ray", "--device", "cuda"], "needs --gpus-per-episode > 0"),
        ("generate", ["--backend", "ray", "--workers", "0"], "--workers must be at least 1"),
        ("generate", ["--backend", "spark"], "Invalid value for '--backend'"),
        ("transfer-eval", ["--address", "auto"], "--address is an option of --backend ray"),
        ("transfer-eval", ["--backend", "ray", "--device", "cuda"], "needs --gpus-per-run > 0"),
        ("transfer-eval", ["--gpus-per-run", "0.5"], "--gpus-per-run is an option of --backend ray"),
    ],
)
def test_backend_option_conflicts(command, extra, needle, tmp_path):
    pytest.importorskip("ray")  # otherwise the install hint comes first
    args = [*GEN, "--episodes", 1] if command == "generate" else EVAL
    r = invoke(command, *args, *extra, "--out", tmp_path / "out")
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("address,needle", [("127.0.0.1:1", "cannot reach a Ray cluster"), ("nohost", "HOST:PORT")])
def test_an_unreachable_address_fails_fast(address, needle):
    from metaal.backends import _check_reachable

    with pytest.raises(MetaalError, match=needle):
        _check_reachable(address, timeout=2)


def test_benchmark_on_ray_writes_the_local_benchmark(ray_local, tmp_path):
    args = ["benchmark", "--tasks", "sklearn:iris,sklearn:wine", "--strategies", "margin", "--seeds", "2",
            "--epochs-steps", "15", "--initial", "6", "--budget", "12", "--query-size", "6", "--quiet"]
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    for out, extra in ((local, []), (on_ray, ["--backend", "ray"])):
        r = invoke(*args, *extra, "--out", out)
        assert r.exit_code == 0, r.output
    a, b = (json.loads((d / "benchmark.json").read_text()) for d in (local, on_ray))
    a.pop("provenance", None), b.pop("provenance", None)  # records the command line, which differs
    assert a == b


def test_metaal_run_on_ray_makes_the_local_study(ray_local, tmp_path):
    """[run] backend = "ray": the episodes and the evaluation runs are Ray tasks; same store, policy and numbers."""
    study = ('[run]\nsources = ["sklearn:iris"]\ntargets = ["sklearn:wine", "sklearn:breast_cancer"]\nworkers = 1\n'
             '[generate]\nepisodes = 2\ncandidates = 24\ninitial = 4\nbudget = 8\nquery_size = 4\ntrain_steps = 5\n'
             'oracle_margin_pool = 1\nextra_initial = []\n[distill]\nsteps = 20\nbatch_size = 8\n'
             '[evaluate]\nstrategies = ["random", "margin"]\nseeds = 2\ninitial = 6\nbudget = 12\nquery_size = 6\n'
             'train_steps = 5\n')
    outs = {}
    for backend in ("local", "ray"):
        cfg = tmp_path / f"{backend}.toml"
        cfg.write_text(study.replace("workers = 1\n", f'workers = 1\nbackend = "{backend}"\n'))
        outs[backend] = tmp_path / backend
        r = invoke("run", "--config", cfg, "--quiet", "--out", outs[backend])
        assert r.exit_code == 0, r.output
    assert_same_episodes(read(outs["local"] / "store.zarr"), read(outs["ray"] / "store.zarr"))
    local, on_ray = (json.loads((outs[b] / "results" / "benchmark.json").read_text()) for b in ("local", "ray"))
    local.pop("provenance", None), on_ray.pop("provenance", None)  # the command lines differ
    assert local == on_ray and local["tasks"] == ["sklearn:wine", "sklearn:breast_cancer"]
