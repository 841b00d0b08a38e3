"""The fast CPU dropout masks against torch's own: the same bits, the same generator state, the same learners."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from metaal.learners import Learner, LearnerConfig
from metaal.learners.models import Dropout, bernoulli_mask


@pytest.mark.parametrize("shape", [(1,), (7, 3), (64, 128), (5, 32, 3, 3), (40_000,)])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.75, 0.9])
def test_bernoulli_mask_has_the_bits_and_leaves_the_generator_where_bernoulli_does(shape, keep):
    g_ref, g_new = torch.Generator().manual_seed(123), torch.Generator().manual_seed(123)
    ref = torch.empty(shape).bernoulli_(keep, generator=g_ref)
    new = bernoulli_mask(shape, keep, g_new)
    assert torch.equal(ref, new)
    assert torch.equal(g_ref.get_state(), g_new.get_state())
    assert 0 < int(new.sum()) < new.numel() or new.numel() < 10  # not all zeros or ones: the test can fail


@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 1.0])
def test_dropout_matches_nn_dropout_outputs_grads_and_global_rng(p):
    x_ref = torch.randn(33, 16, requires_grad=True)
    x_new = x_ref.detach().clone().requires_grad_(True)
    torch.manual_seed(9)
    out_ref = nn.Dropout(p)(x_ref)
    state_ref = torch.get_rng_state()
    torch.manual_seed(9)
    out_new = Dropout(p)(x_new)
    assert torch.equal(out_ref, out_new)
    assert torch.equal(state_ref, torch.get_rng_state())
    out_ref.square().sum().backward()
    out_new.square().sum().backward()
    assert torch.equal(x_ref.grad, x_new.grad)
    assert torch.equal(Dropout(p).eval()(x_new), x_new)  # eval mode: identity


@pytest.mark.parametrize("model,shape", [("mlp", (6,)), ("cnn", (1, 8, 8))])
def test_learners_train_and_mc_sample_as_with_torch_dropout(model, shape):
    # the same learner with every Dropout swapped back to nn.Dropout: bit-identical weights and MC samples
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, *shape)).astype(np.float32)
    y = rng.integers(0, 3, 50)
    fast = Learner(LearnerConfig(model=model, hidden=16, steps=15), shape, 3, seed=4)
    ref = copy.deepcopy(fast)
    swapped = 0
    for module in list(ref.net.modules()):
        for name, child in list(module.named_children()):
            if type(child) is Dropout:
                setattr(module, name, nn.Dropout(child.p))
                swapped += 1
    assert swapped >= 2
    fast.fit(X, y, round_seed=2)
    ref.fit(X, y, round_seed=2)
    for a, b in zip(fast.net.parameters(), ref.net.parameters()):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(fast.mc_proba(X, samples=4, seed=1), ref.mc_proba(X, samples=4, seed=1))
