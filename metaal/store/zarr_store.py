"""The Zarr trajectory store (format v1): crash-safe episode appends, sharded writers, one union reader.

Layout of a store directory::

    zarr.json                      root group; attrs: format, format_version, feature_names, context_names,
                                   schema, K, oracle, config, versions
    steps/<name>                   STEP_ARRAYS, (N, ...) along axis 0      } written by the writer with shard=None
    episodes/<field>               EPISODE_FIELDS, one row per episode     }
    shards/<shard>/steps/<name>    the same arrays, one group per parallel writer (shard="w3", "slurm-2-of-8", ...)
    shards/<shard>/episodes/<field>

``LATE_STEP_ARRAYS`` (steps/batch_gain, steps/batch_acc_gain: every heuristic batch's own gains) joined format v1
later; a group written before them has no such directory and reads them as NaN, and a writer resuming it first
pads them with NaN to its committed length.

Commit protocol (per writer group): ``append`` first appends every step array, then every episode field
except ``id``, and ``episodes/id`` last.  An episode exists only once its id row is written.  zarr's append
writes the enlarged shape first and the chunk second (each file atomically), so a kill between the two
leaves a trailing id row holding the fill value -1: such rows do not count.  On reopening a group for
writing, everything past the last committed episode is cut off, so a run killed at any moment (SIGKILL)
resumes with no partial episode visible and nothing duplicated.  Readers only ever look at the committed
rows and at the step ranges those rows name.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec
from zarr.core.sync import sync

from metaal.errors import MetaalError
from metaal.io import hold_lock
from metaal.store.records import (
    EPISODE_FIELDS,
    FORMAT,
    FORMAT_VERSION,
    LATE_STEP_ARRAYS,
    STEP_ARRAYS,
    EpisodeRecord,
    Trajectories,
)

# Root attrs that define a store's identity: a writer may only add to a store whose identity matches.
IDENTITY_KEYS = ("format_version", "schema", "feature_names", "context_names", "K", "oracle", "config")
# What several stores must share to be read (and distilled) together.
SCHEMA_KEYS = ("format_version", "schema", "feature_names", "context_names", "K")
REQUIRED_ATTRS = ("feature_names", "context_names", "schema", "K", "oracle", "config", "versions")

ROOT_NAME = "root"  # the root group's name in store_status
WRITER_LOCK = ".metaal-writer.lock"  # in each writer group: held while a writer is open (metaal.io.hold_lock)
_SHARD_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_STEP_CHUNK_BYTES = 1 << 20  # about 1 MiB chunks of steps/candidates (uncompressed), the widest array
_STEP_CHUNK_ROWS = (1024, 16384)  # bounds on rows per chunk, the same for every step array
_EPISODE_CHUNK_ROWS = 4096
_ID_FILL = -1  # fill value of episodes/id: a row still holding it is not committed
_COMPRESSOR = BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")
_STEP_NAMES = tuple(STEP_ARRAYS)
_FIELDS_BEFORE_ID = tuple(f for f in EPISODE_FIELDS if f != "id")


# ---------------------------------------------------------------------------------------------- helpers
def _jsonable(value):
    """``value`` as it reads back from zarr's JSON attrs (tuples -> lists, numpy scalars -> numbers)."""

    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"attribute value of type {type(o).__name__} is not JSON-serialisable")

    return json.loads(json.dumps(value, default=default))


def _dims(attrs: dict) -> tuple[int, int, int]:
    return int(attrs["K"]), len(attrs["feature_names"]), len(attrs["context_names"])


def _step_chunk_rows(K: int, F: int, G: int) -> int:
    """Rows per chunk of every step array: about 1 MiB of candidates (each append rewrites a partial chunk)."""
    row_bytes = max(1, 4 * K * max(F, 1))
    lo, hi = _STEP_CHUNK_ROWS
    return int(min(hi, max(lo, _STEP_CHUNK_BYTES // row_bytes)))


def _read_root_meta(path: Path) -> dict | None:
    """The root zarr.json of ``path`` as a dict, or None when there is none; MetaalError when unreadable."""
    meta = path / "zarr.json"
    if not meta.is_file():
        return None
    try:
        return json.loads(meta.read_text())
    except (OSError, ValueError) as e:
        raise MetaalError(f"trajectory store {path}: unreadable metadata {meta.name}: {e}") from e


def _check_format(path: Path, attrs: dict) -> None:
    if attrs.get("format") != FORMAT:
        raise MetaalError(f"{path} is a zarr store of another format ({attrs.get('format')!r}), not {FORMAT!r}")
    if attrs.get("format_version") != FORMAT_VERSION:
        raise MetaalError(
            f"trajectory store {path} has format_version {attrs.get('format_version')!r}; "
            f"this metaal reads and writes format_version {FORMAT_VERSION}"
        )


def _load_root_attrs(path: Path) -> dict:
    """Root attrs of an existing metaal store; MetaalError if missing, not a store, or of another format."""
    if not path.exists():
        raise MetaalError(f"trajectory store {path} does not exist")
    if not path.is_dir():
        raise MetaalError(f"{path} is not a metaal trajectory store (not a directory)")
    meta = _read_root_meta(path)
    if meta is None:
        raise MetaalError(f"{path} is not a metaal trajectory store (no zarr.json)")
    if meta.get("zarr_format") != 3 or meta.get("node_type") != "group":
        raise MetaalError(f"{path} is not a metaal trajectory store (not a zarr v3 group)")
    attrs = meta.get("attributes") or {}
    if "format" not in attrs:
        raise MetaalError(f"{path} is not a metaal trajectory store (zarr group without a 'format' attribute)")
    _check_format(path, attrs)
    return attrs


def _identity_diff(a: dict, b: dict) -> list[str]:
    return [k for k in IDENTITY_KEYS if _jsonable(a.get(k)) != _jsonable(b.get(k))]


def _group_dirs(path: Path) -> list[tuple[str, Path]]:
    """(name, directory) of every writer group in a store: the root (if it holds episodes), then shards by name."""
    groups = []
    # a group counts once its episodes/id array exists (created last, after every other array)
    if (path / "episodes" / "id" / "zarr.json").is_file():
        groups.append((ROOT_NAME, path))
    shards = path / "shards"
    if shards.is_dir():
        for name in sorted(os.listdir(shards)):
            if (shards / name / "episodes" / "id" / "zarr.json").is_file():
                groups.append((name, shards / name))
    return groups


def _open_array(path: Path, gdir: Path, rel: str, mode: str = "r") -> zarr.Array:
    try:
        return zarr.open_array(str(gdir / rel), mode=mode, zarr_format=3)
    except Exception as e:  # zarr raises many kinds for missing/garbled metadata
        raise MetaalError(f"trajectory store {path}: cannot open array {gdir.relative_to(path) / rel}: {e}") from e


def _read(path: Path, arr: zarr.Array, stop: int, what: str) -> np.ndarray:
    try:
        return np.asarray(arr[:stop])
    except MemoryError:
        raise
    except Exception as e:  # numcodecs/blosc raise RuntimeError, zarr ValueError/TypeError, OSError...
        raise MetaalError(
            f"trajectory store {path}: corrupt or unreadable data in {what}: {type(e).__name__}: {e}"
        ) from e


def _committed_count(ids: np.ndarray) -> int:
    """Number of committed rows: trailing rows still holding the fill value are uncommitted."""
    n = len(ids)
    while n > 0 and ids[n - 1] == _ID_FILL:
        n -= 1
    return n


def _read_episode_table(path: Path, gdir: Path, fields: Iterable[str] = tuple(EPISODE_FIELDS)) -> dict[str, np.ndarray]:
    """The committed episode rows of one writer group (``id`` read first, so later appends never confuse it)."""
    what = gdir.relative_to(path)
    id_arr = _open_array(path, gdir, "episodes/id")
    ids = _read(path, id_arr, id_arr.shape[0], f"{what / 'episodes/id'}")
    n = _committed_count(ids)
    table = {"id": ids[:n].astype(np.int64)}
    for f in fields:
        if f == "id":
            continue
        arr = _open_array(path, gdir, f"episodes/{f}")
        if arr.shape[0] < n:
            raise MetaalError(
                f"trajectory store {path}: {what / 'episodes' / f} has {arr.shape[0]} rows, fewer than the {n} committed episodes"
            )
        col = _read(path, arr, n, f"{what / 'episodes' / f}")
        table[f] = np.array(col.tolist(), dtype=str) if EPISODE_FIELDS[f] is str else col.astype(EPISODE_FIELDS[f])
    return table


def _committed_end(table: dict[str, np.ndarray]) -> int:
    if len(table["id"]) == 0:
        return 0
    return int(table["first_step"][-1] + table["length"][-1])


def _as_paths(paths) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    out = [Path(p) for p in paths]
    if not out:
        raise MetaalError("no trajectory store given")
    return out


# ----------------------------------------------------------------------------------------------- writer
class TrajectoryWriter:
    """Appends finished episodes to one writer group (the root, or ``shards/<shard>``) of a store."""

    def __init__(self, path: Path, group_dir: Path, shard: str | None, attrs: dict):
        self.path = path
        self.shard = shard
        self.attrs = attrs
        self._dir = group_dir
        self.K, self.F, self.G = _dims(attrs)
        self._trailing = {n: tuple(int(s) for s in shp(self.K, self.F, self.G)) for n, (_, shp) in STEP_ARRAYS.items()}
        # one writer per group at a time: recovery cuts a partial episode, which must not be another writer's
        self._lock = hold_lock(group_dir / WRITER_LOCK, f"trajectory store {path} ({shard or ROOT_NAME})")
        try:
            self._open_and_recover()
        except BaseException:
            self.close()
            raise

    # -- setup / resume
    def _open_and_recover(self) -> None:
        try:
            group = zarr.open_group(str(self._dir), mode="a", zarr_format=3)
            steps = group.require_group("steps")
            episodes = group.require_group("episodes")
            self._steps: dict[str, zarr.Array] = {}
            for name, (dtype, _) in STEP_ARRAYS.items():
                trailing = self._trailing[name]
                if name in steps:
                    arr = steps[name]
                    if tuple(arr.shape[1:]) != trailing:
                        raise MetaalError(
                            f"trajectory store {self.path}: steps/{name} has shape {arr.shape}, expected (N, {trailing})"
                        )
                else:
                    arr = steps.create_array(
                        name,
                        shape=(0, *trailing),
                        chunks=(_step_chunk_rows(self.K, self.F, self.G), *trailing),
                        dtype=dtype,
                        compressors=_COMPRESSOR,
                        fill_value=np.nan if name in LATE_STEP_ARRAYS else 0,
                    )
                self._steps[name] = arr
            self._episodes: dict[str, zarr.Array] = {}
            # id is created last: without it the group holds no episode at all
            for f in (*_FIELDS_BEFORE_ID, "id"):
                if f in episodes:
                    arr = episodes[f]
                elif EPISODE_FIELDS[f] is str:
                    arr = episodes.create_array(f, shape=(0,), chunks=(_EPISODE_CHUNK_ROWS,), dtype=str)
                else:
                    arr = episodes.create_array(
                        f,
                        shape=(0,),
                        chunks=(_EPISODE_CHUNK_ROWS,),
                        dtype=EPISODE_FIELDS[f],
                        compressors=_COMPRESSOR,
                        fill_value=_ID_FILL if f == "id" else 0,
                    )
                self._episodes[f] = arr
        except MetaalError:
            raise
        except OSError as e:
            raise MetaalError(f"cannot write trajectory store {self.path}: {e}") from e
        except Exception as e:
            raise MetaalError(f"trajectory store {self.path}: cannot open writer group {self._group_name}: {e}") from e

        table = _read_episode_table(self.path, self._dir, ("first_step", "length"))
        n = len(table["id"])
        end = _committed_end(table)
        try:
            # cut off everything past the last committed episode (id last, as it is the commit mark)
            for name, arr in self._steps.items():
                if name in LATE_STEP_ARRAYS and arr.shape[0] < end:  # a store from before the array: NaN rows
                    arr.resize((end, *arr.shape[1:]))
                if arr.shape[0] < end:
                    raise MetaalError(
                        f"trajectory store {self.path}: {self._group_name}/steps/{name} has {arr.shape[0]} rows, "
                        f"fewer than the {end} committed steps"
                    )
                if arr.shape[0] != end:
                    arr.resize((end, *arr.shape[1:]))
            for f in (*_FIELDS_BEFORE_ID, "id"):
                if self._episodes[f].shape[0] != n:
                    self._episodes[f].resize((n,))
        except OSError as e:
            raise MetaalError(f"cannot write trajectory store {self.path}: {e}") from e
        # temporary files of writes cut short by a kill (only this group's: other writers may be running)
        for p in [
            *self._dir.glob("*.partial"),
            *(self._dir / "steps").rglob("*.partial"),
            *(self._dir / "episodes").rglob("*.partial"),
        ]:
            p.unlink(missing_ok=True)
        self._n = n
        self._end = end
        self._own_ids = {int(i) for i in table["id"]}

    @property
    def _group_name(self) -> str:
        return ROOT_NAME if self.shard is None else f"shards/{self.shard}"

    # -- API
    def committed_ids(self) -> set[int]:
        """Episode ids committed anywhere in the store (root and every shard), read afresh from disk."""
        ids: set[int] = set()
        for _, gdir in _group_dirs(self.path):
            ids.update(int(i) for i in _read_episode_table(self.path, gdir, ())["id"])
        return ids | self._own_ids

    @property
    def n_episodes(self) -> int:
        """Episodes committed in this writer's group."""
        return self._n

    def append(self, record: EpisodeRecord) -> None:
        """Write one finished episode: step arrays, then the episode row, ``episodes/id`` last (the commit)."""
        eid = int(record.episode_id)
        if eid < 0 or eid > np.iinfo(np.int32).max:
            raise ValueError(f"episode id {eid} out of range [0, 2**31)")
        if eid in self._own_ids:
            raise ValueError(f"episode {eid} is already committed in {self._group_name} of {self.path}")
        T = record.length
        blocks = {}
        for name, (dtype, _) in STEP_ARRAYS.items():
            if name == "episode":
                blocks[name] = np.full(T, eid, dtype=np.int32)
                continue
            if name not in record.steps and name in LATE_STEP_ARRAYS:
                blocks[name] = np.full((T, *self._trailing[name]), np.nan, dtype=dtype)
                continue
            if name not in record.steps:
                raise ValueError(f"episode {eid}: step array {name!r} missing")
            a = np.asarray(record.steps[name])
            if a.shape != (T, *self._trailing[name]):
                raise ValueError(
                    f"episode {eid}: steps[{name!r}] has shape {a.shape}, expected {(T, *self._trailing[name])}"
                )
            blocks[name] = np.ascontiguousarray(a, dtype=dtype)
        row = {
            "task": np.array([str(record.task)], dtype=object),
            "seed": np.array([record.seed], dtype=np.int64),
            "model": np.array([str(record.model)], dtype=object),
            "first_step": np.array([self._end], dtype=np.int64),
            "length": np.array([T], dtype=np.int64),
            "final_accuracy": np.array([record.final_accuracy], dtype=np.float64),
            "aulc": np.array([record.aulc], dtype=np.float64),
            "final_val_accuracy": np.array([record.final_val_accuracy], dtype=np.float64),
        }
        pending = [(self._episodes[f], row[f]) for f in _FIELDS_BEFORE_ID]
        if T > 0:
            pending += [(self._steps[name], blocks[name]) for name in _STEP_NAMES]
        try:
            # everything but the id row, concurrently (zarr's file I/O runs in threads), then the commit
            sync(_append_all(pending))
            self._episodes["id"].append(np.array([eid], dtype=np.int64))
        except OSError as e:
            raise MetaalError(f"cannot write trajectory store {self.path}: {e}") from e
        self._n += 1
        self._end += T
        self._own_ids.add(eid)

    def close(self) -> None:
        """Release the group's writer lock (nothing is buffered: every append is on disk when it returns)."""
        lock, self._lock = getattr(self, "_lock", None), None
        if lock is not None:
            lock.close()

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"TrajectoryWriter({str(self.path)!r}, group={self._group_name!r}, episodes={self._n}, steps={self._end})"
        )


async def _append_all(pending: list[tuple[zarr.Array, np.ndarray]]) -> None:
    # wait for every append (no write left running in the background), then raise the first failure
    results = await asyncio.gather(
        *(arr.async_array.append(data, axis=0) for arr, data in pending), return_exceptions=True
    )
    for r in results:
        if isinstance(r, BaseException):
            raise r


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _create_root(path: Path, attrs: dict) -> None:
    """Create the root group with ``attrs`` unless it exists (several processes may race here)."""
    base = _nearest_existing(path)
    if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
        raise MetaalError(f"cannot create trajectory store {path}: {base} is not a writable directory")
    try:
        zarr.create_group(str(path), attributes=attrs, overwrite=False, zarr_format=3)
    except zarr.errors.ContainsGroupError:
        pass  # another writer created it first: the caller verifies its identity
    except OSError as e:
        raise MetaalError(f"cannot create trajectory store {path}: {e}") from e


def check_writer_target(path, attrs: dict, overwrite: bool = False) -> str:
    """Whether a writer with store ``attrs`` may open ``path``, writing nothing (generate checks it with its
    other inputs; open_writer again when it opens): "new" (absent or empty), "resume" (a metaal store with
    the same identity) or "overwrite" (a metaal store to delete first); a MetaalError otherwise."""
    path = Path(path)
    if not path.exists():
        return "new"
    if not path.is_dir():
        raise MetaalError(f"{path} exists and is not a metaal trajectory store (not a directory)")
    # zarr writes every file as <name>.<uuid>.partial and renames it: a run killed while creating the
    # root leaves only such a file (no zarr.json), which is still an empty store, not a foreign folder.
    # The leftover is not deleted here: another writer may be creating the root at this moment.
    if all(p.name.endswith(".partial") for p in path.iterdir()):
        return "new"
    if overwrite:
        meta = _read_root_meta(path)
        if meta is None or (meta.get("attributes") or {}).get("format") != FORMAT:
            raise MetaalError(f"{path} exists and is not a metaal trajectory store; refusing to overwrite it")
        return "overwrite"
    full = _jsonable({**attrs, "format": FORMAT, "format_version": FORMAT_VERSION})
    diff = _identity_diff(_load_root_attrs(path), full)
    if diff:
        raise MetaalError(f"trajectory store {path} was created with a different {', '.join(diff)}; "
                          "use another path or overwrite it")
    return "resume"


def open_writer(path, attrs: dict, shard: str | None = None, overwrite: bool = False) -> TrajectoryWriter:
    """Open (create or resume) a store for appending episodes.

    ``shard=None`` writes ``steps/`` and ``episodes/`` at the root; ``shard="w3"`` writes
    ``shards/w3/...`` (one writer per shard; several shard writers may run at once).  An existing store
    must have the same identity (format_version, schema, feature_names, context_names, K, oracle, config)
    unless ``overwrite=True``, which deletes it first (do that once, before starting parallel writers).
    Reopening a group cuts off any partial episode a killed run left behind.
    """
    path = Path(path)
    missing = [k for k in REQUIRED_ATTRS if k not in attrs]
    if missing:
        raise ValueError(f"store attrs lack {missing}")
    if shard is not None and (not _SHARD_RE.match(shard) or shard == ROOT_NAME):
        raise MetaalError(f"invalid shard name {shard!r}: use letters, digits, '_', '-', '.' (not {ROOT_NAME!r})")
    full = _jsonable({**attrs, "format": FORMAT, "format_version": FORMAT_VERSION})

    if check_writer_target(path, attrs, overwrite) == "overwrite":
        try:
            shutil.rmtree(path)
        except OSError as e:
            raise MetaalError(f"cannot overwrite trajectory store {path}: {e}") from e
    _create_root(path, full)
    existing = _load_root_attrs(path)  # verify: another process may have won the creation race
    diff = _identity_diff(existing, full)
    if diff:
        raise MetaalError(
            f"trajectory store {path} was created with a different {', '.join(diff)}; use another path or overwrite it"
        )

    if shard is None:
        gdir = path
    else:
        gdir = path / "shards" / shard
        try:
            for d in (path / "shards", gdir):
                try:
                    zarr.create_group(str(d), overwrite=False, zarr_format=3)
                except zarr.errors.ContainsGroupError:
                    pass
        except OSError as e:
            raise MetaalError(f"cannot write trajectory store {path}: {e}") from e
    if not os.access(gdir, os.W_OK | os.X_OK):
        raise MetaalError(f"cannot write trajectory store {path}: {gdir} is not writable")
    return TrajectoryWriter(path, gdir, shard, existing)


# ----------------------------------------------------------------------------------------------- reader
def store_attrs(path) -> dict:
    """The root attrs of a store (format, format_version, feature_names, ..., config, versions)."""
    return dict(_load_root_attrs(Path(path)))


def _tables(path: Path) -> list[tuple[str, Path, dict[str, np.ndarray]]]:
    return [(name, gdir, _read_episode_table(path, gdir)) for name, gdir in _group_dirs(path)]


def _dedup(groups: list[tuple[str, dict[str, np.ndarray]]]) -> tuple[list[tuple[int, int]], int]:
    """Which (group index, row) to keep per episode id, ordered by id; and the number of duplicate rows."""
    seen: dict[int, tuple[int, int]] = {}
    dups = 0
    for gi, (_, table) in enumerate(groups):
        for r, eid in enumerate(table["id"].tolist()):
            if eid in seen:
                dups += 1
            else:
                seen[eid] = (gi, r)
    return [seen[k] for k in sorted(seen)], dups


def read_trajectories(paths) -> Trajectories:
    """Every committed episode of one or several stores (root and all shards), ordered by episode id.

    Steps are ordered by (episode id, step); ``episodes["first_step"]`` indexes the returned arrays.
    Within one store, an episode id present in several groups is returned once (the first copy: root,
    then shards by name).  Several stores (e.g. DAgger iterations with different roll-ins) only need the
    same feature schema and K; each later store's episode ids are shifted past the earlier ones so that
    none is mistaken for a duplicate.  Rows a running or killed writer has not committed are not returned.
    """
    plist = _as_paths(paths)
    attrs0 = None
    groups = []  # (label, table, steps dict)
    id_offset = 0
    for path in plist:
        attrs = _load_root_attrs(path)
        if attrs0 is None:
            attrs0 = attrs
        else:
            diff = [k for k in SCHEMA_KEYS if _jsonable(attrs0.get(k)) != _jsonable(attrs.get(k))]
            if diff:
                raise MetaalError(
                    f"trajectory store {path} differs from {plist[0]} in {', '.join(diff)}; cannot read them together"
                )
        next_offset = id_offset
        for name, gdir, table in _tables(path):
            if id_offset:
                table = {**table, "id": table["id"] + id_offset}
            if len(table["id"]):
                next_offset = max(next_offset, int(table["id"].max()) + 1)
            end = _committed_end(table)
            steps = {}
            for s in _STEP_NAMES:
                if s in LATE_STEP_ARRAYS and not (gdir / "steps" / s).is_dir():  # written before the array existed
                    dtype, shp = STEP_ARRAYS[s]
                    steps[s] = np.full((end, *shp(*_dims(attrs))), np.nan, dtype=dtype)
                    continue
                arr = _open_array(path, gdir, f"steps/{s}")
                if arr.shape[0] < end:
                    raise MetaalError(
                        f"trajectory store {path}: {gdir.relative_to(path) / 'steps' / s} has {arr.shape[0]} rows, fewer than the {end} committed steps"
                    )
                steps[s] = _read(path, arr, end, str(gdir.relative_to(path) / "steps" / s))
            if id_offset:
                steps["episode"] = (steps["episode"].astype(np.int64) + id_offset).astype(np.int32)
            groups.append((f"{path}:{name}", table, steps))
        id_offset = next_offset

    K, F, G = _dims(attrs0)
    keep, _ = _dedup([(g[0], g[1]) for g in groups])
    # concatenate all groups, then gather the kept episodes' step ranges in id order
    offsets = np.cumsum([0] + [len(g[2]["action"]) for g in groups])
    if keep:
        gi = np.array([k[0] for k in keep], dtype=np.int64)
        ri = np.array([k[1] for k in keep], dtype=np.int64)
        first = np.empty(len(keep), dtype=np.int64)
        length = np.empty(len(keep), dtype=np.int64)
        for g in np.unique(gi):
            sel = gi == g
            first[sel] = groups[g][1]["first_step"][ri[sel]] + offsets[g]
            length[sel] = groups[g][1]["length"][ri[sel]]
    else:
        gi = ri = first = length = np.zeros(0, dtype=np.int64)
    total = int(length.sum())
    new_first = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64) if len(keep) else np.zeros(0, np.int64)
    # index of every returned step in the concatenation of all groups
    idx = np.repeat(first - new_first, length) + np.arange(total, dtype=np.int64)
    identity = total == int(offsets[-1]) and bool(np.all(idx == np.arange(total)))

    out_steps = {}
    for s, (dtype, shp) in STEP_ARRAYS.items():
        trailing = tuple(shp(K, F, G))
        if groups:
            cat = groups[0][2][s] if len(groups) == 1 else np.concatenate([g[2][s] for g in groups])
        else:
            cat = np.zeros((0, *trailing), dtype=dtype)
        out_steps[s] = (cat if identity else cat[idx]).astype(dtype, copy=False)

    episodes = {}
    for f, dtype in EPISODE_FIELDS.items():
        if keep:
            col = [groups[g][1][f][r] for g, r in keep]
            episodes[f] = np.array(col, dtype=str) if dtype is str else np.array(col, dtype=dtype)
        else:
            episodes[f] = np.zeros(0, dtype=str if dtype is str else dtype)
    episodes["first_step"] = new_first
    episodes["length"] = length
    return Trajectories(attrs=dict(attrs0), steps=out_steps, episodes=episodes)


def store_status(path) -> dict:
    """Per-group and total counts of committed episodes and steps, duplicates, and planned-but-missing ids.

    Per group: ``uncommitted_steps`` / ``uncommitted_rows`` are what a killed writer left past its last
    committed episode (invisible to readers, cut off when the group is reopened for writing).
    ``uninitialised_shards`` are shard directories without an episode index yet."""
    path = Path(path)
    attrs = _load_root_attrs(path)
    tables = _tables(path)
    shards = {}
    for name, gdir, table in tables:
        end = _committed_end(table)
        present = [s for s in _STEP_NAMES if s not in LATE_STEP_ARRAYS or (gdir / "steps" / s).is_dir()]
        written = max((_open_array(path, gdir, f"steps/{s}").shape[0] for s in present), default=0)
        rows = max((_open_array(path, gdir, f"episodes/{f}").shape[0] for f in EPISODE_FIELDS), default=0)
        shards[name] = {"episodes": len(table["id"]), "steps": end, "uncommitted_steps": max(0, written - end),
                        "uncommitted_rows": max(0, rows - len(table["id"]))}
    # shard directories a writer created but never finished setting up (no episodes/id array yet)
    listed = {name for name, _, _ in tables}
    shard_root = path / "shards"
    empty = sorted(d.name for d in shard_root.iterdir() if d.is_dir() and d.name not in listed) if shard_root.is_dir() else []
    keep, dups = _dedup([(n, t) for n, _, t in tables])
    steps = int(sum(int(tables[g][2]["length"][r]) for g, r in keep))
    ids = {int(tables[g][2]["id"][r]) for g, r in keep}
    planned = (attrs.get("config") or {}).get("episodes") if isinstance(attrs.get("config"), dict) else None
    missing = (
        sorted(set(range(int(planned))) - ids) if isinstance(planned, int) and not isinstance(planned, bool) else []
    )
    return {"shards": shards, "episodes": len(keep), "steps": steps, "duplicates": dups, "missing_ids": missing,
            "ids": sorted(ids), "planned": planned if isinstance(planned, int) and not isinstance(planned, bool) else None,
            "uninitialised_shards": empty}


def fingerprint(paths) -> str:
    """sha256 of a store's identity attrs, its sorted committed episode ids and its step count (cheap: no step data)."""
    plist = _as_paths(paths)
    h = hashlib.sha256()
    ids: set[int] = set()
    steps = 0
    for i, path in enumerate(plist):
        attrs = _load_root_attrs(path)
        if i == 0:
            ident = {k: attrs.get(k) for k in IDENTITY_KEYS}
            h.update(json.dumps({"format": FORMAT, **ident}, sort_keys=True).encode())
        for _, _, table in [(n, g, _read_episode_table(path, g, ("length",))) for n, g in _group_dirs(path)]:
            for eid, ln in zip(table["id"].tolist(), table["length"].tolist()):
                if eid not in ids:
                    ids.add(eid)
                    steps += int(ln)
    h.update(np.array(sorted(ids), dtype="<i8").tobytes())
    h.update(str(steps).encode())
    return h.hexdigest()
