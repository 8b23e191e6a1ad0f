"""iwlab.models.init.reinit_: Glorot and He uniform bounds, zero biases, seeded, and 'torch' draws nothing."""

import math

import pytest
import torch

from iwlab.models.init import reinit_


def _net():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(16, 2))


@pytest.mark.parametrize("init", ["glorot", "he"])
def test_bounds_biases_and_seeding(init):
    net = reinit_(_net(), init, torch.Generator().manual_seed(0))
    conv, lin = net[0], net[3]
    fans = {conv: (3 * 9, 4 * 9), lin: (16, 2)}
    for m, (fan_in, fan_out) in fans.items():
        bound = math.sqrt(6 / (fan_in + fan_out)) if init == "glorot" else math.sqrt(6 / fan_in)
        assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.5 * bound
        assert m.bias.abs().sum() == 0
    again = reinit_(_net(), init, torch.Generator().manual_seed(0))
    assert torch.equal(net[0].weight, again[0].weight) and torch.equal(net[3].weight, again[3].weight)


def test_torch_leaves_the_module_and_the_generator_alone():
    g = torch.Generator().manual_seed(0)
    net = _net()
    before = net[3].weight.clone()
    assert reinit_(net, "torch", g) is net and torch.equal(net[3].weight, before)
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(0).get_state())


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="init must be glorot, he or torch"):
        reinit_(_net(), "xavier", torch.Generator())
