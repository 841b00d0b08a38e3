"""`transfer-eval`: paired comparison of strategies on tasks, resumable run by run.

For one (task, seed) every strategy starts from the same split, initial labelled set and
model initialisation, and trains with the same per-round seeds, so differences between
strategies come from what they select.  Each finished run is written atomically to
``OUT/runs/`` and skipped when the command is run again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

from metaal.config import EvalConfig
from metaal.io import atomic_write_json, ensure_writable_dir, git_commit, remove_stale_temporaries
from metaal.learners import resolve_device, set_threads
from metaal.loop import run_episode, run_lockstep
from metaal.registry import POLICY, get_strategy, is_policy_name, policy_dir
from metaal.report import slug
from metaal.tasks import load_task


def _policy_name(name: str, config: EvalConfig) -> str:
    """The registry name of a strategy: ``policy`` is ``--policy DIR``'s policy when one is given."""
    return f"{POLICY}:{config.policy}" if name == POLICY and config.policy else name


def _make_strategy(name: str, config: EvalConfig, device):
    if is_policy_name(name):  # policy (--policy DIR's, else the shipped one), shipped, policy:DIR
        return get_strategy(_policy_name(name, config), max_candidates=config.policy_candidates,
                            trust_pickle=config.trust_pickle)
    if name == "oracle":
        return get_strategy("oracle", **config.oracle)
    return get_strategy(name)


def run_identity(config: EvalConfig, task: str, strategy: str, seed: int) -> str:
    """Hash of everything that determines a run's result (a rerun with other settings redoes it)."""
    ident = {
        "task": task,
        "strategy": strategy,
        "seed": seed,
        "loop": asdict(config.loop),
        "learner": asdict(config.learner),
        "split": asdict(config.split),
        # the 0 stands where the retired policy_shortlist was: runs keep the identity they had with it
        "policy": [_policy_fingerprint(config, strategy), config.policy_candidates, 0]
        if is_policy_name(strategy)
        else None,
        "oracle": config.oracle if strategy == "oracle" else None,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _policy_fingerprint(config: EvalConfig, strategy: str) -> str | None:
    from metaal.policy.artefact import meta_fingerprint

    path = policy_dir(_policy_name(strategy, config))
    return meta_fingerprint(path) or str(path)


def run_path(out: Path, task: str, strategy: str, seed: int) -> Path:
    return out / "runs" / slug(task) / f"{slug(strategy)}__seed{seed}.json"


def transfer_eval(config: EvalConfig, out: str | Path, progress: bool = True, *, backend: str = "local",
                  address: str | None = None, gpus_per_run: float = 0.0, threads: int = 1, workers: int = 1,
                  stack: bool = True, locked: bool = False) -> dict:
    """Run every (task, seed, strategy) not already finished in ``out``; return the results dict.

    ``workers`` > 1 (local backend): that many processes, each running whole (task, seed) groups with
    ``threads`` torch threads; a run's result does not depend on which process ran it, so the files
    are the ones one process writes.  ``backend="ray"`` runs each (task, strategy, seed) as a Ray task
    (``threads`` torch threads and CPUs, ``gpus_per_run`` GPUs) on the cluster at ``address`` (None: a
    local Ray instance); every run writes its own file in ``OUT/runs`` and the report is built from
    them as with the local backend.

    ``stack`` (local backend): the missing runs of a task (of a (task, seed) group per worker with
    ``workers`` > 1) advance in lockstep and each round's retrains are one stacked computation
    (:func:`metaal.loop.run_lockstep`); the runs still finish, and are written, one file each.  The
    curves equal the one-run-at-a-time loop's up to float32 rounding of the training (near-ties in a
    selection can flip).  Ray runs one run per task either way.
    """
    from metaal.report import write_results

    device, strategies = check_eval(config, out, backend=backend, address=address, gpus_per_run=gpus_per_run,
                                    threads=threads, workers=workers)
    out = ensure_writable_dir(out, "results directory")
    # one writer per results directory (``locked``: the caller holds the lock, as benchmark does for its own files)
    lock = None if locked else lock_results(out)
    try:
        # a killed writer's half-written files (the lock says that no writer is live)
        remove_stale_temporaries(out, RESULT_FILES)
        if (out / "runs").is_dir():
            remove_stale_temporaries(out / "runs", ("",), recursive=True)
        return _evaluate(config, out, strategies, device, progress, backend, address, gpus_per_run, threads, workers,
                         write_results, stack)
    finally:
        if lock is not None:
            lock.close()


LOCK_FILE = ".metaal.lock"  # in the results directory: held by the running transfer-eval (metaal.io.hold_lock)
# what transfer-eval and benchmark write at the top of a results directory (their temporaries are .NAME.*.tmp)
RESULT_FILES = ("summary.json", "curves.csv", "report.md", "curve_", "benchmark.", "cd_diagram", "policy_minus_margin")


def lock_results(out: Path):
    """Hold the results directory's lock (close the returned file to release it)."""
    from metaal.io import hold_lock

    return hold_lock(out / LOCK_FILE, f"results directory {out}")


def check_eval(config: EvalConfig, out: str | Path | None, *, backend: str = "local", address: str | None = None,
               gpus_per_run: float = 0.0, threads: int = 1, workers: int = 1, tasks: bool = True):
    """Every input of a transfer-eval, checked before its first run, all problems reported together and
    nothing written: the options, every strategy name (a policy loads and matches the feature schema),
    every task (loads, and its split leaves a pool of initial + budget items) and the results directory
    (writable, not a file).  Returns (device, strategies by name) for the runs."""
    from metaal.backends import check_backend_options, check_ray_device, import_ray
    from metaal.errors import Problems
    from metaal.io import check_output_dir, check_workers
    from metaal.tasks.check import check_tasks

    problems = Problems()
    if not config.tasks:
        problems.add("no task given (--tasks SPEC[,SPEC...])")
    if config.policy_candidates is not None and config.policy_candidates < 1:
        problems.add(f"--policy-candidates must be at least 1, got {config.policy_candidates}")
    if config.seeds < 1:
        problems.add(f"--seeds must be at least 1, got {config.seeds}")
    with problems.check():
        check_backend_options(backend, address, gpus_per_run, gpus_option="--gpus-per-run")
        if backend == "ray":
            import_ray()  # the install hint before anything else
    if threads < 1:
        problems.add(f"--threads must be at least 1, got {threads}")
    with problems.check():
        check_workers(workers)
    before = len(problems.found)
    with problems.check():
        config.loop.validate()
    loop_ok = len(problems.found) == before  # the tasks' pool sizes are checked against a valid loop only
    device = None  # with Ray: chosen inside each task
    with problems.check():
        if backend == "ray":
            check_ray_device(config.device, gpus_per_run, gpus_option="--gpus-per-run")
        else:
            device = resolve_device(config.device)
    strategies = {}
    for name in config.strategy_list():
        with problems.check():
            strategies[name] = _make_strategy(name, config, device)
    if out is not None:
        with problems.check():
            check_output_dir(out, "results directory")
    if tasks and config.tasks and loop_ok:
        check_tasks(config.tasks, [config.seed + i for i in range(max(config.seeds, 1))], config.split,
                    min_pool=config.loop.initial + config.loop.budget, problems=problems, data_root=config.data_root,
                    label_column=config.label_column, download=config.download)
    problems.raise_any()
    return device, strategies


def _evaluate(config: EvalConfig, out: Path, strategies: dict, device, progress: bool, backend: str, address,
              gpus_per_run: float, threads: int, workers: int, write_results, stack: bool = False) -> dict:
    names = config.strategy_list()
    # The runs in report order; finished ones are read back, the others run below.
    seeds = [config.seed + i for i in range(config.seeds)]
    plan = [(spec, seed, name) for spec in config.tasks for seed in seeds for name in names]
    found = {key: _load_run(run_path(out, *_pts(key)), run_identity(config, *_pts(key))) for key in plan}
    todo = [key for key in plan if found[key] is None]
    rounds = len(config.loop.rounds())
    bar = tqdm(total=len(plan) * rounds, initial=(len(plan) - len(todo)) * rounds, desc="transfer-eval", unit="round",
               disable=not progress, dynamic_ncols=True)
    try:
        if backend == "ray" and todo:
            from metaal.backends import ray_map, ray_session

            with ray_session(address):
                items = [(config, str(out.absolute()), spec, name, seed, threads) for spec, seed, name in todo]
                for i, run in ray_map(_ray_run, items, num_cpus=threads, num_gpus=gpus_per_run):
                    found[todo[i]] = run
                    bar.update(rounds)
        elif todo and workers > 1:
            groups: dict[tuple[str, int], list[str]] = {}  # (task, seed) -> its missing strategies, in plan order
            for spec, seed, name in todo:
                groups.setdefault((spec, seed), []).append(name)
            for run in _map_groups(config, out, [(*key, names) for key, names in groups.items()], workers, threads, stack):
                found[(run["task"], run["seed"], run["strategy"])] = run
                bar.set_postfix_str(f"{_short(run['task'])} · {run['strategy']} · seed {run['seed']}")
                bar.update(rounds)
        elif todo and stack:
            for spec in dict.fromkeys(config.tasks):
                missing = [(seed, name) for seed in seeds for name in names if found[(spec, seed, name)] is None]
                if not missing:
                    continue
                bar.set_postfix_str(f"{_short(spec)} · {len(missing)} runs in lockstep")
                width = len(missing)
                runs = _lockstep_and_save(config, out, spec, missing, strategies, device,
                                          on_round=lambda r, n, k=width: bar.update(k))
                for (seed, name), run in zip(missing, runs):
                    found[(spec, seed, name)] = run
        elif todo:
            for spec in config.tasks:
                for seed in seeds:
                    # the task instance is loaded once per (task, seed), only if a run of it is missing
                    task = None
                    for name in names:
                        if found[(spec, seed, name)] is not None:
                            continue
                        if task is None:
                            task = _load_eval_task(config, spec, seed)
                        bar.set_postfix_str(f"{_short(spec)} · {name} · seed {seed}")
                        found[(spec, seed, name)] = _run_and_save(config, out, task, spec, name, seed, strategies[name],
                                                                  device, on_round=lambda r, n: bar.update(1))
    finally:
        bar.close()
    return write_results(out, config, [found[key] for key in plan])


def _pts(key: tuple[str, int, str]) -> tuple[str, str, int]:
    """(task, seed, strategy) plan key -> (task, strategy, seed) as run_path and run_identity take them."""
    spec, seed, name = key
    return spec, name, seed


def _load_eval_task(config: EvalConfig, spec: str, seed: int):
    return load_task(spec, seed, config.split, min_pool=config.loop.initial + config.loop.budget,
                     data_root=config.data_root, label_column=config.label_column, download=config.download)


def _run_and_save(config: EvalConfig, out: Path, task, spec: str, name: str, seed: int, strategy, device,
                  on_round=None) -> dict:
    """One (task, strategy, seed) run from its paired start, written atomically to OUT/runs."""
    result = run_episode(task, strategy, config.learner, config.loop, seed, device, on_round=on_round)
    return _save_run(config, out, spec, name, seed, strategy, result)


def _lockstep_and_save(config: EvalConfig, out: Path, spec: str, missing: list[tuple[int, str]], strategies: dict,
                       device, on_round=None) -> list[dict]:
    """The (seed, strategy) runs of one task in lockstep (stacked retrains), each then written as _run_and_save does."""
    tasks = {seed: _load_eval_task(config, spec, seed) for seed in dict.fromkeys(seed for seed, _ in missing)}
    results = run_lockstep([(tasks[seed], strategies[name], seed) for seed, name in missing], config.learner,
                           config.loop, device, on_round=on_round)
    return [_save_run(config, out, spec, name, seed, strategies[name], result)
            for (seed, name), result in zip(missing, results)]


def _save_run(config: EvalConfig, out: Path, spec: str, name: str, seed: int, strategy, result) -> dict:
    run = {
        "task": spec,
        "strategy": name,
        "seed": seed,
        "uses_true_labels": bool(getattr(strategy, "uses_true_labels", False)),
        "aulc": result.aulc,
        "final_accuracy": result.final_accuracy,
        "labels": result.labels,
        "accuracy": result.accuracy,
        # the items each round queried (row ids of the task's data, in the order chosen): which items two
        # strategies share, or what a policy picked, can be studied without rerunning anything
        "queried": _by_round(result.selected, config.loop.rounds()),
        "identity": run_identity(config, spec, name, seed),
        # runs kept from earlier invocations may come from other code: summary.json lists the commits
        "code": {"commit": git_commit()["commit"]},
    }
    atomic_write_json(run_path(out, spec, name, seed), run)
    return run


def _by_round(selected: list[int], sizes: list[int]) -> list[list[int]]:
    out, start = [], 0
    for size in sizes:
        out.append(selected[start:start + size])
        start += size
    return out


def _map_groups(config: EvalConfig, out: Path, groups: list, workers: int, threads: int, stack: bool = False):
    """Finished runs, as they finish, of (task, seed, strategies) groups spread over ``workers`` processes."""
    import concurrent.futures as cf

    from metaal.backends import local_pool

    with local_pool(min(workers, len(groups))) as pool:
        futures = [pool.submit(_group_runs, config, str(out), spec, seed, names, threads, stack)
                   for spec, seed, names in groups]
        try:
            for fut in cf.as_completed(futures):
                yield from fut.result()
        except BaseException:  # a failed run (or Ctrl-C) stops what has not started; finished files stay
            for fut in futures:
                fut.cancel()
            raise


def _group_runs(config: EvalConfig, out: str, spec: str, seed: int, names: list[str], threads: int,
                stack: bool = False) -> list[dict]:
    """A worker process (or a Ray task, with one name): the missing runs of one (task, seed), the task loaded once."""
    set_threads(threads)
    device = resolve_device(config.device)
    if stack:
        strategies = {name: _make_strategy(name, config, device) for name in names}
        return _lockstep_and_save(config, Path(out), spec, [(seed, name) for name in names], strategies, device)
    task = _load_eval_task(config, spec, seed)
    return [_run_and_save(config, Path(out), task, spec, name, seed, _make_strategy(name, config, device), device)
            for name in names]


def _ray_run(config: EvalConfig, out: str, spec: str, name: str, seed: int, threads: int) -> dict:
    """A Ray task: one (task, strategy, seed) run, written to its own file."""
    return _group_runs(config, out, spec, seed, [name], threads)[0]


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
