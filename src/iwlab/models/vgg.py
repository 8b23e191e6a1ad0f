"""Katharopoulos & Fleuret's (2017) VGG-style image classifiers for MNIST (§4.1) and CIFAR-10 (§4.2).

Both follow the authors' Keras code (``importance_sampling/models.py``: ``build_small_cnn`` and
``build_cnn``): 3x3 convolutions with ``'same'`` padding (``padding=1``, so only the 2x2 max-pools
shrink the image), ReLU everywhere, dropout 0.25 after every pool and 0.5 after each hidden dense
layer. The networks return logits; the softmax is in the loss (``F.cross_entropy``).

* :class:`MnistVGG` (1,938,922 parameters at 28x28, 10 classes): no batch norm.
* :class:`CifarVGG` (5,872,458 parameters at 32x32, 10 classes): batch norm after every convolution's
  ReLU (the authors' order: ``Conv2D(activation="relu")`` then ``BatchNormalization()``); dense layers
  have no batch norm.

Initialization: PyTorch's default scales (uniform in +-1/sqrt(fan_in)), every draw from the given
``torch.Generator`` via :func:`iwlab.models.cnn.init_from_generator_`, so a seed fixes the network.
(Keras used Glorot-uniform weights and zero biases; with Adam the difference is immaterial.)

Example:
    >>> net = MnistVGG(generator=torch.Generator().manual_seed(0))
    >>> net(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from iwlab.models.cnn import init_from_generator_

__all__ = ["CifarVGG", "MnistVGG"]


def _conv(c_in: int, c_out: int, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    return layers


def _block(c_in: int, c_out: int, batch_norm: bool, dropout: bool) -> list[nn.Module]:
    layers = _conv(c_in, c_out, batch_norm) + _conv(c_out, c_out, batch_norm) + [nn.MaxPool2d(2)]
    if dropout:
        layers.append(nn.Dropout(0.25))
    return layers


def _dense(d_in: int, sizes: tuple[int, ...], num_classes: int, dropout: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Flatten()]
    for h in sizes:
        layers += [nn.Linear(d_in, h), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(0.5))
        d_in = h
    layers.append(nn.Linear(d_in, num_classes))
    return layers


class MnistVGG(nn.Module):
    """2x conv3x3(32), maxpool, dropout .25, 2x conv3x3(64), maxpool, dropout .25, 2x (FC512, dropout .5), FC.

    Input ``(B, in_channels, S, S)`` with ``S`` divisible by 4 (28 for MNIST); output logits
    ``(B, num_classes)``. ``dropout=False`` drops every dropout layer.

    Args:
        num_classes: logits.
        dropout: keep the dropout layers (0.25 after pools, 0.5 after hidden dense layers).
        generator: source of the initial parameters (None: the global RNG).
        in_channels: input channels.
        image_size: input height and width, divisible by 4.

    Raises:
        ValueError: ``image_size`` not divisible by 4.

    Example:
        >>> MnistVGG(num_classes=3, dropout=False)(torch.zeros(1, 1, 28, 28)).shape
        torch.Size([1, 3])
    """

    def __init__(
        self,
        num_classes: int = 10,
        dropout: bool = True,
        generator: torch.Generator | None = None,
        *,
        in_channels: int = 1,
        image_size: int = 28,
    ) -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4 (two 2x2 pools), got {image_size}")
        feats = _block(in_channels, 32, False, dropout) + _block(32, 64, False, dropout)
        d_in = 64 * (image_size // 4) ** 2  # 64 * 7 * 7 = 3136 for MNIST
        self.net = nn.Sequential(*feats, *_dense(d_in, (512, 512), num_classes, dropout))
        init_from_generator_(self, generator)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, S, S)`` images -> ``(B, num_classes)`` logits."""
        return self.net(x)


class CifarVGG(nn.Module):
    """Three blocks of [conv3x3-ReLU-BN] x2, maxpool, dropout .25 with 64, 128, 256 filters;
    FC1024, dropout .5, FC512, dropout .5, FC.

    Input ``(B, 3, S, S)`` with ``S`` divisible by 8 (32 for CIFAR-10); output logits ``(B, num_classes)``.

    Args:
        num_classes: logits.
        generator: source of the initial parameters (None: the global RNG).
        dropout: keep the dropout layers.
        in_channels: input channels.
        image_size: input height and width, divisible by 8.

    Raises:
        ValueError: ``image_size`` not divisible by 8.

    Example:
        >>> CifarVGG(generator=torch.Generator().manual_seed(0))(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        generator: torch.Generator | None = None,
        *,
        dropout: bool = True,
        in_channels: int = 3,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        if image_size % 8:
            raise ValueError(f"image_size must be divisible by 8 (three 2x2 pools), got {image_size}")
        feats = (
            _block(in_channels, 64, True, dropout) + _block(64, 128, True, dropout) + _block(128, 256, True, dropout)
        )
        d_in = 256 * (image_size // 8) ** 2  # 256 * 4 * 4 = 4096 for CIFAR-10
        self.net = nn.Sequential(*feats, *_dense(d_in, (1024, 512), num_classes, dropout))
        init_from_generator_(self, generator)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, S, S)`` images -> ``(B, num_classes)`` logits."""
        return self.net(x)
