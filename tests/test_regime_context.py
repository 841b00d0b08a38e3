"""Lever R: the budget-regime context from the store to the deployed policy."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from metaal.acquisition import features
from metaal.cli import cli

STUDY = """
[run]
sources = ["keel:glass1"]
targets = ["sklearn:iris"]
workers = 1
[generate]
episodes = 1
candidates = 60
initial = 3
budget = 20
query_size = 10
oracle = "batch"
oracle_margin_pool = 2
regime_context = true
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


def test_store_and_policy_carry_the_two_context_columns_and_the_shipped_schema_is_unchanged(tmp_path):
    from metaal.registry import get_strategy
    from metaal.store import read_trajectories

    (tmp_path / "s.toml").write_text(STUDY)
    r = CliRunner().invoke(cli, ["run", "--config", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out"), "--quiet"])
    assert r.exit_code == 0, r.output
    trajs = read_trajectories(tmp_path / "out" / "store.zarr")
    assert trajs.attrs["schema"]["context"][-2:] == ["labelled_share", "classes_seen"]
    ctx = np.asarray(trajs.steps["context"])
    share, seen = ctx[:, -2], ctx[:, -1]
    assert ctx.shape[1] == 9 and np.all((share > 0) & (share < 1)) and np.all((seen > 0) & (seen <= 1))
    assert np.all(np.diff(share[::10]) >= 0) or len(share) <= 10  # the labelled share grows round by round
    meta = json.loads((tmp_path / "out" / "policy" / "metaal-policy.json").read_text())
    assert meta["scorer"]["n_context"] == 9 and meta["schema"]["context"] == trajs.attrs["schema"]["context"]
    policy = get_strategy(f"policy:{tmp_path / 'out' / 'policy'}")
    assert policy.regime and not features.schema_regime(features.schema())
    assert len(features.schema()["context"]) == 7  # the shipped policy's schema
