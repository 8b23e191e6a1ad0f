import pytest
import torch
import torch.nn.functional as F
from torch import nn

from iwlab.models import CifarVGG, MnistVGG


def _g(s=0):
    return torch.Generator().manual_seed(s)


def _n(m):
    return sum(p.numel() for p in m.parameters())


def test_mnist_vgg_parameter_count_by_hand():
    conv = (1 * 9 + 1) * 32 + (32 * 9 + 1) * 32 + (32 * 9 + 1) * 64 + (64 * 9 + 1) * 64
    dense = (64 * 7 * 7 + 1) * 512 + (512 + 1) * 512 + (512 + 1) * 10
    assert conv == 64_992 and dense == 1_873_930
    assert _n(MnistVGG(generator=_g())) == conv + dense == 1_938_922


def test_mnist_vgg_layers():
    net = MnistVGG(generator=_g())
    convs = [
        (c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in net.modules() if isinstance(c, nn.Conv2d)
    ]
    assert convs == [
        (1, 32, (3, 3), (1, 1)),
        (32, 32, (3, 3), (1, 1)),
        (32, 64, (3, 3), (1, 1)),
        (64, 64, (3, 3), (1, 1)),
    ]
    assert [m.p for m in net.modules() if isinstance(m, nn.Dropout)] == [0.25, 0.25, 0.5, 0.5]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert not any(isinstance(m, nn.Dropout) for m in MnistVGG(dropout=False).modules())
    out = net(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 10) and out.dtype == torch.float32


def test_cifar_vgg_parameter_count_by_hand():
    chans = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256)]
    conv = sum((i * 9 + 1) * o for i, o in chans)
    bn = sum(2 * o for _, o in chans)  # weight and bias (running stats are buffers)
    dense = (256 * 4 * 4 + 1) * 1024 + (1024 + 1) * 512 + (512 + 1) * 10
    assert (conv, bn, dense) == (1_145_408, 1_792, 4_725_258)
    net = CifarVGG(generator=_g())
    assert _n(net) == conv + bn + dense == 5_872_458
    assert [m.p for m in net.modules() if isinstance(m, nn.Dropout)] == [0.25, 0.25, 0.25, 0.5, 0.5]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 6
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_seeded_init_is_reproducible():
    for cls in (MnistVGG, CifarVGG):
        a, b, c = cls(generator=_g(1)), cls(generator=_g(1)), cls(generator=_g(2))
        sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_bad_image_size():
    with pytest.raises(ValueError, match="divisible by 4"):
        MnistVGG(image_size=30)
    with pytest.raises(ValueError, match="divisible by 8"):
        CifarVGG(image_size=28)


@pytest.mark.parametrize("cls,shape", [(MnistVGG, (10, 1, 28, 28)), (CifarVGG, (10, 3, 8, 8))])
def test_overfits_a_tiny_batch(cls, shape):
    torch.manual_seed(0)
    kw = {"image_size": shape[-1]} if cls is CifarVGG else {}
    net = cls(generator=_g(), dropout=False, **kw)
    x = torch.randn(*shape, generator=_g(3))
    y = torch.arange(10)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    fitted = False
    for step in range(60):
        net.train()
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        if step % 5 == 4:
            net.eval()
            with torch.no_grad():
                fitted = bool((net(x).argmax(1) == y).all())
            if fitted:
                break
    assert fitted
