"""Lever C: the batch oracle's cold-start proposers (TypiClust, ProbCover) from the store to the deployed policy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from metaal.acquisition import features
from metaal.cli import cli

STUDY = """
[run]
sources = ["sklearn:wine"]
targets = ["sklearn:iris"]
workers = 1
[generate]
episodes = 1
candidates = {candidates}
initial = 10
budget = 20
query_size = 10
oracle = "batch"
oracle_margin_pool = 2
cold_start_proposers = true
extra_initial = []
[distill]
algo = "gain"
target = "accuracy"
steps = 20
[evaluate]
strategies = ["random"]
seeds = 1
budget = 20
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    d = tmp_path_factory.mktemp("cold")
    (d / "s.toml").write_text(STUDY.format(candidates=80))
    r = CliRunner().invoke(cli, ["run", "--config", str(d / "s.toml"), "--out", str(d / "out"), "--quiet"])
    assert r.exit_code == 0, r.output
    return d / "out"


def test_store_and_policy_name_eight_proposers_and_the_cold_start_batches_are_trained(study):
    from metaal.store import read_trajectories

    trajs = read_trajectories(study / "store.zarr")
    names = trajs.attrs["schema"]["features"]
    assert names[-2:] == ["in_typiclust", "in_probcover"] and features.schema_proposers(trajs.attrs["schema"]) == \
        features.KNOWN_PROPOSERS
    gains = np.asarray(trajs.steps["batch_acc_gain"])
    assert gains.shape[1] == 8 and np.isfinite(gains[:, 6:]).all()  # both cold-start batches were retrained
    cands = np.asarray(trajs.steps["candidates"])
    assert cands.shape[2] == len(names) and (cands[..., names.index("in_typiclust")] == 1).any()
    meta = json.loads((study / "policy" / "metaal-policy.json").read_text())
    assert meta["schema"]["features"] == names and meta["scorer"]["n_features"] == len(names) and meta["K"] == 80


def test_the_policy_proposes_its_schemas_batches_cold_start_ones_from_the_whole_pool(study):
    from metaal.acquisition.ops import uncertain_pool
    from metaal.loop import LoopConfig, new_state
    from metaal.registry import get_strategy
    from metaal.tasks import load_task

    policy = get_strategy(f"policy:{study / 'policy'}")
    assert policy.proposers == features.KNOWN_PROPOSERS
    from metaal.learners import LearnerConfig

    state = new_state(load_task("sklearn:iris", 0), LearnerConfig(steps=30), LoopConfig(initial=10, budget=20, query_size=10), 0, "cpu")
    cands, batches = policy.candidates(state, 10)
    assert set(batches) == set(features.KNOWN_PROPOSERS)
    margin_pool = uncertain_pool(state, 10, policy.margin_pool, state.unlabelled)
    for name in features.BATCH_PROPOSERS:
        assert np.isin(batches[name], margin_pool).all()
    cold = np.concatenate([batches["typiclust"], batches["probcover"]])
    assert not np.isin(cold, margin_pool).all()  # drawn from the whole pool, not only the smallest margins
    picks = policy.select(state, 10)
    assert len(set(picks.tolist())) == 10 and np.isin(picks, cands).all()


def test_shipped_schema_is_unchanged_and_bad_settings_stop_before_any_work(tmp_path):
    assert features.schema()["features"] == list(features.FEATURE_NAMES) and len(features.FEATURE_NAMES) == 17
    (tmp_path / "s.toml").write_text(STUDY.format(candidates=60))
    r = CliRunner().invoke(cli, ["run", "--config", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2 and "needs --candidates >= 80" in r.output and not (tmp_path / "out" / "store.zarr").exists()
