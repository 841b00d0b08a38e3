"""In-memory shapes of trajectory data, shared by the generator (writer), the store and distillation (reader).

A *step* is one pick: with query size b, an AL round is b consecutive steps over the same
K candidates, the mask growing as candidates are taken (sequential greedy batch selection).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from metaal.acquisition.features import BATCH_PROPOSERS

FORMAT = "metaal-trajectories"
FORMAT_VERSION = 1

# name -> (dtype, trailing shape given K, F, G)
STEP_ARRAYS = {
    "candidates": (np.float32, lambda K, F, G: (K, F)),
    "context": (np.float32, lambda K, F, G: (G,)),
    "mask": (np.bool_, lambda K, F, G: (K,)),
    "oracle_gain": (np.float32, lambda K, F, G: (K,)),  # validation-loss decrease
    "oracle_acc_gain": (np.float32, lambda K, F, G: (K,)),  # validation-accuracy change (NaN if not measured)
    "action": (np.int32, lambda K, F, G: ()),  # candidate taken (roll-in policy)
    "expert_action": (np.int32, lambda K, F, G: ()),  # argmax oracle gain among valid candidates
    "reward": (np.float32, lambda K, F, G: ()),  # realised improvement, on the round's last step
    "terminal": (np.bool_, lambda K, F, G: ()),
    "episode": (np.int32, lambda K, F, G: ()),
    "round_end": (np.bool_, lambda K, F, G: ()),  # last pick of an AL round (model retrained after it)
    # batch oracle: each proposer's whole batch's gains (features.BATCH_PROPOSERS order), the same on every
    # step of a round; NaN for other oracles.  The per-candidate gains above keep only the best containing batch's.
    "batch_gain": (np.float32, lambda K, F, G: (len(BATCH_PROPOSERS),)),
    "batch_acc_gain": (np.float32, lambda K, F, G: (len(BATCH_PROPOSERS),)),
}
# Step arrays added after format version 1 was fixed: a store written before them reads (and resumes) with
# NaN rows, and a record may leave them out (NaN), so that older stores and writers keep working.
LATE_STEP_ARRAYS = frozenset({"batch_gain", "batch_acc_gain"})

EPISODE_FIELDS = {
    "id": np.int64,
    "task": str,
    "seed": np.int64,
    "model": str,
    "first_step": np.int64,
    "length": np.int64,
    "final_accuracy": np.float64,  # test accuracy at the end of the episode
    "aulc": np.float64,  # mean test accuracy over the rounds
    "final_val_accuracy": np.float64,
}


@dataclass
class EpisodeRecord:
    """Everything one finished episode contributes; written to the store in one piece."""

    episode_id: int
    task: str
    seed: int
    model: str
    steps: dict[str, np.ndarray]  # STEP_ARRAYS names (except "episode") -> (T, ...) arrays
    final_accuracy: float
    aulc: float
    final_val_accuracy: float

    @property
    def length(self) -> int:
        return int(len(self.steps["action"]))


@dataclass
class Trajectories:
    """All committed steps of a store (every shard), ordered by episode id then step."""

    attrs: dict
    steps: dict[str, np.ndarray]
    episodes: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_steps(self) -> int:
        return int(len(self.steps["action"]))

    @property
    def n_episodes(self) -> int:
        return int(len(self.episodes.get("id", [])))

    @property
    def K(self) -> int:
        return int(self.steps["candidates"].shape[1])
