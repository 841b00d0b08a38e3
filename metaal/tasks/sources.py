"""Loaders behind each task-spec prefix: scikit-learn, synthetic, torchvision, npz, csv (KEEL: ``keel.py``)."""

from __future__ import annotations

import csv as _csv
import zlib
from pathlib import Path

import numpy as np

from metaal.errors import MetaalError
from metaal.tasks.dataset import Dataset, validate_arrays

SKLEARN_SETS = ("digits", "digits_image", "wine", "breast_cancer", "iris")
# digits_image: the same 1,797 digits as 1x8x8 images, so `--model auto` trains the CNN on a task that
# runs on a laptop CPU; the rows and labels are digits' own (a twin in the task split).
TORCHVISION_SETS = ("mnist", "fashion_mnist", "kmnist", "cifar10")


def load_sklearn(name: str) -> Dataset:
    import sklearn.datasets as skd

    if name not in SKLEARN_SETS:
        raise MetaalError(f"unknown scikit-learn task 'sklearn:{name}' (choose from {', '.join(SKLEARN_SETS)})")
    if name == "digits_image":
        bunch = skd.load_digits()
        bunch.data = bunch.images[:, None]  # (N, 1, 8, 8) grey levels 0..16
    else:
        bunch = getattr(skd, f"load_{name}")()
    ds = validate_arrays(f"sklearn:{name}", bunch.data, bunch.target)
    names = tuple(str(n) for n in getattr(bunch, "target_names", ds.class_names))
    return Dataset(ds.spec, ds.X, ds.y, names if len(names) == ds.n_classes else ds.class_names)


# Synthetic tasks: each parameter has a range that a bare `synthetic` samples from, so that
# one spec and many seeds give the varied meta-training tasks the policy must generalise over.
SYNTHETIC_PARAMS = {
    # name: (type, low, high, meaning)
    "classes": (int, 2, 6, "number of classes"),
    "dim": (int, 4, 40, "number of features"),
    "informative": (float, 0.3, 1.0, "share of features that carry signal"),
    "sep": (float, 0.5, 2.0, "class separation (larger is easier)"),
    "clusters": (int, 1, 3, "Gaussian clusters per class"),
    "imbalance": (float, 0.0, 0.8, "0 balanced; towards 1 the last classes become rare"),
    "noise": (float, 0.0, 0.1, "share of labels flipped at random"),
    "n": (int, 600, 1500, "number of samples"),
}
# Options a bare `synthetic` leaves at their default (never drawn, so every earlier spec keeps its data).
SYNTHETIC_OPTIONS = {
    # name: (type, default, meaning)
    "spikes": (int, 0, "extra near-constant features: 0 except in 2% of the items, unrelated to the label"),
}
# Why spikes: per-feature standardisation turns a near-constant feature's rare values into far outliers, as
# it does digits' corner pixels; distance-seeking heuristics (coreset, BALD) then chase them and lose to random.
SPIKE_RATE = 0.02
SYNTHETIC_KEYS = (*SYNTHETIC_PARAMS, *SYNTHETIC_OPTIONS)


def parse_synthetic(params: str) -> dict:
    """Parse 'k=v,k=v' (seed=... picks the parameter draw; other keys fix a value)."""
    out: dict = {}
    if not params:
        return out
    for item in params.split(","):
        if "=" not in item:
            raise MetaalError(f"synthetic: expected key=value, got '{item}' (keys: seed, {', '.join(SYNTHETIC_KEYS)})")
        key, value = (s.strip() for s in item.split("=", 1))
        if key == "seed":
            typ = int
        elif key in SYNTHETIC_PARAMS or key in SYNTHETIC_OPTIONS:
            typ = (SYNTHETIC_PARAMS.get(key) or SYNTHETIC_OPTIONS[key])[0]
        else:
            raise MetaalError(f"synthetic: unknown parameter '{key}' (keys: seed, {', '.join(SYNTHETIC_KEYS)})")
        try:
            out[key] = typ(value)
        except ValueError:
            raise MetaalError(f"synthetic: parameter {key}={value!r} is not a valid {typ.__name__}") from None
    return out


def synthetic_parameters(params: str, instance_seed: int) -> dict:
    """Resolve a synthetic spec to concrete parameters; unfixed ones are drawn from their ranges."""
    fixed = parse_synthetic(params)
    draw_seed = fixed.pop("seed", instance_seed)
    rng = np.random.default_rng([int(draw_seed), 0x5717])
    resolved = {}
    for key, (typ, lo, hi, _) in SYNTHETIC_PARAMS.items():
        drawn = int(rng.integers(lo, hi + 1)) if typ is int else float(rng.uniform(lo, hi))
        resolved[key] = fixed.get(key, drawn)
    for key, (_, default, _) in SYNTHETIC_OPTIONS.items():
        if fixed.get(key, default) != default:  # left out of the spec at its default: earlier specs read the same
            resolved[key] = fixed[key]
    resolved["seed"] = int(draw_seed)
    if resolved.get("spikes", 0) < 0:
        raise MetaalError("synthetic: spikes must be at least 0")
    if resolved["classes"] < 2:
        raise MetaalError("synthetic: classes must be at least 2")
    if resolved["dim"] < 2:
        raise MetaalError("synthetic: dim must be at least 2")
    if not 0 <= resolved["imbalance"] < 1 or not 0 <= resolved["noise"] < 0.5:
        raise MetaalError("synthetic: need 0 <= imbalance < 1 and 0 <= noise < 0.5")
    if resolved["n"] < 10 * resolved["classes"]:
        raise MetaalError(f"synthetic: n={resolved['n']} is too small for {resolved['classes']} classes")
    informative = _informative_features(resolved)
    if informative > resolved["dim"]:
        raise MetaalError(f"synthetic: {resolved['classes']} classes need at least {informative} features "
                          f"(log2 of the class count), dim={resolved['dim']}")
    return resolved


def _informative_features(p: dict) -> int:
    """The informative share of dim, raised to log2(classes): each class needs its own hypercube vertex."""
    share = max(2, int(round(p["informative"] * p["dim"])))
    return max(min(share, p["dim"]), int(np.ceil(np.log2(p["classes"]))))


def load_synthetic(params: str, instance_seed: int) -> Dataset:
    from sklearn.datasets import make_classification

    p = synthetic_parameters(params, instance_seed)
    informative = _informative_features(p)
    clusters = p["clusters"]
    while p["classes"] * clusters > 2**informative:
        clusters -= 1
    weights = np.geomspace(1.0, 1.0 - p["imbalance"], p["classes"])
    X, y = make_classification(
        n_samples=p["n"],
        n_features=p["dim"],
        n_informative=informative,
        n_redundant=0,
        n_classes=p["classes"],
        n_clusters_per_class=max(1, clusters),
        weights=list(weights / weights.sum()),
        flip_y=p["noise"],
        class_sep=p["sep"],
        random_state=p["seed"],
    )
    if p.get("spikes"):
        rng = np.random.default_rng([p["seed"], 0x5B1C])
        on = rng.random((p["n"], p["spikes"])) < SPIKE_RATE
        X = np.hstack([X, np.where(on, rng.uniform(0.5, 1.5, on.shape), 0.0)])
    spec = "synthetic:" + ",".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items())
    ds = validate_arrays(spec, X, y)
    return Dataset(ds.spec, ds.X, ds.y, ds.class_names, info={"parameters": p})


def read_npz(spec: str, path: str, names: tuple[str, ...]) -> list[np.ndarray]:
    """The arrays ``names`` of an .npz file (never unpickled), or a one-line error: the file is missing, lacks
    one of them, or is not a readable .npz (a damaged zip, a bad array header, truncated or corrupt data)."""
    import zipfile

    file = Path(path).expanduser()
    if not path or not file.is_file():
        raise MetaalError(f"{spec}: file not found")
    try:
        with np.load(file, allow_pickle=False) as data:
            if not hasattr(data, "files"):  # a plain .npy: one array, no names
                raise MetaalError(f"{spec}: a single array (.npy), not an .npz with {', '.join(names)}")
            missing = [k for k in names if k not in data.files]
            if missing:
                raise MetaalError(f"{spec}: missing array(s) {', '.join(missing)} (found: {', '.join(data.files) or 'none'})")
            return [data[k] for k in names]
    except MetaalError:
        raise
    except (OSError, ValueError, EOFError, KeyError, NotImplementedError, RuntimeError, zlib.error,
            zipfile.BadZipFile) as exc:
        text = " ".join(str(exc).split())[:200]
        raise MetaalError(f"{spec}: cannot read as .npz ({type(exc).__name__}: {text})") from None


def read_csv_rows(spec: str, path: str) -> tuple[list[str], list[list[str]]]:
    """(header, data rows) of a CSV file, blank lines skipped, or a one-line error (missing, unreadable, no data row)."""
    file = Path(path).expanduser()
    if not path or not file.is_file():
        raise MetaalError(f"{spec}: file not found")
    try:
        with open(file, newline="") as fh:
            rows = [r for r in _csv.reader(fh) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, _csv.Error) as exc:
        raise MetaalError(f"{spec}: cannot read ({exc})") from None
    if len(rows) < 2:
        raise MetaalError(f"{spec}: needs a header row and at least one data row")
    return [h.strip() for h in rows[0]], rows[1:]


def load_npz(path: str) -> Dataset:
    spec = f"npz:{path}"
    X, y = read_npz(spec, path, ("X", "y"))
    return validate_arrays(spec, X, y)


def load_csv(path: str, label_column: str = "label") -> Dataset:
    spec = f"csv:{path}"
    header, body = read_csv_rows(spec, path)
    if label_column not in header:
        raise MetaalError(f"{spec}: no label column '{label_column}' (columns: {', '.join(header)}); set --label-column")
    j = header.index(label_column)
    for i, r in enumerate(body, start=2):
        if len(r) != len(header):
            raise MetaalError(f"{spec}: line {i} has {len(r)} fields, header has {len(header)}")
    labels = np.array([r[j].strip() for r in body])
    try:
        X = np.array([[float(c) for k, c in enumerate(r) if k != j] for r in body], dtype=np.float64)
    except ValueError as exc:
        raise MetaalError(f"{spec}: non-numeric feature value ({exc})") from None
    if X.shape[1] == 0:
        raise MetaalError(f"{spec}: no feature columns besides '{label_column}'")
    try:  # integer-looking labels stay numeric so that their order is numeric
        labels = labels.astype(np.int64)
    except ValueError:
        pass
    return validate_arrays(spec, X, labels)


_TV_CLASSES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST", "cifar10": "CIFAR10"}


def load_torchvision(name: str, root: str | None, download: bool = False) -> Dataset:
    """Train and test files together (metaal makes its own splits); never downloads unless asked."""
    spec = f"torchvision:{name}"
    if name not in TORCHVISION_SETS:
        raise MetaalError(f"unknown torchvision task '{spec}' (choose from {', '.join(TORCHVISION_SETS)})")
    if root is None:
        raise MetaalError(f"{spec}: needs a data root (--data-root DIR or METAAL_DATA_ROOT)")
    root_path = Path(root).expanduser()
    if not download and not root_path.is_dir():
        raise MetaalError(f"{spec}: data root {root_path} does not exist (pass --download to fetch the data set)")
    try:
        import torchvision.datasets as tvd
    except Exception as exc:  # pragma: no cover - depends on the installation
        raise MetaalError(f"{spec}: torchvision is not importable ({exc})") from None
    cls = getattr(tvd, _TV_CLASSES[name])
    if name == "cifar10" and not download:
        # torchvision verifies the official MD5 sums; locally prepared files in the same format are accepted.
        class _LocalCIFAR10(cls):
            def _check_integrity(self) -> bool:
                base = Path(self.root) / self.base_folder
                return all((base / f).is_file() for f, _ in self.train_list + self.test_list)

            def _load_meta(self) -> None:  # torchvision also checks batches.meta against the official MD5
                import pickle

                path = Path(self.root) / self.base_folder / self.meta["filename"]
                if not path.is_file():
                    raise RuntimeError(f"Dataset metadata file {self.meta['filename']} not found")
                with open(path, "rb") as fh:
                    self.classes = pickle.load(fh, encoding="latin1")[self.meta["key"]]
                self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

        cls = _LocalCIFAR10
    parts = []
    for train in (True, False):
        try:
            parts.append(cls(str(root_path), train=train, download=download))
        except RuntimeError as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0].split(". You can use download=True")[0]
            if download:
                raise MetaalError(f"{spec}: could not fetch or read the data set into {root_path} ({reason})") from None
            folder = root_path / ("cifar-10-batches-py" if name == "cifar10" else f"{_TV_CLASSES[name]}/raw")
            raise MetaalError(
                f"{spec}: {reason} in {folder} (pass --download to fetch it; the layout is in datasets/README.md)"
            ) from None
        except Exception as exc:
            raise MetaalError(f"{spec}: cannot read files under {root_path} ({type(exc).__name__}: {exc})") from None
    X = np.concatenate([_to_numpy(p.data) for p in parts])
    y = np.concatenate([_to_numpy(p.targets) for p in parts])
    if X.ndim == 4 and X.shape[-1] in (1, 3):  # CIFAR stores N, H, W, C
        X = X.transpose(0, 3, 1, 2)
    ds = validate_arrays(spec, X, y)
    names = tuple(str(c) for c in getattr(parts[0], "classes", ds.class_names))
    return Dataset(ds.spec, ds.X, ds.y, names if len(names) == ds.n_classes else ds.class_names)


def _to_numpy(a) -> np.ndarray:
    return a.numpy() if hasattr(a, "numpy") else np.asarray(a)
