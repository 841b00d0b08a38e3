"""A distilled policy at inference: a Strategy named "policy" (``metaal.policy.load_policy(DIR)`` makes one).

Its candidate pipeline (optional random cap, smallest-margin pre-filter, the heuristics' batches from the
uncertain pool, features, one pick at a time) is the one ``metaal select`` and ``transfer-eval`` both use.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from metaal.acquisition import features
from metaal.acquisition.features import FeatureExtractor
from metaal.acquisition.ops import smallest_margins, uncertain_pool, unlabelled_margins
from metaal.acquisition.proposals import heuristic_batches, union_candidates
from metaal.acquisition.strategies import Strategy
from metaal.errors import MetaalError


class Policy(Strategy):
    name = "policy"
    description = "a distilled acquisition policy (metaal distill)"

    def __init__(self, scorer: torch.nn.Module, meta: dict, path: str | Path | None = None, device: str = "cpu",
                 max_candidates: int | None = None, trust_pickle: bool = False, prefilter: int | None = None):
        self.scorer = scorer.to(device).eval()
        self.meta = meta
        self.path = None if path is None else Path(path)
        self.device = torch.device(device)
        self.max_candidates = max_candidates
        self.trust_pickle = trust_pickle
        self.prefilter = prefilter  # if set: featurise only the smallest-margin candidates (prefilter_size)
        # features distillation held at 0 (DistillConfig.drop_features): zeroed here as well
        self._dropped = features.feature_columns(meta.get("dropped_features") or [])
        self._count_context = str(meta.get("count_context") or "raw")  # DistillConfig.count_context

    @property
    def algorithm(self) -> str:
        return str(self.meta.get("algorithm"))

    def score(self, feats: np.ndarray, context: np.ndarray) -> np.ndarray:
        """Scores (n,) of n candidates' features (n, F) under context (G,); any n >= 1."""
        feats = np.nan_to_num(np.asarray(feats, np.float32))  # a copy: zeroing below leaves the caller's array alone
        context = features.count_context(np.nan_to_num(np.asarray(context, np.float32)), self._count_context)
        feats[:, self._dropped[0]] = 0.0
        context[..., self._dropped[1]] = 0.0
        x = torch.as_tensor(feats, device=self.device).unsqueeze(0)
        c = torch.as_tensor(context, device=self.device).reshape(1, -1)
        with torch.no_grad():
            return self.scorer(x, c)[0].cpu().numpy().astype(np.float64)

    @property
    def margin_pool(self) -> int:
        """Batch proposals: drawn from the margin_pool * n smallest-margin items, as the expert's were (0: all)."""
        return int(self.meta.get("margin_pool") or 0)

    @property
    def choice(self) -> str:
        """How a batch is built: "items" one by one by score, or "batch" (policies distilled with the retired
        ``--choice batch``): the heuristic batch whose items score highest on average."""
        return str(self.meta.get("choice") or "items")

    @property
    def proposals(self) -> str:
        """How the policy's training rounds drew candidates: "random" (any item) or "batches"
        (the union of the heuristics' batches, metaal.oracle.batch); deployment draws the same way."""
        return str(self.meta.get("proposals", "random"))

    def select(self, state, n, candidates=None):
        return self.rank(state, n, candidates)[0]

    def rank(self, state, n: int, candidates=None, prefilter: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """n pool rows best first and the policy's score of each, on any ``AcquisitionState`` (``select``'s pool
        or the loop's state); ``prefilter`` replaces the policy's own (0: none)."""
        cands, batches = self.candidates(state, n, candidates, prefilter)
        positions, s = self.choose(FeatureExtractor(state, cands, batches=batches), n)
        return cands[positions], s

    def candidates(self, state, n: int, candidates=None,
                   prefilter: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
        """The rows the policy scores this round, and the heuristics' batches they came from (``proposals``
        "batches"; else None): an optional random cap, the smallest-margin pre-filter, then the batches."""
        prefilter = self.prefilter if prefilter is None else prefilter
        cands = self._candidates(state, n, candidates)
        if self.max_candidates is not None and len(cands) > self.max_candidates and n <= self.max_candidates:
            cands = np.sort(state.rng(29).choice(cands, size=self.max_candidates, replace=False))
        if prefilter and len(cands) > prefilter_size(prefilter, n):
            kept = smallest_margins(unlabelled_margins(state, cands), cands, prefilter_size(prefilter, n), state.rng(31))
            if self.proposals == "batches":  # random, coreset and BADGE batches also need the rest of the pool
                kept = np.union1d(kept, np.intersect1d(features.pool_sample(state), cands))
            cands = kept
        batches = None
        if self.proposals == "batches":  # after any pre-filter: coreset and BADGE then run on a bounded set
            batches = heuristic_batches(state, n, uncertain_pool(state, n, self.margin_pool, cands))
            cands = union_candidates(batches)
        return cands, batches

    def choose(self, fe, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions into ``fe.candidates`` of n picks in order, and the policy's score of each pick:
        one pick at a time, features updated after each pick."""
        if self.choice == "batch":
            feats, ctx = fe.features(batch_size=n)
            s = self.score(feats, ctx)
            picks = best_batch(feats, s, n)
            return picks, s[picks]
        taken = np.zeros(len(fe.candidates), bool)
        picks, picked_scores = [], []
        for _ in range(n):
            feats, ctx = fe.features(batch_size=n)
            s = self.score(feats, ctx)
            s[taken] = -np.inf
            pos = int(np.argmax(s))
            taken[pos] = True
            picks.append(pos)
            picked_scores.append(s[pos])
            fe.mark_selected(pos)
        return np.asarray(picks, dtype=np.int64), np.asarray(picked_scores, dtype=np.float64)

    def d3rlpy_model(self):
        """The d3rlpy algorithm saved beside the scorer (a pickle: needs trust_pickle=True)."""
        if not self.trust_pickle:
            raise MetaalError("model.d3 is a pickle; load the policy with trust_pickle=True to open it")
        name = self.meta.get("d3rlpy_model")
        if not name or self.path is None or not (self.path / name).is_file():
            raise MetaalError(f"{self.path}: no d3rlpy model in this policy")
        from metaal.policy.networks import load_d3rlpy_model  # registers the custom factories first

        return load_d3rlpy_model(self.path / name, device=str(self.device))


def batch_mean_scores(members: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Each proposer batch's mean item score: members (..., K, P), scores (..., K) -> (..., P); -inf for an
    empty batch.  The whole-batch choice (``best_batch``) takes the largest."""
    counts = members.sum(-2)
    sums = (members * np.asarray(scores, np.float64)[..., None]).sum(-2)
    return np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)


def best_batch(feats: np.ndarray, scores: np.ndarray, n: int) -> np.ndarray:
    """Positions of the proposer batch (the ``in_<proposer>`` flags of ``feats``) with the highest mean score,
    best item first; ties go to the earlier proposer in ``features.BATCH_PROPOSERS``.  A batch short of n
    items (a small pool) is topped up with the best-scoring other candidates."""
    members = features.proposer_membership(feats)  # (candidates, proposers)
    if not members.any():
        raise MetaalError("choice 'batch' needs candidates drawn from the heuristics' batches (a batch-oracle policy)")
    scores = np.asarray(scores, np.float64)
    means = batch_mean_scores(members, scores)
    chosen = np.flatnonzero(members[:, int(np.argmax(means))])
    rest = np.setdiff1d(np.arange(len(scores)), chosen)
    order = np.concatenate([chosen[np.argsort(-scores[chosen], kind="stable")], rest[np.argsort(-scores[rest], kind="stable")]])
    return order[: min(int(n), len(order))].astype(np.int64)


def prefilter_size(prefilter: int, n: int) -> int:
    """How many smallest-margin candidates a pre-filter keeps for a batch of n: ``prefilter``, at least 10 n."""
    return max(int(prefilter), 10 * int(n))
