"""The lookahead expert as a strategy (``metaal.registry`` resolves it as ``oracle``): it reads the
candidates' true labels, so it is a ceiling for reference, not a competitor."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from metaal.acquisition.ops import uncertain_pool
from metaal.acquisition.proposals import propose_candidates
from metaal.acquisition.strategies import Strategy
from metaal.errors import MetaalError
from metaal.learners.learner import derive_seed
from metaal.oracle.batch import candidate_gains
from metaal.oracle.lookahead import OracleConfig, OracleResult, expert_key, lookahead_gains


class OracleStrategy(Strategy):
    """The lookahead expert as a strategy: picks the candidates whose true label helps most."""

    name = "oracle"
    description = (
        "lookahead oracle: reads the candidates' TRUE labels and picks the largest validation-loss gain "
        "(a ceiling for reference, not a competitor)"
    )
    uses_true_labels = True

    def __init__(self, config: OracleConfig | None = None, **kw):
        if config is None:
            config = OracleConfig(**kw)
        elif kw:
            config = replace(config, **kw)
        self.config = config
        self.last_candidates: np.ndarray | None = None
        self.last_result: OracleResult | None = None

    def select(self, state, n, candidates=None):
        task = state.task
        if self.config.mode == "batch":
            pool = uncertain_pool(state, n, int(self.config.margin_pool), self._candidates(state, n, candidates))
            cands, loss_gain, acc_gain, _ = candidate_gains(state, n, task.X[task.val], task.y[task.val],
                                                            round_seed=state.round + 1, pool=pool,
                                                            horizon=int(self.config.horizon), metric=self.config.metric)
            self.last_candidates, self.last_result = cands, OracleResult(loss_gain, acc_gain)
            return cands[np.argsort(-expert_key(loss_gain, acc_gain, self.config.metric), kind="stable")[:n]]
        if candidates is None:
            pool = state.unlabelled
            if n > len(pool):
                raise MetaalError(f"cannot select {n} items from {len(pool)} candidates")
            k = min(len(pool), max(int(self.config.candidates), n))
            if self.config.proposals == "random":  # kept as it was: earlier results stay reproducible
                cands = np.asarray(state.rng(23).choice(pool, size=k, replace=False), dtype=np.int64)
            else:
                cands = propose_candidates(state, k, self.config.proposals)
        else:
            cands = self._candidates(state, n, candidates)
        seed = derive_seed(state.seed, state.round, 0x0AC1E)
        result = lookahead_gains(
            state.learner,
            task.X[state.labelled],
            task.y[state.labelled],
            task.X[cands],
            task.y[cands],
            task.X[task.val],
            task.y[task.val],
            self.config,
            seed,
        )
        self.last_candidates, self.last_result = cands, result
        order = np.argsort(-expert_key(result.loss_gain, result.acc_gain, self.config.metric), kind="stable")  # ties: first
        return cands[order[:n]]
