"""Safe loading: policies and stores shared between people never run code from them.

A policy directory is read as JSON plus weights-only tensors; pickle-based files (d3rlpy's model.d3, a
scorer saved as a full pickle) are read only with ``--trust-pickle``.  Every test plants a pickle whose
unpickling creates a marker file, and checks the marker is never created unless the user trusted it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny import EVAL, GEN, Marker, invoke, make_policy, make_store, payload

from metaal.errors import MetaalError
from metaal.policy import load_policy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("safe")
    store = make_store(root / "store.zarr", 4)
    return {"root": root, "store": store, "gain": make_policy(store, root / "gain"),
            "bc": make_policy(store, root / "bc", "--algo", "bc", "--val-fraction", "0")}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _uses(cmd: str, policy: Path, out: Path, *extra) -> list:
    """A command line that loads ``policy``."""
    if cmd == "transfer-eval":
        return ["transfer-eval", *EVAL, "--policy", policy, *extra, "--out", out]
    if cmd == "generate":
        return ["generate", *GEN, "--episodes", "1", "--rollin", f"policy:{policy}", "--beta", "0", *extra, "--out", out]
    return ["inspect", policy, *extra]


COMMANDS = ["transfer-eval", "generate", "inspect"]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_planted_model_d3_is_never_opened(made, tmp_path, cmd):
    marker = tmp_path / "PWNED"
    pol = _copy(made["gain"], tmp_path / "pol")
    for name in ("model.d3", "extra.pkl", "policy.pt", "__init__.py"):
        (pol / name).write_bytes(payload(marker))
    meta = json.loads((pol / "metaal-policy.json").read_text())
    meta["d3rlpy_model"] = "model.d3"  # the metadata even points at it
    (pol / "metaal-policy.json").write_text(json.dumps(meta))
    r = invoke(*_uses(cmd, pol, tmp_path / "out"))
    assert r.exit_code == 0, r.output  # the policy works: scoring needs only scorer.pt
    assert not marker.exists()
    if cmd == "inspect":
        assert "model.d3: d3rlpy's own file, a pickle: not opened" in r.output


@pytest.mark.parametrize("cmd", [*COMMANDS, "select"])
def test_policy_whose_only_model_is_a_pickle_is_refused_without_trust_pickle(made, tmp_path, cmd):
    marker = tmp_path / "PWNED"
    pol = _copy(made["bc"], tmp_path / "pol")
    (pol / "scorer.pt").unlink()
    (pol / "model.d3").write_bytes(payload(marker))
    if cmd == "select":
        np.savez(tmp_path / "pool.npz", X=np.random.default_rng(0).normal(size=(40, 4)))
        (tmp_path / "labels.csv").write_text("index,label\n0,a\n1,b\n")
        argv = ["select", "--data", f"npz:{tmp_path / 'pool.npz'}", "--labels", tmp_path / "labels.csv",
                "--strategy", f"policy:{pol}", "--n", "2", "--out", tmp_path / "sel.csv"]
    else:
        argv = _uses(cmd, pol, tmp_path / "out")
    r = invoke(*argv)
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "refusing to open it" in r.output and "--trust-pickle" in r.output
    assert len([ln for ln in r.output.splitlines() if ln.strip()]) == 1
    assert not marker.exists()


def test_trust_pickle_is_what_lets_a_pickle_run(made, tmp_path):
    """The payload is live: with --trust-pickle (and only then) it runs."""
    marker = tmp_path / "PWNED"
    pol = _copy(made["bc"], tmp_path / "pol")
    (pol / "scorer.pt").unlink()
    (pol / "model.d3").write_bytes(payload(marker))
    r = invoke("inspect", pol)
    assert r.exit_code == 2 and not marker.exists()
    r = invoke("inspect", pol, "--trust-pickle")
    assert marker.exists()  # the user said they trust it
    assert r.exit_code == 2 and "cannot load the d3rlpy model" in r.output and "Traceback" not in r.output



def test_select_accepts_trust_pickle_too(made, tmp_path):
    marker = tmp_path / "PWNED"
    pol = _copy(made["bc"], tmp_path / "pol")
    (pol / "scorer.pt").unlink()
    (pol / "model.d3").write_bytes(payload(marker))
    np.savez(tmp_path / "pool.npz", X=np.random.default_rng(0).normal(size=(40, 4)))
    (tmp_path / "labels.csv").write_text("index,label\n0,a\n1,b\n")
    argv = ["select", "--data", f"npz:{tmp_path / 'pool.npz'}", "--labels", tmp_path / "labels.csv",
            "--strategy", f"policy:{pol}", "--n", "2", "--out", tmp_path / "sel.csv"]
    r = invoke(*argv)
    assert r.exit_code == 2 and not marker.exists()
    r = invoke(*argv, "--trust-pickle")
    assert marker.exists() and "Traceback" not in r.output  # trusted: the payload ran (and is no d3rlpy model)


def test_scorer_saved_as_a_full_pickle_is_refused_even_with_a_matching_checksum(made, tmp_path):
    marker = tmp_path / "PWNED"
    pol = _copy(made["gain"], tmp_path / "pol")
    torch.save({"x": Marker(marker)}, pol / "scorer.pt")
    meta = json.loads((pol / "metaal-policy.json").read_text())
    meta["scorer"]["sha256"] = hashlib.sha256((pol / "scorer.pt").read_bytes()).hexdigest()  # a consistent attacker
    (pol / "metaal-policy.json").write_text(json.dumps(meta))
    for argv in (_uses("transfer-eval", pol, tmp_path / "o"), _uses("inspect", pol, tmp_path / "o")):
        r = invoke(*argv)
        assert r.exit_code == 2 and "holds pickled Python objects" in r.output and "--trust-pickle" in r.output
        assert not marker.exists()
    with pytest.raises(MetaalError, match="pickled Python objects"):
        load_policy(pol)
    assert not marker.exists()
    # without a recorded checksum (a hand-made policy) the same
    del meta["scorer"]["sha256"]
    (pol / "metaal-policy.json").write_text(json.dumps(meta))
    with pytest.raises(MetaalError, match="pickled Python objects"):
        load_policy(pol)
    assert not marker.exists()


def test_trusted_d3rlpy_model_gives_the_same_scores(made, tmp_path):
    """--trust-pickle has a use: a policy with only d3rlpy's model.d3 loads and scores like the original."""
    pol = _copy(made["bc"], tmp_path / "pol")
    (pol / "scorer.pt").unlink()
    with pytest.raises(MetaalError, match="--trust-pickle"):
        load_policy(pol)
    trusted, original = load_policy(pol, trust_pickle=True), load_policy(made["bc"])
    rng = np.random.default_rng(0)
    feats, ctx = rng.random((6, len(original.meta["schema"]["features"]))), rng.random(len(original.meta["schema"]["context"]))
    np.testing.assert_allclose(trusted.score(feats, ctx), original.score(feats, ctx), rtol=1e-6)
    r = invoke("inspect", pol, "--trust-pickle")
    assert r.exit_code == 0 and "taken from d3rlpy's model.d3" in r.output, r.output


def test_store_never_unpickles(made, tmp_path):
    """Store metadata is JSON; an array that declares a pickle codec, or v2 metadata, is refused unread."""
    from metaal.store import read_trajectories

    marker = tmp_path / "PWNED"
    store = _copy(made["store"], tmp_path / "s.zarr")
    arr = store / "episodes" / "task"
    meta = json.loads((arr / "zarr.json").read_text())
    meta["codecs"] = [{"name": "pickle"}]
    meta["data_type"] = "object"
    (arr / "zarr.json").write_text(json.dumps(meta))
    for chunk in (p for p in arr.rglob("*") if p.is_file() and p.name != "zarr.json"):
        chunk.write_bytes(payload(marker))
    with pytest.raises(MetaalError, match="episodes/task"):
        read_trajectories(store)
    r = invoke("inspect", store)
    assert r.exit_code == 2 and "episodes/task" in r.output
    # zarr v2 metadata with numcodecs' pickle compressor in place of the v3 metadata
    store2 = _copy(made["store"], tmp_path / "s2.zarr")
    arr2 = store2 / "steps" / "action"
    (arr2 / "zarr.json").unlink()
    (arr2 / ".zarray").write_text(json.dumps({"zarr_format": 2, "shape": [32], "chunks": [32], "dtype": "|O",
                                             "compressor": {"id": "pickle"}, "filters": None, "fill_value": None,
                                             "order": "C"}))
    (arr2 / "0").write_bytes(payload(marker))
    with pytest.raises(MetaalError, match="steps/action"):
        read_trajectories(store2)
    assert not marker.exists()


def test_no_unguarded_unpickling_in_the_package():
    """Static guard: torch.load is weights-only except behind trust_pickle; numpy never allows pickles;
    pickle itself is imported only by the CIFAR-10 loader (torchvision's own format)."""
    trusted_torch_load = {("metaal/policy/artefact.py", "_load_weights")}
    for path in sorted((ROOT / "metaal").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        tree = ast.parse(path.read_text())
        owner = {}  # call -> name of the innermost function around it
        for func in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]:
            for node in ast.walk(func):
                owner[id(node)] = func.name  # inner functions are walked later and win
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
            if name == "torch.load" and kw.get("weights_only") != "True":
                assert (rel, owner.get(id(node))) in trusted_torch_load, f"{rel}: {ast.unparse(node)}"
            if name == "np.load":
                assert kw.get("allow_pickle") == "False", f"{rel}: {ast.unparse(node)}"
        imports = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names}
        imports |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        if {"pickle", "dill", "cloudpickle", "joblib"} & imports:
            assert rel == "metaal/tasks/sources.py", rel
