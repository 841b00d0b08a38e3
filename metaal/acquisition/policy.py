"""A distilled policy at inference: ``load_policy(DIR)`` -> a Strategy named "policy".

Loading reads only ``metaal-policy.json`` and ``scorer.pt`` (``torch.load(weights_only=True)``,
which refuses arbitrary pickled objects; its sha256 must match the one the metadata records).
Pickle-based files can run code when loaded, so they are read only when the caller says
``trust_pickle=True`` (the CLI's ``--trust-pickle``): a scorer saved as a full pickle, d3rlpy's
``model.d3`` when a policy has no scorer file, and ``Policy.d3rlpy_model()``.  Scoring a policy
written by ``metaal distill`` never needs them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from metaal.acquisition import features
from metaal.acquisition.strategies import Strategy
from metaal.errors import MetaalError
from metaal.io import file_sha256

POLICY_FILE = "metaal-policy.json"
POLICY_FORMAT = "metaal-policy"
SUPPORTED_VERSIONS = (1,)


class Policy(Strategy):
    name = "policy"
    description = "a distilled acquisition policy (metaal distill)"

    def __init__(self, scorer: torch.nn.Module, meta: dict, path: str | Path | None = None, device: str = "cpu",
                 max_candidates: int | None = None, trust_pickle: bool = False, shortlist: int | None = None,
                 prefilter: int | None = None, margin_prior: float = 0.0):
        self.scorer = scorer.to(device).eval()
        self.meta = meta
        self.path = None if path is None else Path(path)
        self.device = torch.device(device)
        self.max_candidates = max_candidates
        self.trust_pickle = trust_pickle
        self.shortlist = shortlist  # if set: top shortlist*n by score, then farthest-point among them
        self.prefilter = prefilter  # if set: featurise only the smallest-margin candidates (prefilter_size)
        self.margin_prior = check_margin_prior(margin_prior, self.proposals)
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

    def choice_scores(self, feats: np.ndarray, context: np.ndarray) -> np.ndarray:
        """The scores picks are made by: ``score`` plus ``margin_prior`` for every item of margin's own batch.

        A gain scorer (``metaal run``'s) predicts each candidate's rank percentile (0 worst .. 1 best) among
        the heuristics' batches, so the prior is in those units: an item outside margin's batch is picked over
        one inside only where the policy ranks it more than ``margin_prior`` higher.  0 is the plain policy;
        from about 1 on the picks are margin's.  Why: where the expert's choice cannot be told from the
        features, imitating it learns noise, and margin is at least consistent; the prior keeps the policy's
        choice where it is sure.
        """
        s = self.score(feats, context)
        if self.margin_prior:
            s = s + self.margin_prior * (np.asarray(feats)[:, _IN_MARGIN] > 0.5)
        return s

    @property
    def margin_pool(self) -> int:
        """Batch proposals: drawn from the margin_pool * n smallest-margin items, as the expert's were (0: all)."""
        return int(self.meta.get("margin_pool") or 0)

    @property
    def choice(self) -> str:
        """How a batch is built (DistillConfig.choice): "items" one by one by score, or "batch": the
        heuristic batch whose items score highest on average."""
        return str(self.meta.get("choice") or "items")

    @property
    def proposals(self) -> str:
        """How the policy's training rounds drew candidates: "random" (any item) or "batches"
        (the union of the heuristics' batches, metaal.oracle.batch); deployment draws the same way."""
        return str(self.meta.get("proposals", "random"))

    def select(self, state, n, candidates=None):
        cands = self._candidates(state, n, candidates)
        if self.max_candidates is not None and len(cands) > self.max_candidates and n <= self.max_candidates:
            cands = np.sort(state.rng(29).choice(cands, size=self.max_candidates, replace=False))
        if self.prefilter and len(cands) > prefilter_size(self.prefilter, n):
            kept = margin_prefilter(state.pool_proba()[cands], cands, prefilter_size(self.prefilter, n), state.rng(31))
            if self.proposals == "batches":  # random, coreset and BADGE batches also need the rest of the pool
                kept = np.union1d(kept, np.intersect1d(features.pool_sample(state), cands))
            cands = kept
        batches = None
        if self.proposals == "batches":  # after any pre-filter: coreset and BADGE then run on a bounded set
            from metaal.oracle.batch import heuristic_batches, uncertain_pool, union_candidates

            batches = heuristic_batches(state, n, uncertain_pool(state, n, self.margin_pool, cands))
            cands = union_candidates(batches)
        from metaal.acquisition.features import FeatureExtractor

        fe = FeatureExtractor(state, cands, batches=batches)
        lab_emb = state.pool_embedding()[state.labelled].astype(np.float64) if self.shortlist else None
        positions, _ = self.choose(fe, n, lab_emb)
        return cands[positions]

    def choose(self, fe, n: int, labelled_embedding: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Positions into ``fe.candidates`` of n picks in order, and the policy's score of each pick.

        With ``shortlist``: the best ``shortlist * n`` by score, then farthest-point among them in the
        embedding space (``labelled_embedding`` (L, E) are the centres to stay away from).  Without it:
        one pick at a time, features updated after each pick.
        """
        if self.choice == "batch":
            feats, ctx = fe.features(batch_size=n)
            s = self.choice_scores(feats, ctx)
            picks = best_batch(feats, s, n)
            return picks, s[picks]
        if self.shortlist:
            return self._diverse_batch(fe, n, labelled_embedding)
        taken = np.zeros(len(fe.candidates), bool)
        picks, picked_scores = [], []
        for _ in range(n):
            feats, ctx = fe.features(batch_size=n)
            s = self.choice_scores(feats, ctx)
            s[taken] = -np.inf
            pos = int(np.argmax(s))
            taken[pos] = True
            picks.append(pos)
            picked_scores.append(s[pos])
            fe.mark_selected(pos)
        return np.asarray(picks, dtype=np.int64), np.asarray(picked_scores, dtype=np.float64)

    def _diverse_batch(self, fe, n: int, labelled_embedding: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Single-candidate scores are redundant within a batch: shortlist the best, then spread out."""
        from metaal.acquisition.strategies import k_center_greedy

        feats, ctx = fe.features(batch_size=n)
        s = self.choice_scores(feats, ctx)
        top = np.argsort(-s, kind="stable")[: max(n, int(self.shortlist) * n)]
        centres = np.zeros((0, fe.candidate_embedding.shape[1])) if labelled_embedding is None else labelled_embedding
        picks = top[k_center_greedy(fe.candidate_embedding[top], np.asarray(centres, dtype=np.float64), n)]
        return picks, s[picks]

    def d3rlpy_model(self):
        """The d3rlpy algorithm saved beside the scorer (a pickle: needs trust_pickle=True)."""
        if not self.trust_pickle:
            raise MetaalError("model.d3 is a pickle; load the policy with trust_pickle=True to open it")
        name = self.meta.get("d3rlpy_model")
        if not name or self.path is None or not (self.path / name).is_file():
            raise MetaalError(f"{self.path}: no d3rlpy model in this policy")
        from metaal.acquisition.networks import load_d3rlpy_model  # registers the custom factories first

        return load_d3rlpy_model(self.path / name, device=str(self.device))


_IN_MARGIN = features.FEATURE_NAMES.index("in_margin")


def check_margin_prior(weight: float, proposals: str | None = None) -> float:
    """The prior weight, refused where it could not act (negative, or, when the policy's ``proposals`` are
    given, candidates not drawn from the heuristics' batches)."""
    try:
        weight = float(weight or 0.0)
    except (TypeError, ValueError):
        raise MetaalError(f"--policy-margin-prior must be a number, got {weight!r}") from None
    if not np.isfinite(weight) or weight < 0:
        raise MetaalError(f"--policy-margin-prior must be 0 or more, got {weight}")
    if weight and proposals is not None and proposals != "batches":
        raise MetaalError("--policy-margin-prior needs a policy whose candidates are the heuristics' batches "
                          "(distilled from a batch-oracle store); this policy draws them at random")
    return weight


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


def margin_prefilter(proba: np.ndarray, candidates: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """The k candidates with the smallest margin (ties broken at random by ``rng``), sorted by row id.

    A cheap pre-filter before the policy's features: most of a large pool is confidently predicted,
    and the policy only needs to rank the uncertain part.
    """
    from metaal.acquisition import scores

    return smallest_margins(scores.margin(proba), candidates, k, rng)


def smallest_margins(margins: np.ndarray, candidates: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``margin_prefilter`` from the candidates' margins (one each), for callers that stream them."""
    from metaal.acquisition.strategies import top_k

    candidates = np.asarray(candidates, dtype=np.int64)
    return np.sort(candidates[top_k(-np.asarray(margins, np.float64), k, rng.random(len(candidates)))])


def load_policy(path: str | Path, trust_pickle: bool = False, device: str = "cpu", max_candidates: int | None = None,
                shortlist: int | None = None, prefilter: int | None = None, margin_prior: float = 0.0) -> Policy:
    """Load a policy directory written by ``metaal.distill`` (json + scorer.pt only)."""
    path = Path(path)
    meta_file = path / POLICY_FILE
    if not meta_file.is_file():
        raise MetaalError(f"{path}: not a policy directory (no {POLICY_FILE})")
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MetaalError(f"{meta_file}: cannot read policy metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != POLICY_FORMAT:
        raise MetaalError(f"{meta_file}: not a metaal policy file")
    if meta.get("format_version") not in SUPPORTED_VERSIONS:
        raise MetaalError(f"{meta_file}: policy format version {meta.get('format_version')} is not supported by this metaal")
    features.check_schema(meta.get("schema") or {}, str(path))
    info = meta.get("scorer") or {}
    from metaal.acquisition.networks import BCQScorer, CandidateScorer, ScorerEnsemble

    try:
        F, G, H = int(info["n_features"]), int(info["n_context"]), int(info["hidden"])
        if info.get("class", "CandidateScorer") == "BCQScorer":
            scorer = BCQScorer(F, G, H, float(info.get("action_flexibility", 0.3)))
        elif info.get("class", "CandidateScorer") == "CandidateScorer":
            scorer = CandidateScorer(F, G, H)
        elif info.get("class") == "ScorerEnsemble":
            scorer = ScorerEnsemble(F, G, H, int(info["members"]))
        else:
            raise MetaalError(f"{meta_file}: unknown scorer class {info.get('class')!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise MetaalError(f"{meta_file}: incomplete scorer description ({exc})") from None
    name = str(info.get("file", "scorer.pt"))
    if Path(name).name != name or name in ("", ".", "..") or "\\" in name:
        raise MetaalError(f"{meta_file}: scorer file {name!r} must be a plain file name in the policy directory")
    _load_weights(path, meta, scorer, path / name, trust_pickle)
    return Policy(scorer, meta, path=path, device=device, max_candidates=max_candidates, trust_pickle=trust_pickle,
                  shortlist=shortlist, prefilter=prefilter, margin_prior=margin_prior)


TRUST_PICKLE_HINT = ("unpickling can run arbitrary code: pass --trust-pickle (trust_pickle=True) only for a policy "
                     "from a source you trust")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _load_weights(path: Path, meta: dict, scorer: torch.nn.Module, weights: Path, trust_pickle: bool) -> None:
    """Fill ``scorer`` from the policy directory without running code from it.

    ``scorer.pt`` is read with ``torch.load(weights_only=True)`` and checked against the sha256 that
    ``metaal-policy.json`` records (the metadata is written last, so a half-written or altered copy is
    refused).  Pickle-based files are read only with ``trust_pickle``: a scorer saved as a full pickle,
    or, when there is no scorer file, d3rlpy's ``model.d3``."""
    import zipfile

    info = meta.get("scorer") or {}
    if not weights.is_file():
        d3 = meta.get("d3rlpy_model")
        if not (d3 and Path(str(d3)).name == str(d3) and (path / str(d3)).is_file()):
            raise MetaalError(f"{path}: scorer weights {weights.name} are missing")
        if not trust_pickle:
            raise MetaalError(f"{path}: scorer weights {weights.name} are missing and the only model is d3rlpy's {d3}, "
                              f"a pickle; refusing to open it ({TRUST_PICKLE_HINT})")
        _weights_from_d3rlpy(path / str(d3), meta, scorer)
        return
    expected = info.get("sha256")
    try:
        if expected is not None and file_sha256(weights) != str(expected):
            raise MetaalError(f"{weights}: cannot load scorer weights (the file does not match the sha256 recorded in "
                              f"{POLICY_FILE}: an incomplete or altered copy of the policy)")
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:
            if not zipfile.is_zipfile(weights):
                raise MetaalError(f"{weights}: cannot load scorer weights (not a PyTorch weights file: {_first_line(exc)})") from None
            if not trust_pickle:
                raise MetaalError(f"{weights}: cannot load scorer weights: it holds pickled Python objects, not plain "
                                  f"tensors; refusing to unpickle it ({TRUST_PICKLE_HINT})") from None
            state = torch.load(weights, map_location="cpu", weights_only=False)  # explicitly trusted
            if isinstance(state, torch.nn.Module):
                state = state.state_dict()
        scorer.load_state_dict(state)
    except MetaalError:
        raise
    except Exception as exc:  # unreadable file, wrong keys or shapes
        raise MetaalError(f"{weights}: cannot load scorer weights ({_first_line(exc)})") from None


def _weights_from_d3rlpy(model_file: Path, meta: dict, scorer: torch.nn.Module) -> None:
    """The scorer's weights taken out of d3rlpy's pickled learnable (only with trust_pickle)."""
    from metaal.acquisition.networks import d3rlpy_modules, load_d3rlpy_model

    try:
        mods = d3rlpy_modules(load_d3rlpy_model(model_file, device="cpu"))
        if "q" in mods and "imitator" in mods and hasattr(scorer, "imitator"):
            scorer.q.load_state_dict(mods["q"].state_dict())
            scorer.imitator.load_state_dict(mods["imitator"].state_dict())
        else:
            scorer.load_state_dict(mods["imitator" if meta.get("algorithm") == "bc" else "q"].state_dict())
    except MetaalError:
        raise
    except Exception as exc:
        raise MetaalError(f"{model_file}: cannot load the d3rlpy model ({_first_line(exc)})") from None
