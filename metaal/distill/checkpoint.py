"""Crash safety: the work directory ``OUT.partial`` (checkpoint, staging), its lock, and the final rename."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from metaal.errors import MetaalError
from metaal.io import hold_lock
from metaal.policy.artefact import is_policy

if TYPE_CHECKING:
    from metaal.distill.config import DistillConfig

CHECKPOINT_FORMAT = "metaal-distill-checkpoint"
CHECKPOINT_FILE = "checkpoint.pt"
STAGING_DIR = "staging"
WORK_LOCK = ".lock"  # in OUT.partial: held by the running distill (metaal.io.hold_lock)


def partial_dir(out_dir: str | Path) -> Path:
    """The work directory of a distillation into ``out_dir``: ``OUT.partial`` beside it.

    It holds ``checkpoint.pt`` (the training state, rewritten atomically every 1/20 of the steps) and
    ``staging/`` (the artifact being written).  ``staging/`` becomes ``out_dir`` by one rename, and the
    whole work directory is removed once that is done, so ``out_dir`` is never seen half-written.
    A killed run leaves it behind; the same command resumes from the checkpoint.
    """
    out_dir = Path(out_dir)
    return out_dir.parent / f"{out_dir.name}.partial"

class Checkpoints:
    """Periodic training state of one distillation (``OUT.partial/checkpoint.pt``).

    The file is a ``torch.save`` of tensors, state dicts and a JSON string only, read back with
    ``torch.load(weights_only=True)``: a planted checkpoint cannot run code.  ``key`` identifies the
    sources and the settings; a checkpoint with another key is discarded (training restarts, and
    ``notify`` says so).
    """

    def __init__(self, work_dir: Path, key: str, notify):
        self.dir = Path(work_dir)
        self.file = self.dir / CHECKPOINT_FILE
        self.key = key
        self.notify = notify

    def load(self) -> dict | None:
        """The saved state (``meta`` a dict, the rest tensors / state dicts), or None to start afresh."""
        if not self.file.is_file():
            return None
        try:
            state = torch.load(self.file, map_location="cpu", weights_only=True)
            meta = json.loads(state["meta"])
            if not isinstance(meta, dict):
                raise ValueError("no metadata")
        except Exception as exc:  # truncated, corrupt, or not weights-only (refused without running it)
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
            self.notify(f"distill: ignoring unreadable checkpoint {self.file} ({msg}); training from scratch")
            return None
        if meta.get("format") != CHECKPOINT_FORMAT or meta.get("key") != self.key:
            self.notify(f"distill: checkpoint {self.file} was made from other stores or settings; training from scratch")
            return None
        state["meta"] = meta
        return state

    @contextlib.contextmanager
    def restoring(self):
        """Around restoring a loaded state: a state that does not fit is a one-line error (and the
        work directory is then removed, so that the next run starts afresh)."""
        try:
            yield
        except Exception as exc:
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise MetaalError(f"checkpoint {self.file} does not fit this training run ({type(exc).__name__}: {msg}); "
                              "it was discarded, run the command again to train from scratch") from None

    def save(self, step: int, meta: dict, tensors: dict) -> None:
        """Write the state atomically (temp file, fsync, rename): a kill leaves the old or the new one."""
        self.dir.mkdir(parents=True, exist_ok=True)
        payload = {**tensors, "meta": json.dumps({"format": CHECKPOINT_FORMAT, "key": self.key, "step": int(step), **meta})}
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".checkpoint.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(payload, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

def checkpoint_key(sources: list[dict], cfg: DistillConfig, train_ids: np.ndarray) -> str:
    """What a checkpoint must match to be resumed: source fingerprints, settings, training episodes."""
    settings = {k: v for k, v in cfg.to_dict().items() if k not in ("verbose", "threads")}
    ident = {"sources": [s.get("fingerprint") for s in sources], "settings": settings,
             "train_episodes": [int(i) for i in train_ids], "format": CHECKPOINT_FORMAT, "version": 1}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()

def numpy_global_rng_state() -> tuple[dict, dict]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}, {
        "np_global_keys": torch.as_tensor(np.asarray(keys, dtype=np.int64))
    }

def set_numpy_global_rng_state(meta: dict, tensors: dict) -> None:
    keys = tensors["np_global_keys"].numpy().astype(np.uint32)
    np.random.set_state((meta["name"], keys, meta["pos"], meta["has_gauss"], meta["cached_gaussian"]))

def prepare_out(out_dir: Path):
    """The work directory ``OUT.partial`` (kept: it may hold a checkpoint) with an empty ``staging/``, and the
    lock (``OUT.partial/.lock``, an open file: close it to release) that keeps a second distill out of it.

    Refuses to replace a directory that is not a policy, or to use an ``OUT.partial`` that holds
    anything but a previous run's work."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise MetaalError(f"{out_dir} exists and is not a directory")
        if any(out_dir.iterdir()) and not is_policy(out_dir):
            raise MetaalError(f"{out_dir} is a non-empty directory that is not a policy; refusing to replace it")
    work = partial_dir(out_dir)
    if work.exists() and not work.is_dir():
        raise MetaalError(f"{work} exists and is not a directory; remove it to distil into {out_dir}")
    if work.is_dir():
        foreign = [p.name for p in work.iterdir()
                   if p.name not in (CHECKPOINT_FILE, STAGING_DIR, WORK_LOCK) and not p.name.startswith(".checkpoint.")]
        if foreign:
            raise MetaalError(f"{work} holds files that metaal did not write ({', '.join(sorted(foreign)[:3])}); refusing to use it")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        work.mkdir(exist_ok=True)
    except OSError as exc:
        raise MetaalError(f"cannot write policy to {out_dir}: {exc.strerror or exc}") from None
    lock = hold_lock(work / WORK_LOCK, f"policy {out_dir}")  # before touching another run's staging
    try:
        staging = work / STAGING_DIR
        if staging.exists():  # a killed run's half-written artifact: never used
            shutil.rmtree(staging)
        for stale in work.glob(".checkpoint.*.tmp"):
            stale.unlink()
        staging.mkdir()
        return work, lock
    except OSError as exc:
        lock.close()
        raise MetaalError(f"cannot write policy to {out_dir}: {exc.strerror or exc}") from None

def commit(tmp: Path, out_dir: Path) -> None:
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
        os.rmdir(old)
        os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
