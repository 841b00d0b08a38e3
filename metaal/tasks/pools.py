"""Your own data for `metaal select`: a pool of unlabelled items (``npz:PATH``, ``csv:PATH``, a folder of images,
an array or any task spec) and the labels given so far (a CSV of ``index,label``).  Files are read by the same
readers as the task loaders (``metaal.tasks.sources``)."""

from __future__ import annotations

import csv as _csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metaal.errors import MetaalError
from metaal.tasks.sources import read_csv_rows, read_npz

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _label_key(v):
    if isinstance(v, str) and re.fullmatch(r"[+-]?\d+", v.strip()):
        return (0, int(v), v)
    if isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0, str(v))


def encode_labels(values) -> tuple[list, np.ndarray]:
    """(classes, class id of each value): numbers (and integer-looking strings) in numeric order, then the rest as text."""
    values = list(values)
    classes = sorted(dict.fromkeys(values), key=_label_key)
    code = {c: i for i, c in enumerate(classes)}
    return classes, np.asarray([code[v] for v in values], dtype=np.int64)


def check_labelled(labelled, n_pool: int, where: str) -> np.ndarray:
    """Row indices of the labelled items (from indices or a boolean mask), checked against the pool."""
    arr = np.asarray(labelled)
    if arr.dtype == bool:
        if arr.shape != (n_pool,):
            raise MetaalError(f"{where}: a labelled mask must have one entry per pool item ({n_pool}), got shape {arr.shape}")
        return np.flatnonzero(arr)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise MetaalError(f"{where}: labelled items must be integer pool indices or a boolean mask")
    arr = arr.astype(np.int64)
    bad = arr[(arr < 0) | (arr >= n_pool)]
    if len(bad):
        raise MetaalError(f"{where}: labels reference {len(bad)} item(s) that are not in the pool "
                          f"(the pool has {n_pool} items, index 0..{n_pool - 1}): {few(bad)}")
    uniq, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        raise MetaalError(f"{where}: duplicate index {few(uniq[counts > 1])} in the labelled items")
    return arr


def few(values, k: int = 5) -> str:
    values = list(values)
    return ", ".join(str(v) for v in values[:k]) + (f" … ({len(values)} in all)" if len(values) > k else "")


def read_labels_csv(path: str | Path, pool_paths: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Read ``index,label`` rows: (pool indices, labels as written).

    For a folder of images the index may also be the file's path relative to the folder.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise MetaalError(f"labels file {path} not found")
    try:
        with open(file, newline="") as fh:
            rows = list(_csv.reader(fh))
    except (OSError, UnicodeDecodeError, _csv.Error) as exc:
        raise MetaalError(f"{path}: cannot read labels ({exc})") from None
    rows = [(i, r) for i, r in enumerate(rows, start=1) if any(c.strip() for c in r)]
    if not rows:
        raise MetaalError(f"{path}: empty labels file (expected a header index,label)")
    header = [h.strip().lower() for h in rows[0][1]]
    if "index" not in header or "label" not in header:
        raise MetaalError(f"{path}: needs columns index,label (found: {', '.join(header) or 'none'})")
    ji, jl = header.index("index"), header.index("label")
    by_path = {p: k for k, p in enumerate(pool_paths)} if pool_paths is not None else {}
    idx, labels, lines = [], [], []
    for line, r in rows[1:]:
        if len(r) != len(header):
            raise MetaalError(f"{path}: line {line} has {len(r)} fields, header has {len(header)}")
        key, label = r[ji].strip(), r[jl].strip()
        if label == "":
            raise MetaalError(f"{path}: line {line}: empty label for index {key!r}")
        if key in by_path:
            idx.append(by_path[key])
        else:
            try:
                idx.append(int(key))
                if not -(2**62) < idx[-1] < 2**62:  # beyond any pool, and beyond int64
                    raise ValueError
            except ValueError:
                what = "an item number or a file of the folder" if pool_paths is not None else "an integer item number"
                raise MetaalError(f"{path}: line {line}: index {key!r} is not {what}") from None
        labels.append(label)
        lines.append(line)
    seen: dict[int, int] = {}
    for i, line in zip(idx, lines):
        if i in seen:
            raise MetaalError(f"{path}: duplicate index {i} (lines {seen[i]} and {line})")
        seen[i] = line
    return np.asarray(idx, dtype=np.int64), labels


@dataclass
class Pool:
    """Unlabelled data: raw ``X`` (N, D) or (N, C, H, W), any numeric dtype; ``paths`` for image folders."""

    spec: str
    X: np.ndarray
    paths: list[str] | None = None

    def __len__(self) -> int:
        return len(self.X)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.X.shape[1:])


def load_pool(data, *, label_column: str = "label", data_root: str | None = None, download: bool = False) -> Pool:
    """``npz:PATH`` (array ``X``; ``y`` is ignored), ``csv:PATH`` (numeric columns; ``label_column`` is dropped if
    present), a folder of images (index = position in the sorted relative paths), an array, or any task spec
    (``sklearn:digits``…: its labels are ignored)."""
    if isinstance(data, np.ndarray):
        return Pool("array", _check_pool_array("array", data))
    spec = str(data).strip()
    prefix, _, rest = spec.partition(":")
    if prefix == "npz":
        return Pool(spec, _check_pool_array(spec, _read_npz_X(spec, rest)))
    if prefix == "csv":
        return Pool(spec, _check_pool_array(spec, _read_csv_X(spec, rest, label_column)))
    if Path(spec).expanduser().is_dir():
        X, paths = load_image_folder(spec)
        return Pool(spec, X, paths)
    if prefix in ("sklearn", "synthetic", "torchvision"):
        from metaal.tasks import load_dataset

        return Pool(spec, load_dataset(spec, data_root=data_root, download=download).X)
    if Path(spec).expanduser().is_file():
        raise MetaalError(f"--data {spec}: name the format, as in npz:{spec} or csv:{spec}")
    raise MetaalError(f"--data {spec}: expected npz:PATH, csv:PATH, a folder of images or a task spec (see `metaal datasets`)")


def _read_npz_X(spec: str, path: str) -> np.ndarray:
    return read_npz(spec, path, ("X",))[0]


def _read_csv_X(spec: str, path: str, label_column: str) -> np.ndarray:
    header, rows = read_csv_rows(spec, path)
    rows = [header, *rows]
    keep = [k for k, h in enumerate(header) if h != label_column]
    if not keep:
        raise MetaalError(f"{spec}: no feature columns besides '{label_column}'")
    X = np.empty((len(rows) - 1, len(keep)), dtype=np.float32)
    for i, r in enumerate(rows[1:]):
        if len(r) != len(header):
            raise MetaalError(f"{spec}: data row {i} (line {i + 2}) has {len(r)} fields, header has {len(header)}")
        try:
            X[i] = [float(r[k]) for k in keep]
        except ValueError as exc:
            raise MetaalError(f"{spec}: data row {i}: non-numeric feature value ({exc})") from None
    return X


def _check_pool_array(spec: str, X) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim == 3:  # (N, H, W) greyscale images
        X = X[:, None]
    if X.ndim not in (2, 4):
        raise MetaalError(f"{spec}: X must have shape (N, D) or (N, C, H, W), got {X.shape}")
    if len(X) == 0:
        raise MetaalError(f"{spec}: the pool is empty")
    if X.dtype == bool or not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise MetaalError(f"{spec}: X must be numeric, got dtype {X.dtype}")
    return X


def load_image_folder(folder: str | Path) -> tuple[np.ndarray, list[str]]:
    """Every image under ``folder`` (recursively; hidden files skipped), sorted by relative path.

    Returns uint8 (N, 1, H, W) when every image is greyscale, else (N, 3, H, W), and the relative
    paths (``/``-separated).  All images must have the same size.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(folder).expanduser()
    files = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise MetaalError(f"{folder}: no images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)}) in this folder")
    images, size = [], None
    for rel in files:
        try:
            with Image.open(root / rel) as im:
                im.load()
                grey = im.mode in ("1", "L", "LA", "I", "I;16", "F")
                arr = np.asarray(im.convert("L" if grey else "RGB"))
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise MetaalError(f"{root / rel}: cannot read image ({type(exc).__name__}: {exc})") from None
        if size is None:
            size, first = arr.shape[:2], rel
        elif arr.shape[:2] != size:
            raise MetaalError(f"{folder}: images differ in size ({first} is {size[1]}x{size[0]}, {rel} is "
                              f"{arr.shape[1]}x{arr.shape[0]}); resize them to one size first")
        images.append(arr)
    if all(a.ndim == 2 for a in images):
        X = np.stack(images)[:, None]
    else:
        X = np.stack([np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a for a in images]).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(X, dtype=np.uint8), files
