"""The Zarr trajectory store (format v1)."""

from metaal.store.records import EPISODE_FIELDS, FORMAT, FORMAT_VERSION, STEP_ARRAYS, EpisodeRecord, Trajectories

__all__ = ["EPISODE_FIELDS", "FORMAT", "FORMAT_VERSION", "STEP_ARRAYS", "EpisodeRecord", "Trajectories"]
