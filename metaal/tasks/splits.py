"""The committed task split: which tasks a policy may learn from, tune on, and is judged on.

``metaal/tasks/splits.toml`` is written once by ``scripts/make_splits.py`` (a seeded rule, recorded
in the file's ``[rule]`` table) and never edited by hand.  Groups: ``sources`` (generation),
``tuning`` (choosing any setting), ``heldout`` (reported only).  Folds: every task of the file in
exactly one of k folds, for cross-validation over tasks.  Twins (the same data under several names)
always share a group and a fold, so no policy is judged on data it learned from under another name.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from metaal.errors import MetaalError

GROUPS = ("sources", "tuning", "heldout")
SPLITS_FILE = "splits.toml"


@dataclass(frozen=True)
class TaskSplits:
    """Groups, folds and twins of a split file; ``excluded`` names tasks left out and why."""

    groups: dict[str, list[str]]
    folds: list[list[str]]
    twins: dict[str, list[str]]
    rule: dict
    excluded: dict[str, str] = field(default_factory=dict)

    def tasks(self) -> list[str]:
        """Every task of the file, in group order."""
        return [t for g in GROUPS for t in self.groups.get(g, [])]

    def suite(self, name: str) -> list[str]:
        """The task specs of a suite: ``sources``, ``tuning``, ``heldout`` or ``fold:K`` (K from 0)."""
        if name in GROUPS:
            tasks = list(self.groups.get(name, []))
        elif name.startswith("fold:"):
            k = name.partition(":")[2]
            if not k.isdigit() or int(k) >= len(self.folds):
                raise MetaalError(f"unknown suite '{name}' (folds are fold:0 .. fold:{len(self.folds) - 1})")
            tasks = list(self.folds[int(k)])
        else:
            raise MetaalError(
                f"unknown suite '{name}' (choose from {', '.join(GROUPS)} or fold:0 .. fold:{len(self.folds) - 1})"
            )
        if not tasks:
            raise MetaalError(f"suite '{name}' is empty")
        return tasks

    def group_of(self, task: str) -> str | None:
        return next((g for g in GROUPS if task in self.groups.get(g, [])), None)

    def fold_of(self, task: str) -> int | None:
        return next((k for k, f in enumerate(self.folds) if task in f), None)

    def shared_data(self, these: list[str], those: list[str]) -> list[tuple[str, str]]:
        """Pairs (a, b), a from these and b from those, that are the same task or twins: a policy that learned
        from a must not be judged on b."""
        unit = {t: name for name, members in self.twins.items() for t in members}
        return [(a, b) for a in these for b in those if a == b or (a in unit and unit.get(b) == unit[a])]

    def check(self) -> TaskSplits:
        """Raise a one-line MetaalError if the split breaks a rule; return self otherwise."""
        unknown = sorted(set(self.groups) - set(GROUPS))
        if unknown:
            raise MetaalError(f"task split: unknown group(s) {', '.join(unknown)} (groups: {', '.join(GROUPS)})")
        seen: dict[str, str] = {}
        for g in GROUPS:
            if not self.groups.get(g):
                raise MetaalError(f"task split: group '{g}' is empty")
            for t in self.groups[g]:
                if t in seen:
                    where = "twice in" if seen[t] == g else f"in both {seen[t]} and"
                    raise MetaalError(f"task split: {t} is {where} {g}")
                seen[t] = g
        if not self.folds:
            raise MetaalError("task split: no folds")
        in_fold: dict[str, int] = {}
        for k, fold in enumerate(self.folds):
            if not fold:
                raise MetaalError(f"task split: fold {k} is empty")
            for t in fold:
                if t in in_fold:
                    raise MetaalError(f"task split: {t} is in folds {in_fold[t]} and {k}")
                if t not in seen:
                    raise MetaalError(f"task split: {t} is in fold {k} but in no group")
                in_fold[t] = k
        missing = [t for t in seen if t not in in_fold]
        if missing:
            raise MetaalError(f"task split: {missing[0]} is in no fold ({len(missing)} task(s) without a fold)")
        for t in self.excluded:
            if t in seen:
                raise MetaalError(f"task split: {t} is both excluded and in {seen[t]}")
        for name, members in self.twins.items():
            lost = [t for t in members if t not in seen and t not in self.excluded]
            if lost:  # a twin nowhere could be used beside the split without its twins' group and fold
                raise MetaalError(f"task split: twin {lost[0]} of '{name}' is in no group and not excluded")
            placed = [(t, seen[t], in_fold[t]) for t in members if t in seen]
            if len({(g, k) for _, g, k in placed}) > 1:
                where = ", ".join(f"{t} in {g} fold {k}" for t, g, k in placed)
                raise MetaalError(f"task split: twins '{name}' are split ({where})")
        return self


def default_splits_path() -> Path:
    return Path(str(resources.files("metaal.tasks").joinpath(SPLITS_FILE)))


def load_splits(path: str | Path | None = None) -> TaskSplits:
    """Read and check a split file (default: the one shipped in the package)."""
    file = Path(path).expanduser() if path is not None else default_splits_path()
    if not file.is_file():
        raise MetaalError(f"task split file {file} not found")
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MetaalError(f"task split file {file}: cannot read ({exc})".replace("\n", " ")) from None
    unknown = sorted(set(data) - {"rule", "groups", "folds", "twins", "excluded"})
    if unknown:
        raise MetaalError(f"task split file {file}: unknown table(s) {', '.join(unknown)}")
    folds_table = data.get("folds", {})
    keys = sorted(folds_table, key=lambda k: int(k) if k.isdigit() else -1)
    if keys != [str(k) for k in range(len(keys))]:
        raise MetaalError(f"task split file {file}: folds must be numbered 0 .. k-1, found {', '.join(keys) or 'none'}")

    def names(value, where: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise MetaalError(f"task split file {file}: {where} must be a list of task specs")
        return list(value)

    splits = TaskSplits(
        groups={g: names(v, f"groups.{g}") for g, v in data.get("groups", {}).items()},
        folds=[names(folds_table[k], f"folds.{k}") for k in keys],
        twins={n: names(v, f"twins.{n}") for n, v in data.get("twins", {}).items()},
        rule=dict(data.get("rule", {})),
        excluded={str(k): str(v) for k, v in data.get("excluded", {}).items()},
    )
    return splits.check()
