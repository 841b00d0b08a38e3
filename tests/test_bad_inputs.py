"""Bad inputs across every command: exit code 2, one line naming the problem, no traceback, and no
partial output that a later run could take for a finished one (no summary.json, no policy that loads,
no store with committed episodes, no distill work directory left behind)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from _tiny import EVAL, GEN, invoke, make_policy, make_store, payload

from metaal.distill import partial_dir
from metaal.errors import MetaalError
from metaal.policy import load_policy
from metaal.store import store_status


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Inputs shared by the cases (each case that alters one works on a copy)."""
    root = tmp_path_factory.mktemp("inputs")
    store = make_store(root / "store.zarr", 4)
    policy = make_policy(store, root / "policy")
    files = {"store": store, "policy": policy, "root": root}
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(80, 4)), np.arange(80) % 3

    def npz(name, **arrays):
        np.savez(root / name, **arrays)
        return root / name

    def text(name, content):
        (root / name).write_text(content)
        return root / name

    files["npz_no_X"] = npz("no_x.npz", y=y)
    files["npz_no_y"] = npz("no_y.npz", X=X)
    files["npz_nan"] = npz("nan.npz", X=np.where(np.arange(80)[:, None] == 5, np.nan, X), y=y)
    files["npz_inf"] = npz("inf.npz", X=np.where(np.arange(80)[:, None] == 7, np.inf, X), y=y)
    files["npz_one_class"] = npz("one.npz", X=X, y=np.zeros(80, int))
    files["npz_float_labels"] = npz("float.npz", X=X, y=y + 0.5)
    files["npz_small"] = npz("small.npz", X=X[:20], y=y[:20])
    files["npz_ok"] = npz("ok.npz", X=X, y=y)
    objects = root / "objects.npz"  # an object array: loading it would unpickle
    np.savez(objects, X=np.array([payload(root / "PWNED_NPZ")] * 80, dtype=object), y=y)
    files["npz_objects"] = objects
    garbage = root / "garbage.npz"
    garbage.write_bytes(b"\x00not an npz file\xff" * 10)
    files["npz_garbage"] = garbage
    files["csv_no_label"] = text("nolabel.csv", "a,b,target\n" + "".join(f"{i},{i * 2},{i % 2}\n" for i in range(60)))
    files["toml_bad"] = text("bad.toml", '[evaluate]\ntasks = ["sklearn:iris"\nseeds = 2\n')
    files["toml_unknown"] = text("unknown.toml", '[distill]\nsteps = 10\nlearning_rate = 3\n')
    files["toml_gen_unknown"] = text("gen_unknown.toml", '[generate]\nepisodez = 3\n')
    files["toml_types"] = text("types.toml", '[evaluate]\ntasks = "sklearn:iris"\nseeds = "three"\n[generate]\n'
                                             'candidates = [4, 8]\n[distill]\nlr = "fast"\n[run]\nworkers = 1.5\n')
    files["toml_retired"] = text("retired.toml", '[distill]\nensemble = 2\n')
    files["toml_extra_same"] = text("extra_same.toml", '[generate]\ninitial = 10\nextra_initial = [10]\n')
    files["toml_extra_type"] = text("extra_type.toml", '[generate]\nextra_initial = "3"\n')
    files["toml_count"] = text("count.toml", '[distill]\ncount_context = "per-class"\ndrop_features = ["log_labelled"]\n')
    files["toml_overlap"] = text("run_overlap.toml", '[run]\nsources = ["sklearn:iris"]\ntargets = ["sklearn:iris"]\n')
    files["pool"] = npz("pool.npz", X=X)
    files["labels"] = text("labels.csv", "index,label\n0,a\n1,b\n2,a\n3,b\n")
    files["labels_cols"] = text("labels_cols.csv", "idx,lab\n0,a\n1,b\n")
    files["labels_one"] = text("labels_one.csv", "index,label\n0,a\n1,a\n")
    files["file"] = text("a_file", "not a directory")
    # a store of another format version, one with a corrupt chunk, one with no committed episode
    v99 = root / "v99.zarr"
    shutil.copytree(store, v99)
    meta = json.loads((v99 / "zarr.json").read_text())
    meta["attributes"]["format_version"] = 99
    (v99 / "zarr.json").write_text(json.dumps(meta))
    files["store_v99"] = v99
    corrupt = root / "corrupt.zarr"
    shutil.copytree(store, corrupt)
    chunk = next(p for p in sorted((corrupt / "steps" / "candidates").rglob("*")) if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(b"\x00garbage\xff" * 13)
    files["store_corrupt"] = corrupt
    empty = root / "empty.zarr"
    shutil.copytree(store, empty)
    zarr.open_array(str(empty / "episodes" / "id"), mode="r+").resize((0,))
    files["store_empty"] = empty
    other_k = make_store(root / "k5.zarr", 2, "--candidates", "5", "--query-size", "5")
    files["store_k5"] = other_k
    junk = root / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    files["dir_junk"] = junk
    # policies: another feature schema, truncated weights, unreadable metadata
    schema = root / "pol_schema"
    shutil.copytree(policy, schema)
    m = json.loads((schema / "metaal-policy.json").read_text())
    m["schema"]["features"] = m["schema"]["features"][::-1]
    (schema / "metaal-policy.json").write_text(json.dumps(m))
    files["policy_schema"] = schema
    trunc = root / "pol_trunc"
    shutil.copytree(policy, trunc)
    data = (trunc / "scorer.pt").read_bytes()
    (trunc / "scorer.pt").write_bytes(data[: len(data) // 2])
    files["policy_truncated"] = trunc
    badjson = root / "pol_json"
    shutil.copytree(policy, badjson)
    (badjson / "metaal-policy.json").write_text('{"format": "metaal-policy", ')
    files["policy_json"] = badjson
    # weights that load but are not the ones the metadata's sha256 names (another policy's scorer)
    swapped = root / "pol_swapped"
    shutil.copytree(policy, swapped)
    other = make_policy(store, root / "policy_other", "--seed", "7")
    shutil.copy(other / "scorer.pt", swapped / "scorer.pt")
    files["policy_swapped"] = swapped
    # a store whose chunk file was cut short (a copy interrupted half-way)
    short = root / "short.zarr"
    shutil.copytree(store, short)
    chunk = next(p for p in sorted((short / "steps" / "candidates").rglob("*")) if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    files["store_truncated"] = short
    files["labels_outside"] = text("labels_outside.csv", "index,label\n0,a\n1,b\n2,a\n80,b\n")
    files["toml_eval_unknown"] = text("eval_unknown.toml", '[evaluate]\ntasks = ["sklearn:iris"]\nseedz = 2\n')
    files["toml_run_types"] = text("run_types.toml", '[evaluate]\nstrategies = ["margin"]\nbudget = "lots"\n')
    split = ('[groups]\nsources = ["sklearn:iris"]\ntuning = ["sklearn:wine"]\nheldout = ["sklearn:digits"]\n'
             '[folds]\n0 = ["sklearn:iris", "sklearn:digits"]\n1 = ["sklearn:wine"]\n')
    files["split_two_groups"] = text("split_two.toml", split.replace('tuning = ["sklearn:wine"]',
                                                                     'tuning = ["sklearn:wine", "sklearn:iris"]'))
    files["split_empty_heldout"] = text("split_empty.toml", split.replace('heldout = ["sklearn:digits"]', 'heldout = []')
                                        .replace('0 = ["sklearn:iris", "sklearn:digits"]', '0 = ["sklearn:iris"]'))
    files["split_heldout_too_small"] = text("split_small.toml", split)  # digits' pool is too small for --budget 2000
    files["split_missing_twin"] = text("split_twin.toml", split + '[twins]\ndigits = ["sklearn:digits", "keel:optdigits"]\n')
    # a directory nothing can be written to: read-only bits, or for root (whom they do not stop) a path in sysfs
    readonly = root / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    try:
        (readonly / "probe").touch()
        (readonly / "probe").unlink()
        readonly = Path("/sys/metaal-readonly")
    except OSError:
        pass
    files["readonly"] = readonly
    return files


def te(*args):
    return ["transfer-eval", *EVAL_BASE, *args]


EVAL_BASE = ["--seeds", "1", "--initial", "6", "--budget", "12", "--query-size", "6", "--epochs-steps", "5", "--quiet"]
STRATS = ["--strategies", "margin"]


def gen(*args):
    return ["generate", *GEN, "--episodes", "2", *args]


# (case id, argv builder: f(files, out) -> list, word the one-line message must contain)
CASES = [
    # transfer-eval: task specs and data files
    ("te-unknown-spec", lambda f, o: te("--tasks", "nope:xyz", "--out", o), "unknown task spec"),
    ("te-unknown-sklearn-set", lambda f, o: te("--tasks", "sklearn:nope", "--out", o), "unknown scikit-learn task"),
    ("te-missing-npz", lambda f, o: te("--tasks", f"npz:{f['root']}/absent.npz", "--out", o), "file not found"),
    ("te-unreadable-npz", lambda f, o: te("--tasks", f"npz:{f['npz_garbage']}", "--out", o), "cannot read"),
    ("te-npz-is-a-directory", lambda f, o: te("--tasks", f"npz:{f['root']}", "--out", o), "file not found"),
    ("te-npz-without-X", lambda f, o: te("--tasks", f"npz:{f['npz_no_X']}", "--out", o), "missing array(s) X"),
    ("te-npz-without-y", lambda f, o: te("--tasks", f"npz:{f['npz_no_y']}", "--out", o), "missing array(s) y"),
    ("te-npz-object-array", lambda f, o: te("--tasks", f"npz:{f['npz_objects']}", "--out", o), "Object arrays"),
    ("te-nan-features", lambda f, o: te("--tasks", f"npz:{f['npz_nan']}", "--out", o), "NaN"),
    ("te-inf-features", lambda f, o: te("--tasks", f"npz:{f['npz_inf']}", "--out", o), "infinite"),
    ("te-one-class", lambda f, o: te("--tasks", f"npz:{f['npz_one_class']}", "--out", o), "at least 2 classes"),
    ("te-labels-not-integers", lambda f, o: te("--tasks", f"npz:{f['npz_float_labels']}", "--out", o), "labels y must be integers"),
    ("te-csv-without-label-column", lambda f, o: te("--tasks", f"csv:{f['csv_no_label']}", "--out", o), "no label column"),
    ("te-fewer-samples-than-initial+budget", lambda f, o: te("--tasks", f"npz:{f['npz_small']}", "--out", o), "too few samples"),
    ("te-synthetic-bad-parameter", lambda f, o: te("--tasks", "synthetic:colours=3", "--out", o), "unknown parameter"),
    # transfer-eval: options
    ("te-query-size-0", lambda f, o: te("--tasks", "sklearn:iris", "--query-size", "0", "--out", o), "query-size"),
    ("te-query-size-over-budget", lambda f, o: te("--tasks", "sklearn:iris", "--query-size", "20", "--out", o), "larger than the budget"),
    ("te-unknown-strategy", lambda f, o: te("--tasks", "sklearn:iris", "--strategies", "magic", "--out", o), "unknown strategy"),
    ("te-seeds-0", lambda f, o: te("--tasks", "sklearn:iris", *STRATS, "--seeds", "0", "--out", o), "--seeds"),
    ("te-policy-not-a-directory", lambda f, o: te("--tasks", "sklearn:iris", *STRATS, "--policy", f["root"] / "nope", "--out", o), "not a policy directory"),
    ("te-policy-schema-mismatch", lambda f, o: te("--tasks", "sklearn:iris", *STRATS, "--policy", f["policy_schema"], "--out", o), "feature schema"),
    ("te-policy-truncated-weights", lambda f, o: te("--tasks", "sklearn:iris", *STRATS, "--policy", f["policy_truncated"], "--out", o), "sha256"),
    ("te-malformed-config", lambda f, o: te("--config", f["toml_bad"], "--out", o), "bad.toml is not valid TOML: Unclosed array (at line 3"),
    ("te-missing-config", lambda f, o: te("--tasks", "sklearn:iris", "--config", f["root"] / "none.toml", "--out", o), "config file"),
    ("te-unwritable-out", lambda f, o: te("--tasks", "sklearn:iris", *STRATS, "--out", f["file"] / "res"), "cannot create results directory"),
    ("te-no-tasks", lambda f, o: te("--out", o), "missing --tasks"),
    ("te-config-value-of-wrong-type", lambda f, o: te("--config", f["toml_types"], "--out", o), "[evaluate] seeds must be an integer"),
    # generate
    ("gen-K-larger-than-pool", lambda f, o: gen("--candidates", "500", "--query-size", "4", "--out", o), "larger than the unlabelled pool"),
    ("gen-query-size-over-K", lambda f, o: gen("--query-size", "6", "--budget", "12", "--out", o), "larger than --candidates"),
    ("gen-query-size-0", lambda f, o: gen("--query-size", "0", "--out", o), "query-size"),
    ("gen-shard-malformed", lambda f, o: gen("--shard", "1-of-2", "--out", o), "--shard must look like i/N"),
    ("gen-shard-out-of-range", lambda f, o: gen("--shard", "2/2", "--out", o), "0 <= i < N"),
    ("gen-shard-and-workers", lambda f, o: gen("--shard", "0/2", "--workers", "2", "--out", o), "conflict"),
    ("gen-shard-and-overwrite", lambda f, o: gen("--shard", "0/2", "--overwrite", "--out", o), "conflict"),
    ("gen-store-of-another-format-version", lambda f, o: gen("--out", f["store_v99"]), "format_version 99"),
    ("gen-out-is-not-a-store", lambda f, o: gen("--out", f["dir_junk"]), "not a metaal trajectory store"),
    ("gen-store-with-other-settings", lambda f, o: gen("--oracle-lr", "0.5", "--out", f["store"]), "different"),
    ("gen-unknown-rollin", lambda f, o: gen("--rollin", "cleverest", "--out", o), "unknown strategy"),
    ("gen-rollin-policy-schema-mismatch", lambda f, o: gen("--rollin", f"policy:{f['policy_schema']}", "--out", o), "feature schema"),
    ("gen-beta-out-of-range", lambda f, o: gen("--rollin", "random", "--beta", "1.5", "--out", o), "--beta"),
    ("gen-unwritable-out", lambda f, o: gen("--out", f["file"] / "s.zarr"), "cannot create trajectory store"),
    ("gen-config-unknown-key", lambda f, o: gen("--config", f["toml_gen_unknown"], "--out", o), "unknown key 'episodez'"),
    ("gen-config-value-of-wrong-type", lambda f, o: gen("--config", f["toml_types"], "--out", o), "[generate] candidates must be an integer"),
    ("gen-margin-pool-without-batch-oracle", lambda f, o: gen("--oracle-margin-pool", "3", "--out", o), "batch oracle only"),
    ("gen-negative-margin-pool", lambda f, o: gen("--oracle", "batch", "--oracle-margin-pool", "-1", "--out", o), "margin_pool must be"),
    ("gen-first-order-accuracy", lambda f, o: gen("--oracle", "first-order", "--oracle-metric", "accuracy", "--out", o), "no accuracy gain"),
    # inspect
    ("inspect-missing-path", lambda f, o: ["inspect", f["root"] / "nothing"], "no such store or policy"),
    ("inspect-store-of-another-format-version", lambda f, o: ["inspect", f["store_v99"]], "format_version 99"),
    ("inspect-corrupt-chunk", lambda f, o: ["inspect", f["store_corrupt"]], "steps/candidates"),
    ("inspect-not-a-store", lambda f, o: ["inspect", f["dir_junk"]], "not a metaal trajectory store"),
    ("inspect-policy-unreadable-metadata", lambda f, o: ["inspect", f["policy_json"]], "cannot read policy metadata"),
    ("inspect-policy-truncated-weights", lambda f, o: ["inspect", f["policy_truncated"]], "sha256"),
    # distill
    ("distill-missing-store", lambda f, o: ["distill", f["root"] / "absent.zarr", "--out", o], "does not exist"),
    ("distill-store-of-another-format-version", lambda f, o: ["distill", f["store_v99"], "--out", o], "format_version 99"),
    ("distill-corrupt-chunk", lambda f, o: ["distill", f["store_corrupt"], "--out", o], "steps/candidates"),
    ("distill-store-without-episodes", lambda f, o: ["distill", f["store_empty"], "--out", o], "no committed steps"),
    ("distill-stores-with-different-K", lambda f, o: ["distill", f"{f['store']},{f['store_k5']}", "--out", o], "differs"),
    ("distill-val-fraction", lambda f, o: ["distill", f["store"], "--val-fraction", "1.5", "--out", o], "val_fraction"),
    ("distill-steps-0", lambda f, o: ["distill", f["store"], "--steps", "0", "--out", o], "steps must be at least 1"),
    ("distill-out-is-not-a-policy", lambda f, o: ["distill", f["store"], "--steps", "5", "--out", f["dir_junk"]], "refusing"),
    ("distill-unwritable-out", lambda f, o: ["distill", f["store"], "--steps", "5", "--out", f["file"] / "p"], "cannot write policy"),
    ("distill-config-unknown-key", lambda f, o: ["distill", f["store"], "--config", f["toml_unknown"], "--out", o], "unknown key 'learning_rate'"),
    ("distill-config-value-of-wrong-type", lambda f, o: ["distill", f["store"], "--config", f["toml_types"], "--out", o], "[distill] lr must be a number"),
    ("distill-unknown-algo", lambda f, o: ["distill", f["store"], "--algo", "magic", "--out", o], "'--algo'"),
    ("distill-retired-algo", lambda f, o: ["distill", f["store"], "--algo", "batch-gain", "--out", o], "'--algo'"),
    ("distill-config-retired-key", lambda f, o: ["distill", f["store"], "--config", f["toml_retired"], "--out", o],
     "unknown key 'ensemble'"),
    ("distill-unknown-dropped-feature", lambda f, o: ["distill", f["store"], "--drop-features", "margin,shoe_size", "--out", o],
     "unknown feature(s) shoe_size"),
    # run
    ("run-overlapping-sources-and-targets", lambda f, o: ["run", "--quiet", "--config", f["toml_overlap"], "--out", o], "overlap"),
    ("run-malformed-config", lambda f, o: ["run", "--quiet", "--config", f["toml_bad"], "--out", o], "not valid TOML"),
    ("run-unwritable-out", lambda f, o: ["run", "--quick", "--quiet", "--out", f["file"] / "study"], "cannot create run directory"),
    ("run-config-value-of-wrong-type", lambda f, o: ["run", "--quiet", "--config", f["toml_types"], "--out", o], "[run] workers must be an integer"),
    ("run-extra-initial-equal-to-initial", lambda f, o: ["run", "--quiet", "--config", f["toml_extra_same"], "--out", o],
     "extra_initial [10]: need distinct sizes"),
    ("run-extra-initial-of-wrong-type", lambda f, o: ["run", "--quiet", "--config", f["toml_extra_type"], "--out", o],
     "[generate] extra_initial must be a list of integers"),
    ("run-per-class-count-with-log-labelled-dropped", lambda f, o: ["run", "--quiet", "--config", f["toml_count"], "--out", o],
     "do not drop log_labelled"),
    ("run-threads-0", lambda f, o: ["run", "--quick", "--quiet", "--threads", "0", "--out", o], "--threads"),
    # select
    ("select-missing-data", lambda f, o: sel(f, "--data", f"npz:{f['root']}/absent.npz", "--out", o), "file not found"),
    ("select-missing-labels", lambda f, o: sel(f, "--labels", f["root"] / "absent.csv", "--out", o), "not found"),
    ("select-labels-without-index-column", lambda f, o: sel(f, "--labels", f["labels_cols"], "--out", o), "needs columns index,label"),
    ("select-one-class", lambda f, o: sel(f, "--labels", f["labels_one"], "--out", o), "at least 2 classes"),
    ("select-n-0", lambda f, o: sel(f, "--n", "0", "--out", o), "--n"),
    ("select-n-larger-than-pool", lambda f, o: sel(f, "--n", "1000", "--out", o), "only 76 unlabelled items"),
    ("select-unknown-strategy", lambda f, o: sel(f, "--strategy", "magic", "--out", o), "unknown strategy"),
    ("select-policy-schema-mismatch", lambda f, o: sel(f, "--strategy", f"policy:{f['policy_schema']}", "--out", o), "feature schema"),
    # issue 28: what a long benchmark must catch in its first second
    ("te-keel-name-that-does-not-exist", lambda f, o: te("--tasks", "sklearn:iris,keel:no-such-set", *STRATS, "--out", o),
     "unknown KEEL task 'keel:no-such-set'"),
    ("gen-keel-name-that-does-not-exist", lambda f, o: gen("--tasks", "keel:no-such-set", "--out", o), "unknown KEEL task"),
    ("te-policy-weights-not-the-metadata-sha256", lambda f, o: te("--tasks", "sklearn:iris", *STRATS, "--policy",
                                                                   f["policy_swapped"], "--out", o), "sha256"),
    ("inspect-policy-weights-not-the-metadata-sha256", lambda f, o: ["inspect", f["policy_swapped"]], "sha256"),
    ("select-policy-weights-not-the-metadata-sha256", lambda f, o: sel(f, "--strategy", f"policy:{f['policy_swapped']}",
                                                                       "--out", o), "sha256"),
    ("distill-truncated-chunk", lambda f, o: ["distill", f["store_truncated"], "--out", o], "steps/candidates"),
    ("inspect-truncated-chunk", lambda f, o: ["inspect", f["store_truncated"]], "steps/candidates"),
    ("distill-truncated-chunk-among-good-stores", lambda f, o: ["distill", f"{f['store']},{f['store_truncated']}", "--out", o],
     "short.zarr"),
    ("select-labels-index-outside-the-pool", lambda f, o: sel(f, "--labels", f["labels_outside"], "--out", o),
     "not in the pool (the pool has 80 items, index 0..79): 80"),
    ("te-config-unknown-key", lambda f, o: te("--config", f["toml_eval_unknown"], "--out", o), "unknown key 'seedz'"),
    ("run-config-unknown-key", lambda f, o: ["run", "--quiet", "--config", f["toml_gen_unknown"], "--out", o],
     "unknown key 'episodez'"),
    ("run-config-budget-of-wrong-type", lambda f, o: ["run", "--quiet", "--config", f["toml_run_types"], "--out", o],
     "[evaluate] budget must be an integer"),
    ("te-workers-more-than-the-machine-runs", lambda f, o: te("--tasks", "sklearn:iris", *STRATS, "--workers", "100000",
                                                              "--out", o), "more processes than this machine can run"),
    ("gen-workers-more-than-the-machine-runs", lambda f, o: gen("--workers", "100000", "--out", o),
     "more processes than this machine can run"),
    ("te-out-on-a-read-only-path", lambda f, o: te("--tasks", "sklearn:iris", *STRATS, "--out", f["readonly"] / "res"),
     "cannot create results directory"),
    ("gen-out-on-a-read-only-path", lambda f, o: gen("--out", f["readonly"] / "s.zarr"), "cannot create trajectory store"),
    ("distill-out-on-a-read-only-path", lambda f, o: ["distill", f["store"], "--steps", "5", "--out", f["readonly"] / "p"],
     "cannot write policy"),
    ("run-out-on-a-read-only-path", lambda f, o: ["run", "--quick", "--quiet", "--out", f["readonly"] / "study"],
     "cannot create run directory"),
    ("select-out-on-a-read-only-path", lambda f, o: sel(f, "--out", f["readonly"] / "next.csv"), "cannot write the selection"),
    ("select-out-is-a-directory", lambda f, o: sel(f, "--out", f["root"]), "is a directory"),
    ("datasets-split-with-a-task-in-two-groups", lambda f, o: ["datasets", "--splits", f["split_two_groups"], "--suite",
                                                                "heldout"], "sklearn:iris is in both sources and tuning"),
    ("datasets-split-with-a-missing-twin", lambda f, o: ["datasets", "--splits", f["split_missing_twin"], "--suite",
                                                          "heldout"], "twin keel:optdigits of 'digits' is in no group"),
    ("datasets-unknown-suite", lambda f, o: ["datasets", "--suite", "fold:99"], "unknown suite"),
    # benchmark: the suite, the split file, and transfer-eval's inputs before its first run
    ("bench-suite-that-names-no-task", lambda f, o: bench("--suite", "heldout", "--splits", f["split_empty_heldout"],
                                                          "--out", o), "group 'heldout' is empty"),
    ("bench-unknown-suite", lambda f, o: bench("--suite", "fold:7", "--splits", f["split_heldout_too_small"], "--out", o),
     "unknown suite 'fold:7'"),
    ("bench-split-with-a-task-in-two-groups", lambda f, o: bench("--suite", "heldout", "--splits", f["split_two_groups"],
                                                                 "--out", o), "in both sources and tuning"),
    ("bench-split-with-a-missing-twin", lambda f, o: bench("--suite", "heldout", "--splits", f["split_missing_twin"],
                                                           "--out", o), "twin keel:optdigits"),
    ("bench-missing-split-file", lambda f, o: bench("--suite", "heldout", "--splits", f["root"] / "none.toml", "--out", o),
     "task split file"),
    ("bench-suite-task-too-small-for-the-budget", lambda f, o: bench("--suite", "heldout", "--splits",
                                                                     f["split_heldout_too_small"], "--budget", "2000",
                                                                     "--query-size", "10", "--out", o),
     "sklearn:digits: too few samples"),
    ("bench-keel-name-that-does-not-exist", lambda f, o: bench("--tasks", "keel:no-such-set", "--out", o), "unknown KEEL task"),
    ("bench-reference-not-run", lambda f, o: bench("--tasks", "sklearn:iris", "--reference", "entropy", "--out", o),
     "--reference entropy is not among the strategies"),
    ("bench-suite-and-tasks", lambda f, o: bench("--suite", "heldout", "--tasks", "sklearn:iris", "--out", o), "not both"),
    ("bench-policy-weights-not-the-metadata-sha256", lambda f, o: bench("--tasks", "sklearn:iris", "--policy",
                                                                        f["policy_swapped"], "--out", o), "sha256"),
    ("bench-workers-more-than-the-machine-runs", lambda f, o: bench("--tasks", "sklearn:iris", "--workers", "100000",
                                                                    "--out", o), "more processes than this machine"),
    ("bench-out-on-a-read-only-path", lambda f, o: bench("--tasks", "sklearn:iris", "--out", f["readonly"] / "b"),
     "cannot create results directory"),
    ("bench-out-is-a-file", lambda f, o: bench("--tasks", "sklearn:iris", "--out", f["file"]), "not a directory"),
]


def bench(*args):
    return ["benchmark", "--strategies", "margin", "--seeds", "1", "--initial", "6", "--budget", "12", "--query-size", "6",
            "--epochs-steps", "5", "--quiet", *args]


def sel(f, *args):
    return ["select", "--data", f"npz:{f['pool']}", "--labels", f["labels"], *args]


def assert_nothing_complete(out: Path, files: dict) -> None:
    """Nothing under ``out`` that a later run would take for finished output."""
    assert not partial_dir(out).exists()
    if not out.exists():
        return
    assert out.is_dir(), f"{out} was written"
    assert not list(out.rglob("summary.json")), "a results summary was written"
    for meta in out.rglob("metaal-policy.json"):
        with pytest.raises(MetaalError):
            load_policy(meta.parent)
    for z in [out, *out.rglob("*.zarr")]:
        if (z / "zarr.json").is_file():
            assert store_status(z)["episodes"] == 0, f"{z} holds committed episodes"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(base, tmp_path, case):
    name, argv, needle = case
    out = tmp_path / "out"
    before = {k: _snapshot(v) for k, v in base.items() if isinstance(v, Path) and v.exists()}
    r = invoke(*argv(base, out))
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("error:", "Error:"))]
    assert len(errors) == 1 and needle in errors[0], r.output
    if lines[0].startswith("error:"):
        assert len(lines) == 1, r.output  # metaal's own errors: one line and nothing else
    assert_nothing_complete(out, base)
    # the inputs, stores included, are left as they were
    assert before == {k: _snapshot(v) for k, v in base.items() if k in before}
    assert not (base["root"] / "PWNED_NPZ").exists()


def _snapshot(path: Path):
    if path.is_file():
        return path.stat().st_size, path.stat().st_mtime_ns
    return sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*") if p.is_file())


def test_bad_input_matrix_is_large_enough():
    assert len(CASES) >= 100
    assert {c[1](_Any(), Path("o"))[0] for c in CASES} >= {"transfer-eval", "generate", "inspect", "distill", "run",
                                                            "select", "datasets", "benchmark"}


class _Any(dict):
    def __missing__(self, key):
        return Path("/x")


@pytest.mark.parametrize("argv,needle", [
    (["inspect", "/no/such/store.zarr"], "no such store or policy"),
    (["transfer-eval", *EVAL, "--tasks", "npz:{nan}", "--out", "{out}"], "NaN"),
], ids=["inspect-missing", "transfer-eval-nan"])
def test_real_console_script_prints_one_line_and_exits_2(base, tmp_path, argv, needle):
    argv = [a.format(nan=base["npz_nan"], out=tmp_path / "o") for a in argv]  # the last --tasks wins
    p = subprocess.run([sys.executable, "-m", "metaal.cli", *argv], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "METAAL_THREADS": "1"})
    assert p.returncode == 2, p.stderr
    assert p.stdout == "" and "Traceback" not in p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("error:") and needle in p.stderr, p.stderr
