"""Tiny data sets written in the exact on-disk formats that metaal's loaders read.

* MNIST family: torchvision (0.29) reads ``ROOT/<ClassName>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
  (uncompressed IDX files: big-endian magic ``0x0000 <type=0x08> <ndim>``, then one big-endian int32 per
  dimension, then the raw uint8 data).  ``<ClassName>`` is the torchvision class name: ``MNIST``,
  ``FashionMNIST``, ``KMNIST``.
* CIFAR-10: ``ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``, each a pickled dict;
  a batch has ``data`` (uint8, (n, 3072) in channel-major order R..G..B..) and ``labels`` (list of int);
  ``batches.meta`` has ``label_names``.
* ``write_npz`` / ``write_csv`` for the ``npz:PATH`` and ``csv:PATH`` specs.

Every writer returns what it wrote, so that tests can compare loaded arrays with the raw values.
"""

from __future__ import annotations

import csv
import pickle
import struct
from pathlib import Path

import numpy as np

# torchvision class name (= folder under ROOT) for each metaal torchvision spec of the MNIST family
MNIST_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _balanced_labels(rng: np.random.Generator, n: int, classes: int) -> np.ndarray:
    """n labels with every class present (as evenly as possible), shuffled."""
    return rng.permutation(np.arange(n) % classes).astype(np.int64)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an uncompressed IDX ("SN3 Pascal Vincent") file."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    Path(path).write_bytes(header + array.tobytes())


def write_mnist_family(
    root: str | Path,
    name: str = "mnist",
    n_train: int = 60,
    n_test: int = 20,
    classes: int = 10,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Write train and t10k idx files under ``ROOT/<ClassName>/raw``.

    Returns ``{"X": uint8 (n_train + n_test, 28, 28), "y": int64}`` in the order torchvision reads them
    (train first, then test), which is the order metaal concatenates them in.
    """
    rng = np.random.default_rng(seed)
    raw = Path(root) / MNIST_FOLDERS[name] / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    out_X, out_y = [], []
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        X = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = _balanced_labels(rng, n, classes)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", X)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y.astype(np.uint8))
        out_X.append(X)
        out_y.append(y)
    return {"X": np.concatenate(out_X), "y": np.concatenate(out_y)}


def write_cifar10(root: str | Path, per_batch: int = 12, classes: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Write the five training batches, the test batch and ``batches.meta`` as torchvision reads them.

    Returns ``{"X": uint8 (6 * per_batch, 3, 32, 32), "y": int64}`` in reading order (batches 1..5, test).
    """
    rng = np.random.default_rng(seed)
    base = Path(root) / CIFAR_FOLDER
    base.mkdir(parents=True, exist_ok=True)
    out_X, out_y = [], []
    for i, fname in enumerate(CIFAR_FILES[:-1]):
        X = rng.integers(0, 256, size=(per_batch, 3, 32, 32), dtype=np.uint8)
        y = _balanced_labels(rng, per_batch, classes)
        batch = {
            "batch_label": f"{'testing' if fname == 'test_batch' else 'training'} batch {i + 1} of 5",
            "labels": [int(v) for v in y],
            "data": X.reshape(per_batch, 3 * 32 * 32),
            "filenames": [f"img_{i}_{j}.png" for j in range(per_batch)],
        }
        with open(base / fname, "wb") as fh:
            pickle.dump(batch, fh, protocol=2)
        out_X.append(X)
        out_y.append(y)
    meta = {"label_names": CIFAR_CLASSES[:classes], "num_cases_per_batch": per_batch, "num_vis": 3 * 32 * 32}
    with open(base / "batches.meta", "wb") as fh:
        pickle.dump(meta, fh, protocol=2)
    return {"X": np.concatenate(out_X), "y": np.concatenate(out_y)}


def write_torchvision(root: str | Path, name: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a small copy of torchvision set ``name`` (a metaal spec name) under ``root``."""
    if name == "cifar10":
        return write_cifar10(root, seed=seed)
    return write_mnist_family(root, name, seed=seed)


def write_npz(
    path: str | Path,
    n: int = 80,
    shape: tuple[int, ...] = (5,),
    classes: int = 3,
    dtype=np.float64,
    seed: int = 0,
    **arrays,
) -> dict[str, np.ndarray]:
    """Write ``X`` of shape (n, *shape) and balanced labels ``y``; extra keyword arrays replace or add keys.

    Integer dtypes draw values from their range (0..255 for uint8); float dtypes draw normals.
    Pass ``X=...``/``y=...`` to write arrays of your own (e.g. with NaNs), ``X=None`` to leave a key out.
    """
    rng = np.random.default_rng(seed)
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        X = rng.integers(max(info.min, 0), min(info.max, 255) + 1, size=(n, *shape)).astype(dtype)
    else:
        X = rng.normal(size=(n, *shape)).astype(dtype)
    data = {"X": X, "y": _balanced_labels(rng, n, classes)}
    data.update(arrays)
    data = {k: np.asarray(v) for k, v in data.items() if v is not None}
    np.savez(path, **data)
    return data


def write_csv(
    path: str | Path,
    n: int = 60,
    n_features: int = 3,
    labels=("cat", "dog", "bird"),
    label_column: str = "label",
    label_position: int = -1,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Write a header and ``n`` rows of ``n_features`` floats plus a label column at ``label_position``.

    Labels cycle through ``labels``.  Returns ``{"X": float64 (n, n_features), "y": labels as str}``.
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    y = np.array([str(labels[i % len(labels)]) for i in range(n)])
    header = [f"f{j}" for j in range(n_features)]
    pos = label_position if label_position >= 0 else n_features + 1 + label_position
    header.insert(pos, label_column)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for row, label in zip(X, y):
            cells = [repr(float(v)) for v in row]
            cells.insert(pos, label)
            w.writerow(cells)
    return {"X": X, "y": y}
