"""`metaal benchmark`: transfer-eval's paired protocol over a suite of tasks, plus statistics over tasks.

The runs are transfer-eval's own (``metaal.evaluate.transfer_eval``: pairing, resumable run files,
``workers`` and the Ray backend come with it); this job adds the suite (a group or fold of the
committed task split), a check of every input before the first run, and the across-task files
(``metaal.bench_report``).
"""

from __future__ import annotations

from pathlib import Path

from metaal.bench_report import default_reference, write_benchmark
from metaal.evaluate import EvalConfig, transfer_eval

__all__ = ["benchmark", "check_benchmark", "suite_tasks"]


def suite_tasks(suite: str, splits_file: str | None = None) -> list[str]:
    """The task specs of a suite of the task split (``heldout``, ``tuning``, ``sources`` or ``fold:K``)."""
    from metaal.tasks.splits import load_splits

    return load_splits(splits_file).suite(suite)


def check_benchmark(config: EvalConfig, out: str | Path, reference: str | None, **run_options) -> str:
    """Every input, before the first run, all problems in one error: transfer-eval's checks (options, every
    strategy name and the policy, every task loads and fits its split for the initial set and budget, the results
    directory) and the reference strategy.  Returns the reference."""
    from metaal.errors import Problems
    from metaal.evaluate import check_eval

    problems = Problems()
    names = config.strategy_list()
    reference = reference or default_reference(names)
    if reference is None:
        problems.add("no reference strategy: add margin or --policy, or name one with --reference")
    elif reference not in names:
        problems.add(f"--reference {reference} is not among the strategies ({', '.join(names)})")
    elif reference == "oracle":
        problems.add("--reference oracle: the oracle reads true labels (a ceiling, not a competitor)")
    with problems.check():
        check_eval(config, out, **run_options)
    problems.raise_any()
    return reference


def benchmark(config: EvalConfig, out: str | Path, *, reference: str | None = None, suite: str | None = None,
              splits_file: str | None = None,
              progress: bool = True, stack: bool = True, **run_options) -> tuple[dict, dict]:
    """Run (or resume) every (task, seed, strategy) of ``config`` in ``out`` as transfer-eval does, then write
    benchmark.json, benchmark.md and cd_diagram.png beside its files.  ``stack`` and ``run_options`` go to
    transfer_eval (backend, address, gpus_per_run, threads, workers).  Returns (transfer-eval results, benchmark)."""
    from metaal.evaluate import lock_results
    from metaal.io import ensure_writable_dir

    reference = check_benchmark(config, out, reference, **run_options)
    out = ensure_writable_dir(out, "results directory")
    lock = lock_results(out)  # held over the runs and the benchmark files: one writer for all of them
    try:
        results = transfer_eval(config, out, progress, stack=stack, locked=True, **run_options)
        from metaal.tasks.splits import load_splits

        # twin units come from the split the tasks were named in (``splits_file``; default: metaal's own)
        return results, write_benchmark(out, results, reference, suite, twins=load_splits(splits_file).twins)
    finally:
        lock.close()
