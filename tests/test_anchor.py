"""Lever A: the margin-anchored score (distill --anchor) from training to the loaded policy."""

from __future__ import annotations

import json

import numpy as np
import torch

from metaal.acquisition import features
from metaal.policy.networks import CandidateScorer, margin_order
from tests._tiny import invoke, make_policy, make_store


def test_margin_order_ranks_valid_candidates_and_an_untrained_correction_keeps_it():
    margin = torch.tensor([[0.3, 0.1, 0.9, 0.5]])
    valid = torch.tensor([[True, True, True, False]])
    assert torch.allclose(margin_order(margin, valid)[0, :3], torch.tensor([0.5, 1.0, 0.0]))  # the masked one: any
    scorer = CandidateScorer(len(features.FEATURE_NAMES), len(features.CONTEXT_NAMES), 8, anchor=0.25)
    with torch.no_grad():
        scorer.out.weight.zero_()
        scorer.out.bias.zero_()  # a network that has learned nothing
    x = torch.rand(1, 4, len(features.FEATURE_NAMES))
    x[0, :, features.FEATURE_NAMES.index("margin")] = margin[0]
    s = scorer(x, torch.rand(1, len(features.CONTEXT_NAMES)), valid)
    assert torch.argsort(s[0, :3], descending=True).tolist() == [1, 0, 2]  # margin's order
    assert float(s[0, 3]) < float(s[0, :3].min())  # the masked candidate stays last


def test_anchored_policy_records_and_reloads_its_anchor_and_bad_values_stop(tmp_path):
    store = make_store(tmp_path / "s.zarr")
    pol = make_policy(store, tmp_path / "p", "--anchor", "0.5")
    meta = json.loads((pol / "metaal-policy.json").read_text())
    assert meta["scorer"]["anchor"] == 0.5
    from metaal.policy import load_policy

    policy = load_policy(pol)
    assert policy.scorer.anchor == 0.5
    feats = np.random.default_rng(0).random((5, len(features.FEATURE_NAMES))).astype(np.float32)
    ctx = np.zeros(len(features.CONTEXT_NAMES), np.float32)
    assert np.isfinite(policy.score(feats, ctx)).all()
    for extra, message in [(["--anchor", "-1"], "anchor must be a number >= 0"),
                           (["--anchor", "0.5", "--algo", "bc"], "anchor is a setting of --algo gain")]:
        r = invoke("distill", store, "--steps", "5", "--quiet", *extra, "--out", tmp_path / "bad")
        assert r.exit_code == 2 and message in r.output and not (tmp_path / "bad").exists(), r.output
