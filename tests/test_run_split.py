"""`metaal run` on the committed task split: the written rule that picks the default study's sources and
targets, the study it builds, pool caps and task folds in the study file, and a folded study end to end."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from metaal.cli import cli
from metaal.errors import MetaalError
from metaal.tasks.splits import TaskSplits
from metaal.tasks.subsets import SubsetStats, study_order, study_subset


def _stats(spec, items=300, classes=2, imbalance=1.0, pool=180, smallest=50):
    return SubsetStats(spec, items, classes, imbalance, pool, smallest)


def _split(sources, heldout, twins=None):
    return TaskSplits(groups={"sources": sources, "tuning": ["t:x"], "heldout": heldout},
                      folds=[sources + heldout + ["t:x"]], twins=twins or {}, rule={})


def test_the_rule_keeps_one_task_per_twin_unit_puts_first_in_front_and_drops_what_does_not_fit():
    src = ["k:a1", "k:a2", "k:a3", "k:b", "k:small", "s:other"]
    split = _split(src, ["h:d", "h:dd", "h:e"], twins={"a": ["k:a1", "k:a2", "k:a3"], "d": ["h:d", "h:dd"]})
    stats = {t: _stats(t) for t in src + ["h:d", "h:dd", "h:e"]}
    stats["k:small"] = _stats("k:small", pool=40)
    order = study_order(split, "sources", prefix="k:", min_pool=70, stats=stats)
    assert len(order) == 2 and order[1:] != [] and sum(t.startswith("k:a") for t in order) == 1 and "k:b" in order
    assert order == study_order(split, "sources", prefix="k:", min_pool=70, stats=stats)  # deterministic
    held = study_order(split, "heldout", first=["h:dd"], stats=stats)
    assert held == ["h:dd", "h:e"]  # h:d is h:dd's twin: used once
    with pytest.raises(MetaalError, match="not in the task split's group 'heldout'"):
        study_order(split, "heldout", first=["k:b"], stats=stats)
    with pytest.raises(MetaalError, match="the rule keeps 2"):
        study_subset(split, "sources", 3, prefix="k:", min_pool=70, stats=stats)


def test_the_rule_deals_round_robin_over_the_strata():
    """Three tasks in one stratum and one in each of two others: the first three cover the three strata."""
    names = ["k:b1", "k:b2", "k:b3", "k:many", "k:imb"]
    stats = {t: _stats(t) for t in names}
    stats["k:many"] = _stats("k:many", classes=7)
    stats["k:imb"] = _stats("k:imb", imbalance=20.0)
    order = study_order(_split(names, ["h:e"]), "sources", stats=stats)
    assert sorted(order) == sorted(names)
    assert {stats[t].stratum() for t in order[:3]} == {(0, 0, 0), (0, 2, 0), (0, 0, 2)}
    # another seed gives another order of the same tasks
    assert any(study_order(_split(names, ["h:e"]), "sources", stats=stats, seed=s) != order for s in range(1, 6))


def test_the_split_study_lists_are_what_the_rule_gives():
    """SPLIT_SOURCES and SPLIT_TARGETS are recomputed from the committed split and the tasks' sizes."""
    from metaal.run import SOURCE_RULE, SPLIT_SOURCES, SPLIT_TARGETS, TARGET_RULE
    from metaal.tasks.splits import load_splits

    splits = load_splits()
    assert study_subset(splits, "sources", len(SPLIT_SOURCES), **SOURCE_RULE) == SPLIT_SOURCES
    assert study_subset(splits, "heldout", len(SPLIT_TARGETS), **TARGET_RULE) == SPLIT_TARGETS
    assert splits.shared_data(SPLIT_SOURCES, SPLIT_TARGETS) == []


def test_split_study_keeps_the_recipe_and_changes_only_tasks_pools_seeds_and_baselines():
    from dataclasses import replace

    from metaal.run import (
        QUICK_SOURCES,
        QUICK_TARGETS,
        SOURCE_MAX_POOL,
        SPLIT_SOURCES,
        SPLIT_TARGETS,
        TARGET_MAX_POOL,
        embedded_study,
        split_study,
    )

    for quick in (False, True):
        emb, sp = embedded_study(quick), split_study(quick)
        sp.check()
        n_s, n_t = (QUICK_SOURCES, QUICK_TARGETS) if quick else (len(SPLIT_SOURCES), len(SPLIT_TARGETS))
        assert sp.sources == sp.generate.tasks == SPLIT_SOURCES[:n_s]
        assert sp.targets == sp.evaluate.tasks == SPLIT_TARGETS[:n_t]
        assert {"sklearn:digits", "sklearn:breast_cancer"} <= set(sp.targets)
        assert sp.generate.split.max_pool == SOURCE_MAX_POOL and sp.evaluate.split.max_pool == TARGET_MAX_POOL
        assert (sp.distill, sp.extra_initial) == (emb.distill, emb.extra_initial)
        assert replace(sp.generate, tasks=emb.generate.tasks, split=emb.generate.split,
                       episodes=emb.generate.episodes) == emb.generate
        assert replace(sp.evaluate, tasks=emb.evaluate.tasks, split=emb.evaluate.split, seeds=emb.evaluate.seeds,
                       strategies=emb.evaluate.strategies) == emb.evaluate
    assert {"typiclust", "probcover", "oracle"} <= set(split_study().evaluate.strategies)


def _write(tmp_path, text):
    path = tmp_path / "study.toml"
    path.write_text(text)
    return str(path)


def test_study_file_pool_caps_and_folds(tmp_path):
    from metaal.run import fold_tasks, study_from_file
    from metaal.tasks.splits import load_splits

    study = study_from_file(_write(tmp_path, "[generate]\nmax_pool = 300\n[evaluate]\nmax_pool = 500\n"))
    assert (study.generate.split.max_pool, study.evaluate.split.max_pool) == (300, 500)
    study = study_from_file(_write(tmp_path, "[generate]\nmax_pool = 0\n[evaluate]\nmax_pool = 0\n"))
    assert (study.generate.split.max_pool, study.evaluate.split.max_pool) == (None, None)
    study = study_from_file(_write(tmp_path, '[run]\nfolds = "all"\n'))
    splits = load_splits()
    assert study.folds == list(range(len(splits.folds)))
    targets = [t for k in study.folds for t in fold_tasks(k)[1]]
    assert sorted(targets) == sorted(splits.suite("heldout"))  # every held-out task, once
    for k in study.folds:
        sources, _ = fold_tasks(k)
        assert not set(sources) & set(splits.folds[k]) and set(sources) <= set(splits.suite("sources"))
    assert study_from_file(_write(tmp_path, "[run]\nfolds = [1, 3]\n")).folds == [1, 3]


@pytest.mark.parametrize("text, message", [
    ("[generate]\nmax_pool = -1\n", "max_pool must be a whole number (0: no cap)"),
    ('[evaluate]\nmax_pool = "big"\n', "max_pool must be a whole number (0: no cap)"),
    ("[run]\nfolds = [0, 9]\n", "folds must be"),
    ("[run]\nfolds = [0, 0]\n", "folds must be"),
    ('[run]\nfolds = "all"\nsources = ["sklearn:iris"]\n', "give either folds or sources/targets"),
    ('[run]\nbackend = "slurm"\n', "backend must be"),
])
def test_bad_study_file_is_one_line_and_exit_2(tmp_path, text, message):
    r = CliRunner().invoke(cli, ["run", "--config", _write(tmp_path, text), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2 and message in r.output and r.output.startswith("error:"), r.output
    assert not (tmp_path / "out").exists()


TINY = """
[generate]
episodes = 2
candidates = 24
initial = 4
budget = 8
query_size = 4
train_steps = 5
oracle_margin_pool = 1
extra_initial = []
[distill]
steps = 20
batch_size = 8
[evaluate]
strategies = ["random", "margin", "entropy"]
seeds = 2
initial = 6
budget = 12
query_size = 6
train_steps = 5
"""


def test_folded_study_runs_each_fold_and_pools_the_statistics(tmp_path, monkeypatch):
    """Two folds on tiny stand-in tasks (the real folds take hours): one store, policy and results per fold,
    then one across-task table over both folds' targets, printed and written."""
    import metaal.run as run

    folds = {0: (["sklearn:iris"], ["sklearn:wine", "sklearn:breast_cancer"]), 1: (["sklearn:wine"], ["sklearn:iris"])}
    monkeypatch.setattr(run, "fold_tasks", folds.get)
    out = tmp_path / "full"
    r = CliRunner().invoke(cli, ["run", "--config", _write(tmp_path, '[run]\nfolds = [0, 1]\nworkers = 1\n' + TINY),
                                 "--quiet", "--out", str(out)])
    assert r.exit_code == 0, r.output
    for k in (0, 1):
        assert (out / f"fold-{k}" / "store.zarr").is_dir() and (out / f"fold-{k}" / "policy" / "metaal-policy.json").is_file()
        res = json.loads((out / f"fold-{k}" / "results" / "summary.json").read_text())
        assert res["config"]["tasks"] == folds[k][1]
    bench = json.loads((out / "results" / "benchmark.json").read_text())
    assert bench["tasks"] == ["sklearn:wine", "sklearn:breast_cancer", "sklearn:iris"]
    assert bench["reference"] == "policy" and set(bench["mean_rank"]) == {"policy", "random", "margin", "entropy"}
    assert (out / "results" / "cd_diagram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "across tasks:" in r.output and "mean rank over tasks" in r.output and "Friedman p" in r.output


def test_the_default_study_is_the_written_out_split_study():
    from pathlib import Path

    from metaal.run import DEFAULT_SOURCES, DEFAULT_TARGETS, default_study, split_study, study_from_file

    path = Path(__file__).resolve().parents[1] / "scripts" / "configs" / "split_default.toml"
    written, study = study_from_file(str(path)), split_study()
    for part in ("sources", "targets", "workers", "generate", "distill", "evaluate", "extra_initial", "folds"):
        assert getattr(written, part) == getattr(study, part), part
    for quick in (False, True):  # `metaal run` without --config runs it
        assert default_study(quick) == split_study(quick) == study_from_file(None, quick=quick)
    assert (DEFAULT_SOURCES, DEFAULT_TARGETS) == (study.sources, study.targets)


def test_the_full_study_config_runs_every_fold_and_held_out_task_with_10_seeds():
    from pathlib import Path

    from metaal.run import fold_study, study_from_file
    from metaal.tasks.splits import load_splits

    study = study_from_file(str(Path(__file__).resolve().parents[1] / "scripts" / "configs" / "full-study.toml"))
    splits = load_splits()
    assert study.folds == list(range(len(splits.folds))) and study.evaluate.seeds >= 10
    folds = [fold_study(study, k) for k in study.folds]
    assert sorted(t for f in folds for t in f.targets) == sorted(splits.suite("heldout"))
    for f in folds:
        f.check()  # no source is a target's twin
        assert f.generate.tasks == f.sources and f.evaluate.tasks == f.targets
    assert {"typiclust", "probcover", "oracle"} <= set(study.evaluate.strategies)
