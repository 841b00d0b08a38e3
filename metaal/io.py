"""Small I/O helpers: atomic writes (so a killed job never leaves a half-written file) and versions."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from metaal.errors import MetaalError


def hold_lock(path: str | Path, what: str):
    """An exclusive advisory lock on ``path`` (created if missing), held until the returned file is closed.

    Two processes writing the same output (a user who launches a job twice) would corrupt each other's
    work (a resuming store writer cuts what it takes for a killed run's partial episode; a second distill
    clears the first one's staging directory), so the second one stops with a one-line error naming the
    first: the lock file holds its owner's pid, host and command line.  The lock is the kernel's
    (``flock``), not the file's existence, so it dies with its process: a lock file left by a killed run
    is stale, and the next run takes it over and writes itself in as the owner."""
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
        raise MetaalError(f"{what} is in use by {lock_owner(path)} (lock {path}); wait for it to finish or use "
                          "another path") from None
    try:  # "a+" appends wherever the position is: truncate first, then this owner is the whole file
        fh.truncate(0)
        fh.write(json.dumps(_owner()) + "\n")
        fh.flush()
    except OSError:
        pass  # the lock holds all the same; only the owner's name is missing for the next one's message
    return fh


def _owner() -> dict:
    import socket
    import time

    return {"pid": os.getpid(), "host": socket.gethostname(), "command": command_line(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def lock_owner(path: str | Path) -> str:
    """Who holds the lock at ``path``, in words (for the message of the process that did not get it)."""
    try:
        owner = json.loads(Path(path).read_text().strip().splitlines()[-1])
        return (f"another metaal process (pid {owner['pid']} on {owner['host']}, since {owner['since']}: "
                f"{owner['command']})")
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return "another metaal process"


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextmanager
def atomic_output(path: str | Path):
    """A temporary path beside ``path`` for a writer that wants a file name (a plot's savefig, torch.save); it
    is renamed onto ``path`` when the block ends without error and removed otherwise, so ``path`` is always
    the previous complete file or the new complete one.  Pass the format explicitly: the name ends in .tmp."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


TMP_SUFFIX = ".tmp"  # every temporary file of atomic_write_text / atomic_output: .NAME.XXXXXXXX.tmp


def remove_stale_temporaries(directory: str | Path, outputs: tuple[str, ...], recursive: bool = False) -> int:
    """Delete the temporary files a killed writer left in ``directory`` for the outputs whose names start with
    one of ``outputs`` (call it only while holding the directory's lock: another writer's temporaries are live;
    and a user's own files, whatever their names, are never touched).  Returns how many were removed."""
    n = 0
    directory = Path(directory)
    found = directory.rglob(f".*{TMP_SUFFIX}") if recursive else directory.glob(f".*{TMP_SUFFIX}")
    for p in found:
        if p.is_file() and p.name[1:].startswith(outputs):
            try:
                p.unlink()
                n += 1
            except OSError:
                pass
    return n


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
    check_output_dir(path, what)
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


def check_output_dir(path: str | Path, what: str = "output directory") -> None:
    """Fail with a one-line error unless ``path`` is, or can be created as, a writable directory, writing
    nothing: ``path`` must be a directory or absent, and the nearest existing directory on the way must
    accept a file (tried with a temporary file, removed at once: permission bits do not show a read-only
    file system, nor anything to root)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MetaalError(f"cannot create {what} {path}: it exists and is not a directory")
    probe_dir = path
    while not probe_dir.exists():
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise MetaalError(f"cannot create {what} {path}: {probe_dir} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=probe_dir, prefix=".metaal-probe.", suffix=".tmp")
    except OSError as exc:
        verb = "write to" if probe_dir == path else "create"
        raise MetaalError(f"cannot {verb} {what} {path}: {probe_dir}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)


def check_output_file(path: str | Path, what: str = "output file") -> None:
    """Fail with a one-line error unless ``path`` can be written as a file (not a directory; its directory
    exists or can be created, and is writable), writing nothing."""
    path = Path(path)
    if path.is_dir():
        raise MetaalError(f"cannot write {what} {path}: it is a directory")
    try:
        check_output_dir(path.parent, "directory")
    except MetaalError as exc:
        raise MetaalError(f"cannot write {what} {path}: {exc.problems[0]}") from None


def max_workers() -> int:
    """The most worker processes a command starts: 4 per CPU this process may use.  More cannot run at
    once and only multiply memory (each worker imports torch: about 300 MB), so a larger ``--workers`` is
    a typo or a job script written for another machine, reported before any process starts."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    return 4 * max(cpus, 1)


def check_workers(workers: int | None, option: str = "--workers") -> None:
    if workers is None:
        return
    if workers < 1:
        raise MetaalError(f"{option} must be at least 1, got {workers}")
    if workers > max_workers():
        raise MetaalError(f"{option} {workers} is more processes than this machine can run: at most {max_workers()} "
                          f"(4 per CPU, {max_workers() // 4} CPUs)")


_COMMAND: list[str] = []


def set_command(argv: list[str]) -> None:
    """Record the command being run (metaal.cli does, so that a CLI call made from Python, as in the tests,
    records its own arguments rather than the host program's)."""
    _COMMAND[:] = [str(a) for a in argv]


def command_line() -> str:
    """The command line of this process, with the console script or ``python -m metaal.cli`` as ``metaal``."""
    import shlex
    import sys

    argv = list(_COMMAND or sys.argv) or ["python"]
    first = Path(argv[0]).name
    if first in ("metaal", "cli.py", "__main__.py") or argv[0].endswith(("metaal/cli.py", "metaal.cli")):
        argv = ["metaal", *argv[1:]]
    return shlex.join(argv)


_GIT: dict = {}


def git_commit() -> dict:
    """The commit of the metaal code that runs: ``{"commit": sha or "unknown", "dirty": bool or None}``.

    Only when the package is imported from a git checkout of metaal itself (an editable install); an
    installed wheel, a missing git or any git error gives "unknown", never a failure."""
    if _GIT:
        return dict(_GIT)
    import subprocess

    pkg = Path(__file__).resolve().parent
    info = {"commit": "unknown", "dirty": None}
    try:
        def git(*args):
            return subprocess.run(["git", "-C", str(pkg), *args], capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()

        top = Path(git("rev-parse", "--show-toplevel")).resolve()
        if top / "metaal" == pkg:
            info = {"commit": git("rev-parse", "HEAD"),
                    "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", "."))}
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    _GIT.update(info)
    return dict(info)


def provenance() -> dict:
    """What made a results file or a policy, beside its config, versions and platform: the code's git commit
    (uncommitted changes to metaal/ flagged as dirty), the command line, the host and the time."""
    import socket
    import time

    g = git_commit()
    return {"git_commit": g["commit"], "git_dirty": g["dirty"], "command": command_line(),
            "host": socket.gethostname(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


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
