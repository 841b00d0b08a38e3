"""Task catalogue, loaders, seeded splits, standardisation and the one-line errors for bad specs or data."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from metaal.errors import MetaalError
from metaal.tasks import (
    CATALOGUE,
    Dataset,
    SplitConfig,
    load_dataset,
    load_task,
    make_task,
    parse_task_list,
    validate_arrays,
)

try:  # tests/ is on sys.path when it is not a package; tests.fixtures when it is
    from fixtures import (
        CIFAR_CLASSES,
        CIFAR_FILES,
        CIFAR_FOLDER,
        MNIST_FILES,
        MNIST_FOLDERS,
        write_csv,
        write_mnist_family,
        write_npz,
        write_torchvision,
    )
except ImportError:  # pragma: no cover
    from tests.fixtures import (
        CIFAR_CLASSES,
        CIFAR_FILES,
        CIFAR_FOLDER,
        MNIST_FILES,
        MNIST_FOLDERS,
        write_csv,
        write_mnist_family,
        write_npz,
        write_torchvision,
    )

TV_SETS = ("mnist", "fashion_mnist", "kmnist", "cifar10")


DOWNLOAD_ATTEMPTS: list[str] = []


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test: torchvision's downloaders and socket connections are recorded and refused.

    Refusing alone is not enough (the loader turns unexpected exceptions into MetaalErrors), so the
    attempts are also recorded and checked when the test ends.
    """
    import torchvision.datasets as tvd
    import torchvision.datasets.cifar as tv_cifar
    import torchvision.datasets.mnist as tv_mnist

    DOWNLOAD_ATTEMPTS.clear()

    def forbidden(what):
        def refuse(*args, **kwargs):
            DOWNLOAD_ATTEMPTS.append(what)
            raise OSError(f"test guard: {what} attempted")

        return refuse

    monkeypatch.setattr(tvd.MNIST, "download", forbidden("MNIST.download"))
    monkeypatch.setattr(tvd.CIFAR10, "download", forbidden("CIFAR10.download"))
    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", forbidden("download_and_extract_archive"))
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", forbidden("download_and_extract_archive"))
    monkeypatch.setattr(socket.socket, "connect", forbidden("socket.connect"))
    monkeypatch.setattr(socket, "create_connection", forbidden("socket.create_connection"))
    monkeypatch.delenv("METAAL_DATA_ROOT", raising=False)
    yield
    assert DOWNLOAD_ATTEMPTS == [], f"network/download attempted: {DOWNLOAD_ATTEMPTS}"


def with_ids(ds: Dataset) -> Dataset:
    """Append a column holding each row's original index (tabular only).

    Standardisation is an increasing affine map per feature, so the rank of that column in a Task's X
    recovers which original row each Task row came from.
    """
    ids = np.arange(len(ds.y), dtype=np.float32)[:, None]
    return Dataset(ds.spec, np.hstack([ds.X, ids]), ds.y, ds.class_names)


def original_rows(task) -> np.ndarray:
    return np.argsort(np.argsort(task.X[:, -1], kind="stable"), kind="stable")


def tabular(n=200, d=4, classes=3, seed=0, weights=None) -> Dataset:
    rng = np.random.default_rng(seed)
    y = rng.choice(classes, size=n, p=weights) if weights is not None else np.arange(n) % classes
    X = rng.normal(loc=5.0, scale=3.0, size=(n, d)) + y[:, None]
    return validate_arrays("test:tabular", X, y)


# --------------------------------------------------------------------------------------------- sources


@pytest.mark.parametrize(
    "name, shape, classes, first_class",
    [
        ("digits", (1797, 64), 10, "0"),
        ("wine", (178, 13), 3, "class_0"),
        ("breast_cancer", (569, 30), 2, "malignant"),
        ("iris", (150, 4), 3, "setosa"),
    ],
)
def test_sklearn_sets_load(name, shape, classes, first_class):
    ds = load_dataset(f"sklearn:{name}")
    assert ds.spec == f"sklearn:{name}"
    assert ds.X.shape == shape and ds.X.dtype == np.float32
    assert ds.y.dtype == np.int64 and set(np.unique(ds.y)) == set(range(classes))
    assert ds.n_classes == classes and ds.class_names[0] == first_class
    assert not ds.is_image
    task = load_task(f"sklearn:{name}", seed=0)
    assert len(task.pool) + len(task.val) + len(task.test) == shape[0]


def test_catalogue_lists_every_source():
    specs = " ".join(entry["spec"] for entry in CATALOGUE)
    for s in ("sklearn:digits", "sklearn:wine", "sklearn:breast_cancer", "sklearn:iris", "synthetic", "npz:", "csv:"):
        assert s in specs
    for name in TV_SETS:
        assert f"torchvision:{name}" in specs


def test_synthetic_bare_varies_with_instance_seed():
    a = load_dataset("synthetic", instance_seed=1)
    b = load_dataset("synthetic", instance_seed=1)
    c = load_dataset("synthetic", instance_seed=2)
    assert a.spec == b.spec and np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert a.spec != c.spec  # the resolved parameters are part of the spec
    assert a.X.shape != c.X.shape or not np.array_equal(a.X, c.X)
    for ds in (a, c):
        p = ds.info["parameters"]
        assert 2 <= ds.n_classes <= 6 and ds.n_classes == p["classes"]
        assert 600 <= len(ds.y) <= 1500 and ds.X.shape == (p["n"], p["dim"])
        assert np.isfinite(ds.X).all()
    # many seeds give genuinely varied tasks
    params = [load_dataset("synthetic", instance_seed=s).info["parameters"] for s in range(8)]
    assert len({p["classes"] for p in params}) > 1 and len({p["dim"] for p in params}) > 1


def test_synthetic_with_params():
    ds = load_dataset("synthetic:classes=4,dim=7,n=300,noise=0,imbalance=0", instance_seed=3)
    assert ds.X.shape == (300, 7) and ds.n_classes == 4
    p = ds.info["parameters"]
    assert p["classes"] == 4 and p["dim"] == 7 and p["n"] == 300 and p["seed"] == 3
    assert "classes=4" in ds.spec and "dim=7" in ds.spec
    # fixed keys stay fixed while the free ones follow the instance seed
    other = load_dataset("synthetic:classes=4,dim=7,n=300,noise=0,imbalance=0", instance_seed=4)
    assert other.X.shape == (300, 7) and not np.array_equal(ds.X, other.X)


def test_synthetic_with_many_classes_and_few_features():
    """Each class needs its own hypercube vertex: the informative features are raised to log2(classes)
    (a draw with 3 informative features and 10 classes used to end in a ValueError from scikit-learn),
    and a dimension too small for the classes is a clear error, checked before any data is made."""
    for seed in range(40):  # several draws have round(informative * dim) < 4
        ds = load_dataset(f"synthetic:seed={seed},classes=10", instance_seed=0)
        assert ds.n_classes == 10
    with pytest.raises(MetaalError, match="10 classes need at least 4 features"):
        load_dataset("synthetic:classes=10,dim=3")


def test_synthetic_fixed_seed_ignores_instance_seed():
    a = load_dataset("synthetic:seed=5", instance_seed=0)
    b = load_dataset("synthetic:seed=5", instance_seed=99)
    c = load_dataset("synthetic:seed=6", instance_seed=0)
    assert a.spec == b.spec and np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert a.spec != c.spec


@pytest.mark.parametrize("name", TV_SETS)
def test_torchvision_sets_load_from_local_files(tmp_path, name):
    raw = write_torchvision(tmp_path, name)
    t0 = time.perf_counter()
    ds = load_dataset(f"torchvision:{name}", data_root=str(tmp_path))
    assert time.perf_counter() - t0 < 10
    expected = (len(raw["y"]), 3, 32, 32) if name == "cifar10" else (len(raw["y"]), 1, 28, 28)
    assert ds.X.shape == expected and ds.X.dtype == np.float32 and ds.is_image
    assert ds.X.min() >= 0.0 and ds.X.max() <= 1.0
    np.testing.assert_allclose(ds.X, raw["X"].reshape(expected).astype(np.float32) / 255.0, atol=1e-6)
    np.testing.assert_array_equal(ds.y, raw["y"])
    assert ds.n_classes == 10
    if name == "cifar10":
        assert list(ds.class_names) == CIFAR_CLASSES
    task = load_task(f"torchvision:{name}", seed=0, data_root=str(tmp_path))
    assert task.input_shape == expected[1:] and task.is_image
    assert len(task.pool) + len(task.val) + len(task.test) == len(raw["y"])


def test_torchvision_data_root_from_environment(tmp_path, monkeypatch):
    write_mnist_family(tmp_path, "kmnist")
    monkeypatch.setenv("METAAL_DATA_ROOT", str(tmp_path))
    assert load_dataset("torchvision:kmnist").X.shape == (80, 1, 28, 28)


def test_torchvision_download_only_when_asked(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    calls = []
    monkeypatch.setattr(tvd.MNIST, "download", lambda self: calls.append(type(self).__name__))
    write_mnist_family(tmp_path, "fashion_mnist")
    load_dataset("torchvision:fashion_mnist", data_root=str(tmp_path))
    assert calls == []
    load_dataset("torchvision:fashion_mnist", data_root=str(tmp_path), download=True)
    assert calls == ["FashionMNIST", "FashionMNIST"]  # train and test


@pytest.mark.parametrize("name", TV_SETS)
def test_download_guard_sees_an_explicit_download(tmp_path, name):
    # the guard above is what the no-download checks rely on: --download must reach it
    with pytest.raises(MetaalError):
        load_dataset(f"torchvision:{name}", data_root=str(tmp_path / "new"), download=True)
    assert DOWNLOAD_ATTEMPTS
    DOWNLOAD_ATTEMPTS.clear()


def test_npz_tabular(tmp_path):
    path = tmp_path / "tab.npz"
    raw = write_npz(path, n=90, shape=(6,), classes=3, dtype=np.float64)
    ds = load_dataset(f"npz:{path}")
    assert ds.spec == f"npz:{path}" and ds.X.shape == (90, 6) and ds.X.dtype == np.float32 and not ds.is_image
    np.testing.assert_allclose(ds.X, raw["X"], rtol=1e-6)
    np.testing.assert_array_equal(ds.y, raw["y"])


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 6, 6), (8, 8)])
def test_npz_uint8_image_scaled(tmp_path, shape):
    path = tmp_path / "img.npz"
    raw = write_npz(path, n=80, shape=shape, classes=4, dtype=np.uint8)
    ds = load_dataset(f"npz:{path}")
    expected = (80, *shape) if len(shape) == 3 else (80, 1, *shape)  # (N, H, W) gains a channel axis
    assert ds.X.shape == expected and ds.is_image and ds.X.dtype == np.float32
    assert 0.0 <= ds.X.min() and ds.X.max() <= 1.0 and ds.X.max() > 0.9
    np.testing.assert_allclose(ds.X, raw["X"].reshape(expected) / 255.0, atol=1e-6)


def test_npz_uint8_tabular_scaled_and_string_labels(tmp_path):
    path = tmp_path / "u8.npz"
    y = np.array(["b", "a", "c", "a"] * 20)
    write_npz(path, n=80, shape=(5,), dtype=np.uint8, y=y)
    ds = load_dataset(f"npz:{path}")
    assert ds.X.max() <= 1.0 and ds.class_names == ("a", "b", "c")
    np.testing.assert_array_equal(ds.y, np.searchsorted(["a", "b", "c"], y))


def test_npz_float_integer_labels_accepted(tmp_path):
    path = tmp_path / "fl.npz"
    write_npz(path, n=60, y=(np.arange(60) % 3).astype(np.float64) + 1.0)
    ds = load_dataset(f"npz:{path}")
    assert ds.class_names == ("1", "2", "3") and set(ds.y) == {0, 1, 2}


def test_csv_string_labels(tmp_path):
    path = tmp_path / "animals.csv"
    raw = write_csv(path, n=60, n_features=3, labels=("cat", "dog", "bird"))
    ds = load_dataset(f"csv:{path}")
    assert ds.X.shape == (60, 3) and ds.class_names == ("bird", "cat", "dog")
    np.testing.assert_allclose(ds.X, raw["X"], rtol=1e-6)
    assert [ds.class_names[i] for i in ds.y] == list(raw["y"])


def test_csv_custom_label_column_in_the_middle(tmp_path):
    path = tmp_path / "custom.csv"
    raw = write_csv(path, n=60, n_features=4, labels=(2, 10, 1), label_column="target", label_position=1)
    ds = load_dataset(f"csv:{path}", label_column="target")
    assert ds.X.shape == (60, 4)
    np.testing.assert_allclose(ds.X, raw["X"], rtol=1e-6)
    assert ds.class_names == ("1", "2", "10")  # integer-looking labels sort numerically
    with pytest.raises(MetaalError, match="label column 'label'"):
        load_dataset(f"csv:{path}")
    task = load_task(f"csv:{path}", seed=1, label_column="target")
    assert task.n_classes == 3


def test_parse_task_list_keeps_synthetic_params_together():
    assert parse_task_list("synthetic:a=1,b=2") == ["synthetic:a=1,b=2"]
    assert parse_task_list("sklearn:iris, synthetic:classes=3,dim=5 ,npz:x.npz,synthetic,csv:y.csv") == [
        "sklearn:iris",
        "synthetic:classes=3,dim=5",
        "npz:x.npz",
        "synthetic",
        "csv:y.csv",
    ]
    assert parse_task_list("synthetic:seed=1,synthetic:seed=2") == ["synthetic:seed=1", "synthetic:seed=2"]
    assert parse_task_list(" sklearn:wine ,, ") == ["sklearn:wine"]
    # what it keeps together loads as one task
    assert load_dataset(parse_task_list("synthetic:classes=3,n=200")[0]).X.shape[0] == 200


# ---------------------------------------------------------------------------------------------- splits


def test_split_disjoint_and_covering():
    ds = with_ids(tabular(n=200, classes=3))
    task = make_task(ds, seed=0)
    pool, val, test = task.pool, task.val, task.test
    everything = np.concatenate([pool, val, test])
    assert len(np.unique(everything)) == len(everything) == len(task.y) == len(task.X) == 200
    assert everything.min() >= 0 and everything.max() < len(task.X)
    assert not set(pool) & set(val) and not set(pool) & set(test) and not set(val) & set(test)
    assert len(test) == 50 and len(val) == 30 and len(pool) == 120  # 25 % / 15 % of 200
    rows = original_rows(task)
    assert sorted(rows) == list(range(200))  # each original row exactly once
    np.testing.assert_array_equal(task.y, ds.y[rows])  # labels travel with their rows


def test_split_is_stratified():
    weights = [0.6, 0.3, 0.1]
    ds = tabular(n=400, classes=3, weights=weights, seed=3)
    counts = np.bincount(ds.y, minlength=3)
    task = make_task(ds, seed=0)
    for part in (task.pool, task.val, task.test):
        got = np.bincount(task.y[part], minlength=3)
        expected = counts / counts.sum() * len(part)
        assert np.all(np.abs(got - expected) <= 2), (got, expected)


def test_split_keeps_rare_classes_in_test_and_val():
    # 2 samples of class 2: a proportional split would give it 0 test and 0 validation rows
    y = np.array([0] * 100 + [1] * 100 + [2] * 2 + [3] * 3)
    X = np.random.default_rng(0).normal(size=(len(y), 3))
    task = make_task(validate_arrays("rare", X, y), seed=0)
    assert set(task.y[task.test]) == {0, 1, 2, 3}
    assert set(task.y[task.val]) == {0, 1, 2, 3}
    assert np.bincount(task.y[task.test], minlength=4)[2] == 1


def test_each_class_in_test_and_val_when_possible():
    for spec in ("sklearn:iris", "sklearn:digits", "synthetic:classes=6,imbalance=0.7"):
        task = load_task(spec, seed=2)
        classes = set(range(task.n_classes))
        assert set(task.y[task.test]) == classes and set(task.y[task.val]) == classes
        assert set(task.y[task.pool]) == classes


def test_split_reproducible_and_seed_dependent():
    ds = with_ids(tabular(n=150, classes=3))
    a, b, c = make_task(ds, seed=7), make_task(ds, seed=7), make_task(ds, seed=8)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    for part in ("pool", "val", "test"):
        np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
    ra, rc = original_rows(a), original_rows(c)
    assert set(ra[a.test]) != set(rc[c.test])
    assert set(ra[a.val]) != set(rc[c.val])
    # load_task: same (spec, seed) -> same task
    t1, t2 = load_task("sklearn:wine", seed=4), load_task("sklearn:wine", seed=4)
    np.testing.assert_array_equal(t1.X, t2.X)
    assert not np.array_equal(t1.X, load_task("sklearn:wine", seed=5).X)


def test_split_caps_and_max_pool():
    ds = with_ids(tabular(n=600, classes=3))
    cfg = SplitConfig(test_fraction=0.5, val_fraction=0.2, max_test=100, max_val=40, max_pool=90)
    task = make_task(ds, seed=0, config=cfg)
    assert (len(task.test), len(task.val), len(task.pool)) == (100, 40, 90)
    assert len(task.X) == 230
    np.testing.assert_array_equal(np.bincount(task.y[task.pool]), [30, 30, 30])


def test_min_pool_enforced():
    ds = tabular(n=100, classes=2)
    with pytest.raises(MetaalError, match="too few samples"):
        make_task(ds, seed=0, min_pool=90)
    assert len(make_task(ds, seed=0, min_pool=60).pool) == 60


# ------------------------------------------------------------------------------------- standardisation


def test_standardisation_uses_pool_statistics():
    ds = with_ids(tabular(n=240, d=5, classes=4))
    task = make_task(ds, seed=1)
    pool = task.X[task.pool]
    np.testing.assert_allclose(pool.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(pool.std(axis=0), 1.0, atol=1e-4)
    # exactly (x - pool mean) / pool std, applied to every row
    rows = original_rows(task)
    raw = ds.X.astype(np.float64)
    ref = raw[rows[task.pool]]
    expected = (raw[rows] - ref.mean(axis=0)) / ref.std(axis=0)
    np.testing.assert_allclose(task.X, expected, atol=1e-4)
    # evaluation rows are not themselves standardised (mean well away from 0 once shifted)
    assert np.abs(task.X[task.test].mean(axis=0)[:-1]).max() < 1.0


def test_changing_evaluation_rows_does_not_change_pool():
    ds = with_ids(tabular(n=200, d=4, classes=3))
    task = make_task(ds, seed=3)
    rows = original_rows(task)
    X2 = ds.X.copy()
    X2[rows[task.test], :-1] += 1000.0  # leave the id column alone
    X2[rows[task.val], :-1] *= -50.0
    task2 = make_task(Dataset(ds.spec, X2, ds.y, ds.class_names), seed=3)
    np.testing.assert_array_equal(task2.pool, task.pool)
    np.testing.assert_array_equal(task2.X[task2.pool], task.X[task.pool])
    assert not np.allclose(task2.X[task2.test], task.X[task.test])
    # and the other way round: changing a pool row does change the statistics
    X3 = ds.X.copy()
    X3[rows[task.pool[0]], 0] += 1000.0
    task3 = make_task(Dataset(ds.spec, X3, ds.y, ds.class_names), seed=3)
    assert not np.allclose(task3.X[task3.test, 0], task.X[task.test, 0])


def test_image_standardisation_per_channel():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(120, 3, 4, 4), dtype=np.uint8)
    X[:, 1] //= 4  # channels on different scales
    ds = validate_arrays("img", X, np.arange(120) % 4)
    task = make_task(ds, seed=0)
    pool = task.X[task.pool].astype(np.float64)
    np.testing.assert_allclose(pool.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(pool.std(axis=(0, 2, 3)), 1.0, atol=1e-4)
    assert task.X.shape[1:] == (3, 4, 4) and task.X.dtype == np.float32


def test_constant_feature_does_not_divide_by_zero():
    X = np.random.default_rng(0).normal(size=(90, 3))
    X[:, 1] = 7.0
    task = make_task(validate_arrays("const", X, np.arange(90) % 3), seed=0)
    assert np.isfinite(task.X).all()
    np.testing.assert_allclose(task.X[:, 1], 0.0)


# --------------------------------------------------------------------------------------------- errors


def _npz(**arrays):
    def make(tmp):
        path = tmp / "bad.npz"
        write_npz(path, **arrays)
        return f"npz:{path}"

    return make


def _csv_text(text):
    def make(tmp):
        path = tmp / "bad.csv"
        path.write_text(text)
        return f"csv:{path}"

    return make


def _file(name, content: bytes):
    def make(tmp):
        (tmp / name).write_bytes(content)
        return f"{name.rsplit('.', 1)[1]}:{tmp / name}"

    return make


def _tv_missing_file(name, missing):
    def make(tmp):
        write_torchvision(tmp, name)
        folder = tmp / (CIFAR_FOLDER if name == "cifar10" else f"{MNIST_FOLDERS[name]}/raw")
        (folder / missing).unlink()
        return f"torchvision:{name}"

    return make


def _tv_truncated(tmp):
    write_mnist_family(tmp, "mnist")
    f = tmp / "MNIST" / "raw" / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:10])
    return "torchvision:mnist"


_NAN = np.full((60, 3), 1.0)
_NAN[5, 1] = np.nan
_INF = np.full((60, 3), 1.0)
_INF[7, 2] = -np.inf

ERROR_CASES = {
    # id: (spec or callable(tmp) -> spec, loader options, words the message must contain)
    "unknown-prefix": ("imagenet:all", {}, ["unknown task spec", "imagenet:all"]),
    "no-prefix": ("digits", {}, ["unknown task spec"]),
    "unknown-sklearn": ("sklearn:boston", {}, ["unknown", "sklearn:boston"]),
    "unknown-torchvision": ("torchvision:svhn", {}, ["unknown", "torchvision:svhn"]),
    "synthetic-unknown-key": ("synthetic:colours=3", {}, ["unknown parameter", "colours"]),
    "synthetic-not-key-value": ("synthetic:classes", {}, ["key=value"]),
    "synthetic-bad-value": ("synthetic:classes=three", {}, ["classes", "not a valid int"]),
    "synthetic-one-class": ("synthetic:classes=1", {}, ["classes", "at least 2"]),
    "synthetic-too-small": ("synthetic:classes=5,n=20", {}, ["n=20", "too small"]),
    "synthetic-bad-noise": ("synthetic:noise=0.7", {}, ["noise"]),
    "npz-no-path": ("npz:", {}, ["needs a path"]),
    "csv-no-path": ("csv:", {}, ["needs a path"]),
    "npz-missing-file": (lambda t: f"npz:{t / 'nope.npz'}", {}, ["file not found", "nope.npz"]),
    "csv-missing-file": (lambda t: f"csv:{t / 'nope.csv'}", {}, ["file not found", "nope.csv"]),
    "npz-not-an-npz": (_file("junk.npz", b"this is not a zip file\n"), {}, ["cannot read"]),
    "npz-missing-y": (_npz(y=None), {}, ["missing array", "y"]),
    "npz-wrong-keys": (_npz(X=None, y=None, data=np.zeros((4, 2)), labels=np.zeros(4)), {}, ["missing array", "X, y"]),
    "npz-X-1d": (_npz(X=np.arange(80.0)), {}, ["X must have shape", "(80,)"]),
    "npz-X-5d": (_npz(X=np.zeros((80, 1, 2, 2, 2))), {}, ["X must have shape"]),
    "npz-y-2d": (_npz(y=np.zeros((80, 2), dtype=int)), {}, ["y must be one-dimensional"]),
    "npz-length-mismatch": (_npz(y=np.arange(79) % 3), {}, ["80 rows", "79"]),
    "npz-empty": (_npz(X=np.zeros((0, 3)), y=np.zeros(0, dtype=int)), {}, ["empty"]),
    "npz-nan": (_npz(X=_NAN, y=np.arange(60) % 3), {}, ["NaN", "1 rows"]),
    "npz-inf": (_npz(X=_INF, y=np.arange(60) % 3), {}, ["infinite"]),
    "npz-one-class": (_npz(y=np.zeros(80, dtype=int)), {}, ["at least 2 classes", "found 1"]),
    "npz-non-integer-float-labels": (_npz(y=np.linspace(0, 2, 80)), {}, ["non-integer"]),
    "npz-nan-labels": (_npz(y=np.where(np.arange(80) == 3, np.nan, np.arange(80) % 2)), {}, ["non-integer"]),
    "npz-string-X": (_npz(X=np.array([["a", "b"]] * 80)), {}, ["numeric"]),
    "npz-complex-X": (_npz(X=np.ones((80, 2), dtype=complex)), {}, ["numeric"]),
    "npz-too-few-samples": (_npz(n=10, classes=3), {}, ["too few samples", "10 samples"]),
    "csv-header-only": (_csv_text("a,b,label\n"), {}, ["header row"]),
    "csv-no-label-column": (_csv_text("a,b,class\n1,2,x\n3,4,y\n"), {}, ["no label column 'label'", "class"]),
    "csv-wrong-label-option": (_csv_text("a,label\n1,x\n2,y\n"), {"label_column": "kind"}, ["'kind'"]),
    "csv-ragged": (_csv_text("a,b,label\n1,2,x\n3,y\n"), {}, ["line 3", "fields"]),
    "csv-non-numeric": (_csv_text("a,b,label\n1,2,x\n3,hello,y\n"), {}, ["non-numeric", "hello"]),
    "csv-only-label": (_csv_text("label\nx\ny\n"), {}, ["no feature columns"]),
    "csv-nan": (_csv_text("a,label\n" + "".join(f"{'nan' if i == 4 else i},{i % 2}\n" for i in range(40))), {}, ["NaN"]),
    "csv-one-class": (_csv_text("a,label\n" + "".join(f"{i},same\n" for i in range(40))), {}, ["at least 2 classes"]),
    "csv-too-few": (_csv_text("a,label\n1,x\n2,y\n3,x\n4,y\n"), {}, ["too few samples"]),
    "tv-no-root": ("torchvision:mnist", {}, ["needs a data root", "--data-root"]),
    "tv-root-missing": (lambda t: "torchvision:cifar10", {"data_root": "/nonexistent/metaal-data"}, ["does not exist", "--download"]),
    "tv-empty-root-mnist": (lambda t: "torchvision:mnist", {"data_root": "TMP"}, ["not found", "MNIST/raw", "--download"]),
    "tv-empty-root-kmnist": (lambda t: "torchvision:kmnist", {"data_root": "TMP"}, ["not found", "KMNIST/raw"]),
    "tv-empty-root-cifar": (lambda t: "torchvision:cifar10", {"data_root": "TMP"}, ["not found", "cifar-10-batches-py", "--download"]),
    "tv-missing-test-labels": (_tv_missing_file("fashion_mnist", MNIST_FILES[3]), {"data_root": "TMP"}, ["not found", "FashionMNIST/raw"]),
    "tv-missing-cifar-batch": (_tv_missing_file("cifar10", CIFAR_FILES[2]), {"data_root": "TMP"}, ["not found"]),
    "tv-missing-cifar-meta": (_tv_missing_file("cifar10", "batches.meta"), {"data_root": "TMP"}, ["batches.meta"]),
    "tv-truncated-file": (_tv_truncated, {"data_root": "TMP"}, ["cannot read"]),
}


@pytest.mark.parametrize("case", list(ERROR_CASES), ids=list(ERROR_CASES))
def test_bad_spec_or_data_gives_one_line_error(tmp_path, case):
    spec, options, words = ERROR_CASES[case]
    if callable(spec):
        spec = spec(tmp_path)
    options = {k: (str(tmp_path) if v == "TMP" else v) for k, v in options.items()}
    t0 = time.perf_counter()
    with pytest.raises(MetaalError) as info:
        load_task(spec, seed=0, **options)  # loading and splitting: some problems only show at the split
    assert time.perf_counter() - t0 < 10  # e.g. no download attempt or retry loop
    message = str(info.value)
    assert message and "\n" not in message and "Traceback" not in message
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"


def test_empty_task_list_is_an_error():
    with pytest.raises(MetaalError, match="no task given"):
        parse_task_list(" , ,")


def test_error_messages_are_single_line_even_from_multiline_causes():
    err = MetaalError("first line\n  second line")
    assert str(err) == "first line second line"


def test_synthetic_spikes_add_near_constant_features_and_leave_other_specs_alone():
    """spikes=k appends k features that are 0 except in about 2% of the items (digits' corner pixels after
    standardisation); left out, nothing changes: a bare spec and spikes=0 give the same spec and arrays."""
    plain = load_dataset("synthetic:seed=11,n=2000", instance_seed=0)
    zero = load_dataset("synthetic:seed=11,n=2000,spikes=0", instance_seed=0)
    assert plain.spec == zero.spec and "spikes" not in plain.spec and np.array_equal(plain.X, zero.X)
    spiky = load_dataset("synthetic:seed=11,n=2000,spikes=5", instance_seed=0)
    d = plain.X.shape[1]
    assert spiky.X.shape == (2000, d + 5) and "spikes=5" in spiky.spec
    assert np.array_equal(spiky.X[:, :d], plain.X) and np.array_equal(spiky.y, plain.y)
    share = (spiky.X[:, d:] != 0).mean(axis=0)
    assert ((share > 0.005) & (share < 0.04)).all()
    with pytest.raises(MetaalError, match="spikes must be at least 0"):
        load_dataset("synthetic:spikes=-1")
    with pytest.raises(MetaalError, match="keys: seed, .*spikes"):
        load_dataset("synthetic:spike=3")
