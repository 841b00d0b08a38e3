"""The policy shipped inside the package (metaal/policies/default): its files load, match the sha256 and the
feature schema they record, ship in the wheel, and were made by the commands SHIPPED.json records;
scripts/ship_policy.py writes them; ``policy`` (no DIR) resolves to them in select, rank_pool and transfer-eval."""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pytest
from _tiny import invoke, load_script, make_policy, make_store

from metaal.acquisition import features
from metaal.errors import MetaalError
from metaal.policy import artefact
from metaal.policy.artefact import (
    POLICY_FILE,
    SHIPPED_DIR,
    SHIPPED_FILE,
    SUPPORTED_VERSIONS,
    check_shipped,
    load_shipped_policy,
    read_meta,
)

ROOT = Path(__file__).resolve().parents[1]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------ the shipped files


def test_shipped_files_match_their_manifest_and_load():
    manifest = json.loads((SHIPPED_DIR / SHIPPED_FILE).read_text())
    shipped = sorted(p.name for p in SHIPPED_DIR.iterdir() if p.name != SHIPPED_FILE)
    assert sorted(manifest["files"]) == shipped  # every file is listed, and nothing else ships
    meta = read_meta(SHIPPED_DIR)
    assert shipped == sorted([POLICY_FILE, artefact.scorer_file_name(meta)])  # no d3rlpy pickle ships
    for name, info in manifest["files"].items():
        assert _sha(SHIPPED_DIR / name) == info["sha256"], name
        assert (SHIPPED_DIR / name).stat().st_size == info["bytes"], name
    assert sum((SHIPPED_DIR / n).stat().st_size for n in shipped) < 200_000  # tens of kilobytes
    assert check_shipped() == manifest
    policy = load_shipped_policy()
    assert policy.path == SHIPPED_DIR and policy.meta["scorer"]["sha256"] == manifest["files"]["scorer.pt"]["sha256"]


def test_shipped_schema_is_this_codes():
    meta = read_meta(SHIPPED_DIR)
    assert meta["format_version"] in SUPPORTED_VERSIONS
    assert meta["schema"] == features.schema()
    assert meta["scorer"]["n_features"] == len(features.FEATURE_NAMES)
    assert meta["scorer"]["n_context"] == len(features.CONTEXT_NAMES)


def test_shipped_commands_are_the_run_and_the_script_that_made_the_files():
    manifest = json.loads((SHIPPED_DIR / SHIPPED_FILE).read_text())
    meta = read_meta(SHIPPED_DIR)
    run, ship = manifest["commands"]
    assert run == meta["provenance"]["command"]  # the command that distilled these very files
    words = shlex.split(run)
    assert words[:2] == ["metaal", "run"] and "--quick" not in words and "--config" not in words  # the default study
    assert manifest["code"] == {"git_commit": meta["provenance"]["git_commit"], "git_dirty": False}
    ship_words = shlex.split(ship)
    assert ship_words[:2] == ["python", "scripts/ship_policy.py"]
    out = words[words.index("--out") + 1] if "--out" in words else "runs/default"
    assert ship_words[2] == out == manifest["run_dir"]  # the script shipped the directory that command wrote


def test_shipped_files_are_package_data_and_tracked_by_git():
    """The wheel and sdist carry them (pyproject's package-data globs), and a fresh clone has them."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["metaal"]
    for p in SHIPPED_DIR.iterdir():
        rel = p.relative_to(ROOT / "metaal")
        assert any(rel.match(g) for g in globs), f"{rel} is not package data"
    try:
        tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "metaal/policies/default"], capture_output=True,
                                 text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    assert sorted(Path(t).name for t in tracked) == sorted(p.name for p in SHIPPED_DIR.iterdir())


# ------------------------------------------------------------------------------------ resolving the name


def test_bare_policy_resolves_to_the_shipped_policy():
    from metaal.evaluate import EvalConfig, check_eval
    from metaal.registry import get_strategy, strategy_names

    assert "policy" in strategy_names()
    assert get_strategy("policy").path == SHIPPED_DIR and get_strategy("shipped").path == SHIPPED_DIR
    with pytest.raises(MetaalError, match="policy:DIR"):
        get_strategy("polcy")
    _, strategies = check_eval(EvalConfig(tasks=["sklearn:iris"], strategies=["policy"]), None, tasks=False)
    assert strategies["policy"].path == SHIPPED_DIR
    r = invoke("strategies")
    assert r.exit_code == 0
    names = [line.split()[0] for line in r.output.splitlines()]
    assert {"policy", "shipped", "policy:DIR"} <= set(names)


def test_policy_dir_option_takes_the_name_policy_and_shipped_stays_distinct(tiny_policy):
    from metaal.evaluate import EvalConfig, check_eval, run_identity

    config = EvalConfig(tasks=["sklearn:iris"], strategies=["policy", "shipped"], policy=str(tiny_policy))
    _, strategies = check_eval(config, None, tasks=False)
    assert strategies["policy"].path == tiny_policy and strategies["shipped"].path == SHIPPED_DIR
    assert run_identity(config, "sklearn:iris", "policy", 0) != run_identity(config, "sklearn:iris", "shipped", 0)


def test_run_identity_follows_the_shipped_policy(tiny_policy, tmp_path, monkeypatch):
    """A results directory reruns the shipped policy's runs when another policy ships."""
    from metaal.evaluate import EvalConfig, run_identity

    config = EvalConfig(tasks=["sklearn:iris"], strategies=["policy"])
    before = run_identity(config, "sklearn:iris", "policy", 0)
    other = tmp_path / "other"
    artefact.ship_policy(tiny_policy, other, ["metaal run --out x", "python scripts/ship_policy.py x"])
    monkeypatch.setattr(artefact, "SHIPPED_DIR", other)
    assert run_identity(config, "sklearn:iris", "policy", 0) != before


def test_default_study_ends_with_the_shipped_policy():
    from metaal.run import default_study, with_shipped

    for quick in (False, True):
        strategies = default_study(quick).evaluate.strategies
        assert strategies[-2:] == ["shipped", "oracle"], strategies
    assert with_shipped(["margin", "shipped"]) == ["margin", "shipped"]


def test_rank_pool_with_bare_policy_is_the_shipped_policy():
    from metaal.policy import load_policy
    from metaal.select import rank_pool

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(300, 4))
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    emb = rng.normal(size=(300, 8)).astype(np.float32)
    labelled = np.arange(12)
    labels = np.arange(12) % 4
    sel = rank_pool(proba, emb, labelled=labelled, labels=labels, n=10, strategy="policy")
    ref = rank_pool(proba, emb, labelled=labelled, labels=labels, n=10, strategy=load_policy(SHIPPED_DIR))
    assert sel.strategy == "policy" and len(sel.index) == 10 and not set(sel.index) & set(labelled)
    np.testing.assert_array_equal(sel.index, ref.index)


def _pool(tmp_path: Path) -> tuple[Path, Path]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    np.savez(tmp_path / "pool.npz", X=X[:300].astype(np.float32))
    (tmp_path / "labels.csv").write_text("index,label\n" + "".join(f"{i},{y[i]}\n" for i in range(30)))
    return tmp_path / "pool.npz", tmp_path / "labels.csv"


def test_select_with_bare_policy_needs_no_policy_directory(tmp_path, monkeypatch):
    pool, labels = _pool(tmp_path)
    monkeypatch.chdir(tmp_path)  # no policy directory anywhere near
    r = invoke("select", "--data", f"npz:{pool}", "--labels", labels, "--strategy", "policy", "--n", "20",
               "--epochs-steps", "30", "--out", "next.csv")
    assert r.exit_code == 0, r.output
    rows = (tmp_path / "next.csv").read_text().splitlines()
    assert rows[0].startswith("index,score,rank") and len(rows) == 21
    picked = {int(line.split(",")[0]) for line in rows[1:]}
    assert len(picked) == 20 and not picked & set(range(30))
    assert json.loads((tmp_path / "next.csv.json").read_text())["strategy"] == "policy"


def test_altered_shipped_file_is_a_one_line_error(tmp_path, monkeypatch):
    copy = tmp_path / "default"
    shutil.copytree(SHIPPED_DIR, copy)
    weights = copy / "scorer.pt"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(MetaalError, match="does not match the sha256 in SHIPPED.json"):
        check_shipped(copy)
    monkeypatch.setattr(artefact, "SHIPPED_DIR", copy)
    pool, labels = _pool(tmp_path)
    r = invoke("select", "--data", f"npz:{pool}", "--labels", labels, "--strategy", "policy", "--n", "5",
               "--out", tmp_path / "next.csv")
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "scorer.pt" in lines[0] and "sha256" in lines[0], r.output
    assert not (tmp_path / "next.csv").exists()
    (copy / "scorer.pt").unlink()
    with pytest.raises(MetaalError, match="missing"):
        check_shipped(copy)
    (copy / SHIPPED_FILE).unlink()
    with pytest.raises(MetaalError, match="no policy ships"):
        check_shipped(copy)


# ------------------------------------------------------------------------------------ scripts/ship_policy.py


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny-policy")
    return make_policy(make_store(root / "store.zarr"), root / "policy")


TINY_STUDY = ('[run]\nsources = ["sklearn:iris"]\ntargets = ["sklearn:wine"]\nworkers = 1\n'
              '[generate]\nepisodes = 2\ncandidates = 24\ninitial = 4\nbudget = 8\nquery_size = 4\ntrain_steps = 5\n'
              'oracle_margin_pool = 1\nextra_initial = []\n[distill]\nsteps = 20\nbatch_size = 8\n'
              '[evaluate]\nstrategies = ["random", "margin", "shipped"]\nseeds = 1\ninitial = 6\nbudget = 12\n'
              'query_size = 6\ntrain_steps = 5\n')


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, list[str]]:
    """A `metaal run` directory in seconds (a study file of tiny settings), and the command that made it."""
    root = tmp_path_factory.mktemp("tiny-run")
    (root / "tiny.toml").write_text(TINY_STUDY)
    args = ["run", "--config", str(root / "tiny.toml"), "--quiet", "--out", str(root / "run")]
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    return root / "run", ["metaal", *args]


def test_metaal_run_evaluates_its_own_policy_beside_the_shipped_one(tiny_run):
    run_dir, _ = tiny_run
    summary = json.loads((run_dir / "results" / "summary.json").read_text())
    assert {r["strategy"] for r in summary["runs"]} == {"random", "margin", "shipped", "policy"}
    bench = json.loads((run_dir / "results" / "benchmark.json").read_text())
    assert bench["reference"] == "policy"  # the statistics stay about the study's own policy


def test_ship_policy_script_writes_the_files_and_the_commands(tiny_run, tmp_path, capsys):
    run_dir, command = tiny_run
    ship = load_script("ship_policy")
    dest = tmp_path / "pkg" / "default"
    assert ship.main([str(run_dir), "--dest", str(dest)]) == 0
    manifest = check_shipped(dest)
    assert manifest["commands"] == [shlex.join(command),
                                    shlex.join(["python", "scripts/ship_policy.py", str(run_dir), "--dest", str(dest)])]
    assert manifest["run_dir"] == str(run_dir.resolve())
    for name in (POLICY_FILE, "scorer.pt"):
        assert (dest / name).read_bytes() == (run_dir / "policy" / name).read_bytes()
        assert manifest["files"][name]["sha256"] == _sha(run_dir / "policy" / name)
    assert load_shipped_policy(dest).meta["schema"] == features.schema()
    out = capsys.readouterr().out
    assert manifest["files"]["scorer.pt"]["sha256"] in out and "regenerate with: metaal run --config" in out
    # shipping again replaces the set whole and leaves no staging directory behind
    (dest / "stray.txt").write_text("x")
    assert ship.main([str(run_dir), "--dest", str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == sorted([POLICY_FILE, "scorer.pt", SHIPPED_FILE])
    assert [p.name for p in dest.parent.iterdir()] == ["default"]


def _refused(ship, capsys, args, match: str, dest: Path) -> None:
    assert ship.main([*map(str, args), "--dest", str(dest)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and match in err[0], err
    assert not dest.exists()


def test_ship_policy_script_validates_its_input(tiny_run, tiny_policy, tmp_path, capsys):
    ship = load_script("ship_policy")
    run_dir, _ = tiny_run
    dest = tmp_path / "pkg" / "default"
    _refused(ship, capsys, [tmp_path / "nope"], "no such run directory", dest)
    _refused(ship, capsys, [tmp_path], "no policy/ inside", dest)
    # a policy `metaal distill` made: no single command regenerates it
    distilled = tmp_path / "distilled"
    shutil.copytree(tiny_policy, distilled / "policy")
    _refused(ship, capsys, [distilled], "not `metaal run`", dest)
    # a --quick run's policy
    quick = tmp_path / "quick"
    shutil.copytree(run_dir / "policy", quick / "policy")
    meta = json.loads((quick / "policy" / POLICY_FILE).read_text())
    meta["provenance"]["command"] = f"metaal run --quick --out {quick}"
    (quick / "policy" / POLICY_FILE).write_text(json.dumps(meta))
    _refused(ship, capsys, [quick], "--quick", dest)
    # a policy of another feature schema, and weights that do not match their recorded sha256
    schema = tmp_path / "schema"
    shutil.copytree(run_dir / "policy", schema / "policy")
    meta = json.loads((schema / "policy" / POLICY_FILE).read_text())
    meta["schema"]["version"] = 99
    (schema / "policy" / POLICY_FILE).write_text(json.dumps(meta))
    _refused(ship, capsys, [schema], "feature schema", dest)
    altered = tmp_path / "altered"
    shutil.copytree(run_dir / "policy", altered / "policy")
    (altered / "policy" / "scorer.pt").write_bytes(b"not weights")
    _refused(ship, capsys, [altered], "sha256", dest)
    # a refused input leaves an existing set as it was
    assert ship.main([str(run_dir), "--dest", str(dest)]) == 0
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    assert ship.main([str(altered), "--dest", str(dest)]) == 2
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before
