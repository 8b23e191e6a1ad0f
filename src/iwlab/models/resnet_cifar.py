"""ResNet-32 for CIFAR (He et al. 2016, Sec. 4.2), as in the long-tailed CIFAR benchmarks of the remedy losses.

The CIFAR ResNet of He et al. (2016, "Deep Residual Learning for Image Recognition", Sec. 4.2): a 3x3
convolution with 16 channels, then three stages of ``n = 5`` basic blocks at 16, 32 and 64 channels (the
first block of stages 2 and 3 with stride 2), global average pooling and a linear layer: ``6n + 2 = 32``
layers. Shortcuts that change the shape are He et al.'s option A: subsample by 2 and pad the new channels
with zeros (no parameters). This is the ``resnet32`` of the LDAM-DRW code (Cao et al. 2019, used by Menon et
al. 2021 and Kini et al. 2021 for CIFAR-10-LT), including its ``use_norm`` head for LDAM: the logits are
cosines, ``normalize(x) . normalize(w_c)``, which LDAM's ``scale`` (30) multiplies.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from iwlab.models.cnn import init_from_generator_

__all__ = ["NormedLinear", "ResNet32"]


class NormedLinear(nn.Module):
    """Cosine logits ``normalize(x) @ normalize(W)``, ``W (in, out)`` (Cao et al. 2019, LDAM-DRW code).

    Example:
        >>> head = NormedLinear(4, 3)
        >>> bool((head(torch.randn(5, 4)).abs() <= 1 + 1e-6).all())
        True
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features  # as nn.Linear (the trainer reads it)
        self.weight = nn.Parameter(torch.empty(in_features, out_features).uniform_(-1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """``(B, out)`` cosines between each input and each class's weight column."""
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=0)


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.pad = (c_out - c_in) // 2 if stride != 1 or c_in != c_out else None  # option A shortcut

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.pad is None:
            shortcut = x
        else:  # subsample by 2, zero-pad the new channels on both sides (He et al.'s option A)
            shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + shortcut)


class ResNet32(nn.Module):
    """The CIFAR ResNet-32 (see the module docstring); ``(B, 3, 32, 32)`` -> logits ``(B, num_classes)``.

    Args:
        num_classes: logits per example.
        normed_head: cosine logits (:class:`NormedLinear`), as the LDAM runs of Cao et al. use.
        blocks: basic blocks per stage (5 for ResNet-32; ``6 blocks + 2`` layers in all).
        width: channels of the first stage (16; the others are 2x and 4x).
        generator: source of the initial parameters (:func:`~iwlab.models.cnn.init_from_generator_`).

    Raises:
        ValueError: ``blocks`` or ``width`` below 1, or ``num_classes`` below 2.

    Example:
        >>> ResNet32(num_classes=10, blocks=1, width=4)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        normed_head: bool = False,
        blocks: int = 5,
        width: int = 16,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if blocks < 1 or width < 1 or num_classes < 2:
            raise ValueError(f"need blocks >= 1, width >= 1 and num_classes >= 2; got {blocks}, {width}, {num_classes}")
        widths = (width, 2 * width, 4 * width)
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        c_in = width
        for stage, c_out in enumerate(widths):
            for b in range(blocks):
                layers.append(_Block(c_in, c_out, 2 if stage > 0 and b == 0 else 1))
                c_in = c_out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head: nn.Module = NormedLinear(c_in, num_classes) if normed_head else nn.Linear(c_in, num_classes)
        self.normed_head = normed_head
        init_from_generator_(self, generator)
        if normed_head:  # init_from_generator_ knows conv, linear and BN layers: draw the cosine head from it too
            with torch.no_grad():
                w = self.head.weight
                w.copy_(torch.rand(w.shape, generator=generator, dtype=w.dtype) * 2 - 1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)``; cosines in ``[-1, 1]`` with ``normed_head``."""
        return self.head(self.features(x))
