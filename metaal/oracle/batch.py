"""The batch oracle: which heuristic's whole batch helps most this round, measured by retraining.

The single-candidate lookahead (``finetune``/``retrain``/``first-order``) is myopic twice over:
one item's effect on ten SGD steps is small beside the noise, and a batch of the b best single
items is redundant.  Measured on the tuning tasks, picking the best single items from heuristic
proposals was *worse* than margin sampling (docs/results.md).  This oracle asks the question the
active-learning loop actually faces: each classic heuristic proposes its own batch of b items;
for each batch the learner is retrained exactly as the loop would retrain it (same initial
weights, same ``round_seed``, so the winning batch's gain is the gain the loop then realises),
and the validation gain is measured.

Candidates are the union of the batches.  A candidate's gain is the best gain of a batch that
contains it, so the expert's top-b by gain is the winning batch, and a policy that ranks items
by predicted gain learns which *kind* of item wins in which situation (early, late, many
classes, ...) from label-free features.
"""

from __future__ import annotations

import copy

import numpy as np

from metaal.acquisition import scores
from metaal.acquisition.features import BATCH_PROPOSERS  # the feature schema names each proposer
from metaal.acquisition.proposals import heuristic_batches, union_candidates
from metaal.oracle.lookahead import expert_key

REPEAT_SEED_STRIDE = 1_000_003  # repeat k retrains with round_seed + k * stride: never another round's seed
STACK = True  # batch_gains' default: one stacked retrain of every batch (True) or one retrain after another


def batch_gains(state, batches: dict[str, np.ndarray], X_val, y_val, round_seed: int,
                horizon: int = 1, repeats: int = 1, stack: bool | None = None) -> dict[str, tuple[float, float]]:
    """(validation loss gain, accuracy gain) of retraining with each batch added, vs the learner as it is.

    ``horizon`` > 1: after the batch, ``horizon - 1`` more rounds of margin sampling (same batch size,
    retrained the same way) before measuring, so a batch is also judged by what it sets up.
    ``repeats`` > 1: the gains are averaged over that many retrains (minibatch order and dropout from
    ``round_seed``, then ``round_seed + k * REPEAT_SEED_STRIDE``).  Why: with one retrain the winning
    batch is partly the one that got a lucky training run, which no label-free feature can predict.
    ``stack``: train every (batch, repeat) copy of a round as one stacked computation
    (:func:`metaal.learners.stacked.fit_many`, equal to the one-by-one retrains to float32 rounding);
    None: :data:`STACK`.
    (``scripts/oracle_noise.py`` measures the expert's noise with ``repeats``; averaging as the expert's own
    setting, ``--oracle-repeats``, was tried and retired.)
    """
    import torch
    import torch.nn.functional as F

    from metaal.learners.stacked import fit_many

    learner = state.learner
    yv = torch.as_tensor(y_val, dtype=torch.long, device=learner.device)

    def stats(lrn) -> tuple[float, float]:
        with torch.no_grad():
            logits = lrn._logits(lrn.tensor(X_val))
            return float(F.cross_entropy(logits, yv)), float((logits.argmax(1) == yv).float().mean())

    def train(trials, rows, seeds) -> None:
        if stack:
            fit_many(trials, [(X[r], y[r]) for r in rows], seeds)
        else:
            for trial, r, seed in zip(trials, rows, seeds):
                trial.fit(X[r], y[r], round_seed=seed)

    stack = STACK if stack is None else bool(stack)
    learner.net.eval()
    loss0, acc0 = stats(learner)
    X, y, lab = state.task.X, state.task.y, state.labelled
    pool = state.task.pool
    if int(repeats) < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    jobs = [(name, round_seed + k * REPEAT_SEED_STRIDE) for name in batches for k in range(int(repeats))]
    trials = [copy.deepcopy(learner) for _ in jobs]
    rows = [np.concatenate([lab, batches[name]]) for name, _ in jobs]
    train(trials, rows, [seed for _, seed in jobs])
    live = list(range(len(jobs)))
    for extra in range(1, horizon):  # margin follow-up rounds; a copy whose pool ran out stops
        live = [i for i in live if len(np.setdiff1d(pool, rows[i]))]
        for i in live:
            rest = np.setdiff1d(pool, rows[i])
            margin = scores.margin(trials[i].predict_proba(X[rest]))
            rows[i] = np.concatenate([rows[i], rest[np.argsort(margin, kind="stable")[: len(batches[jobs[i][0]])]]])
        train([trials[i] for i in live], [rows[i] for i in live], [jobs[i][1] + extra for i in live])
    gains: dict[str, list] = {name: [] for name in batches}
    for (name, _), trial in zip(jobs, trials):
        loss, acc = stats(trial)
        gains[name].append((loss0 - loss, acc - acc0))
    out = {}
    for name, g in gains.items():
        loss_gain, acc_gain = np.mean(g, axis=0)
        out[name] = (float(loss_gain), float(acc_gain))
    return out


def candidate_gains(state, n: int, X_val, y_val, round_seed: int, pool: np.ndarray | None = None, horizon: int = 1,
                    batches: dict[str, np.ndarray] | None = None, metric: str = "loss", stack: bool | None = None):
    """Candidates (sorted union of the proposers' batches) and each one's best containing batch's gains.

    Returns ``(candidates, loss_gain, acc_gain, per_batch)``; gains are float32, per_batch maps a
    proposer to its (loss gain, accuracy gain).  Ties between batches are broken by proposer order.
    ``batches``: the proposers' batches if the caller already drew them (default: drawn here from ``pool``).
    ``metric``: which batch is "best" (``expert_key``: the loss gain, or the accuracy gain with loss breaking ties).
    ``stack``: as in ``batch_gains``.
    """
    batches = heuristic_batches(state, n, pool) if batches is None else batches
    per_batch = batch_gains(state, batches, X_val, y_val, round_seed, horizon, stack=stack)
    cands = union_candidates(batches)
    names = [name for name in BATCH_PROPOSERS if name in per_batch]
    key = dict(zip(names, expert_key([per_batch[k][0] for k in names], [per_batch[k][1] for k in names], metric)))
    best = np.full(len(cands), -np.inf)
    loss = np.full(len(cands), -np.inf)
    acc = np.full(len(cands), -np.inf)
    for name in names:  # a candidate in several batches keeps the best batch's gains
        pos = np.searchsorted(cands, batches[name])
        better = key[name] > best[pos]
        best[pos[better]] = key[name]
        loss[pos[better]], acc[pos[better]] = per_batch[name]
    return cands, loss.astype(np.float32), acc.astype(np.float32), per_batch
