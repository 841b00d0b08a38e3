"""A distilled policy at inference: ``load_policy(DIR)`` -> a Strategy named "policy".

Loading reads only ``metaal-policy.json`` and ``scorer.pt`` (``torch.load(weights_only=True)``,
which refuses arbitrary pickled objects).  d3rlpy's ``model.d3`` is a pickle and is never
opened here unless the caller asks for it explicitly with ``trust_pickle=True`` and
``Policy.d3rlpy_model()``; scoring never needs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from metaal.acquisition import features
from metaal.acquisition.strategies import Strategy
from metaal.errors import MetaalError

POLICY_FILE = "metaal-policy.json"
POLICY_FORMAT = "metaal-policy"
SUPPORTED_VERSIONS = (1,)


class Policy(Strategy):
    name = "policy"
    description = "a distilled acquisition policy (metaal distill)"

    def __init__(self, scorer: torch.nn.Module, meta: dict, path: str | Path | None = None, device: str = "cpu",
                 max_candidates: int | None = None, trust_pickle: bool = False, shortlist: int | None = None):
        self.scorer = scorer.to(device).eval()
        self.meta = meta
        self.path = None if path is None else Path(path)
        self.device = torch.device(device)
        self.max_candidates = max_candidates
        self.trust_pickle = trust_pickle
        self.shortlist = shortlist  # if set: top shortlist*n by score, then farthest-point among them

    @property
    def algorithm(self) -> str:
        return str(self.meta.get("algorithm"))

    def score(self, feats: np.ndarray, context: np.ndarray) -> np.ndarray:
        """Scores (n,) of n candidates' features (n, F) under context (G,); any n >= 1."""
        x = torch.as_tensor(np.nan_to_num(np.asarray(feats, np.float32)), device=self.device).unsqueeze(0)
        c = torch.as_tensor(np.nan_to_num(np.asarray(context, np.float32)), device=self.device).reshape(1, -1)
        with torch.no_grad():
            return self.scorer(x, c)[0].cpu().numpy().astype(np.float64)

    def select(self, state, n, candidates=None):
        cands = self._candidates(state, n, candidates)
        if self.max_candidates is not None and len(cands) > self.max_candidates and n <= self.max_candidates:
            cands = np.sort(state.rng(29).choice(cands, size=self.max_candidates, replace=False))
        from metaal.acquisition.features import FeatureExtractor

        fe = FeatureExtractor(state, cands)
        if self.shortlist:
            return self._diverse_batch(state, fe, cands, n)
        taken = np.zeros(len(cands), bool)
        picks = []
        for _ in range(n):
            feats, ctx = fe.features(batch_size=n)
            s = self.score(feats, ctx)
            s[taken] = -np.inf
            pos = int(np.argmax(s))
            taken[pos] = True
            picks.append(pos)
            fe.mark_selected(pos)
        return cands[np.asarray(picks, dtype=np.int64)]

    def _diverse_batch(self, state, fe, cands: np.ndarray, n: int) -> np.ndarray:
        """Single-candidate scores are redundant within a batch: shortlist the best, then spread out."""
        from metaal.acquisition.strategies import k_center_greedy

        feats, ctx = fe.features(batch_size=n)
        s = self.score(feats, ctx)
        top = np.argsort(-s, kind="stable")[: max(n, int(self.shortlist) * n)]
        emb = state.pool_embedding().astype(np.float64)
        picks = k_center_greedy(emb[cands[top]], emb[state.labelled], n)
        return cands[top[picks]]

    def d3rlpy_model(self):
        """The d3rlpy algorithm saved beside the scorer (a pickle: needs trust_pickle=True)."""
        if not self.trust_pickle:
            raise MetaalError("model.d3 is a pickle; load the policy with trust_pickle=True to open it")
        name = self.meta.get("d3rlpy_model")
        if not name or self.path is None or not (self.path / name).is_file():
            raise MetaalError(f"{self.path}: no d3rlpy model in this policy")
        from metaal.acquisition.networks import load_d3rlpy_model  # registers the custom factories first

        return load_d3rlpy_model(self.path / name, device=str(self.device))


def load_policy(path: str | Path, trust_pickle: bool = False, device: str = "cpu", max_candidates: int | None = None,
                shortlist: int | None = None) -> Policy:
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
    from metaal.acquisition.networks import BCQScorer, CandidateScorer

    try:
        F, G, H = int(info["n_features"]), int(info["n_context"]), int(info["hidden"])
        if info.get("class", "CandidateScorer") == "BCQScorer":
            scorer = BCQScorer(F, G, H, float(info.get("action_flexibility", 0.3)))
        elif info.get("class", "CandidateScorer") == "CandidateScorer":
            scorer = CandidateScorer(F, G, H)
        else:
            raise MetaalError(f"{meta_file}: unknown scorer class {info.get('class')!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise MetaalError(f"{meta_file}: incomplete scorer description ({exc})") from None
    name = str(info.get("file", "scorer.pt"))
    if Path(name).name != name or name in ("", ".", "..") or "\\" in name:
        raise MetaalError(f"{meta_file}: scorer file {name!r} must be a plain file name in the policy directory")
    weights = path / name
    if not weights.is_file():
        raise MetaalError(f"{path}: scorer weights {weights.name} are missing")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        scorer.load_state_dict(state)
    except Exception as exc:  # corrupt file, refused pickle, wrong shapes
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MetaalError(f"{weights}: cannot load scorer weights ({msg[:200]})") from None
    return Policy(scorer, meta, path=path, device=device, max_candidates=max_candidates, trust_pickle=trust_pickle,
                  shortlist=shortlist)
