"""`transfer-eval`: paired comparison of strategies on tasks, resumable run by run.

For one (task, seed) every strategy starts from the same split, initial labelled set and
model initialisation, and trains with the same per-round seeds, so differences between
strategies come from what they select.  Each finished run is written atomically to
``OUT/runs/`` and skipped when the command is run again.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from metaal.acquisition import get_strategy
from metaal.errors import MetaalError
from metaal.io import atomic_write_json, ensure_writable_dir
from metaal.learners import LearnerConfig, resolve_device
from metaal.loop import LoopConfig, run_episode
from metaal.tasks import SplitConfig, load_task

REFERENCE = "random"


@dataclass
class EvalConfig:
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
    policy: str | None = None  # policy directory: adds the strategy "policy"
    policy_candidates: int | None = None  # score this many random unlabelled items per round (None: the whole pool)
    # Batch diversity for the policy: shortlist the top (policy_shortlist x query size) items by score,
    # then farthest-point among them; 0 picks one by one by score.  3 was best on the tuning tasks
    # (scripts/study.py): mean AULC 0.623 against 0.598 without it.
    policy_shortlist: int = 3
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


def _make_strategy(name: str, config: EvalConfig, device):
    if name == "policy":
        if not config.policy:
            raise MetaalError("strategy 'policy' needs --policy DIR")
        return get_strategy(f"policy:{config.policy}", max_candidates=config.policy_candidates,
                            shortlist=config.policy_shortlist or None)
    if name == "oracle":
        return get_strategy("oracle", **config.oracle)
    return get_strategy(name)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")[:80] or "task"


def run_identity(config: EvalConfig, task: str, strategy: str, seed: int) -> str:
    """Hash of everything that determines a run's result (a rerun with other settings redoes it)."""
    ident = {
        "task": task,
        "strategy": strategy,
        "seed": seed,
        "loop": asdict(config.loop),
        "learner": asdict(config.learner),
        "split": asdict(config.split),
        "policy": [_policy_fingerprint(config.policy), config.policy_candidates, config.policy_shortlist]
        if strategy == "policy"
        else None,
        "oracle": config.oracle if strategy == "oracle" else None,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _policy_fingerprint(path: str | None) -> str | None:
    if not path:
        return None
    meta = Path(path) / "metaal-policy.json"
    return hashlib.sha256(meta.read_bytes()).hexdigest()[:16] if meta.is_file() else str(path)


def run_path(out: Path, task: str, strategy: str, seed: int) -> Path:
    return out / "runs" / _slug(task) / f"{_slug(strategy)}__seed{seed}.json"


def transfer_eval(config: EvalConfig, out: str | Path, progress: bool = True) -> dict:
    """Run every (task, seed, strategy) not already finished in ``out``; return the results dict."""
    from metaal.report import write_results

    if not config.tasks:
        raise MetaalError("no task given (--tasks SPEC[,SPEC...])")
    if config.policy_shortlist < 0:
        raise MetaalError(f"--policy-shortlist must be 0 or more, got {config.policy_shortlist}")
    if config.policy_candidates is not None and config.policy_candidates < 1:
        raise MetaalError(f"--policy-candidates must be at least 1, got {config.policy_candidates}")
    if config.seeds < 1:
        raise MetaalError(f"--seeds must be at least 1, got {config.seeds}")
    config.loop.validate()
    out = ensure_writable_dir(out, "results directory")
    device = resolve_device(config.device)
    names = config.strategy_list()
    strategies = {name: _make_strategy(name, config, device) for name in names}  # fail fast on bad names

    # Load each task instance once per seed (fails fast on bad specs before any training).
    seeds = [config.seed + i for i in range(config.seeds)]
    rounds = len(config.loop.rounds())
    total = len(config.tasks) * len(seeds) * len(names) * rounds
    runs = []
    bar = tqdm(total=total, desc="transfer-eval", unit="round", disable=not progress, dynamic_ncols=True)
    try:
        for spec in config.tasks:
            for seed in seeds:
                task = None
                for name in names:
                    path = run_path(out, spec, name, seed)
                    ident = run_identity(config, spec, name, seed)
                    done = _load_run(path, ident)
                    if done is not None:
                        runs.append(done)
                        bar.update(rounds)
                        continue
                    if task is None:
                        task = load_task(
                            spec,
                            seed,
                            config.split,
                            min_pool=config.loop.initial + config.loop.budget,
                            data_root=config.data_root,
                            label_column=config.label_column,
                            download=config.download,
                        )
                    bar.set_postfix_str(f"{_short(spec)} · {name} · seed {seed}")
                    result = run_episode(
                        task, strategies[name], config.learner, config.loop, seed, device, on_round=lambda r, n: bar.update(1)
                    )
                    run = {
                        "task": spec,
                        "strategy": name,
                        "seed": seed,
                        "uses_true_labels": bool(getattr(strategies[name], "uses_true_labels", False)),
                        "aulc": result.aulc,
                        "final_accuracy": result.final_accuracy,
                        "labels": result.labels,
                        "accuracy": result.accuracy,
                        "identity": ident,
                    }
                    atomic_write_json(path, run)
                    runs.append(run)
    finally:
        bar.close()
    return write_results(out, config, runs)


def _short(spec: str) -> str:
    return spec if len(spec) <= 32 else spec[:29] + "..."


def _load_run(path: Path, ident: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        run = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # unreadable: redo it (atomic writes make this rare)
    return run if run.get("identity") == ident else None
