"""Tiny real stores and policies for CLI tests (seconds, in-process), a payload that proves unpickling, and
the scripts under scripts/ loaded as modules."""

from __future__ import annotations

import importlib.util
import pickle
import sys
from pathlib import Path

from click.testing import CliRunner

from metaal.cli import cli

# sklearn:iris, K=4, 2 rounds of 4 picks: about 0.1 s per episode
GEN = ["--tasks", "sklearn:iris", "--candidates", "4", "--initial", "4", "--budget", "8", "--query-size", "4",
       "--oracle-steps", "2", "--epochs-steps", "5", "--seed", "3", "--quiet"]
DISTILL = ["--algo", "gain", "--steps", "40", "--batch-size", "16", "--hidden", "8", "--quiet"]
EVAL = ["--tasks", "sklearn:iris", "--strategies", "margin", "--seeds", "1", "--initial", "6", "--budget", "12",
        "--query-size", "6", "--epochs-steps", "5", "--quiet"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def make_store(path: Path, episodes: int = 4, *extra) -> Path:
    r = invoke("generate", *GEN, "--episodes", episodes, *extra, "--out", path)
    assert r.exit_code == 0, r.output
    return path


def make_policy(store: Path, path: Path, *extra) -> Path:
    r = invoke("distill", store, *DISTILL, *extra, "--out", path)
    assert r.exit_code == 0, r.output
    return path


class Marker:
    """Unpickling this creates ``path``: proof that a pickle was executed."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def payload(marker: Path) -> bytes:
    return pickle.dumps(Marker(marker))


def load_script(name: str):
    """scripts/NAME.py as a module (the scripts are not a package)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"metaal_{name}_script", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script runs
    spec.loader.exec_module(module)
    return module
