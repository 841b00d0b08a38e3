"""The settings of one distillation: ``DistillConfig`` holds the shared fields and each algorithm's own, flat, as the
CLI and TOML name them; ``algo_config()`` gives the chosen algorithm's config.  One config class per algorithm
(d3rlpy's ``XConfig`` style), found by name in ``TRAINERS``.  The trainers (``gain``: ``metaal.distill.gain``;
``bc``/``cql``/``bcq``: ``metaal.distill.offline``) import these configs, never the other way round:
``metaal.distill.job.train`` picks the trainer."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar

from metaal.errors import MetaalError

if TYPE_CHECKING:  # the configs import nothing heavy: the CLI reads its defaults from them
    import torch



@dataclasses.dataclass(frozen=True)
class GainConfig:
    """``gain``: which oracle gain is ranked: "loss", or "accuracy" with the loss gain breaking ties."""

    name: ClassVar[str] = "gain"
    target: str = "loss"


def _identity_q(cfg: DistillConfig, enc, gamma: float, target_update_interval: int) -> dict:
    """Q-learning settings shared by cql and bcq: the identity Q head keeps candidate scores equivariant."""
    from metaal.policy.networks import register_d3rlpy

    return dict(batch_size=cfg.batch_size, learning_rate=cfg.lr, encoder_factory=enc,
                q_func_factory=register_d3rlpy()["IdentityQFunctionFactory"](), gamma=gamma, n_critics=1,
                target_update_interval=target_update_interval)


class D3rlpyConfig:
    """What d3rlpy's algorithms share here: ``d3rlpy_config`` (the algorithm's d3rlpy config), ``scorer`` (the
    plain-PyTorch scorer taken out of the trained modules) and one training loop (``train_d3rlpy``)."""

    def scorer(self, mods: dict, F: int, G: int, hidden: int) -> torch.nn.Module:
        from metaal.policy.networks import CandidateScorer

        scorer = CandidateScorer(F, G, hidden)
        scorer.load_state_dict(mods[self.module].state_dict())
        return scorer


@dataclasses.dataclass(frozen=True)
class BCConfig(D3rlpyConfig):
    """``bc``: d3rlpy DiscreteBC on the expert's actions (imitation)."""

    name: ClassVar[str] = "bc"
    module: ClassVar[str] = "imitator"
    beta: float = 1e-3  # logit penalty (d3rlpy default 0.5)

    def d3rlpy_config(self, cfg: DistillConfig, enc):
        from metaal.policy.networks import import_d3rlpy

        return import_d3rlpy().algos.DiscreteBCConfig(batch_size=cfg.batch_size, learning_rate=cfg.lr,
                                                      encoder_factory=enc, beta=self.beta)


@dataclasses.dataclass(frozen=True)
class CQLConfig(D3rlpyConfig):
    """``cql``: d3rlpy DiscreteCQL on the roll-in's actions and the store's rewards (offline RL)."""

    name: ClassVar[str] = "cql"
    module: ClassVar[str] = "q"
    gamma: float = 0.9  # discount (per pick)
    target_update_interval: int = 200  # d3rlpy default 8000
    alpha: float = 1.0  # conservative weight

    def d3rlpy_config(self, cfg: DistillConfig, enc):
        from metaal.policy.networks import import_d3rlpy

        return import_d3rlpy().algos.DiscreteCQLConfig(alpha=self.alpha,
                                                       **_identity_q(cfg, enc, self.gamma, self.target_update_interval))


@dataclasses.dataclass(frozen=True)
class BCQConfig(D3rlpyConfig):
    """``bcq``: d3rlpy DiscreteBCQ, the same data as cql; its imitator has its own scorer (``BCQScorer``)."""

    name: ClassVar[str] = "bcq"
    gamma: float = CQLConfig.gamma
    target_update_interval: int = CQLConfig.target_update_interval
    beta: float = BCConfig.beta
    action_flexibility: float = 0.3  # imitator threshold

    def d3rlpy_config(self, cfg: DistillConfig, enc):
        # the imitator gets its own scorer: with a shared encoder and identity heads its logits would be Q
        from metaal.policy.networks import import_d3rlpy

        return import_d3rlpy().algos.DiscreteBCQConfig(
            action_flexibility=self.action_flexibility, beta=self.beta, share_encoder=False,
            **_identity_q(cfg, enc, self.gamma, self.target_update_interval))

    def scorer(self, mods: dict, F: int, G: int, hidden: int) -> torch.nn.Module:
        from metaal.policy.networks import BCQScorer

        scorer = BCQScorer(F, G, hidden, self.action_flexibility)
        scorer.q.load_state_dict(mods["q"].state_dict())
        scorer.imitator.load_state_dict(mods["imitator"].state_dict())
        return scorer


TRAINERS: dict[str, type] = {cls.name: cls for cls in (BCConfig, CQLConfig, BCQConfig, GainConfig)}
ALGOS = tuple(TRAINERS)
GAIN_TARGETS = ("loss", "accuracy")

COUNT_CONTEXTS = ("raw", "per-class")  # features.count_context also reads older policies' per-class-with-classes

# DistillConfig fields of levers tried and not adopted (docs/results.md), with the value that meant "off": older
# policies record them in their hyperparameters; a policy with these values is the same as one without them
RETIRED = {"step_weight": "uniform", "ensemble": 1, "choice": "items"}

# the DistillConfig fields a [distill] TOML section may set (`metaal distill --config`, `metaal run --config`)
CONFIG_KEYS = frozenset({"algo", "target", "steps", "batch_size", "lr", "hidden", "val_fraction", "seed", "device",
                         "drop_features", "count_context"})


@dataclasses.dataclass
class DistillConfig:
    """Small-problem defaults (d3rlpy's own are Atari-scale).  The CLI and TOML read their defaults from here;
    each algorithm's own fields default to its config's (below)."""

    algo: str = "gain"
    steps: int = 2000  # gradient steps
    batch_size: int = 128  # steps (not candidates) per minibatch
    lr: float = 1e-3
    hidden: int = 64
    val_fraction: float = 0.1  # share of episodes held out
    seed: int = 0
    device: str = "cpu"
    verbose: bool = False
    gamma: float = CQLConfig.gamma
    target_update_interval: int = CQLConfig.target_update_interval
    beta: float = BCConfig.beta
    alpha: float = CQLConfig.alpha
    action_flexibility: float = BCQConfig.action_flexibility
    target: str = GainConfig.target
    # feature ablation: these candidate or context features are held at 0 in training and at inference
    drop_features: list[str] = dataclasses.field(default_factory=list)
    # the label count the policy sees (features.count_context): "raw", or "per-class": log((1 + labelled) /
    # classes) in place of log_labelled, log_classes held at 0 (recorded in the artifact; Policy.score does the same)
    count_context: str = "raw"
    # torch threads while training (restored afterwards); None leaves torch's setting.  1 is the
    # safe default for these small networks: extra threads gain little and, when other processes
    # share the cores, oversubscription made training ~10x slower here (see scripts/bench_distill.py).
    threads: int | None = 1

    def validate(self) -> None:
        if self.algo not in ALGOS:
            raise MetaalError(f"unknown distillation algorithm '{self.algo}' (choose from {', '.join(ALGOS)})")
        for name in ("steps", "batch_size", "hidden"):
            if int(getattr(self, name)) < 1:
                raise MetaalError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise MetaalError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.lr <= 0:
            raise MetaalError(f"lr must be positive, got {self.lr}")
        if self.target not in GAIN_TARGETS:
            raise MetaalError(f"unknown gain target '{self.target}' (choose from {', '.join(GAIN_TARGETS)})")
        if self.threads is not None and self.threads < 1:
            raise MetaalError(f"threads must be at least 1, got {self.threads}")
        from metaal.acquisition import features

        features.feature_columns(self.drop_features)  # unknown names are errors
        if self.count_context not in COUNT_CONTEXTS:
            raise MetaalError(f"unknown count context '{self.count_context}' (choose from {', '.join(COUNT_CONTEXTS)})")
        if self.count_context.startswith("per-class") and "log_labelled" in self.drop_features:
            raise MetaalError(f"count_context '{self.count_context}' puts the per-class count in log_labelled's column: "
                              "do not drop log_labelled as well")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def algo_config(self):
        """The chosen algorithm's config (its own fields taken from this one), whose ``train`` runs it."""
        cls = TRAINERS[self.algo]
        return cls(**{f.name: getattr(self, f.name) for f in dataclasses.fields(cls)})
