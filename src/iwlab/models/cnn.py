"""Byrd & Lipton's CIFAR-10 networks: the plain CNN (with optional dropout) and the ResNet (with or without BN).

Every parameter is drawn from an explicit ``torch.Generator`` (:func:`init_from_generator_`), so the
ensemble trainer and a single-model run built from the same seed start identical. ``width`` scales the
channel counts (1.0 is the paper's; CPU profiles use less).

Source: Byrd & Lipton (2019, Sec. 3, CIFAR-10 experiments and Appendix A.5).

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> net = ByrdLiptonCNN(width=0.25, image_size=16, generator=g)
    >>> net(torch.zeros(2, 3, 16, 16)).shape
    torch.Size([2, 1])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


@torch.no_grad()
def init_from_generator_(module: nn.Module, generator: torch.Generator | None) -> nn.Module:
    """Redraw every parameter from ``generator``, in module order, with PyTorch's default scales.

    Conv and linear weights and biases: uniform in +-1/sqrt(fan_in) (the bound ``nn.Linear`` and
    ``nn.Conv2d`` use by default); BatchNorm: weight 1, bias 0.

    Args:
        module: the network; its parameters are overwritten in place (under ``no_grad``).
        generator: CPU source of the draws (None: the global RNG). Per layer it draws the weight,
            then the bias, in ``module.modules()`` order.

    Returns:
        ``module`` itself.

    Example:
        >>> init_from_generator_(nn.Linear(3, 2), torch.Generator().manual_seed(0)).weight.shape
        torch.Size([2, 3])
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            fan_in = m.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in)
            for p in (m.weight, m.bias):
                if p is not None:
                    p.copy_(torch.rand(p.shape, generator=generator) * (2 * bound) - bound)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            m.weight.fill_(1.0)
            m.bias.fill_(0.0)
    return module


def _ch(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


class ByrdLiptonCNN(nn.Module):
    """2x conv(64) 3x3, maxpool, 3x conv(128) 3x3, maxpool, dense 512, dense 128, output; ReLU throughout.

    Convolutions use stride 1 and padding 1. ``dropout`` zeroes hidden dense units (the paper's dropout
    variant uses 0.5).

    Args:
        in_ch: input channels (3 for CIFAR-10).
        n_out: logits (1 for the binary cat-vs-dog task).
        width: multiplier of the channel counts 64 and 128 (1.0 is the paper's).
        dense: widths of the hidden dense layers.
        dropout: probability of zeroing a hidden dense unit in training (0 disables).
        image_size: input height and width in pixels, divisible by 4.
        generator: source of the initial parameters (see :func:`init_from_generator_`).

    Raises:
        ValueError: ``image_size`` not divisible by 4.

    Example:
        >>> ByrdLiptonCNN(n_out=10, width=0.125, image_size=8)(torch.zeros(1, 3, 8, 8)).shape
        torch.Size([1, 10])
    """

    def __init__(
        self,
        in_ch: int = 3,
        n_out: int = 1,
        width: float = 1.0,
        dense: tuple[int, ...] = (512, 128),
        dropout: float = 0.0,
        image_size: int = 32,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4 (two 2x2 pools), got {image_size}")
        c1, c2 = _ch(64, width), _ch(128, width)
        conv = [nn.Conv2d(in_ch, c1, 3, padding=1), nn.ReLU(), nn.Conv2d(c1, c1, 3, padding=1), nn.ReLU()]
        conv += [nn.MaxPool2d(2), nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU()]
        conv += [nn.Conv2d(c2, c2, 3, padding=1), nn.ReLU(), nn.Conv2d(c2, c2, 3, padding=1), nn.ReLU()]
        conv += [nn.MaxPool2d(2), nn.Flatten()]
        layers: list[nn.Module] = conv
        d_in = c2 * (image_size // 4) ** 2
        for h in dense:
            layers += [nn.Linear(d_in, h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            d_in = h
        layers.append(nn.Linear(d_in, n_out))
        self.net = nn.Sequential(*layers)
        self.dropout = dropout
        init_from_generator_(self, generator)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, n_out)``."""
        return self.net(x)


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, bn: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=not bn)
        self.bn1 = nn.BatchNorm2d(c_out) if bn else nn.Identity()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=not bn)
        self.bn2 = nn.BatchNorm2d(c_out) if bn else nn.Identity()
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:  # projection shortcut when the shape changes
            self.skip = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=not bn), nn.BatchNorm2d(c_out) if bn else nn.Identity()
            )

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.skip(x))


class ResNet(nn.Module):
    """5x5 conv(64); 2 residual blocks each at 64, 128 (first stride 2) and 256 (first stride 2);
    global average pool; dense 512; output. ``batch_norm`` puts BN after every convolution.

    Byrd & Lipton (2019, Sec. 4 and Figure A.5) find that weighting keeps an effect with BN and loses it
    without, hence the switch.

    Args:
        in_ch: input channels.
        n_out: logits.
        width: multiplier of the channel counts 64, 128, 256.
        batch_norm: batch norm after every convolution (convolutions then have no bias).
        dense: width of the hidden dense layer.
        generator: source of the initial parameters (see :func:`init_from_generator_`).

    Example:
        >>> ResNet(width=0.125, batch_norm=False)(torch.zeros(2, 3, 16, 16)).shape
        torch.Size([2, 1])
    """

    def __init__(
        self,
        in_ch: int = 3,
        n_out: int = 1,
        width: float = 1.0,
        batch_norm: bool = True,
        dense: int = 512,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        c = [_ch(64, width), _ch(128, width), _ch(256, width)]
        stem: list[nn.Module] = [nn.Conv2d(in_ch, c[0], 5, padding=2, bias=not batch_norm)]
        if batch_norm:
            stem.append(nn.BatchNorm2d(c[0]))
        stem.append(nn.ReLU())
        blocks: list[nn.Module] = []
        c_in = c[0]
        for i, c_out in enumerate(c):
            blocks.append(_Block(c_in, c_out, 1 if i == 0 else 2, batch_norm))
            blocks.append(_Block(c_out, c_out, 1, batch_norm))
            c_in = c_out
        self.features = nn.Sequential(*stem, *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(c[-1], dense), nn.ReLU(), nn.Linear(dense, n_out))
        self.batch_norm = batch_norm
        init_from_generator_(self, generator)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, n_out)``."""
        return self.head(self.features(x))
