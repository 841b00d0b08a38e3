"""The task-split file: loading, the rules check() enforces, and suites."""

from __future__ import annotations

import pytest

from metaal.errors import MetaalError
from metaal.tasks.splits import TaskSplits, load_splits

GOOD = """
[rule]
seed = 1
description = "by hand, for a test"
[groups]
sources = ["keel:a", "keel:b"]
tuning = ["keel:c"]
heldout = ["sklearn:digits", "keel:optdigits"]
[folds]
0 = ["keel:a", "sklearn:digits", "keel:optdigits"]
1 = ["keel:b", "keel:c"]
[twins]
digits = ["sklearn:digits", "keel:optdigits"]
[excluded]
"keel:tiny" = "too small"
"""


def write(tmp_path, text):
    path = tmp_path / "splits.toml"
    path.write_text(text)
    return path


def test_suites_resolve_groups_and_folds(tmp_path):
    s = load_splits(write(tmp_path, GOOD))
    assert s.suite("sources") == ["keel:a", "keel:b"]
    assert s.suite("heldout") == ["sklearn:digits", "keel:optdigits"]
    assert s.suite("fold:1") == ["keel:b", "keel:c"]
    assert s.rule["seed"] == 1 and s.excluded == {"keel:tiny": "too small"}
    assert s.group_of("keel:c") == "tuning" and s.fold_of("keel:optdigits") == 0
    for bad in ("fold:2", "fold:x", "train"):
        with pytest.raises(MetaalError, match=f"unknown suite '{bad}'"):
            s.suite(bad)


@pytest.mark.parametrize("old, new, message", [
    ('tuning = ["keel:c"]', 'tuning = ["keel:c", "keel:a"]', "keel:a is in both sources and tuning"),
    ('tuning = ["keel:c"]', 'tuning = []', "group 'tuning' is empty"),
    ('1 = ["keel:b", "keel:c"]', '1 = ["keel:b", "keel:c", "keel:a"]', "keel:a is in folds 0 and 1"),
    ('1 = ["keel:b", "keel:c"]', '1 = ["keel:b"]', "keel:c is in no fold"),
    ('1 = ["keel:b", "keel:c"]', '1 = ["keel:b", "keel:c", "keel:zz"]', "keel:zz is in fold 1 but in no group"),
    ('0 = ["keel:a", "sklearn:digits", "keel:optdigits"]\n1 = ["keel:b", "keel:c"]',
     '0 = ["keel:a", "sklearn:digits"]\n1 = ["keel:b", "keel:c", "keel:optdigits"]', "twins 'digits' are split"),
    ('heldout = ["sklearn:digits", "keel:optdigits"]', 'heldout = ["sklearn:digits"]\nextra = ["keel:optdigits"]',
     "unknown group"),
    ('"keel:tiny" = "too small"', '"keel:c" = "too small"', "keel:c is both excluded and in tuning"),
    ("[folds]\n0 =", "[folds]\n5 =", "folds must be numbered 0 .. k-1"),
    ("[twins]", "[twin]", "unknown table"),
    ("seed = 1", "seed = ", "cannot read"),
])
def test_broken_split_files_are_one_line_errors(tmp_path, old, new, message):
    assert old in GOOD
    with pytest.raises(MetaalError, match=message) as err:
        load_splits(write(tmp_path, GOOD.replace(old, new)))
    assert "\n" not in str(err.value)


def test_twins_in_different_groups_fail_the_check():
    s = TaskSplits(groups={"sources": ["a"], "tuning": ["b"], "heldout": ["c"]}, folds=[["a", "b", "c"]],
                   twins={"x": ["a", "c"]}, rule={})
    with pytest.raises(MetaalError, match="twins 'x' are split .a in sources fold 0, c in heldout fold 0."):
        s.check()


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(MetaalError, match="not found"):
        load_splits(tmp_path / "nope.toml")


def test_shared_data_names_the_same_task_and_twins(tmp_path):
    s = load_splits(write(tmp_path, GOOD))
    assert s.shared_data(["keel:optdigits", "keel:a"], ["sklearn:digits", "keel:a", "keel:b"]) == [
        ("keel:optdigits", "sklearn:digits"), ("keel:a", "keel:a")]
    assert s.shared_data(["keel:a"], ["keel:b"]) == []
