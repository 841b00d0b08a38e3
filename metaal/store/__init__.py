"""The Zarr trajectory store (format v1)."""

from metaal.store.records import EPISODE_FIELDS, FORMAT, FORMAT_VERSION, STEP_ARRAYS, EpisodeRecord, Trajectories
from metaal.store.zarr_store import (
    TrajectoryWriter,
    check_writer_target,
    fingerprint,
    open_writer,
    read_trajectories,
    store_attrs,
    store_status,
)

__all__ = [
    "EPISODE_FIELDS",
    "FORMAT",
    "FORMAT_VERSION",
    "STEP_ARRAYS",
    "EpisodeRecord",
    "TrajectoryWriter",
    "Trajectories",
    "check_writer_target",
    "fingerprint",
    "open_writer",
    "read_trajectories",
    "store_attrs",
    "store_status",
]
