"""The jobs' settings: config dataclasses (every default lives here once) and TOML study files.

The dataclasses import nothing heavy (no numpy, no torch), so the command line reads its option defaults from
them and still starts fast; each is re-exported where it is used (``metaal.loop.LoopConfig``,
``metaal.learners.LearnerConfig``, ``metaal.tasks.SplitConfig``, ``metaal.oracle.OracleConfig``,
``metaal.evaluate.EvalConfig``; ``metaal.generate.GenerateConfig`` adds checks to this module's).
``DistillConfig`` and one config per algorithm live in ``metaal.distill.config`` (torch-free as well).

TOML study files: one table per job ([evaluate], [generate], [distill], [run]).  Command-line options given
explicitly win over the file; the file wins over the defaults.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from metaal.errors import MetaalError


def read_config(path: str | None) -> dict:
    if not path:
        return {}
    import tomllib  # here, not at the top: the command line imports this module for its defaults

    file = Path(path)
    if not file.is_file():
        raise MetaalError(f"config file {path} not found")
    try:
        return tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise MetaalError(f"config file {path} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MetaalError(f"config file {path} cannot be read: {exc}") from None


# The type each known key must have in a config file (checked before any value is used, so that a
# wrong type is a one-line error naming the key, not a crash deep inside a job).
_INT = ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
_NUM = ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool))
_BOOL = ("true or false", lambda v: isinstance(v, bool))
_STR = ("a string", lambda v: isinstance(v, str))
_STRS = ("a string or a list of strings", lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)))
_INTS = ("a list of integers", lambda v: isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v))
_TABLE = ("a table", lambda v: isinstance(v, dict))
KEY_TYPES = {
    **dict.fromkeys(("seeds", "seed", "initial", "budget", "query_size", "episodes", "candidates", "oracle_steps",
                     "oracle_horizon", "oracle_margin_pool", "oracle_chunk", "train_steps", "workers", "steps",
                     "batch_size", "hidden", "policy_candidates", "prefilter"), _INT),
    **dict.fromkeys(("beta", "oracle_lr", "lr", "val_fraction", "gpus_per_episode", "gpus_per_run"), _NUM),
    **dict.fromkeys(("warm_start", "stack"), _BOOL),
    **dict.fromkeys(("model", "device", "data_root", "label_column", "policy", "rollin", "algo", "shard", "backend",
                     "address", "oracle", "target", "oracle_metric",
                     "count_context", "suite", "splits", "reference"), _STR),
    **dict.fromkeys(("tasks", "strategies", "sources", "targets", "drop_features"), _STRS),
    "extra_initial": _INTS,
}
SECTION_KEY_TYPES = {("evaluate", "oracle"): _TABLE, ("benchmark", "oracle"): _TABLE}  # the oracle strategy's options; elsewhere the oracle mode


def section(config: dict, name: str, allowed: set[str], path: str | None) -> dict:
    """The ``[name]`` table with option names normalised (dashes -> underscores); unknown keys and values
    of the wrong type are errors."""
    table = config.get(name, {})
    if not isinstance(table, dict):
        raise MetaalError(f"config file {path}: [{name}] must be a table")
    out = {}
    for key, value in table.items():
        norm = key.replace("-", "_")
        if norm not in allowed:
            raise MetaalError(f"config file {path}: unknown key '{key}' in [{name}] (allowed: {', '.join(sorted(allowed))})")
        kind = SECTION_KEY_TYPES.get((name, norm), KEY_TYPES.get(norm))
        if kind is not None and value is not None and not kind[1](value):
            raise MetaalError(f"config file {path}: [{name}] {key} must be {kind[0]}, got {value!r}")
        if kind is _STRS and isinstance(value, str):  # "a,b" and ["a", "b"] mean the same everywhere
            value = [v.strip() for v in value.split(",") if v.strip()]
        out[norm] = value
    return out


# ------------------------------------------------------------------------------------------ config dataclasses

ORACLE_MODES = ("finetune", "retrain", "first-order")  # single-candidate lookaheads (lookahead_gains)
ALL_ORACLE_MODES = ORACLE_MODES + ("batch",)  # + heuristic batches retrained (metaal.oracle.batch)

ORACLE_METRICS = ("loss", "accuracy")
PROPOSALS = ("random", "heuristics")  # how the lookahead's K candidates are drawn (metaal.acquisition.proposals)
REFERENCE = "random"  # the strategy every evaluation runs (labels-to-random-final and the report are relative to it)
# transfer-eval's and benchmark's default strategies
EVAL_STRATEGIES = ("random", "margin", "entropy", "least_confidence", "bald", "coreset", "badge")
BENCHMARK_STRATEGIES = (*EVAL_STRATEGIES, "typiclust", "probcover")


@dataclass(frozen=True)
class SplitConfig:
    """How a data set is divided; fractions of N, capped so that evaluation stays cheap on big sets."""

    test_fraction: float = 0.25
    val_fraction: float = 0.15
    max_test: int = 2000
    max_val: int = 1000
    max_pool: int | None = None


@dataclass(frozen=True)
class LearnerConfig:
    """Training recipe.  A fixed number of optimiser steps per round keeps cost flat across rounds."""

    model: str = "auto"
    hidden: int = 128
    dropout: float = 0.3
    lr: float = 1e-3
    weight_decay: float = 1e-4
    steps: int = 100
    batch_size: int = 32
    warm_start: bool = False
    mc_samples: int = 10

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LoopConfig:
    initial: int = 10
    budget: int = 200
    query_size: int = 10

    def validate(self, pool_size: int | None = None, where: str = "") -> None:
        prefix = f"{where}: " if where else ""
        if self.initial < 1:
            raise MetaalError(f"{prefix}--initial must be at least 1, got {self.initial}")
        if self.budget < 1:
            raise MetaalError(f"{prefix}--budget must be at least 1, got {self.budget}")
        if self.query_size < 1:
            raise MetaalError(f"{prefix}--query-size must be at least 1, got {self.query_size}")
        if self.query_size > self.budget:
            raise MetaalError(f"{prefix}--query-size {self.query_size} is larger than the budget {self.budget}")
        if pool_size is not None and self.initial + self.budget > pool_size:
            raise MetaalError(
                f"{prefix}initial + budget = {self.initial + self.budget} labels but the pool has only {pool_size} items"
            )

    def rounds(self) -> list[int]:
        """Query sizes of the rounds: full rounds, then a smaller last one if the budget says so."""
        full, rest = divmod(self.budget, self.query_size)
        return [self.query_size] * full + ([rest] if rest else [])


@dataclass(frozen=True)
class OracleConfig:
    """How the lookahead expert scores a candidate."""

    mode: str = "finetune"  # "finetune" | "retrain" | "first-order" | "batch"
    steps: int = 10  # S optimiser steps for finetune
    lr: float = 0.05  # SGD step size for finetune and the eta of first-order
    batch_size: int = 32  # minibatch size including the candidate
    chunk: int | None = None  # candidates per vmapped chunk; None = automatic (bounded memory)
    candidates: int = 32  # K used by OracleStrategy when it draws its own candidates
    proposals: str = "random"  # how the K candidates are drawn: random | heuristics (acquisition.proposals)
    horizon: int = 1  # batch mode: rounds until the gain is measured (the batch, then margin rounds)
    metric: str = "loss"  # what the expert maximises: validation "loss" gain, or "accuracy" gain (loss breaks ties)
    margin_pool: int = 0  # batch mode: batches drawn from the margin_pool * b smallest-margin items (0: all)

    def __post_init__(self):
        if self.mode not in ALL_ORACLE_MODES:
            raise MetaalError(f"unknown oracle mode '{self.mode}' (choose from {', '.join(ALL_ORACLE_MODES)})")
        if int(self.steps) < 1:
            raise MetaalError(f"oracle steps must be at least 1, got {self.steps}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise MetaalError(f"oracle lr must be a positive number, got {self.lr}")
        if int(self.batch_size) < 1:
            raise MetaalError(f"oracle batch_size must be at least 1 (it includes the candidate), got {self.batch_size}")
        if self.chunk is not None and int(self.chunk) < 1:
            raise MetaalError(f"oracle chunk must be at least 1 or None (automatic), got {self.chunk}")
        if int(self.candidates) < 1:
            raise MetaalError(f"oracle candidates must be at least 1, got {self.candidates}")
        if int(self.horizon) < 1:
            raise MetaalError(f"oracle horizon must be at least 1, got {self.horizon}")
        if int(self.margin_pool) < 0:
            raise MetaalError(f"oracle margin_pool must be 0 (the whole pool) or more, got {self.margin_pool}")
        if self.margin_pool and self.mode != "batch":
            raise MetaalError("margin_pool applies to the batch oracle only (--oracle batch)")
        if self.metric not in ORACLE_METRICS:
            raise MetaalError(f"unknown oracle metric '{self.metric}' (choose from {', '.join(ORACLE_METRICS)})")
        if self.metric == "accuracy" and self.mode == "first-order":
            raise MetaalError("the first-order oracle has no accuracy gain: use --oracle-metric loss")
        if self.proposals not in PROPOSALS:
            raise MetaalError(f"unknown candidate proposals '{self.proposals}' (choose from {', '.join(PROPOSALS)})")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EvalConfig:
    """`metaal transfer-eval`'s (and `metaal benchmark`'s) settings."""

    tasks: list[str]
    strategies: list[str]
    seeds: int = 3
    seed: int = 0  # first seed; runs use seed, seed+1, ...
    loop: LoopConfig = field(default_factory=LoopConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    device: str = "auto"
    data_root: str | None = None
    label_column: str = "label"
    download: bool = False  # torchvision: fetch missing data sets into data_root
    trust_pickle: bool = False  # --policy may read pickle-based policy files (model.d3); see load_policy
    policy: str | None = None  # policy directory: adds the strategy "policy" (without it: the shipped policy)
    policy_candidates: int | None = None  # score this many random unlabelled items per round (None: the whole pool)
    oracle: dict = field(default_factory=dict)  # options of the "oracle" strategy

    def to_dict(self) -> dict:
        return asdict(self)

    def strategy_list(self) -> list[str]:
        """Random is always run: labels-to-random-final and the report are relative to it."""
        names = list(dict.fromkeys(self.strategies))
        if self.policy and "policy" not in names:
            names.append("policy")
        if REFERENCE not in names:
            names.insert(0, REFERENCE)
        return names


@dataclass(frozen=True)
class BenchmarkConfig:
    """What `metaal benchmark` runs by default beyond an ``EvalConfig``: more seeds, the cold-start heuristics."""

    seeds: int = 10
    strategies: tuple[str, ...] = BENCHMARK_STRATEGIES


@dataclass(frozen=True)
class SelectConfig:
    """`metaal select` / ``metaal.select.select_next``: how many items, by which strategy."""

    n: int = 20
    strategy: str = "margin"
    seed: int = 0
    device: str = "auto"
    budget: int | None = None  # the labels planned in total (None: labelled + n): how far along the loop is
    prefilter: int = 200  # policy: featurise only this many smallest-margin items, at least 10 n (0: the whole pool)
    data_root: str | None = None
    label_column: str = "label"
    download: bool = False


@dataclass
class GenerateConfig:
    """`metaal generate`'s settings (``metaal.generate.GenerateConfig`` adds the checks that need the acquisition
    layer)."""

    tasks: list[str]
    episodes: int = 8
    candidates: int = 32
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(initial=10, budget=60, query_size=10))
    oracle: dict = field(default_factory=dict)  # OracleConfig fields
    rollin: str = "expert"  # expert | random | <strategy> | policy:DIR
    beta: float = 0.5  # probability of the expert's pick at each step when rollin != expert
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    seed: int = 0
    device: str = "auto"
    data_root: str | None = None
    label_column: str = "label"
    download: bool = False  # torchvision: fetch missing data sets into data_root
    trust_pickle: bool = False  # --rollin policy:DIR may read pickle-based policy files (a security choice, not content)

    def oracle_config(self):
        try:
            return OracleConfig(**{**self.oracle, "candidates": self.candidates})
        except TypeError as exc:
            raise MetaalError(f"unknown oracle option: {exc}") from None

    def identity(self) -> dict:
        """What defines a store's content (device and process layout do not)."""
        d = asdict(self)
        d.pop("device")
        d.pop("download")
        d.pop("trust_pickle", None)
        d["oracle"] = self.oracle_config().to_dict()
        d["oracle"].pop("chunk", None)  # a memory knob, not content
        return d


def defaults(cls) -> dict:
    """Every field default of a config dataclass (``default_factory`` fields made), by field name."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out
