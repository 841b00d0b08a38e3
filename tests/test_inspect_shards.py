"""`metaal inspect STORE` on sharded stores: missing shard jobs, incomplete shards, partial episodes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import zarr
from _tiny import invoke, make_store

from metaal.store import read_trajectories, store_status


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """shards s0-of-3 and s2-of-3 of a 6-episode job array (ids 0, 3 and 2, 5); s1-of-3 never ran."""
    root = tmp_path_factory.mktemp("shards")
    path = root / "two_of_three.zarr"
    for i in (0, 2):
        make_store(path, 6, "--shard", f"{i}/3")
    full = root / "full.zarr"
    for i in range(3):
        make_store(full, 6, "--shard", f"{i}/3")
    return path, full


def inspect(path) -> str:
    r = invoke("inspect", path)
    assert r.exit_code == 0, r.output
    return r.output


def test_complete_job_array_reads_as_one_and_reports_nothing_missing(sharded, tmp_path):
    _, full = sharded
    out = inspect(full)
    for name in ("s0-of-3", "s1-of-3", "s2-of-3"):
        assert f"shard {name}: 2 episodes, 16 steps\n" in out
    assert "MISSING" not in out and "INCOMPLETE" not in out and "partial episode" not in out
    single = make_store(tmp_path / "single.zarr", 6)
    a, b = read_trajectories(full), read_trajectories(single)
    assert a.episodes["id"].tolist() == list(range(6))
    for k in a.steps:
        np.testing.assert_array_equal(a.steps[k], b.steps[k], err_msg=k)


def test_missing_shard_job_is_named(sharded):
    path, _ = sharded
    out = inspect(path)
    assert "MISSING SHARDS: 1 of 3 --shard i/N jobs never wrote here: s1-of-3" in out
    assert "INCOMPLETE: 2 planned episodes missing: 1, 4" in out
    assert "shard s0-of-3: 2 episodes, 16 steps\n" in out  # the present shards are complete


def test_partial_episode_incomplete_and_uninitialised_shards(sharded, tmp_path):
    src, _ = sharded
    path = tmp_path / "damaged.zarr"
    shutil.copytree(src, path)
    # s0: a killed writer's steps past the last committed episode (no id row)
    act = zarr.open_array(str(path / "shards/s0-of-3/steps/action"), mode="r+")
    act.append(np.zeros(3, np.int32))
    # s2: its second episode's commit mark undone -> one of its two episodes committed, the rest partial
    ids = zarr.open_array(str(path / "shards/s2-of-3/episodes/id"), mode="r+")
    ids.resize((1,))
    # s1: the group was created, then the job died before its first array
    zarr.create_group(str(path / "shards/s1-of-3"), zarr_format=3)
    st = store_status(path)
    assert st["shards"]["s0-of-3"]["uncommitted_steps"] == 3
    assert st["shards"]["s2-of-3"]["uncommitted_rows"] == 1 and st["uninitialised_shards"] == ["s1-of-3"]
    out = inspect(path)
    lines = {ln.split(":")[0].strip(): ln for ln in out.splitlines() if ln.startswith("  shard ")}
    assert "partial episode left by a killed writer" in lines["shard s0-of-3"]
    assert "incomplete: 1 of its 2 episodes committed" in lines["shard s2-of-3"]
    assert "partial episode" in lines["shard s2-of-3"]
    assert "created but holds no episode index" in lines["shard s1-of-3"]
    assert "MISSING SHARDS" not in out  # s1 exists, but is reported as incomplete
    assert "INCOMPLETE SHARDS: s0-of-3, s2-of-3, s1-of-3" in out
    assert read_trajectories(path).episodes["id"].tolist() == [0, 2, 3]  # readers see committed episodes only
    # rerunning the shard jobs finishes them: nothing partial, nothing missing
    for i in range(3):
        make_store(path, 6, "--shard", f"{i}/3")
    out = inspect(path)
    assert "MISSING" not in out and "INCOMPLETE" not in out and "partial episode" not in out
    assert read_trajectories(path).episodes["id"].tolist() == list(range(6))
