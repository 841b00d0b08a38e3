"""`metaal generate`: expert trajectories for distillation.

An episode is one task instance run until the budget.  Each round draws K candidates,
computes their features and lookahead-oracle gains, and then picks ``query_size`` of them
one at a time (the expert's pick is the best remaining gain, so its batch is the top-b);
the roll-in decides which pick is actually taken.  Everything in an episode follows from
(seed, episode id), so episodes are identical whichever process or shard runs them, and a
killed run resumes by redoing only the episodes that were never committed.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from metaal.acquisition.features import BATCH_PROPOSERS, CONTEXT_NAMES, FEATURE_NAMES, FeatureExtractor, schema
from metaal.config import GenerateConfig as _GenerateSettings
from metaal.errors import MetaalError
from metaal.io import package_versions, provenance
from metaal.learners import derive_seed, resolve_device, set_threads
from metaal.loop import new_state
from metaal.store import EpisodeRecord
from metaal.tasks import load_task


class GenerateConfig(_GenerateSettings):
    """``metaal.config.GenerateConfig`` (the settings and their defaults) with the checks that read the acquisition
    layer (how many candidates the batch oracle's proposals need)."""

    def validate(self) -> None:
        from metaal.acquisition.proposals import max_candidates
        from metaal.oracle import ALL_ORACLE_MODES as ORACLE_MODES

        if not self.tasks:
            raise MetaalError("no task given (--tasks SPEC[,SPEC...])")
        if self.episodes < 1:
            raise MetaalError(f"--episodes must be at least 1, got {self.episodes}")
        if self.candidates < 2:
            raise MetaalError(f"--candidates must be at least 2, got {self.candidates}")
        if self.loop.query_size > self.candidates:
            raise MetaalError(f"--query-size {self.loop.query_size} is larger than --candidates {self.candidates}")
        if not 0.0 <= self.beta <= 1.0:
            raise MetaalError(f"--beta must be in [0, 1], got {self.beta}")
        mode = self.oracle_config().mode
        if mode not in ORACLE_MODES:
            raise MetaalError(f"unknown oracle '{mode}' (choose from {', '.join(ORACLE_MODES)})")
        if mode == "batch" and self.oracle_config().proposals != "random":
            raise MetaalError("--proposals and --oracle batch conflict: the batch oracle's candidates are the heuristics' batches")
        if mode == "batch" and self.candidates < max_candidates(self.loop.query_size):
            raise MetaalError(f"--oracle batch needs --candidates >= {max_candidates(self.loop.query_size)} "
                              f"(every proposer's batch of --query-size {self.loop.query_size} must fit)")
        self.loop.validate()


def store_attrs(config: GenerateConfig) -> dict:
    return {
        "feature_names": list(FEATURE_NAMES),
        "context_names": list(CONTEXT_NAMES),
        "schema": schema(),
        "K": config.candidates,
        "oracle": config.oracle_config().to_dict(),
        "config": config.identity(),
        "versions": package_versions(),
        # who created the store (not part of its identity: a resume by another command or commit is allowed)
        "provenance": provenance(),
    }


def episode_task(config: GenerateConfig, episode_id: int) -> tuple[str, int]:
    """Which task spec and instance seed an episode uses (a pure function of seed and id)."""
    rng = np.random.default_rng([config.seed, episode_id, 0x7A5C])
    spec = config.tasks[int(rng.integers(len(config.tasks)))]
    return spec, int(derive_seed(config.seed, episode_id) % (2**31))


def _rollin_strategy(config: GenerateConfig):
    if config.rollin == "expert":
        return None
    from metaal.registry import get_strategy

    if config.rollin.startswith("policy:"):
        return get_strategy(config.rollin, trust_pickle=config.trust_pickle)
    return get_strategy(config.rollin)


def run_generation_episode(config: GenerateConfig, episode_id: int, device=None, rollin=None, on_round=None) -> EpisodeRecord:
    """One expert episode, straight through: draw, score, pick, label, retrain, record."""
    from metaal.acquisition.proposals import heuristic_batches, propose_candidates, uncertain_pool
    from metaal.oracle import lookahead_gains
    from metaal.oracle.batch import candidate_gains
    from metaal.oracle.lookahead import expert_key

    device = device or resolve_device(config.device)
    oracle = config.oracle_config()
    spec, seed = episode_task(config, episode_id)
    loop = config.loop
    task = load_task(spec, seed, config.split, min_pool=loop.initial + loop.budget,
                     data_root=config.data_root, label_column=config.label_column, download=config.download)
    state = new_state(task, config.learner, loop, seed, device)
    X, y = task.X, task.y
    X_val, y_val = X[task.val], y[task.val]
    X_test, y_test = X[task.test], y[task.test]
    K, F = config.candidates, len(FEATURE_NAMES)
    mix = np.random.default_rng([seed, 0xB7A])
    val_acc = state.learner.accuracy(X_val, y_val)
    test_acc = [state.learner.accuracy(X_test, y_test)]
    rows: dict[str, list] = {k: [] for k in ("candidates", "context", "mask", "oracle_gain", "oracle_acc_gain",
                                             "action", "expert_action", "reward", "terminal", "round_end",
                                             "batch_gain", "batch_acc_gain")}
    sizes = loop.rounds()
    for r, size in enumerate(sizes, start=1):
        unl = state.unlabelled
        k_eff = min(K, len(unl))
        batches = None
        batch_gain = np.full((2, len(BATCH_PROPOSERS)), np.nan, np.float32)  # (loss, accuracy) per proposer
        if oracle.mode == "batch":  # candidates = the heuristics' batches; gains from retraining each batch
            batches = heuristic_batches(state, size, uncertain_pool(state, size, int(oracle.margin_pool)))
            cands, loss_gain, acc_gain_k, per_batch = candidate_gains(state, size, X_val, y_val, round_seed=r,
                                                              horizon=int(oracle.horizon), batches=batches,
                                                              metric=oracle.metric)
            k_eff = len(cands)
            for p, name in enumerate(BATCH_PROPOSERS):
                if name in per_batch:
                    batch_gain[:, p] = per_batch[name]
        else:
            cands = propose_candidates(state, k_eff, oracle.proposals)
            lab = state.labelled
            gains = lookahead_gains(state.learner, X[lab], y[lab], X[cands], y[cands], X_val, y_val, oracle,
                                    seed=derive_seed(seed, r, 0x0AC))
            loss_gain, acc_gain_k = gains.loss_gain, gains.acc_gain
        gain = np.full(K, np.nan, np.float32)
        gain[:k_eff] = loss_gain
        acc_gain = np.full(K, np.nan, np.float32)
        acc_gain[:k_eff] = acc_gain_k
        expert_score = expert_key(gain, acc_gain, oracle.metric)
        fe = FeatureExtractor(state, cands, batches=batches)
        rollin_order = list(rollin.select(state, min(size, k_eff), candidates=cands)) if rollin is not None else []
        position = {int(c): i for i, c in enumerate(cands)}
        valid = np.zeros(K, bool)
        valid[:k_eff] = True
        taken = []
        for j in range(size):
            feats, ctx = fe.features(batch_size=size)
            cand_block = np.zeros((K, F), np.float32)
            cand_block[:k_eff] = feats
            expert = int(np.flatnonzero(valid)[np.argmax(expert_score[valid])])
            if rollin is None or mix.random() < config.beta:
                action = expert
            else:
                action = next((position[int(c)] for c in rollin_order if valid[position[int(c)]]), None)
                if action is None:
                    action = int(mix.choice(np.flatnonzero(valid)))
            rows["candidates"].append(cand_block)
            rows["context"].append(ctx)
            rows["mask"].append(valid.copy())
            rows["oracle_gain"].append(gain)
            rows["oracle_acc_gain"].append(acc_gain)
            rows["action"].append(action)
            rows["expert_action"].append(expert)
            rows["reward"].append(0.0)
            rows["terminal"].append(False)
            rows["round_end"].append(j == size - 1)
            rows["batch_gain"].append(batch_gain[0])
            rows["batch_acc_gain"].append(batch_gain[1])
            valid[action] = False
            taken.append(action)
            fe.mark_selected(action)
        state.round = r
        state.add_labels(cands[taken])
        state.retrain()
        new_val = state.learner.accuracy(X_val, y_val)
        rows["reward"][-1] = new_val - val_acc  # realised improvement of the round, on its last pick
        val_acc = new_val
        test_acc.append(state.learner.accuracy(X_test, y_test))
        if on_round:
            on_round(r, len(sizes))
    rows["terminal"][-1] = True
    dtypes = {"candidates": np.float32, "context": np.float32, "mask": np.bool_, "oracle_gain": np.float32,
              "oracle_acc_gain": np.float32, "action": np.int32, "expert_action": np.int32, "reward": np.float32,
              "terminal": np.bool_, "round_end": np.bool_, "batch_gain": np.float32, "batch_acc_gain": np.float32}
    steps = {k: np.asarray(v, dtype=dtypes[k]) for k, v in rows.items()}
    return EpisodeRecord(
        episode_id=episode_id,
        task=task.spec,  # for synthetic specs: the resolved parameters of this instance
        seed=seed,
        model=state.learner.kind,
        steps=steps,
        final_accuracy=float(test_acc[-1]),
        aulc=float(np.mean(test_acc)),
        final_val_accuracy=float(val_acc),
    )


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise MetaalError(f"--shard must look like i/N (e.g. 0/4), got '{text}'") from None
    if n < 1 or not 0 <= i < n:
        raise MetaalError(f"--shard {text}: need 0 <= i < N")
    return i, n


def _run_slice(config: GenerateConfig, out: str, index: int, count: int, shard: str | None,
               on_round=None, on_episode=None) -> None:
    """Run the episodes with id % count == index that the store does not have yet."""
    from metaal.store import open_writer

    with open_writer(out, store_attrs(config), shard=shard) as writer:
        device = resolve_device(config.device)
        rollin = _rollin_strategy(config)
        done = writer.committed_ids()
        for eid in range(index, config.episodes, count):
            if eid in done:
                continue
            writer.append(run_generation_episode(config, eid, device, rollin, on_round=on_round))
            if on_episode:
                on_episode()


class _Stopped(Exception):
    """The driver asked this worker to stop: another one failed."""


def _worker(args):
    """A worker process: its own shard, progress events to the driver through a queue.

    After each round it checks ``stop``: when another worker has failed, it leaves its episode unwritten
    (a rerun redoes it) and exits normally, so that no worker is ever terminated."""
    config, out, index, count, shard, events, stop, threads = args
    set_threads(threads)

    def on_round(_r, _n):
        events.put(("round", 1))
        if stop.is_set():
            raise _Stopped

    try:
        _run_slice(config, out, index, count, shard, on_round=on_round, on_episode=lambda: events.put(("episode", 1)))
        events.put(("done", None))
    except _Stopped:
        events.put(("stopped", None))
    except MetaalError as exc:
        events.put(("error", str(exc)))
    except BaseException as exc:  # report the failure to the driver instead of hanging it
        import traceback

        events.put(("crash", "".join(traceback.format_exception(exc))))


def generate(config: GenerateConfig, out: str, *, workers: int | None = None, shard: str | None = None,
             overwrite: bool = False, progress: bool = True, backend: str = "local", address: str | None = None,
             gpus_per_episode: float = 0.0, threads: int = 1) -> dict:
    """Fill ``out`` with ``config.episodes`` episodes (resuming an existing store); return its status.

    ``workers``: local processes, each writing its own shard (None: 1, in this process).  With
    ``backend="ray"`` every episode is a Ray task (``threads`` CPUs, ``gpus_per_episode`` GPUs) on
    the cluster at ``address`` (None: a local Ray instance); ``workers`` then bounds the episodes
    run at once (None: as many as the cluster fits), and each of those lanes writes its own shard
    ``shards/r<lane>``.  ``threads``: torch threads of each worker process or Ray task (in this
    process, the caller's setting).  Float results depend on the thread count, not on the backend.
    """
    from metaal.store import store_status

    sl = check_generate(config, out, workers=workers, shard=shard, overwrite=overwrite, backend=backend,
                        address=address, gpus_per_episode=gpus_per_episode, threads=threads)
    ray = backend == "ray"
    if ray:
        from metaal.backends import ray_session

        # connect (or start a local instance) before touching the store: a bad --address leaves nothing behind
        with ray_session(address, num_cpus=workers * threads if workers else None):
            lanes = _ray_lanes(workers, address, gpus_per_episode, threads)
            _fill(config, out, _ray_shard(0), overwrite, None, progress,
                  lambda todo, bar, episode_done, rounds: _run_ray(config, out, todo, lanes, gpus_per_episode, threads,
                                                                   bar, episode_done, rounds))
    else:
        workers = workers or 1

        def run(todo, bar, episode_done, rounds):
            if workers == 1:
                index, count = sl if sl else (0, 1)
                _run_slice(config, out, index, count, _shard_name(sl, 1, 0) if sl else None,
                           on_round=lambda r, n: bar.update(1), on_episode=episode_done)
            else:
                _run_workers(config, out, workers, bar, episode_done, threads)

        _fill(config, out, None if not (sl or workers > 1) else _shard_name(sl, workers, 0), overwrite, sl, progress, run)
    return store_status(out)


def check_generate(config: GenerateConfig, out: str | None, *, workers: int | None = None, shard: str | None = None,
                   overwrite: bool = False, backend: str = "local", address: str | None = None,
                   gpus_per_episode: float = 0.0, threads: int = 1):
    """Every input of a generate, checked before its first episode, all problems reported together and
    nothing written: the options, the roll-in strategy (a policy loads and matches the feature schema),
    every source task (loads, fits its split for initial + budget, and its unlabelled pool holds K
    candidates), and the store location (writable, not a file).  Returns the parsed ``--shard``."""
    from metaal.backends import check_backend_options, check_ray_device, import_ray
    from metaal.errors import Problems
    from metaal.io import check_output_dir, check_workers
    from metaal.tasks.check import check_tasks

    problems = Problems()
    with problems.check():
        config.validate()
    config_ok = not problems.found
    with problems.check():
        check_backend_options(backend, address, gpus_per_episode)
        if backend == "ray":
            import_ray()  # the install hint before anything else
    with problems.check():
        check_workers(workers)
    if threads < 1:
        problems.add(f"--threads must be at least 1, got {threads}")
    ray = backend == "ray"
    sl = None
    with problems.check():
        sl = parse_shard(shard)
    if sl and ray:
        problems.add("--shard and --backend ray conflict: Ray spreads the episodes itself (use one or the other)")
    if sl and (workers or 1) > 1:
        problems.add("--shard and --workers > 1 conflict: a shard is one process's slice (use a job array)")
    if sl and overwrite:
        problems.add("--shard and --overwrite conflict: one shard job must not delete the other shards' data")
    if config.rollin != "expert":
        with problems.check():
            _rollin_strategy(config)  # unknown strategy, or a policy that does not load or fit
    with problems.check():
        if ray:
            check_ray_device(config.device, gpus_per_episode)  # the driver need not have the tasks' GPUs
        else:
            resolve_device(config.device)
    if out is not None:
        with problems.check():
            check_output_dir(out, "trajectory store")
            if config_ok:  # an existing store must be a metaal store made with these settings (or --overwrite)
                from metaal.store import check_writer_target

                check_writer_target(out, store_attrs(config), overwrite=overwrite)

    def candidates_fit(spec, task):
        if config.candidates > len(task.pool) - config.loop.initial:
            raise MetaalError(f"{spec}: --candidates {config.candidates} is larger than the unlabelled pool "
                              f"({len(task.pool) - config.loop.initial} items)")

    if config_ok:  # every task spec, so that a typo fails before hours of work
        seeds = [episode_task(config, e)[1] for e in range(config.episodes)]
        check_tasks(config.tasks, seeds, config.split, min_pool=config.loop.initial + config.loop.budget,
                    extra=candidates_fit, problems=problems, data_root=config.data_root,
                    label_column=config.label_column, download=config.download)
    problems.raise_any()
    return sl


def _fill(config: GenerateConfig, out: str, first_shard: str | None, overwrite: bool, sl, progress: bool, run) -> None:
    """Open (create, check or overwrite) the store, then ``run`` the episodes it lacks under one progress bar."""
    from metaal.store import open_writer

    with open_writer(out, store_attrs(config), shard=first_shard, overwrite=overwrite) as writer:
        done = writer.committed_ids()
    if sl:
        mine = [e for e in range(sl[0], config.episodes, sl[1])]
    else:
        mine = list(range(config.episodes))
    todo = [e for e in mine if e not in done]
    rounds = len(config.loop.rounds())
    bar = tqdm(total=len(mine) * rounds, initial=(len(mine) - len(todo)) * rounds, desc="generate", unit="round",
               disable=not progress, dynamic_ncols=True)
    n_done = [len(mine) - len(todo)]

    def episode_done():
        n_done[0] += 1
        bar.set_postfix_str(f"episodes {n_done[0]}/{len(mine)}")

    bar.set_postfix_str(f"episodes {n_done[0]}/{len(mine)}")
    try:
        if todo:
            run(todo, bar, episode_done, rounds)
    finally:
        bar.close()


def _shard_name(sl, workers: int, index: int) -> str:
    if sl:
        return f"s{sl[0]}-of-{sl[1]}"
    return f"w{index}-of-{workers}"


def _run_workers(config: GenerateConfig, out: str, workers: int, bar, episode_done, threads: int = 1) -> None:
    from metaal.backends import local_pool

    # Both are shut down on the way out and the workers always exit on their own (a failure stops the
    # others through ``stop``), so no semaphore is left for the resource tracker to warn about.
    with mp.get_context("spawn").Manager() as manager, local_pool(workers) as pool:
        events, stop = manager.Queue(), manager.Event()
        pending = [pool.submit(_worker, (config, out, i, workers, _shard_name(None, workers, i), events, stop, threads))
                   for i in range(workers)]
        finished, failure = 0, None
        while finished < workers:
            kind, value = events.get()
            if kind == "round":
                bar.update(1)
            elif kind == "episode":
                episode_done()
            else:  # done, stopped, error or crash: that worker has finished
                finished += 1
                if kind in ("error", "crash") and failure is None:
                    failure = MetaalError(value) if kind == "error" else RuntimeError(f"a generate worker failed:\n{value}")
                    stop.set()
        for done in pending:
            done.result()
        if failure is not None:
            raise failure


def _ray_shard(lane: int) -> str:
    return f"r{lane}"


def _ray_episode(config: GenerateConfig, out: str, episode_id: int, threads: int, lane: int) -> int:
    """A Ray task: one episode, appended to the shard of its lane (no other running task holds that lane)."""
    from metaal.store import open_writer

    set_threads(threads)
    with open_writer(out, store_attrs(config), shard=_ray_shard(lane)) as writer:
        if episode_id not in writer.committed_ids():  # a retried task may find its episode done
            writer.append(run_generation_episode(config, episode_id, resolve_device(config.device),
                                                 _rollin_strategy(config)))
    return episode_id


def _ray_lanes(workers: int | None, address: str | None, gpus: float, threads: int) -> int:
    """Episodes run at once: --workers, or as many as the Ray cluster fits."""
    from metaal.backends import import_ray, ray_capacity

    if workers is not None:
        return workers
    ray = import_ray()
    lanes = ray_capacity(ray, threads, gpus)
    if lanes < 1 and not address:
        res = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
        raise MetaalError(f"the local Ray instance cannot run an episode with {threads} CPU(s) and {gpus:g} GPU(s) "
                          f"(it has {res})")
    return max(1, lanes)  # a cluster may still scale up


def _run_ray(config: GenerateConfig, out: str, todo: list[int], lanes: int, gpus: float, threads: int,
             bar, episode_done, rounds: int) -> None:
    from metaal.backends import ray_map

    out = str(Path(out).absolute())  # tasks may run in another working directory
    for _ in ray_map(_ray_episode, [(config, out, eid, threads) for eid in todo],
                     num_cpus=threads, num_gpus=gpus, lanes=min(lanes, len(todo))):
        bar.update(rounds)
        episode_done()
