"""Defaults live once, in the config dataclasses: every command-line option's default is the field default of the
setting it fills (so a default changed in one place and not the other fails here)."""

from __future__ import annotations

import inspect

import click
import pytest

from metaal import config
from metaal.cli import cli
from metaal.config import (
    BenchmarkConfig,
    EvalConfig,
    GenerateConfig,
    LearnerConfig,
    OracleConfig,
    SelectConfig,
    defaults,
)
from metaal.distill.config import DistillConfig


def _learner(job) -> dict:
    return {"model": LearnerConfig.model, "train_steps": LearnerConfig.steps, "warm_start": LearnerConfig.warm_start,
            "device": job.device, "data_root": job.data_root, "label_column": job.label_column,
            "download": job.download, "trust_pickle": job.trust_pickle if hasattr(job, "trust_pickle") else False}


def _loop(loop) -> dict:
    return {"initial": loop.initial, "budget": loop.budget, "query_size": loop.query_size}


def _eval(strategies, seeds) -> dict:
    return {**_learner(EvalConfig), **_loop(defaults(EvalConfig)["loop"]), "strategies": ",".join(strategies),
            "seeds": seeds, "seed": EvalConfig.seed, "policy": EvalConfig.policy,
            "policy_candidates": EvalConfig.policy_candidates, "max_pool": defaults(EvalConfig)["split"].max_pool}


# option name -> the dataclass default it must equal, per command
EXPECTED = {
    "generate": {**_learner(GenerateConfig), **_loop(defaults(GenerateConfig)["loop"]),
                 "episodes": GenerateConfig.episodes, "candidates": GenerateConfig.candidates,
                 "rollin": GenerateConfig.rollin, "beta": GenerateConfig.beta, "seed": GenerateConfig.seed,
                 "oracle_mode": OracleConfig.mode, "proposals": OracleConfig.proposals,
                 "oracle_horizon": OracleConfig.horizon, "oracle_metric": OracleConfig.metric,
                 "oracle_margin_pool": OracleConfig.margin_pool, "oracle_steps": OracleConfig.steps,
                 "oracle_lr": OracleConfig.lr, "oracle_chunk": OracleConfig.chunk},
    "transfer-eval": _eval(config.EVAL_STRATEGIES, EvalConfig.seeds),
    "benchmark": _eval(BenchmarkConfig.strategies, BenchmarkConfig.seeds),
    # every DistillConfig field that is an option (the per-algorithm ones are TOML-only; --threads is the process's)
    "distill": {name: (",".join(value) if name == "drop_features" else value)
                for name, value in defaults(DistillConfig).items() if name != "threads"},
    "select": {**_learner(SelectConfig), "strategy": SelectConfig.strategy, "n": SelectConfig.n,
               "seed": SelectConfig.seed, "budget": SelectConfig.budget, "prefilter": SelectConfig.prefilter},
}
# Options that fill no setting of a config dataclass: where to write, what to read, how to run (processes,
# backends, threads, progress), and the commands' arguments.  Each has no default beyond "not given" or a
# process setting, checked below.
NOT_SETTINGS = {"out", "quiet", "config_file", "threads", "tasks", "workers", "shard", "backend", "address",
                "gpus_per_episode", "gpus_per_run", "stack", "overwrite", "suite", "splits", "reference",
                "data", "labels_file", "quick"}


def _options(command: click.Command):
    return [p for p in command.params if isinstance(p, click.Option) and p.name not in ("help", "version")]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_option_default_is_its_dataclass_default(name):
    command = cli.commands[name]
    expected = EXPECTED[name]
    unmapped = [o.name for o in _options(command) if o.name not in expected and o.name not in NOT_SETTINGS]
    assert not unmapped, f"metaal {name}: options {unmapped} have no config-dataclass default to check"
    for option in _options(command):
        if option.name in expected:
            assert option.default == expected[option.name], (
                f"metaal {name} --{option.name}: CLI default {option.default!r}, dataclass {expected[option.name]!r}")
    if name != "distill":  # the table names real options (a renamed option is not skipped)
        missing = set(expected) - {o.name for o in _options(command)}
        assert not missing, f"metaal {name} has no option(s) {sorted(missing)}"


def test_distill_options_are_its_toml_keys():
    """`metaal distill`'s settings are the [distill] keys (and --verbose), each a DistillConfig field."""
    from metaal.distill.config import CONFIG_KEYS

    names = {o.name for o in _options(cli.commands["distill"])} - NOT_SETTINGS
    assert names == set(CONFIG_KEYS) | {"verbose"} and set(CONFIG_KEYS) <= set(defaults(DistillConfig))


def test_other_options_are_process_settings():
    """What is not a setting has no default of its own beyond 'not given' (or a run-time knob named here)."""
    knobs = {"workers": (1, None), "stack": (True,), "backend": ("local",), "gpus_per_episode": (0.0,),
             "gpus_per_run": (0.0,), "out": (None, "runs/default")}
    for name, command in cli.commands.items():
        for option in _options(command):
            if option.name in NOT_SETTINGS and not (EXPECTED.get(name, {}).get(option.name)):
                allowed = knobs.get(option.name, ()) + (None, False, getattr(click.core, "UNSET", None))
                assert option.default in allowed, f"metaal {name} --{option.name}: default {option.default!r}"


def test_library_entry_points_share_the_defaults():
    """select_next and rank_pool read the same SelectConfig the CLI reads."""
    from metaal.select import rank_pool, select_next

    sig = inspect.signature(select_next).parameters
    for field in ("n", "strategy", "seed", "device", "budget", "prefilter", "label_column", "data_root", "download"):
        assert sig[field].default == getattr(SelectConfig, field), field
    assert sig["model"].default == LearnerConfig.model
    assert inspect.signature(rank_pool).parameters["prefilter"].default == SelectConfig.prefilter
