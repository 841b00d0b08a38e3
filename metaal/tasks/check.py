"""Check task specs before long work: every task loads and fits its split, all problems at once."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from metaal.errors import Problems
from metaal.tasks.dataset import SplitConfig, Task


def check_tasks(specs: Iterable[str], seeds: Iterable[int], split: SplitConfig | None = None, *, min_pool: int = 0,
                extra: Callable[[str, Task], None] | None = None, problems: Problems | None = None,
                **loader_options) -> None:
    """Load and split every task (pool >= ``min_pool`` after the validation and test parts), then run
    ``extra(spec, task)`` (a job's own per-task condition); every failing task is one problem.

    A named data set's split sizes depend only on its size and classes, so one seed checks it; a
    ``synthetic`` spec without a fixed seed draws a new task per instance seed, so each seed is checked
    (milliseconds each).  With ``problems`` the problems are added to it; without, raised together."""
    from metaal.tasks import load_task

    own = problems is None
    problems = Problems() if own else problems
    seeds = list(dict.fromkeys(seeds)) or [0]
    for spec in dict.fromkeys(specs):
        per_seed = seeds if spec.strip().startswith("synthetic") and "seed=" not in spec else seeds[:1]
        for seed in per_seed:
            before = len(problems.found)
            with problems.check():
                task = load_task(spec, seed, split, min_pool=min_pool, **loader_options)
                if extra is not None:
                    extra(spec, task)
            if len(problems.found) > before:
                break  # one problem per task is enough
    if own:
        problems.raise_any()

