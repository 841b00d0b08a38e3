"""Command-line interface: parse, validate, call the library.  Errors the user can fix exit with 2."""

from __future__ import annotations

import functools
import os
import sys

import click

# option defaults live once, in the config dataclasses (torch-free modules, so the CLI starts fast)
from metaal.config import (
    ALL_ORACLE_MODES,
    EVAL_STRATEGIES,
    ORACLE_METRICS,
    PROPOSALS,
    BenchmarkConfig,
    EvalConfig,
    GenerateConfig,
    LearnerConfig,
    LoopConfig,
    OracleConfig,
    SelectConfig,
    SplitConfig,
    defaults,
)
from metaal.distill.config import ALGOS, COUNT_CONTEXTS, GAIN_TARGETS
from metaal.distill.config import DistillConfig as DISTILL
from metaal.errors import MetaalError


def merge(ctx, params: dict, file_values: dict) -> dict:
    """Explicit command-line values > config file > click defaults."""
    merged = dict(params)
    for key, value in file_values.items():
        source = ctx.get_parameter_source(key)
        if source is None or source in (click.core.ParameterSource.DEFAULT, click.core.ParameterSource.DEFAULT_MAP):
            merged[key] = value
    return merged


def _list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def _setup_threads(threads: int | None) -> int:
    from metaal.learners import set_threads

    if threads is None:
        env = os.environ.get("METAAL_THREADS", "1")
        try:
            n = int(env)
        except ValueError:
            raise MetaalError(f"$METAAL_THREADS must be a whole number, got {env!r}") from None
    else:
        n = threads
    if n < 1:
        raise MetaalError(f"--threads must be at least 1, got {n}")
    set_threads(n)
    return n


def learner_options(job):
    """Options shared by every command that trains the learner; ``job``: the command's config dataclass (its
    device, label column and data-root defaults)."""

    def decorate(f):
        opts = [
            click.option("--model", default=LearnerConfig.model, show_default=True, help="auto (MLP or CNN), mlp, cnn or resnet18."),
            click.option("--epochs-steps", "train_steps", type=int, default=LearnerConfig.steps, show_default=True,
                         help="Optimiser steps per training round."),
            click.option("--warm-start/--from-scratch", default=LearnerConfig.warm_start,
                         help="Each round from the last weights (default: from scratch)."),
            click.option("--device", default=job.device, show_default=True, help="auto, cpu, cuda or cuda:N."),
            click.option("--threads", type=int, default=None, help="torch CPU threads (default 1, or $METAAL_THREADS)."),
            click.option("--data-root", type=click.Path(file_okay=False), default=job.data_root,
                         help="torchvision data root (or $METAAL_DATA_ROOT)."),
            click.option("--label-column", default=job.label_column, show_default=True, help="Label column of csv: tasks."),
            click.option("--download", is_flag=True, default=job.download, help="Let torchvision tasks download into --data-root."),
        ]
        for opt in reversed(opts):
            f = opt(f)
        return f

    return decorate


def loop_options(loop: LoopConfig):
    def decorate(f):
        for opt in reversed(
            [
                click.option("--initial", type=int, default=loop.initial, show_default=True, help="Initial labelled examples."),
                click.option("--budget", type=int, default=loop.budget, show_default=True, help="Labels queried after the initial set."),
                click.option("--query-size", type=int, default=loop.query_size, show_default=True, help="Labels per round."),
            ]
        ):
            f = opt(f)
        return f

    return decorate


# pickles can run code when loaded: policies written by `metaal distill` never need this (metaal.policy.artefact)
TRUST_PICKLE_HELP = "Allow a trusted policy's pickles (they can run code)."


def trust_pickle_option(f):
    return click.option("--trust-pickle", is_flag=True, default=False, help=TRUST_PICKLE_HELP)(f)


def eval_options(strategies: str, which: str, seeds: int, section: str):
    """The options transfer-eval and benchmark share (one list, so the two cannot drift apart)."""

    def decorate(f):
        for opt in reversed([
            click.option("--strategies", default=strategies,
                         help=f"Comma list (`metaal strategies`; default: {which}); random always runs."),
            click.option("--policy", type=click.Path(), default=None, help="A distilled policy directory: adds strategy 'policy', this one in place of the shipped one."),
            click.option("--policy-candidates", type=int, default=EvalConfig.policy_candidates,
                         help="The policy scores this many random items a round (default: all)."),
            click.option("--seeds", type=int, default=seeds, show_default=True, help="Seeds per task (paired across strategies)."),
            click.option("--seed", type=int, default=EvalConfig.seed, show_default=True, help="First seed."),
            loop_options(defaults(EvalConfig)["loop"]),
            click.option("--max-pool", type=int, default=defaults(EvalConfig)["split"].max_pool,
                         help="Subsample bigger pools to this many items, stratified, per seed (default and 0: no cap but keel's 5000)."),
            learner_options(EvalConfig),
            click.option("--workers", type=int, default=1, show_default=True, help="Local processes; results do not depend on it."),
            click.option("--stack/--no-stack", default=True,
                         help="A task's runs in lockstep, trained as one (default); --no-stack: one run at a time."),
            click.option("--backend", type=click.Choice(["local", "ray"]), default="local", help="ray: each run a Ray task."),
            click.option("--gpus-per-run", type=float, default=0.0, help="--backend ray: GPUs per run (fractions share one)."),
            click.option("--address", default=None, help="--backend ray: cluster (auto or HOST:PORT; default: local)."),
            click.option("--config", "config_file", type=click.Path(), default=None, help=f"TOML file; [{section}] sets any option."),
            trust_pickle_option,
            click.option("--out", required=True, type=click.Path(), help="Results directory (a rerun resumes)."),
            click.option("--quiet", is_flag=True, help="No progress bar."),
        ]):
            f = opt(f)
        return f

    return decorate


def handle_errors(f):
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except MetaalError as exc:
            for problem in exc.problems:  # every problem a validation found, one line each
                click.echo(f"error: {problem}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: finished work is kept; rerun the same command to resume", err=True)
            sys.exit(130)

    return wrapper


class _Metaal(click.Group):
    def main(self, args=None, *rest, **kwargs):
        from metaal.io import set_command

        set_command(["metaal", *(sys.argv[1:] if args is None else args)])  # provenance of what this call writes
        return super().main(args, *rest, **kwargs)


@click.group(cls=_Metaal, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="metaal")
def cli():
    """metaal: learn active-learning acquisition functions from expert lookahead trajectories."""


@cli.command()
@click.option("--family", default=None, help="Only this family of bundled tasks: sklearn, keel or keel-imbalanced.")
@click.option("--suite", default=None,
              help="Only the tasks of a suite of the task split (sources, tuning, heldout or fold:K), with group and fold.")
@click.option("--splits", "splits_file", type=click.Path(dir_okay=False), default=None,
              help="A task split file (default: the one shipped with metaal, metaal/tasks/splits.toml).")
@handle_errors
def datasets(family, suite, splits_file):
    """List every bundled task (items, features, classes, imbalance ratio) and the other task specs."""
    from metaal.tasks import CATALOGUE
    from metaal.tasks.listing import named_tasks, task_infos
    from metaal.tasks.splits import load_splits

    splits = load_splits(splits_file) if suite or splits_file else None
    specs = splits.suite(suite) if suite else named_tasks(family)
    if suite and family:
        specs = [s for s in specs if s in set(named_tasks(family))]
    infos = task_infos(specs)
    width = max(len(i.spec) for i in infos) if infos else 10
    head = f"{'spec':<{width}} {'family':<15} {'items':>6} {'features':>8} {'classes':>7} {'imbalance':>9}"
    click.echo(head + ("  group    fold" if splits else ""))
    for i in infos:
        line = f"{i.spec:<{width}} {i.family:<15} {i.items:>6} {i.features:>8} {i.classes:>7} {i.imbalance:>9.2f}"
        if splits:
            group, fold = splits.group_of(i.spec), splits.fold_of(i.spec)
            line += f"  {group or '-':<8} {'-' if fold is None else fold:>4}"
        click.echo(line)
    if suite or family:
        return
    click.echo("\nother task specs (generated, downloaded or your own files):")
    for e in CATALOGUE:
        if e["spec"].startswith("sklearn:"):
            continue
        click.echo(f"{e['spec']:<28} {e['classes']!s:>8} {e['samples']!s:>9}  {e['kind']}; {e['source']}; {e['licence']}")


@cli.command()
def strategies():
    """List the acquisition strategies (usable with --strategies)."""
    from metaal.acquisition import HEURISTICS

    for name, cls in HEURISTICS.items():
        click.echo(f"{name:<18} {cls.description}")
    click.echo(f"{'policy':<18} the learned policy shipped inside metaal (metaal/policies/default); with "
               "transfer-eval's --policy DIR, that policy instead")
    click.echo(f"{'shipped':<18} the shipped policy, also beside --policy DIR (metaal run's column for it)")
    click.echo(f"{'policy:DIR':<18} a distilled policy (metaal distill); with transfer-eval use --policy DIR")
    click.echo(f"{'oracle':<18} the expert itself (lookahead or batch oracle); reads true labels: a ceiling, not a competitor")


def _learner_config(p: dict):
    if p["train_steps"] < 1:
        raise MetaalError(f"--epochs-steps must be at least 1, got {p['train_steps']}")
    return LearnerConfig(model=p["model"], steps=p["train_steps"], warm_start=p["warm_start"])


def _episode_settings(p: dict) -> dict:
    """The settings generate's and transfer-eval's configs share: the loop, the learner, where data comes from."""
    return {"loop": LoopConfig(p["initial"], p["budget"], p["query_size"]), "learner": _learner_config(p),
            "device": p["device"], "data_root": p["data_root"], "label_column": p["label_column"],
            "download": p["download"], "trust_pickle": p["trust_pickle"]}


EVAL_KEYS = {"tasks", "strategies", "seeds", "seed", "initial", "budget", "query_size", "model", "train_steps",
             "warm_start", "device", "data_root", "label_column", "policy", "policy_candidates", "oracle", "workers", "backend",
             "address", "gpus_per_run", "stack", "max_pool"}


def _eval_config(p: dict, tasks: list[str]):
    """The EvalConfig of transfer-eval's (and benchmark's) options."""
    max_pool = p.get("max_pool")
    if max_pool is not None and (isinstance(max_pool, bool) or not isinstance(max_pool, int) or max_pool < 0):
        raise MetaalError(f"--max-pool must be a whole number (0: no cap), got {max_pool!r}")
    return EvalConfig(
        tasks=tasks,
        strategies=_list(p["strategies"]),
        seeds=p["seeds"],
        seed=p["seed"],
        split=SplitConfig(max_pool=max_pool or None),  # 0: no cap, as in metaal run's [evaluate] table
        policy=p["policy"],
        policy_candidates=p["policy_candidates"],
        oracle=dict(p.get("oracle") or {}),
        **_episode_settings(p),
    )


@cli.command("transfer-eval")
@click.option("--tasks", help="Task specs, comma-separated (`metaal datasets`).")
@eval_options(",".join(EVAL_STRATEGIES), "the seven heuristics", seeds=EvalConfig.seeds, section="evaluate")
@click.pass_context
@handle_errors
def transfer_eval(ctx, **p):
    """Compare strategies on tasks: learning curves, AULC, labels saved, plots and a report."""
    from metaal.config import read_config, section
    from metaal.evaluate import transfer_eval as run
    from metaal.report import format_table
    from metaal.tasks import parse_task_list

    cfg = read_config(p["config_file"])
    p = merge(ctx, p, section(cfg, "evaluate", EVAL_KEYS, p["config_file"]))
    if not p["tasks"]:
        raise MetaalError("missing --tasks (or [evaluate] tasks in --config)")
    threads = _setup_threads(p["threads"])
    config = _eval_config(p, parse_task_list(",".join(_list(p["tasks"]))))
    if p["workers"] != 1 and p["backend"] == "ray":
        raise MetaalError("--workers is for the local backend; with --backend ray every run is a task of its own")
    results = run(config, p["out"], progress=not p["quiet"], backend=p["backend"], address=p["address"],
                  gpus_per_run=p["gpus_per_run"], threads=threads, workers=int(p["workers"]), stack=bool(p["stack"]))
    click.echo(format_table(results["summary"]))
    click.echo(f"\nreport: {os.path.join(p['out'], 'report.md')}  (summary.json, curves.csv, curve_*.png beside it)")


BENCH_KEYS = EVAL_KEYS | {"suite", "splits", "reference"}


@cli.command()
@click.option("--suite", default=None, help="A suite of the task split: heldout, tuning, sources or fold:K.")
@click.option("--splits", type=click.Path(dir_okay=False), default=None, help="Task split file (default: metaal's own).")
@click.option("--tasks", default=None, help="Or a comma list of task specs instead of a suite.")
@click.option("--reference", default=None, help="Tested against every other (default: policy, else margin).")
@eval_options(",".join(BenchmarkConfig.strategies), "nine heuristics", seeds=BenchmarkConfig.seeds, section="benchmark")
@click.pass_context
@handle_errors
def benchmark(ctx, **p):
    """transfer-eval over a suite of tasks, then statistics over tasks (ranks, Friedman, CD diagram, Wilcoxon-Holm)."""
    from metaal.bench_report import REPORT_FILE, format_benchmark
    from metaal.benchmark import benchmark as run
    from metaal.benchmark import suite_tasks
    from metaal.config import read_config, section
    from metaal.tasks import parse_task_list

    cfg = read_config(p["config_file"])
    p = merge(ctx, p, section(cfg, "benchmark", BENCH_KEYS, p["config_file"]))
    if p["suite"] and p["tasks"]:
        raise MetaalError("give --suite or --tasks, not both")
    if not p["suite"] and not p["tasks"]:
        raise MetaalError("missing --suite NAME or --tasks SPEC[,SPEC...] (or either in the [benchmark] table of --config)")
    tasks = suite_tasks(p["suite"], p["splits"]) if p["suite"] else parse_task_list(",".join(_list(p["tasks"])))
    threads = _setup_threads(p["threads"])
    config = _eval_config(p, tasks)
    if p["workers"] != 1 and p["backend"] == "ray":
        raise MetaalError("--workers is for the local backend; with --backend ray every run is a task of its own")
    _, bench = run(config, p["out"], reference=p["reference"], suite=p["suite"], splits_file=p["splits"],
                   progress=not p["quiet"],
                   backend=p["backend"], address=p["address"], gpus_per_run=p["gpus_per_run"], threads=threads,
                   workers=int(p["workers"]), stack=bool(p["stack"]))
    click.echo(format_benchmark(bench))
    click.echo(f"\nreport: {os.path.join(p['out'], REPORT_FILE)}  (benchmark.json, cd_diagram.png; per task: report.md)")


GENERATE_KEYS = {"tasks", "episodes", "candidates", "initial", "budget", "query_size", "oracle", "proposals",
                 "oracle_horizon", "oracle_metric", "oracle_margin_pool", "oracle_steps", "oracle_lr",
                 "oracle_chunk", "rollin", "beta", "model", "train_steps", "warm_start", "workers", "seed", "device", "data_root",
                 "label_column", "shard", "backend", "address", "gpus_per_episode"}


@cli.command()
@click.option("--tasks", help="Source task specs, comma-separated; each episode draws one.")
@click.option("--episodes", type=int, default=GenerateConfig.episodes, show_default=True, help="Expert episodes.")
@click.option("--candidates", "-K", type=int, default=GenerateConfig.candidates, show_default=True,
              help="Candidates the oracle scores a round.")
@loop_options(defaults(GenerateConfig)["loop"])
@click.option("--oracle", "oracle_mode", default=OracleConfig.mode, type=click.Choice(ALL_ORACLE_MODES), metavar="MODE",
              show_default=True, help="finetune, retrain, first-order or batch.")
@click.option("--proposals", default=OracleConfig.proposals, type=click.Choice(PROPOSALS), metavar="HOW", show_default=True,
              help="Lookahead candidates: random or the heuristics' picks.")
@click.option("--oracle-horizon", type=int, default=OracleConfig.horizon, show_default=True,
              help="Batch oracle: rounds until the gain is measured.")
@click.option("--oracle-metric", type=click.Choice(ORACLE_METRICS), default=OracleConfig.metric, metavar="METRIC",
              show_default=True, help="The expert maximises the loss or accuracy gain.")
@click.option("--oracle-margin-pool", type=int, default=OracleConfig.margin_pool, show_default=True,
              help="Batch oracle: from the M x n smallest margins (0: all).")
@click.option("--oracle-steps", type=int, default=OracleConfig.steps, show_default=True, help="Optimiser steps of a finetune lookahead.")
@click.option("--oracle-lr", type=float, default=OracleConfig.lr, show_default=True, help="SGD step size of the lookahead.")
@click.option("--oracle-chunk", type=int, default=OracleConfig.chunk, help="Candidates per lookahead chunk (default: automatic).")
@click.option("--rollin", default=GenerateConfig.rollin, show_default=True, help="expert, random, a strategy or policy:DIR.")
@click.option("--beta", type=float, default=GenerateConfig.beta, show_default=True, help="Chance of the expert's pick (other --rollin).")
@learner_options(GenerateConfig)
@click.option("--workers", type=int, default=None, help="Processes, a shard each (1); ray: episodes at once.")
@click.option("--shard", default=None, help="i/N: only this slice of the episodes (job arrays).")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", help="ray: each episode a Ray task.")
@click.option("--address", default=None, help="--backend ray: cluster (auto or HOST:PORT; default: local).")
@click.option("--gpus-per-episode", type=float, default=0.0, help="--backend ray: GPUs per episode (fractions share one).")
@click.option("--seed", type=int, default=GenerateConfig.seed, show_default=True, help="Seed of tasks, splits and episodes.")
@click.option("--config", "config_file", type=click.Path(), default=None, help="TOML file; [generate] sets any option.")
@click.option("--overwrite", is_flag=True, help="Replace a store made with other settings.")
@trust_pickle_option
@click.option("--out", required=True, type=click.Path(), help="Zarr store (a rerun resumes).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
@handle_errors
def generate(ctx, **p):
    """Run expert active learning on source tasks and store trajectories with oracle gains."""
    from metaal.config import read_config, section
    from metaal.generate import GenerateConfig as Checked
    from metaal.generate import generate as run
    from metaal.tasks import parse_task_list

    cfg = read_config(p["config_file"])
    p = merge(ctx, {**p, "oracle": p.pop("oracle_mode")}, section(cfg, "generate", GENERATE_KEYS, p["config_file"]))
    if not p["tasks"]:
        raise MetaalError("missing --tasks (or [generate] tasks in --config)")
    threads = _setup_threads(p["threads"])
    oracle = {"mode": p["oracle"], "steps": p["oracle_steps"], "lr": p["oracle_lr"], "chunk": p["oracle_chunk"],
              "proposals": p["proposals"], "horizon": p["oracle_horizon"], "metric": p["oracle_metric"],
              "margin_pool": p["oracle_margin_pool"]}
    config = Checked(
        tasks=parse_task_list(",".join(_list(p["tasks"]))),
        episodes=p["episodes"],
        candidates=p["candidates"],
        oracle=oracle,
        rollin=p["rollin"],
        beta=p["beta"],
        seed=p["seed"],
        **_episode_settings(p),
    )
    status = run(config, p["out"], workers=p["workers"], shard=p["shard"], overwrite=p["overwrite"], progress=not p["quiet"],
                 backend=p["backend"], address=p["address"], gpus_per_episode=p["gpus_per_episode"], threads=threads)
    click.echo(f"store {p['out']}: {status['episodes']} episodes, {status['steps']} steps")


@cli.command()
@click.argument("path", type=click.Path())
@trust_pickle_option
@handle_errors
def inspect(path, trust_pickle):
    """Describe a trajectory store or a policy directory."""
    from metaal.inspect import describe_policy, describe_store
    from metaal.policy import is_policy

    if is_policy(path):
        click.echo(describe_policy(path, trust_pickle=trust_pickle))
    else:
        click.echo(describe_store(path))


@cli.command()
@click.argument("stores")
@click.option("--algo", type=click.Choice(list(ALGOS)), default=DISTILL.algo, show_default=True,
              help="gain: regression of every candidate's oracle gain (rank targets); bc: imitation (DiscreteBC); "
                   "cql/bcq: offline RL.")
@click.option("--target", type=click.Choice(list(GAIN_TARGETS)), default=DISTILL.target, show_default=True,
              help="gain: which oracle gain is ranked (accuracy: validation accuracy gain, loss breaking ties).")
@click.option("--steps", type=int, default=DISTILL.steps, show_default=True, help="Gradient steps.")
@click.option("--batch-size", type=int, default=DISTILL.batch_size, show_default=True, help="Stored steps per minibatch.")
@click.option("--lr", type=float, default=DISTILL.lr, show_default=True, help="Adam learning rate.")
@click.option("--hidden", type=int, default=DISTILL.hidden, show_default=True, help="Width of the per-candidate network.")
@click.option("--drop-features", default=",".join(defaults(DISTILL)["drop_features"]), help="Comma list of features held at 0 in training and use (an ablation; "
              "see `metaal inspect` for the names).")
@click.option("--count-context", type=click.Choice(list(COUNT_CONTEXTS)), default=DISTILL.count_context, show_default=True,
              help="The label count the policy sees: as stored, or per-class: log((1 + labelled) / classes) in place "
                   "of log_labelled, log_classes held at 0 (as `metaal run`).")
@click.option("--val-fraction", type=float, default=DISTILL.val_fraction, show_default=True, help="Share of episodes held out for validation.")
@click.option("--seed", type=int, default=DISTILL.seed, show_default=True, help="Initialisation, minibatches, held-out episodes.")
@click.option("--device", default=DISTILL.device, show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default 1, or $METAAL_THREADS).")
@click.option("--config", "config_file", type=click.Path(), default=None, help="TOML file; its [distill] table sets any option above.")
@click.option("--verbose", is_flag=True, default=DISTILL.verbose, help="Show d3rlpy's own output and keep its logs in OUT/d3rlpy_logs.")
@click.option("--out", required=True, type=click.Path(), help="Policy directory (appears complete or not at all; training is checkpointed in OUT.partial and a rerun resumes).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
@handle_errors
def distill(ctx, **p):
    """Distil trajectory stores (comma list) into a permutation-equivariant acquisition policy."""
    from metaal.acquisition.agreement import validation_table
    from metaal.config import read_config, section
    from metaal.distill import CONFIG_KEYS, DistillConfig
    from metaal.distill import distill as run

    p = merge(ctx, p, section(read_config(p["config_file"]), "distill", CONFIG_KEYS, p["config_file"]))
    p["drop_features"] = _list(p["drop_features"])
    _setup_threads(p["threads"])
    if p["device"] != "cpu":
        from metaal.learners import resolve_device

        p["device"] = str(resolve_device(p["device"]))
    config = DistillConfig(**{k: p[k] for k in CONFIG_KEYS}, verbose=p["verbose"])
    meta = run(_list(p["stores"]), config, p["out"], progress=not p["quiet"])
    tr = meta["training"]
    click.echo(f"policy {p['out']}: {config.algo}, {tr['steps']} steps in {tr['seconds']:.1f} s "
               f"({tr['steps_per_second']} steps/s), loss {tr['loss_start']} -> {tr['loss_end']}")
    val = meta.get("validation") or {}
    if val.get("policy"):
        click.echo(f"\nValidation on {val['episodes']} held-out episodes:")
        click.echo(validation_table(val))


@cli.command("run")
@click.option("--quick", is_flag=True, help="Smaller everything, same code path (about 2 minutes on 2 cores).")
@click.option("--config", "config_file", type=click.Path(), default=None,
              help="TOML study: [run] sources/targets/workers, [generate], [distill], [evaluate].")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default 1, or $METAAL_THREADS).")
@click.option("--out", default="runs/default", show_default=True, type=click.Path(),
              help="Study directory: store.zarr, policy/ and results/ inside (rerun to resume).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@handle_errors
def run_cmd(quick, config_file, threads, out, quiet):
    """The main job: generate on source tasks, distil a policy, evaluate it on held-out tasks."""
    from metaal.report import format_table
    from metaal.run import run_study, study_from_file

    _setup_threads(threads)
    study = study_from_file(config_file, quick=quick)
    results = run_study(study, out, progress=not quiet, echo=click.echo)
    click.echo("")
    click.echo(format_table(results["summary"]))
    rep = results.get("policy_report") or {}
    if rep.get("mean_rank"):
        click.echo("\nmean rank (1 = best): " + ", ".join(f"{s} {r:.2f}" for s, r in sorted(rep["mean_rank"].items(), key=lambda kv: kv[1])))
    if results.get("benchmark"):
        from metaal.bench_report import format_benchmark

        click.echo("\nacross tasks:\n" + format_benchmark(results["benchmark"]))
    click.echo(f"\nreport: {os.path.join(out, 'results', 'report.md')}  plots: {os.path.join(out, 'results', 'curve_*.png')}  "
               f"across tasks: {os.path.join(out, 'results', 'benchmark.md')}")


@cli.command("select")
@click.option("--data", required=True,
              help="The pool: npz:PATH (array X), csv:PATH (numeric columns; --label-column is dropped if present), "
                   "a folder of images (index = position in the sorted relative paths), or a task spec (its labels are ignored).")
@click.option("--labels", "labels_file", required=True, type=click.Path(),
              help="CSV with columns index,label for the items labelled so far (any labels; strings allowed).")
@click.option("--strategy", default=SelectConfig.strategy, show_default=True,
              help="A strategy (see `metaal strategies`): policy (shipped), policy:DIR, margin, ...")
@click.option("--n", "n", type=int, default=SelectConfig.n, show_default=True, help="How many items to label next.")
@click.option("--seed", type=int, default=SelectConfig.seed, show_default=True,
              help="Model initialisation, training order and tie-breaks.")
@click.option("--budget", type=int, default=SelectConfig.budget,
              help="Labels you plan to have in total; tells the policy how far along the loop is (default: labelled + n).")
@click.option("--prefilter", type=int, default=SelectConfig.prefilter, show_default=True,
              help="Policy: featurise only this many smallest-margin items, at least 10 x n (0: the whole pool).")
@learner_options(SelectConfig)
@trust_pickle_option
@click.option("--out", required=True, type=click.Path(), help="CSV to write: index,score,rank,predicted_label,confidence.")
@handle_errors
def select_cmd(**p):
    """Which items to label next: train on LABELS, rank the rest of the pool, write the top n."""
    from pathlib import Path

    from metaal.io import hold_lock
    from metaal.select import select_next

    _setup_threads(p["threads"])
    if p["train_steps"] < 1:
        raise MetaalError(f"--epochs-steps must be at least 1, got {p['train_steps']}")
    prefilter = p["prefilter"]
    if prefilter < 0:
        raise MetaalError(f"--prefilter must be at least 0, got {prefilter}")
    out = Path(p["out"])
    # one select per --out, from before training to the last write: two would leave one's CSV beside the other's
    # JSON (a missing folder is left to select_next's own check of --out)
    lock = hold_lock(out.parent / f".{out.name}.lock", f"output {out}") if out.parent.is_dir() else None
    try:
        sel = select_next(p["data"], p["labels_file"], p["n"], p["strategy"], seed=p["seed"], device=p["device"],
                          learner=LearnerConfig(model=p["model"], steps=p["train_steps"], warm_start=p["warm_start"]),
                          budget=p["budget"], prefilter=prefilter,
                          label_column=p["label_column"], data_root=p["data_root"], download=p["download"],
                          trust_pickle=p["trust_pickle"], out=p["out"])
        sel.write_csv(p["out"])
    finally:
        if lock is not None:
            lock.close()
    info = sel.info
    click.echo(f"{p['out']}: {len(sel)} items to label next ({sel.strategy}; pool {info['pool']}, "
               f"{info['labelled']} labelled, {len(info['classes'])} classes, training accuracy {info['train_accuracy']:.3f})")


def main():  # console-script entry point
    cli(prog_name="metaal")


if __name__ == "__main__":
    main()
