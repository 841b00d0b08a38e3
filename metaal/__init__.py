"""metaal: learn active-learning acquisition functions from expert lookahead trajectories.

The public API mirrors the CLI; names are imported lazily so that ``import metaal`` (and
light submodules such as ``metaal.store``) do not pay for torch until it is needed.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "MetaalError": "metaal.errors",
    "load_task": "metaal.tasks",
    "load_dataset": "metaal.tasks",
    "Learner": "metaal.learners",
    "LearnerConfig": "metaal.config",
    "get_strategy": "metaal.registry",
    "strategy_names": "metaal.registry",
    "LoopConfig": "metaal.config",
    "run_episode": "metaal.loop",
    "EvalConfig": "metaal.config",
    "transfer_eval": "metaal.evaluate",
    "GenerateConfig": "metaal.generate",
    "generate": "metaal.generate",
    "OracleConfig": "metaal.config",
    "lookahead_gains": "metaal.oracle",
    "read_trajectories": "metaal.store",
    "DistillConfig": "metaal.distill",
    "distill": "metaal.distill",
    "load_policy": "metaal.policy",
    "select_next": "metaal.select",
    "rank_pool": "metaal.select",
    "Selection": "metaal.select",
    "load_pool": "metaal.tasks.pools",
    "run_study": "metaal.run",
    "default_study": "metaal.run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'metaal' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
