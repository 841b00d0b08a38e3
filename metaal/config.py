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


def section(config: dict, name: str, allowed: set[str], path: str | None) -> dict:
    """The ``[name]`` table with option names normalised (dashes -> underscores); unknown keys are errors."""
    table = config.get(name, {})
    if not isinstance(table, dict):
        raise MetaalError(f"config file {path}: [{name}] must be a table")
    out = {}
    for key, value in table.items():
        norm = key.replace("-", "_")
        if norm not in allowed:
            raise MetaalError(f"config file {path}: unknown key '{key}' in [{name}] (allowed: {', '.join(sorted(allowed))})")
        out[norm] = value
    return out


def merge(ctx, params: dict, file_values: dict) -> dict:
    """Explicit command-line values > config file > click defaults."""
    import click

    merged = dict(params)
    for key, value in file_values.items():
        source = ctx.get_parameter_source(key)
        if source is None or source in (click.core.ParameterSource.DEFAULT, click.core.ParameterSource.DEFAULT_MAP):
            merged[key] = value
    return merged
