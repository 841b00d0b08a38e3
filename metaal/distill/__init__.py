"""Distillation: trajectory stores -> a small, permutation-equivariant acquisition policy.

Algorithms (``DistillConfig.algo``; one config class each, ``config.TRAINERS``, whose ``train`` runs its trainer):

- ``gain`` plain PyTorch: regress every valid candidate's oracle gain, turned into a within-step rank
  percentile in [0, 1] (``gain``).  No d3rlpy model is written for it.
- ``bc``   d3rlpy DiscreteBC on the expert's actions (imitation); ``cql`` d3rlpy DiscreteCQL on the roll-in's
  actions and the store's rewards (offline RL); ``bcq`` DiscreteBCQ, same data as cql (``offline``).

Modules follow the data: ``data`` (stores in, episode splits), ``targets``, the trainers, ``checkpoint`` (crash
safety), ``job`` (``distill``: train, validate on held-out episodes, write the artefact via
``metaal.policy.artefact``).  Held-out *episodes* (``val_fraction``, chosen by ``seed``) give the validation block
of the policy's metadata: agreement with the expert, top-b overlap and regret, for the policy and for every
classic heuristic on the same steps.
"""

from __future__ import annotations

import importlib

# names load lazily: `metaal.distill.config` (the CLI's defaults) imports neither torch nor d3rlpy
_EXPORTS = {
    **dict.fromkeys(("CHECKPOINT_FILE", "STAGING_DIR", "WORK_LOCK", "Checkpoints", "partial_dir"), "checkpoint"),
    **dict.fromkeys(("ALGOS", "CONFIG_KEYS", "COUNT_CONTEXTS", "GAIN_TARGETS", "RETIRED", "TRAINERS", "DistillConfig"),
                    "config"),
    **dict.fromkeys(("split_episodes", "subset_steps"), "data"),
    **dict.fromkeys(("distill", "score_steps"), "job"),
    "build_dataset": "offline",
    **dict.fromkeys(("rank_percentiles", "ranked_gain", "target_gain"), "targets"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"metaal.distill.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'metaal.distill' has no attribute {name!r}")
