"""Trajectories in: load stores, check their schema, split whole episodes, and show the policy its inputs."""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np

from metaal.acquisition import features
from metaal.errors import MetaalError
from metaal.store.records import Trajectories


def episode_bounds(steps: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(episode ids, first step, length) of the contiguous episode runs in the step arrays."""
    ep = np.asarray(steps["episode"])
    if len(ep) == 0:
        return ep, np.zeros(0, np.int64), np.zeros(0, np.int64)
    change = np.flatnonzero(ep[1:] != ep[:-1]) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [len(ep)]]))
    ids = ep[starts]
    if len(np.unique(ids)) != len(ids):
        raise MetaalError("trajectory steps are not grouped by episode (an episode id appears in two runs)")
    return ids, starts, lengths

def split_episodes(trajs: Trajectories, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train episode ids, validation episode ids), a seeded split of whole episodes."""
    ids, _, _ = episode_bounds(trajs.steps)
    n = len(ids)
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    else:
        n_val = 0
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(ids[perm[n_val:]]), np.sort(ids[perm[:n_val]])

def subset_steps(steps: dict, episode_ids: np.ndarray | None) -> tuple[dict, np.ndarray]:
    """The step arrays of the given episodes (order kept) and the selected step indices."""
    if episode_ids is None:
        idx = np.arange(len(steps["action"]))
    else:
        idx = np.flatnonzero(np.isin(steps["episode"], episode_ids))
    return {k: np.asarray(v)[idx] for k, v in steps.items()}, idx

def load_sources(stores) -> tuple[Trajectories, list[dict]]:
    if isinstance(stores, Trajectories):
        attrs_sources = stores.attrs.get("sources")
        if isinstance(attrs_sources, list) and attrs_sources:
            return stores, attrs_sources
        return stores, [{"path": None, "fingerprint": _memory_fingerprint(stores)}]
    if isinstance(stores, str | os.PathLike):
        stores = [stores]
    paths = [str(p) for p in stores]
    if not paths:
        raise MetaalError("no trajectory store given")
    from metaal.store import fingerprint, read_trajectories

    trajs = read_trajectories(paths)
    return trajs, [{"path": p, "fingerprint": fingerprint(p)} for p in paths]

def policy_inputs(trajs: Trajectories, names: list[str], count_context: str) -> Trajectories:
    """A copy of ``trajs`` as the policy sees them (the store itself is not touched): the count context
    transformed (features.count_context), then the ``names`` columns held at 0."""
    if not names and count_context == "raw":
        return trajs
    cand_cols, ctx_cols = features.feature_columns(names)
    steps = dict(trajs.steps)
    steps["candidates"] = np.array(steps["candidates"], copy=True)
    steps["candidates"][..., cand_cols] = 0.0
    steps["context"] = np.array(features.count_context(steps["context"], count_context), copy=True)
    steps["context"][..., ctx_cols] = 0.0
    return dataclasses.replace(trajs, steps=steps)

def _memory_fingerprint(trajs: Trajectories) -> str:
    h = hashlib.sha256()
    for k in sorted(trajs.steps):
        a = np.ascontiguousarray(trajs.steps[k])
        h.update(k.encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return "sha256:" + h.hexdigest()[:16]

def check_store(trajs: Trajectories, where: str) -> None:
    schema = trajs.attrs.get("schema")
    if schema is None:
        raise MetaalError(f"{where}: no feature schema in the store attributes")
    features.check_schema(schema, where)
    F, G = len(features.FEATURE_NAMES), len(features.CONTEXT_NAMES)
    c, x = trajs.steps["candidates"], trajs.steps["context"]
    if c.ndim != 3 or c.shape[2] != F or x.ndim != 2 or x.shape[1] != G:
        raise MetaalError(f"{where}: step arrays have shape {c.shape} / {x.shape}, expected (N, K, {F}) / (N, {G})")
    if trajs.n_steps == 0:
        raise MetaalError(f"{where}: the store has no committed steps")
