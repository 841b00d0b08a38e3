"""TOML study files: one table per job ([evaluate], [generate], [distill], [run]).

Command-line options given explicitly win over the file; the file wins over defaults.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from metaal.errors import MetaalError


def read_config(path: str | None) -> dict:
    if not path:
        return {}
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
