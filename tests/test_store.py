"""The Zarr trajectory store: round trip, crash safety (SIGKILL and injected crashes), shards, errors."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from metaal.errors import MetaalError
from metaal.store import (
    EPISODE_FIELDS,
    FORMAT,
    FORMAT_VERSION,
    STEP_ARRAYS,
    fingerprint,
    open_writer,
    read_trajectories,
    store_attrs,
    store_status,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
_spec = importlib.util.spec_from_file_location("_store_writer", HERE / "_store_writer.py")
sw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sw)
make_attrs, make_record = sw.make_attrs, sw.make_record


def write_store(path, ids, shard=None, attrs=None, **kw):
    w = open_writer(str(path), attrs or make_attrs(), shard=shard, **kw)
    for i in ids:
        w.append(make_record(i))
    return w


def expected(ids) -> dict:
    """What reading episodes ``ids`` must return: steps concatenated by id, the episode table."""
    recs = [make_record(i) for i in sorted(set(ids))]
    steps = {}
    for name, (dtype, shp) in STEP_ARRAYS.items():
        if name == "episode":
            parts = [np.full(r.length, r.episode_id, dtype=np.int32) for r in recs]
        else:
            parts = [r.steps[name] for r in recs]
        steps[name] = np.concatenate(parts).astype(dtype) if parts else np.zeros((0, *shp(sw.K, 3, 2)), dtype)
    lengths = np.array([r.length for r in recs], dtype=np.int64)
    return {
        "steps": steps,
        "id": np.array([r.episode_id for r in recs], dtype=np.int64),
        "task": [r.task for r in recs],
        "model": [r.model for r in recs],
        "seed": np.array([r.seed for r in recs], dtype=np.int64),
        "length": lengths,
        "first_step": np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if recs else lengths,
        "final_accuracy": np.array([r.final_accuracy for r in recs]),
        "aulc": np.array([r.aulc for r in recs]),
        "final_val_accuracy": np.array([r.final_val_accuracy for r in recs]),
    }


def assert_trajectories_equal(tr, ids) -> None:
    exp = expected(ids)
    assert set(tr.steps) == set(STEP_ARRAYS)
    for name, (dtype, _) in STEP_ARRAYS.items():
        got = tr.steps[name]
        assert got.dtype == np.dtype(dtype), name
        np.testing.assert_array_equal(got, exp["steps"][name], err_msg=name)  # NaN == NaN here
    assert set(tr.episodes) == set(EPISODE_FIELDS)
    for f in EPISODE_FIELDS:
        got = tr.episodes[f]
        if EPISODE_FIELDS[f] is str:
            assert got.tolist() == exp[f], f
        else:
            assert got.dtype == np.dtype(EPISODE_FIELDS[f]), f
            np.testing.assert_array_equal(got, exp[f], err_msg=f)


# ------------------------------------------------------------------------------------------ round trip
def test_round_trip_three_episodes(tmp_path):
    path = tmp_path / "s.zarr"
    w = write_store(path, [2, 0, 1])
    assert w.committed_ids() == {0, 1, 2}
    tr = read_trajectories(str(path))
    assert_trajectories_equal(tr, [0, 1, 2])
    assert tr.n_episodes == 3 and tr.n_steps == sum(make_record(i).length for i in range(3)) and tr.K == sw.K
    assert tr.attrs["format"] == FORMAT and tr.attrs["format_version"] == FORMAT_VERSION
    assert store_attrs(path)["feature_names"] == ["f0", "f1", "f2"]
    # plain zarr sees DESIGN's layout (stored in append order: 2, 0, 1)
    g = zarr.open_group(str(path), mode="r")
    assert g["steps/candidates"].shape == (tr.n_steps, sw.K, 3)
    assert g["episodes/id"][:].tolist() == [2, 0, 1]
    # a fresh read sees later appends; the status agrees
    w.append(make_record(3))
    assert_trajectories_equal(read_trajectories(path), [0, 1, 2, 3])
    st = store_status(path)
    assert st["episodes"] == 4 and st["duplicates"] == 0 and st["missing_ids"] == []
    assert st["shards"]["root"] == {"episodes": 4, "steps": st["steps"], "uncommitted_steps": 0,
                                     "uncommitted_rows": 0}
    # one writer per group at a time: a second one stops with a clear error until the first is closed
    with pytest.raises(MetaalError, match="in use by another metaal process"):
        open_writer(str(path), make_attrs())
    w.close()
    # reopening resumes (nothing lost) and refuses a duplicate id within its group
    w2 = open_writer(str(path), make_attrs())
    assert w2.committed_ids() == {0, 1, 2, 3}
    with pytest.raises(ValueError):
        w2.append(make_record(1))


def test_empty_store_reads_empty(tmp_path):
    path = tmp_path / "e.zarr"
    open_writer(str(path), make_attrs(episodes=3))
    tr = read_trajectories(path)
    assert tr.n_steps == 0 and tr.n_episodes == 0 and tr.steps["candidates"].shape == (0, sw.K, 3)
    assert store_status(path)["missing_ids"] == [0, 1, 2]


def test_store_from_before_the_late_arrays_reads_nan_and_resumes(tmp_path):
    """A store written before batch_gain / batch_acc_gain existed (their directories absent) reads them as NaN,
    reports its status, and resumes: the old rows stay NaN, new episodes keep their values; a record may
    leave the late arrays out (NaN)."""
    import shutil

    from metaal.store.records import LATE_STEP_ARRAYS

    path = tmp_path / "old.zarr"
    write_store(path, [0, 1]).close()
    for name in LATE_STEP_ARRAYS:
        shutil.rmtree(path / "steps" / name)
    tr = read_trajectories(path)
    n_old = tr.n_steps
    for name in LATE_STEP_ARRAYS:
        assert tr.steps[name].shape == (n_old, *STEP_ARRAYS[name][1](sw.K, 3, 2)) and np.isnan(tr.steps[name]).all()
    assert store_status(path)["shards"]["root"]["uncommitted_steps"] == 0
    w = open_writer(str(path), make_attrs())
    w.append(make_record(2))
    bare = make_record(3)
    for name in LATE_STEP_ARRAYS:
        del bare.steps[name]
    w.append(bare)
    w.close()
    tr = read_trajectories(path)
    n2 = make_record(2).length
    for name in LATE_STEP_ARRAYS:
        assert np.isnan(tr.steps[name][:n_old]).all() and np.isnan(tr.steps[name][n_old + n2:]).all()
        np.testing.assert_array_equal(tr.steps[name][n_old:n_old + n2], make_record(2).steps[name])
    exp = expected([0, 1, 2, 3])
    for name in set(STEP_ARRAYS) - LATE_STEP_ARRAYS:
        np.testing.assert_array_equal(tr.steps[name], exp["steps"][name], err_msg=name)


# ------------------------------------------------------------------------------------------ crash safety
class _Crash(Exception):
    pass


@pytest.mark.parametrize("crash_at", [1, 8, 14, 21, 22])
def test_crash_inside_append_leaves_no_partial_episode(tmp_path, monkeypatch, crash_at):
    """Fail the n-th chunk write of an append (after zarr already wrote the enlarged shape): 1..21 are the
    step arrays and the episode fields, 22 is episodes/id itself (its shape says n+1 rows, its chunk not)."""
    path = tmp_path / "c.zarr"
    write_store(path, [0, 1])
    import zarr.core.array as za

    real, calls = za._setitem, []

    async def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == crash_at:
            raise _Crash
        return await real(*args, **kwargs)

    w = open_writer(str(path), make_attrs())
    monkeypatch.setattr(za, "_setitem", failing)
    with pytest.raises(_Crash):
        w.append(make_record(2))
    monkeypatch.setattr(za, "_setitem", real)
    if crash_at == 22:  # the id row's shape was written, its chunk not: a trailing fill-value row
        assert zarr.open_array(str(path / "episodes" / "id"), mode="r")[:].tolist() == [0, 1, -1]
    # before any resume, readers see only the committed episodes
    assert_trajectories_equal(read_trajectories(path), [0, 1])
    assert store_status(path)["episodes"] == 2
    w.close()  # what the crashed process's exit does to its lock
    w = open_writer(str(path), make_attrs())  # resume cuts the partial episode off
    assert w.committed_ids() == {0, 1}
    assert store_status(path)["shards"]["root"]["uncommitted_steps"] == 0
    w.append(make_record(2))
    w.append(make_record(3))
    assert_trajectories_equal(read_trajectories(path), [0, 1, 2, 3])


def _run_writer(path, ids: str, shard=None, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = [sys.executable, str(HERE / "_store_writer.py"), str(path), ids] + ([shard] if shard else [])
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path):
    n = 30
    reference = tmp_path / "ref.zarr"
    write_store(reference, range(n))
    ref = read_trajectories(reference)
    assert_trajectories_equal(ref, range(n))

    path = tmp_path / "k.zarr"
    rng = random.Random(1234)
    kills = 0
    for _ in range(12):
        p = _run_writer(path, f"0:{n}")
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
        time.sleep(rng.uniform(0.0, 0.3))
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        p.communicate()
        # whatever the kill interrupted, readers see whole committed episodes only
        committed = set(read_trajectories(path).episodes["id"].tolist())
        assert_trajectories_equal(read_trajectories(path), committed)
        if kills >= 6:
            break
    assert kills >= 5
    p = _run_writer(path, f"0:{n}")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0 and out.split()[-1] == "done", err
    tr = read_trajectories(path)
    for name in STEP_ARRAYS:
        np.testing.assert_array_equal(tr.steps[name], ref.steps[name])
        assert tr.steps[name].dtype == ref.steps[name].dtype
    for f in EPISODE_FIELDS:
        np.testing.assert_array_equal(tr.episodes[f], ref.episodes[f])
    st = store_status(path)
    assert st["episodes"] == n and st["duplicates"] == 0
    assert not list(path.rglob("*.partial"))
    assert fingerprint(path) == fingerprint(reference)


# ------------------------------------------------------------------------------------------ shards
def test_shards_and_root_read_as_one(tmp_path):
    single = tmp_path / "single.zarr"
    write_store(single, range(8))
    path = tmp_path / "sharded.zarr"
    attrs = make_attrs()
    # two worker processes race to create the root and write their own shards
    procs = [_run_writer(path, "2:8:2", "w1"), _run_writer(path, "3:8:2", "w2")]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    write_store(path, [0, 1], attrs=attrs)  # the root group
    w3 = write_store(path, [5, 3], shard="w3", attrs=attrs)  # duplicates of w2's episodes
    assert w3.committed_ids() == set(range(8))
    tr = read_trajectories(path)
    assert_trajectories_equal(tr, range(8))
    ref = read_trajectories(single)
    for name in STEP_ARRAYS:
        np.testing.assert_array_equal(tr.steps[name], ref.steps[name])
    for f in EPISODE_FIELDS:
        np.testing.assert_array_equal(tr.episodes[f], ref.episodes[f])
    st = store_status(path)
    assert st["episodes"] == 8 and st["duplicates"] == 2 and st["steps"] == tr.n_steps
    assert {k: v["episodes"] for k, v in st["shards"].items()} == {"root": 2, "w1": 3, "w2": 3, "w3": 2}
    assert fingerprint(path) == fingerprint(single)
    # a list of paths reads as one too (duplicates across paths counted once)
    # two stores read together: nothing is dropped, the second store's ids are shifted past the first's
    both = read_trajectories([str(single), str(path)])
    assert both.n_episodes == 16 and both.n_steps == 2 * tr.n_steps
    assert both.episodes["id"].tolist() == list(range(16))
    np.testing.assert_array_equal(both.steps["candidates"][tr.n_steps :], tr.steps["candidates"])
    zarr.open_group(str(path / "shards" / "w1"), mode="r")["steps/action"]  # plain zarr reaches a shard


def test_planned_episodes_report_missing_ids(tmp_path):
    path = tmp_path / "p.zarr"
    write_store(path, [0, 2], shard="a", attrs=make_attrs(episodes=5))
    assert store_status(path)["missing_ids"] == [1, 3, 4]


# ------------------------------------------------------------------------------------------ identity / errors
def test_identity_mismatch_refused_unless_overwrite(tmp_path):
    path = tmp_path / "i.zarr"
    write_store(path, [0, 1])
    with pytest.raises(MetaalError, match=r"\bK\b"):
        open_writer(str(path), make_attrs(K=5))
    with pytest.raises(MetaalError, match="config"):
        open_writer(str(path), make_attrs(seed=7), shard="w1")
    other = make_attrs()
    other["oracle"] = {"name": "lookahead", "steps": 2}
    other["feature_names"] = ["a", "b", "c"]
    with pytest.raises(MetaalError, match="feature_names, oracle"):
        open_writer(str(path), other)
    # versions are not part of the identity
    same = make_attrs()
    same["versions"] = {"metaal": "other"}
    assert open_writer(str(path), same).committed_ids() == {0, 1}
    # overwrite deletes and recreates
    w = open_writer(str(path), make_attrs(K=5), overwrite=True)
    assert w.committed_ids() == set()
    assert store_attrs(path)["K"] == 5 and read_trajectories(path).n_episodes == 0


def test_a_root_creation_cut_by_a_kill_is_an_empty_store(tmp_path):
    """A kill while zarr writes the root zarr.json leaves only its temporary .partial file behind;
    the next run must create the store there, not call the folder foreign."""
    path = tmp_path / "cut.zarr"
    path.mkdir()
    (path / "zarr.0123456789abcdef.partial").write_text('{"zarr_format": 3, "node_typ')
    write_store(path, [0, 1])
    assert read_trajectories(path).n_episodes == 2
    # anything else in the folder still makes it foreign
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(MetaalError, match="not a metaal trajectory store"):
        open_writer(str(other), make_attrs())


def test_errors_are_metaal_errors(tmp_path):
    # missing path
    for fn in (read_trajectories, store_attrs, store_status, fingerprint):
        with pytest.raises(MetaalError, match="does not exist"):
            fn(str(tmp_path / "nope.zarr"))
    # not a store: a directory with other files, a plain zarr group, a file
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello")
    plain = tmp_path / "plain.zarr"
    zarr.open_group(str(plain), mode="w").attrs["x"] = 1
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    for p in (junk, plain, afile):
        with pytest.raises(MetaalError, match="not a metaal trajectory store"):
            read_trajectories(str(p))
        with pytest.raises(MetaalError, match="not a metaal trajectory store"):
            open_writer(str(p), make_attrs())
        with pytest.raises(MetaalError, match="not a metaal trajectory store"):
            open_writer(str(p), make_attrs(), overwrite=True)
    # another format / format_version
    path = tmp_path / "v.zarr"
    write_store(path, [0])
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["format_version"] = 99
    (path / "zarr.json").write_text(json.dumps(meta))
    for call in (
        lambda: read_trajectories(path),
        lambda: store_status(path),
        lambda: open_writer(str(path), make_attrs()),
    ):
        with pytest.raises(MetaalError, match="format_version 99"):
            call()
    meta["attributes"]["format"] = "something-else"
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(MetaalError, match="another format"):
        store_attrs(path)
    # unwritable parent: below a regular file, and (when not root) a read-only directory
    with pytest.raises(MetaalError, match="not a writable directory"):
        open_writer(str(afile / "s.zarr"), make_attrs())
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: chmod does not make a directory unwritable")
        with pytest.raises(MetaalError, match="not a writable directory"):
            open_writer(str(ro / "s.zarr"), make_attrs())
    finally:
        ro.chmod(0o755)


def test_corrupt_chunk_or_metadata_is_a_metaal_error(tmp_path):
    path = tmp_path / "c.zarr"
    write_store(path, [0, 1, 2])
    chunks = sorted(p for p in (path / "steps" / "candidates").rglob("*") if p.is_file() and p.name != "zarr.json")
    assert chunks
    chunks[0].write_bytes(b"\x00garbage\xff" * 13)
    with pytest.raises(MetaalError, match="steps/candidates"):
        read_trajectories(path)
    path2 = tmp_path / "m.zarr"
    write_store(path2, [0])
    (path2 / "episodes" / "length" / "zarr.json").write_text("{not json")
    with pytest.raises(MetaalError, match="episodes/length"):
        read_trajectories(path2)
    (path2 / "zarr.json").write_bytes(b"\x00\x01")
    with pytest.raises(MetaalError):
        store_attrs(path2)


def test_a_second_writer_of_the_same_group_is_refused_until_the_first_dies(tmp_path):
    """Another process writing the same group: a clear error, not a resume that cuts its episode in half.
    Other shards stay writable, and a SIGKILLed writer leaves no stale lock behind."""
    path = tmp_path / "busy.zarr"
    proc = _run_writer(path, "0:100000")
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(MetaalError, match="in use by another metaal process"):
            open_writer(str(path), make_attrs())
        with open_writer(str(path), make_attrs(), shard="other") as other:  # its own group: fine
            other.append(make_record(500_000))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    with open_writer(str(path), make_attrs()) as w:
        assert len(w.committed_ids()) >= 0
    assert store_status(path)["shards"]["root"]["uncommitted_steps"] == 0
