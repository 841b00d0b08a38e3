"""Small I/O helpers: atomic writes (so a killed job never leaves a half-written file) and versions."""

from __future__ import annotations

import json
import os
import tempfile
from importlib import metadata
from pathlib import Path

from metaal.errors import MetaalError


def hold_lock(path: str | Path, what: str):
    """An exclusive advisory lock on ``path`` (created if missing), held until the returned file is closed.

    Two processes writing the same store shard or the same policy would corrupt each other's work (a
    resuming writer cuts what it takes for a killed run's partial episode; a second distill clears the
    first one's staging directory), so the second one stops with a one-line error instead.  The lock
    dies with its process, so a killed run never leaves a stale lock behind."""
    import fcntl

    path = Path(path)
    try:
        fh = open(path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
    except OSError as exc:
        raise MetaalError(f"cannot write {what}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise MetaalError(f"{what} is in use by another metaal process (lock {path}); wait for it or use another path") from None
    return fh


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=json_default) + "\n")


def json_default(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if np.isnan(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def ensure_writable_dir(path: str | Path, what: str = "output directory") -> Path:
    """Create ``path`` (and parents) or fail with a one-line error before any work starts."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MetaalError(f"cannot create {what} {path}: {exc.strerror or exc}") from None
    if not path.is_dir():
        raise MetaalError(f"{what} {path} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise MetaalError(f"{what} {path} is not writable")
    return path


def package_versions() -> dict:
    out = {}
    for name in ("metaal", "torch", "torchvision", "d3rlpy", "numpy", "zarr", "scikit-learn"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def compute_platform() -> dict:
    """What the floating-point results depend on beyond the package versions.

    torch picks vectorised CPU kernels by instruction set (AVX-512, AVX2 or scalar); their last-bit differences
    flip near-ties between margins, so the same seeds give different learning curves on different CPUs (digits,
    margin, 5 seeds: 0.8424 with ATEN_CPU_CAPABILITY=default, 0.8439 with AVX2 on one machine)."""
    import platform

    import torch

    return {"machine": platform.machine(), "python": platform.python_version(),
            "torch_cpu_capability": str(torch.backends.cpu.get_cpu_capability()), "torch_threads": torch.get_num_threads()}


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
