"""Property-based tests of the user-file loaders (npz and csv tasks and pools, label files): whatever the
bytes, a loader returns or raises a MetaalError (a one-line message for the user), never another exception.

Examples stay few (the suite must stay fast); hypothesis' shrinking names the smallest bad file when one fails."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from metaal.errors import MetaalError
from metaal.tasks.pools import load_pool, read_labels_csv
from metaal.tasks.sources import load_csv, load_npz

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_metaal_errors(load, content: bytes, suffix: str):
    """``load(path)`` on a file holding ``content``: its result, or None after a MetaalError."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"input{suffix}"
        path.write_bytes(content)
        try:
            return load(str(path))
        except MetaalError as exc:
            assert str(exc) and "\n" not in str(exc)
            return None


# ------------------------------------------------------------------------------------------ npz
DTYPES = st.one_of(hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes(), hnp.boolean_dtypes(),
                   hnp.complex_number_dtypes(), hnp.byte_string_dtypes(max_len=4), hnp.unicode_string_dtypes(max_len=4),
                   hnp.datetime64_dtypes())
ARRAYS = hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6))


@st.composite
def npz_bytes(draw) -> bytes:
    """A real .npz with arrays of any dtype and shape under the names a loader looks for (or others), possibly
    cut short or with a byte flipped."""
    names = draw(st.lists(st.sampled_from(["X", "y", "Z", "labels"]), min_size=0, max_size=3, unique=True))
    buf = io.BytesIO()
    np.savez(buf, **{n: draw(ARRAYS) for n in names})
    data = buf.getvalue()
    damage = draw(st.sampled_from(["none", "truncate", "flip"]))
    if damage == "truncate" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
    return data


@SETTINGS
@given(st.one_of(npz_bytes(), st.binary(max_size=300)))
@example(b"PK\x03\x04")  # found by this test: a zip header alone raised zipfile.BadZipFile
def test_npz_task_loader_raises_only_metaal_errors(content):
    ds = _only_metaal_errors(load_npz, content, ".npz")
    if ds is not None:  # what it accepts is a usable data set
        assert len(ds.X) == len(ds.y) and ds.n_classes >= 2 and np.isfinite(ds.X).all()


@SETTINGS
@given(st.one_of(npz_bytes(), st.binary(max_size=300)))
@example(b"PK\x05\x06")
def test_npz_pool_loader_raises_only_metaal_errors(content):
    pool = _only_metaal_errors(lambda p: load_pool(f"npz:{p}"), content, ".npz")
    if pool is not None:
        assert len(pool) > 0 and pool.X.ndim in (2, 4)


# ------------------------------------------------------------------------------------------ csv
CELLS = st.one_of(st.sampled_from(["1", "0", "-2.5", "1e308", "1e999", "nan", "inf", "", " ", "a", "label", "1,2",
                                   '"', "\x00", "99999999999999999999999"]),
                  st.text(max_size=5))


@st.composite
def csv_text(draw) -> bytes:
    """Comma-separated rows of awkward cells (quotes, NULs, huge numbers, ragged rows), often with a label or
    index column, in UTF-8 or in bytes that are not."""
    header = draw(st.lists(st.sampled_from(["a", "b", "label", "index", "x y", ""]), min_size=0, max_size=4))
    width = max(len(header), 1)
    rows = draw(st.lists(st.lists(CELLS, min_size=width - 1, max_size=width + 1), max_size=8))
    text = "\n".join(",".join(r) for r in [header, *rows])
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data = data.replace(b"a", b"\xff", 1)  # not UTF-8
    return data


@SETTINGS
@given(st.one_of(csv_text(), st.binary(max_size=200)))
@example(b"label\n\n")  # found by this test: a header and blank lines raised IndexError
def test_csv_task_loader_raises_only_metaal_errors(content):
    ds = _only_metaal_errors(load_csv, content, ".csv")
    if ds is not None:
        assert len(ds.X) == len(ds.y) and ds.n_classes >= 2 and np.isfinite(ds.X).all()


@SETTINGS
@given(st.one_of(csv_text(), st.binary(max_size=200)))
def test_csv_pool_loader_raises_only_metaal_errors(content):
    pool = _only_metaal_errors(lambda p: load_pool(f"csv:{p}"), content, ".csv")
    if pool is not None:
        assert len(pool) > 0 and pool.X.ndim == 2


# ------------------------------------------------------------------------------------------ label files
@SETTINGS
@given(st.one_of(csv_text(), st.binary(max_size=200)),
       st.one_of(st.none(), st.lists(st.sampled_from(["a.png", "b/c.png", "1", "label"]), max_size=3, unique=True)))
def test_label_file_reader_raises_only_metaal_errors(content, pool_paths):
    got = _only_metaal_errors(lambda p: read_labels_csv(p, pool_paths), content, ".csv")
    if got is not None:
        idx, labels = got
        assert len(idx) == len(labels) and len(set(idx.tolist())) == len(idx) and all(lb != "" for lb in labels)


@pytest.mark.parametrize("content", [b"index,label\n0,a\n\x00,b\n", b'index,label\n"0,a\n',
                                     b"index,label\n" + b"9" * 40 + b",a\n"])  # found: a huge index raised OverflowError
def test_label_file_examples(content):
    _only_metaal_errors(read_labels_csv, content, ".csv")
