import numpy as np
import pytest
from click.testing import CliRunner

from metaal.cli import cli

SMALL = ["--tasks", "sklearn:wine,synthetic:n=400", "--candidates", "8", "--initial", "6", "--budget", "8",
         "--query-size", "4", "--oracle-steps", "3", "--epochs-steps", "15", "--seed", "5", "--quiet"]


def generate(out, *extra, episodes=3):
    r = CliRunner().invoke(cli, ["generate", *SMALL, "--episodes", str(episodes), *extra, "--out", str(out)])
    return r


def read(out):
    from metaal.store import read_trajectories

    return read_trajectories(str(out))


def assert_same(a, b):
    assert a.episodes["id"].tolist() == b.episodes["id"].tolist()
    for k in a.steps:
        np.testing.assert_array_equal(a.steps[k], b.steps[k], err_msg=k)


@pytest.fixture(scope="module")
def reference_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "ref.zarr"
    r = generate(out)
    assert r.exit_code == 0, r.output
    return out


def test_store_content_follows_the_contract(reference_store):
    t = read(reference_store)
    assert t.n_episodes == 3 and t.n_steps == 3 * 8  # 2 rounds of 4 picks each
    s = t.steps
    K = t.attrs["K"]
    assert s["candidates"].shape == (24, K, len(t.attrs["feature_names"]))
    assert s["context"].shape == (24, len(t.attrs["context_names"]))
    gains = np.where(s["mask"], s["oracle_gain"], -np.inf)
    np.testing.assert_array_equal(s["expert_action"], gains.argmax(1))
    np.testing.assert_array_equal(s["action"], s["expert_action"])  # roll-in = expert
    assert s["mask"][np.arange(24), s["action"]].all(), "taken candidates were valid"
    # within a round the mask shrinks by one per pick; the next round starts full
    assert (s["mask"].sum(1) == np.tile([8, 7, 6, 5], 6)).all()
    assert s["terminal"].sum() == 3 and s["round_end"].sum() == 6
    assert np.all(s["reward"][~s["round_end"]] == 0)
    assert set(t.attrs["oracle"]) >= {"mode", "steps", "lr"} and t.attrs["oracle"]["mode"] == "finetune"
    assert t.attrs["schema"]["features"] == t.attrs["feature_names"]
    assert "sklearn:wine" in set(t.episodes["task"]) or any(str(x).startswith("synthetic") for x in t.episodes["task"])


def test_same_seed_same_episodes_and_two_workers_equal_one(reference_store, tmp_path):
    out = tmp_path / "w2.zarr"
    r = generate(out, "--workers", "2")
    assert r.exit_code == 0, r.output
    assert_same(read(out), read(reference_store))
    from metaal.store import store_status

    assert len(store_status(str(out))["shards"]) == 2


def test_two_workers_in_a_fresh_interpreter_exit_cleanly(reference_store, tmp_path):
    """The worker pool and its event queue are shut down before exit: the resource tracker used to warn
    about leaked semaphores at the end of every `metaal generate --workers N`."""
    import subprocess
    import sys

    out = tmp_path / "w2.zarr"
    r = subprocess.run([sys.executable, "-c", "from metaal.cli import cli; cli()", "generate", *SMALL, "--episodes", "3",
                        "--workers", "2", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "leaked" not in r.stderr and "Warning" not in r.stderr, r.stderr
    assert_same(read(out), read(reference_store))


def test_a_failing_worker_stops_the_others_and_the_error_is_one_line(tmp_path):
    """Episode 1 of this store draws a 4-dimensional task for 40 classes (episode 0 and the up-front check
    draw larger ones): worker 1 fails at once; worker 0 stops after its current round instead of being
    terminated, and the command ends with the one-line error, no traceback and no resource-tracker warning."""
    import subprocess
    import sys

    out = tmp_path / "fail.zarr"
    r = subprocess.run([sys.executable, "-c", "from metaal.cli import cli; cli()", "generate", "--tasks",
                        "synthetic:classes=40,n=400", *SMALL[2:-3], "--seed", "3", "--quiet", "--episodes", "4",
                        "--workers", "2", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == "error: synthetic: 40 classes need at least 6 features (log2 of the class count), dim=4"


def test_shards_union_equals_single_run(reference_store, tmp_path):
    out = tmp_path / "sh.zarr"
    for i in range(3):
        r = generate(out, "--shard", f"{i}/3")
        assert r.exit_code == 0, r.output
    assert_same(read(out), read(reference_store))


# SIGKILL and resume: tests/test_crash_safety.py (10+ kills) and scripts/kill_resume.py


def test_rollin_mixture_and_strategy(tmp_path):
    r = generate(tmp_path / "mix.zarr", "--rollin", "margin", "--beta", "0.0", episodes=2)
    assert r.exit_code == 0, r.output
    t = read(tmp_path / "mix.zarr")
    assert (t.steps["action"] != t.steps["expert_action"]).any()
    # margin roll-in takes the smallest-margin candidate first in each round
    first = np.flatnonzero(t.steps["mask"].sum(1) == 8)
    margins = np.where(t.steps["mask"][first], t.steps["candidates"][first, :, 1], np.inf)
    np.testing.assert_array_equal(t.steps["action"][first], margins.argmin(1))


def test_features_never_read_candidate_labels():
    from metaal.acquisition.features import FeatureExtractor
    from metaal.learners import LearnerConfig
    from metaal.loop import LoopConfig, new_state
    from metaal.tasks import load_task

    task = load_task("sklearn:wine", 0)
    state = new_state(task, LearnerConfig(steps=10), LoopConfig(6, 20, 5), seed=0, device="cpu")
    cands = state.unlabelled[:10]
    before = FeatureExtractor(state, cands).features(5)
    y = task.y.copy()
    unl = state.unlabelled
    y[unl] = np.random.default_rng(1).permutation(y[unl])
    y[task.val] = 0
    y[task.test] = 1
    object.__setattr__(task, "y", y)  # same task, other labels for every row the policy may not see
    state._cache.clear()
    after = FeatureExtractor(state, cands).features(5)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--candidates", "500"], "larger than the unlabelled pool"),
        (["--budget", "5000"], "too few samples"),
        (["--query-size", "0"], "query-size"),
        (["--episodes", "0"], "--episodes"),
        (["--rollin", "nonsense"], "unknown strategy"),
        (["--beta", "1.5"], "--beta"),
        (["--shard", "3/2"], "--shard"),
        (["--shard", "0/2", "--workers", "2"], "conflict"),
    ],
)
def test_generate_bad_inputs(tmp_path, extra, needle):
    r = generate(tmp_path / "bad.zarr", *extra, episodes=1)
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output
    assert not (tmp_path / "bad.zarr").exists()


def test_settings_mismatch_refused_unless_overwrite(reference_store, tmp_path):
    import shutil

    out = tmp_path / "copy.zarr"
    shutil.copytree(reference_store, out)
    r = generate(out, "--oracle-lr", "0.01")
    assert r.exit_code == 2 and "different" in r.output.lower() or "oracle" in r.output
    r = generate(out, "--oracle-lr", "0.01", "--overwrite", episodes=1)
    assert r.exit_code == 0, r.output
    assert read(out).n_episodes == 1


def test_unwritable_store_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = generate(blocker / "s.zarr", episodes=1)
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_inspect_store(reference_store):
    r = CliRunner().invoke(cli, ["inspect", str(reference_store)])
    assert r.exit_code == 0, r.output
    for needle in ("episodes 3", "oracle loss gain", "margin", "agreement", "regret", "schema v2", "round 2:", "tied at the best"):
        assert needle in r.output


def test_expert_signal_by_round_counts_ties_and_rounds_without_gain_per_episode_round():
    from metaal.inspect import expert_signal_by_round
    from metaal.store import Trajectories

    nan = np.nan
    # two episodes of two rounds (2 picks each); the masked-out candidate's gain must not count
    acc = np.array([[0.1, 0.0, 0.1], [0.2, 0.1, 0.0], [0.0, 0.0, 9.0], [-0.1, -0.2, 0.0],
                    [0.3, 0.0, 0.0], [0.0, 0.0, 0.0], [nan, nan, nan], [0.1, 0.1, 0.1]])
    mask = np.ones_like(acc, dtype=bool)
    mask[2, 2] = False
    steps = {"oracle_acc_gain": acc, "mask": mask, "episode": np.array([0, 0, 0, 0, 1, 1, 1, 1]),
             "round_end": np.array([0, 1, 0, 1, 0, 1, 0, 1], dtype=bool)}
    rows = expert_signal_by_round(Trajectories(attrs={}, steps=steps))
    assert [(r["round"], r["steps"]) for r in rows] == [(1, 4), (2, 3)]  # the all-NaN step has no signal
    assert rows[0]["no_gain"] == 0.25 and rows[0]["tied"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 3 + 1) / 4)
    assert rows[1]["no_gain"] == pytest.approx(2 / 3) and rows[1]["tied"] == pytest.approx((1 + 1 / 3 + 1) / 3)


def test_stores_with_other_rollins_read_together_without_losing_episodes(reference_store, tmp_path):
    out = tmp_path / "mix.zarr"
    assert generate(out, "--rollin", "random", "--beta", "0.5", episodes=2).exit_code == 0
    from metaal.store import read_trajectories

    a, b = read(reference_store), read(out)
    both = read_trajectories([str(reference_store), str(out)])
    assert both.n_episodes == a.n_episodes + b.n_episodes == 5
    assert both.n_steps == a.n_steps + b.n_steps
    assert len(np.unique(both.steps["episode"])) == 5
    np.testing.assert_array_equal(both.steps["candidates"][: a.n_steps], a.steps["candidates"])
    np.testing.assert_array_equal(both.steps["candidates"][a.n_steps :], b.steps["candidates"])
