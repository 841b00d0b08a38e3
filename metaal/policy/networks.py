"""The permutation-equivariant candidate scorer, and the glue that lets d3rlpy train it.

``CandidateScorer`` gives one score per candidate with one shared per-candidate MLP, so
permuting the candidates permutes the scores and the same weights score a pool of any size:

    h_i   = embed([symlog x_i, symlog ctx])                  (shared over candidates)
    pool  = mean of h_i over the *valid* candidates
    s_i   = head([symlog x_i, symlog ctx, pool])             (shared over candidates)

(symlog = sign * log1p|.|, a fixed squashing of the few unbounded features.)

Observations for d3rlpy are flat: ``K*F`` candidate features (row-major, candidate by
candidate) followed by ``G`` context values.  A masked (invalid) candidate has all its F
features set to ``SENTINEL``; the scorer detects that row, zeroes it before the MLPs, leaves
it out of the pooled mean and gives it the score ``min(valid scores) - MASK_MARGIN``.  It can
therefore never be the argmax, has softmax mass below exp(-MASK_MARGIN), and never enters a
greedy Q target.

d3rlpy puts ``nn.Linear(hidden, K)`` after every encoder, which would mix candidates.  The
encoder factory here outputs the K scores themselves; ``IdentityQFunctionFactory`` makes the
Q-function head the identity (DQN/CQL/BCQ's Q stay exactly equivariant) and
``freeze_identity_head`` turns the categorical policy head of BC and BCQ's imitator into a
frozen identity after the model is built.

d3rlpy is imported lazily (it costs seconds and prints gym's banner), so scoring with a saved
``scorer.pt`` never needs it.  A process that loads a d3rlpy model made with these factories
must register them first: ``register_d3rlpy()`` (or ``load_d3rlpy_model(path)``); importing
this module registers them by itself when d3rlpy is already imported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import sys

import numpy as np
import torch
from torch import nn

SENTINEL = -1.0e4  # value of every feature of a masked candidate in a flat observation
MASK_MARGIN = 20.0  # masked score = min(valid scores) - MASK_MARGIN


def _symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(torch.abs(x))


class CandidateScorer(nn.Module):
    """Scores candidates: (B, K, F) + (B, G) [+ mask (B, K)] or flat (B, K*F+G) -> (B, K).

    Per candidate i (all weights shared over candidates, K free):
        h_i  = relu(E relu(Ax x_i + Ac ctx))             (embedding; Ac ctx computed once per row)
        pool = mean of h_i over valid candidates
        s_i  = w . relu(Bx x_i + Bc ctx + P pool) + c    (= an MLP on [x_i, ctx, pool])
    """

    def __init__(self, n_features: int, n_context: int, hidden: int = 64):
        super().__init__()
        self.n_features = int(n_features)
        self.n_context = int(n_context)
        self.hidden = int(hidden)
        F, G, H = self.n_features, self.n_context, self.hidden
        self.lin_xe = nn.Linear(F, H)  # candidate part of the embedding's first layer
        self.lin_xh = nn.Linear(F, H)  # candidate part of the head's first layer
        self.lin_c = nn.Linear(G, 2 * H, bias=False)  # context part of both (once per row)
        self.embed = nn.Linear(H, H)
        self.pool = nn.Linear(H, H, bias=False)
        self.out = nn.Linear(H, 1)

    def split(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat observations (B, K*F+G) -> candidates (B, K, F), context (B, G)."""
        F, G = self.n_features, self.n_context
        D = obs.shape[-1]
        if (D - G) % F or D <= G:
            raise ValueError(f"flat observation of width {D} is not K*{F}+{G}")
        return obs[:, : D - G].reshape(obs.shape[0], (D - G) // F, F), obs[:, D - G :]

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if context is None:
            x, context = self.split(x)
        H = self.hidden
        sentinel_rows = (x <= SENTINEL * 0.5).all(dim=-1)
        valid = ~sentinel_rows if mask is None else (mask.bool() & ~sentinel_rows)
        vf = valid.unsqueeze(-1).to(x.dtype)
        xs = _symlog(torch.where(valid.unsqueeze(-1), x, torch.zeros_like(x)))
        c = self.lin_c(_symlog(context)).unsqueeze(1)
        h = torch.relu(self.embed(torch.relu(self.lin_xe(xs) + c[..., :H])))
        pooled = (h * vf).sum(1) / vf.sum(1).clamp_min(1.0)
        u = torch.relu(self.lin_xh(xs) + c[..., H:] + self.pool(pooled).unsqueeze(1))
        return mask_scores(self.out(u).squeeze(-1), valid)


def mask_scores(s: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Give invalid positions min(valid scores) - MASK_MARGIN; rows with no valid candidate: -MASK_MARGIN.

    Not detached on purpose: every masked score then moves with the valid ones, so losses that
    only see score differences (BC's log-softmax and its penalty on log-probabilities) stay
    shift-invariant and the score level cannot drift."""
    if bool(valid.all()):
        return s
    big = torch.finfo(s.dtype).max
    lo = torch.where(valid, s, torch.full_like(s, big)).min(dim=1, keepdim=True).values
    lo = torch.where(lo >= big, torch.zeros_like(lo), lo)
    return torch.where(valid, s, lo - MASK_MARGIN)


class ScorerEnsemble(nn.Module):
    """The mean score of several CandidateScorers trained alike from different seeds.

    Built to remove the part of a policy's spread over distillation seeds that comes from the
    network's initialisation and minibatches.  Members regress the same rank targets in [0, 1],
    so their raw scores are on one scale.  On the tuning tasks five members did not raise AULC
    (docs/results.md: the spread is mostly the evaluation's, not the network's)."""

    def __init__(self, n_features: int, n_context: int, hidden: int = 64, members: int = 2):
        super().__init__()
        if int(members) < 1:
            raise ValueError(f"an ensemble needs at least one member, got {members}")
        self.members = nn.ModuleList(CandidateScorer(n_features, n_context, hidden) for _ in range(int(members)))

    def forward(self, x, context=None, mask=None):
        return torch.stack([m(x, context, mask) for m in self.members]).mean(0)


def bcq_scores(q: torch.Tensor, logits: torch.Tensor, action_flexibility: float) -> torch.Tensor:
    """Discrete BCQ's decision rule as scores: Q where the imitator allows the action, far below otherwise.

    Same argmax as d3rlpy's ``DiscreteBCQImpl.inner_predict_best_action`` (the best-logit
    action is always allowed)."""
    log_probs = torch.log_softmax(logits, dim=1)
    allowed = (log_probs - log_probs.max(dim=1, keepdim=True).values) > math.log(action_flexibility)
    spread = (q.max(dim=1, keepdim=True).values - q.min(dim=1, keepdim=True).values).detach()
    return torch.where(allowed, q, q - spread - 1.0)


class BCQScorer(nn.Module):
    """Discrete BCQ exported without d3rlpy: a Q scorer gated by an imitator scorer."""

    def __init__(self, n_features: int, n_context: int, hidden: int = 64, action_flexibility: float = 0.3):
        super().__init__()
        self.q = CandidateScorer(n_features, n_context, hidden)
        self.imitator = CandidateScorer(n_features, n_context, hidden)
        self.action_flexibility = float(action_flexibility)

    def forward(self, x, context=None, mask=None):
        return bcq_scores(self.q(x, context, mask), self.imitator(x, context, mask), self.action_flexibility)


def flatten_observations(candidates: np.ndarray, context: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(N, K, F), (N, G), mask (N, K) -> flat float32 (N, K*F+G), masked rows set to SENTINEL."""
    cand = np.nan_to_num(np.asarray(candidates, dtype=np.float32), nan=0.0, posinf=1e3, neginf=-1e3)
    N, K, F = cand.shape
    if mask is not None:
        cand = np.where(np.asarray(mask, bool)[..., None], cand, np.float32(SENTINEL))
    ctx = np.nan_to_num(np.asarray(context, dtype=np.float32), nan=0.0, posinf=1e3, neginf=-1e3)
    return np.concatenate([cand.reshape(N, K * F), ctx.reshape(N, -1)], axis=1).astype(np.float32)


# ---------------------------------------------------------------------------------------- d3rlpy glue


def import_d3rlpy():
    """Import d3rlpy without gym's deprecation banner on stderr."""
    if "d3rlpy" not in sys.modules:
        with contextlib.redirect_stderr(io.StringIO()):
            import d3rlpy  # noqa: F401
    import d3rlpy

    return d3rlpy


_GLUE_NAMES = ("CandidateEncoder", "CandidateEncoderFactory", "IdentityDiscreteQFunction", "IdentityQFunctionFactory")
_glue: dict = {}


def register_d3rlpy() -> dict:
    """Define and register the d3rlpy factories (idempotent); returns {name: class}.

    Called by everything here that touches d3rlpy; call it yourself (or use
    ``load_d3rlpy_model``) before ``d3rlpy.load_learnable`` on a metaal model.  It also runs
    on import of this module when d3rlpy is already imported.  The plain-PyTorch scorer
    above never needs d3rlpy."""
    if _glue:
        return _glue
    import_d3rlpy()
    from d3rlpy.models.encoders import EncoderFactory, register_encoder_factory
    from d3rlpy.models.q_functions import QFunctionFactory, register_q_func_factory
    from d3rlpy.models.torch import Encoder
    from d3rlpy.models.torch.q_functions import DiscreteMeanQFunctionForwarder, DiscreteQFunction, QFunctionOutput

    class CandidateEncoder(Encoder):
        """d3rlpy encoder: flat observation -> K candidate scores (the 'hidden' size is K)."""

        def __init__(self, n_features: int, n_context: int, hidden: int):
            super().__init__()
            self.scorer = CandidateScorer(n_features, n_context, hidden)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.scorer(x)

    @dataclasses.dataclass()
    class CandidateEncoderFactory(EncoderFactory):
        n_features: int = 1
        n_context: int = 0
        hidden: int = 64

        def create(self, observation_shape) -> CandidateEncoder:
            return CandidateEncoder(self.n_features, self.n_context, self.hidden)

        def create_with_action(self, observation_shape, action_size, discrete_action=False):
            raise NotImplementedError("the candidate encoder is for discrete-action algorithms only")

        @staticmethod
        def get_type() -> str:
            return "metaal_candidate"

    class IdentityDiscreteQFunction(DiscreteQFunction):
        """Q(s, ·) = encoder(s): no extra linear layer, so candidate permutations commute with Q."""

        def __init__(self, encoder: Encoder):
            super().__init__()
            self._encoder = encoder

        def forward(self, x) -> QFunctionOutput:
            return QFunctionOutput(q_value=self._encoder(x), quantiles=None, taus=None)

        @property
        def encoder(self) -> Encoder:
            return self._encoder

    @dataclasses.dataclass()
    class IdentityQFunctionFactory(QFunctionFactory):
        def create_discrete(self, encoder, hidden_size, action_size):
            if hidden_size != action_size:
                raise ValueError(f"identity Q head needs encoder output {hidden_size} == action size {action_size}")
            q_func = IdentityDiscreteQFunction(encoder)
            return q_func, DiscreteMeanQFunctionForwarder(q_func, action_size)  # type: ignore[arg-type]

        def create_continuous(self, encoder, hidden_size):
            raise NotImplementedError("the identity Q head is for discrete actions only")

        @staticmethod
        def get_type() -> str:
            return "metaal_identity"

    for register, cls in ((register_encoder_factory, CandidateEncoderFactory), (register_q_func_factory, IdentityQFunctionFactory)):
        try:
            register(cls)
        except AssertionError:  # a type of that name is already registered (module reloaded)
            pass
    for cls in (CandidateEncoder, CandidateEncoderFactory, IdentityDiscreteQFunction, IdentityQFunctionFactory):
        cls.__module__ = __name__
        cls.__qualname__ = cls.__name__
        _glue[cls.__name__] = cls
    globals().update(_glue)
    return _glue


def __getattr__(name: str):
    if name in _GLUE_NAMES:
        return register_d3rlpy()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if sys.modules.get("d3rlpy") is not None:
    register_d3rlpy()


def load_d3rlpy_model(path, device: str = "cpu"):
    """``d3rlpy.load_learnable`` with the metaal factories registered.  It unpickles: trusted files only."""
    register_d3rlpy()
    # models saved before this module moved name its classes by the old module path
    sys.modules.setdefault("metaal.policy.networks", sys.modules[__name__])
    return import_d3rlpy().load_learnable(str(path), device=device)


def freeze_identity_head(policy: nn.Module) -> None:
    """Make a d3rlpy CategoricalPolicy's ``_fc`` (Linear K->K) the identity and freeze it."""
    fc = policy._fc
    if fc.weight.shape[0] != fc.weight.shape[1]:
        raise ValueError("policy head is not square")
    with torch.no_grad():
        fc.weight.copy_(torch.eye(fc.weight.shape[0], dtype=fc.weight.dtype, device=fc.weight.device))
        fc.bias.zero_()
    fc.weight.requires_grad_(False)
    fc.bias.requires_grad_(False)


def _unwrap(m):
    return getattr(m, "module", m)  # DDP


def d3rlpy_modules(algo) -> dict[str, nn.Module]:
    """The scorers inside a built d3rlpy algorithm: {'q': ..., 'imitator': ...} as present."""
    mods = algo.impl.modules
    out = {}
    if hasattr(mods, "q_funcs"):
        out["q"] = _unwrap(mods.q_funcs[0]).encoder.scorer
    if hasattr(mods, "imitator"):
        out["imitator"] = _unwrap(mods.imitator)._encoder.scorer
    return out


def d3rlpy_scores(algo, obs: np.ndarray) -> np.ndarray:
    """Scores through d3rlpy's own modules (Q-function, policy head included) for flat observations.

    BC: the policy logits (before normalisation); CQL/DQN: Q; BCQ: Q gated by the imitator (same rule as ``BCQScorer``)."""
    mods = algo.impl.modules
    x = torch.as_tensor(np.asarray(obs, np.float32), device=algo.impl.device)
    with torch.no_grad():
        q = _unwrap(mods.q_funcs[0])(x).q_value if hasattr(mods, "q_funcs") else None
        # raw scores through the (identity) policy head; Categorical(...).logits would be log-probabilities
        imitator = _unwrap(mods.imitator) if hasattr(mods, "imitator") else None
        logits = imitator._fc(imitator._encoder(x)) if imitator is not None else None
        if q is not None and logits is not None:
            s = bcq_scores(q, logits, algo.config.action_flexibility)
        else:
            s = q if q is not None else logits
    return s.cpu().numpy()
