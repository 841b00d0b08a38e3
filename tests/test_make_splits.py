"""The committed task split and the seeded rule in scripts/make_splits.py that wrote it."""

from __future__ import annotations

import numpy as np
import pytest
from _tiny import load_script
from click.testing import CliRunner

from metaal.cli import cli
from metaal.tasks import load_task
from metaal.tasks.splits import GROUPS, default_splits_path, load_splits


@pytest.fixture(scope="module")
def rule():
    return load_script("make_splits")


@pytest.fixture(scope="module")
def committed():
    return load_splits()


def test_rerunning_the_rule_reproduces_the_committed_file_byte_for_byte(rule):
    assert rule.build() == default_splits_path().read_text(encoding="utf-8")


def test_groups_are_disjoint_and_folds_partition_the_file(committed):
    tasks = committed.tasks()
    assert len(tasks) == len(set(tasks))
    in_folds = [t for f in committed.folds for t in f]
    assert sorted(in_folds) == sorted(tasks) and len(committed.folds) == 5
    assert not set(committed.excluded) & set(tasks)
    for g in GROUPS:
        assert committed.suite(g) == committed.groups[g]


def test_twins_share_group_and_fold(rule, committed):
    """Recomputed from the script's BASES, not from the file's [twins] table that check() reads."""
    units: dict[str, list[str]] = {}
    for t in committed.tasks():
        units.setdefault(rule.base_of(t), []).append(t)
    for members in units.values():
        assert len({(committed.group_of(t), committed.fold_of(t)) for t in members}) == 1, members
    assert {"sklearn:digits", "sklearn:digits_image", "keel:optdigits", "sklearn:breast_cancer"} <= set(
        committed.groups["heldout"])
    ecoli = [t for t in committed.tasks() if t.startswith("keel:ecoli")]
    assert len(ecoli) == 19 and len({committed.fold_of(t) for t in ecoli}) == 1
    assert committed.twins["digits"] == ["sklearn:digits", "sklearn:digits_image", "keel:optdigits"]


def test_every_task_of_the_file_loads_and_fits_its_group(committed):
    """Held-out and tuning tasks fit the benchmark protocol (initial 10 + budget 150 in the pool,
    every class in test); sources fit a generation round."""
    protocol = committed.rule["protocol"]
    assert len(committed.groups["heldout"]) >= 20
    for t in committed.tasks():
        need = protocol["initial"] + protocol["budget"] if committed.group_of(t) != "sources" else 20
        task = load_task(t, seed=1, min_pool=need)
        assert len(np.unique(task.y[task.test])) == task.n_classes, t


def _stats(rule, rows):
    return {spec: rule.Stats(spec, *numbers) for spec, *numbers in rows}


def test_the_rule_on_hand_made_tasks(rule):
    """Forced held-out units, big families to sources, too-small twins excluded, duplicates excluded."""
    big = (1000, 2, 1.2, 600, 400)
    rows = [
        ("sklearn:digits", 1797, 10, 1.05, 1079, 174), ("sklearn:digits_image", 1797, 10, 1.05, 1079, 174),
        ("keel:optdigits", 5620, 10, 1.0, 3372, 554), ("sklearn:breast_cancer", 569, 2, 1.7, 341, 212),
        ("keel:wdbc", 569, 2, 1.7, 341, 212),
        *((f"keel:ecoli{i}", *big) for i in range(5)),  # 5 binarisations of one base: sources only
        ("keel:heart", *big), ("keel:cleveland-0_vs_4", 173, 2, 12.6, 104, 13),
        *((f"keel:single{i}", 300 + 100 * i, 2 + i % 3, 1.0 + i, 180 + 60 * i, 20) for i in range(12)),
        ("keel:tiny", 60, 2, 1.0, 36, 2),  # too small even as a source
    ]
    stats = _stats(rule, rows)
    split = rule.make_splits(stats, seed=1)
    group = {t: g for g, ts in split["groups"].items() for t in ts}
    assert {group[t] for t in ("sklearn:digits", "sklearn:digits_image", "keel:optdigits", "sklearn:breast_cancer")} == {
        "heldout"}
    assert "keel:wdbc" in split["excluded"] and "keel:wdbc" not in group
    assert {group[f"keel:ecoli{i}"] for i in range(5)} == {"sources"}
    assert "keel:tiny" in split["excluded"]
    if group["keel:heart"] != "sources":  # a too-small twin of a tuning/held-out task is excluded
        assert "keel:cleveland-0_vs_4" in split["excluded"]
    else:
        assert group["keel:cleveland-0_vs_4"] == "sources"
    fold = {t: k for k, f in enumerate(split["folds"]) for t in f}
    assert sorted(fold) == sorted(group)
    assert len({fold[t] for t in ("sklearn:digits", "sklearn:digits_image", "keel:optdigits")}) == 1
    assert len({fold[f"keel:ecoli{i}"] for i in range(5)}) == 1
    assert rule.make_splits(stats, seed=1) == split  # seeded
    assert any(rule.make_splits(stats, seed=s)["groups"] != split["groups"] for s in range(2, 8))


def test_datasets_lists_a_suite_with_group_and_fold(committed):
    r = CliRunner().invoke(cli, ["datasets", "--suite", "heldout"])
    assert r.exit_code == 0, r.output
    rows = [line.split() for line in r.output.splitlines()[1:]]
    assert [row[0] for row in rows] == committed.groups["heldout"]
    assert all(row[-2] == "heldout" and int(row[-1]) == committed.fold_of(row[0]) for row in rows)
    r = CliRunner().invoke(cli, ["datasets", "--suite", "fold:9"])
    assert r.exit_code == 2 and r.output.startswith("error: unknown suite 'fold:9'")
