import math

import pytest
import torch
from torch import nn

from iwlab.models import ByrdLiptonCNN, ResNet, init_from_generator_


def _g(s=0):
    return torch.Generator().manual_seed(s)


def test_cnn_architecture_matches_the_paper():
    net = ByrdLiptonCNN(generator=_g())
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (3, 64, (3, 3), (1, 1)),
        (64, 64, (3, 3), (1, 1)),
        (64, 128, (3, 3), (1, 1)),
        (128, 128, (3, 3), (1, 1)),
        (128, 128, (3, 3), (1, 1)),
    ]
    dense = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(d.in_features, d.out_features) for d in dense] == [(128 * 8 * 8, 512), (512, 128), (128, 1)]
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 2
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 1)


def test_cnn_dropout_on_hidden_units_only():
    net = ByrdLiptonCNN(width=0.125, image_size=8, dropout=0.5, generator=_g())
    drops = [i for i, m in enumerate(net.net) if isinstance(m, nn.Dropout)]
    assert len(drops) == 2 and all(isinstance(net.net[i - 1], nn.ReLU) for i in drops)
    net.eval()
    x = torch.randn(3, 3, 8, 8)
    assert torch.equal(net(x), net(x))


@pytest.mark.parametrize("bn", [True, False])
def test_resnet_structure(bn):
    net = ResNet(batch_norm=bn, generator=_g())
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].kernel_size == (5, 5) and convs[0].out_channels == 64
    strided = [c.out_channels for c in convs if c.stride == (2, 2) and c.kernel_size == (3, 3)]
    assert strided == [128, 256]
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert (n_bn > 0) == bn
    blocks = [m for m in net.modules() if m.__class__.__name__ == "_Block"]
    assert len(blocks) == 6
    assert [(d.in_features, d.out_features) for d in net.modules() if isinstance(d, nn.Linear)] == [
        (256, 512),
        (512, 1),
    ]
    net.eval()
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 1)


def test_init_is_seeded_and_has_default_scale():
    a, b, c = (ByrdLiptonCNN(width=0.25, image_size=8, generator=_g(s)) for s in (1, 1, 2))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))
    lin = init_from_generator_(nn.Linear(400, 10), _g(0))
    bound = 1 / math.sqrt(400)
    assert lin.weight.abs().max() <= bound and lin.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)


def test_bad_image_size():
    with pytest.raises(ValueError, match="divisible by 4"):
        ByrdLiptonCNN(image_size=10)
