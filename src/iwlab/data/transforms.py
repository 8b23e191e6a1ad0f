"""Batched, seeded image augmentation on tensors: random horizontal flip and shift (CIFAR-10, paper §4.2).

Katharopoulos & Fleuret augment CIFAR-10 by "random flipping, horizontal and vertical shifting of the
original images" (Keras ``ImageDataGenerator``). :func:`random_flip_shift` does the same on a whole batch
at once: each image is mirrored left-right with probability ``flip_p`` and translated by integers
``dy, dx`` drawn uniformly from ``-max_shift..max_shift`` (default 3 pixels, about 10% of 32, the usual
Keras ``width_shift_range=0.1``); uncovered pixels are zero (the channel mean, once the images are
normalized). All randomness comes from the given ``torch.Generator``, so a seed fixes the augmentation.

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(4, 3, 32, 32)
    >>> random_flip_shift(x, g).shape
    torch.Size([4, 3, 32, 32])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["flip_shift", "random_flip_shift"]


def flip_shift(x: Tensor, flip: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    """Deterministic part: mirror rows where ``flip``, then move image ``i`` by ``(dy[i], dx[i])`` pixels.

    ``out[i, :, h, w] = x'[i, :, h - dy[i], w - dx[i]]`` where that pixel exists, else 0 (``x'`` is the
    optionally flipped image); positive ``dx`` moves the content right, positive ``dy`` down.

    Args:
        x: images ``(N, C, H, W)``, any dtype, any device.
        flip: ``(N,)`` bool, mirror image ``i`` left-right.
        dy: ``(N,)`` integer vertical shifts in pixels.
        dx: ``(N,)`` integer horizontal shifts in pixels.

    Returns:
        A new tensor like ``x`` (the input is not modified); uncovered pixels are 0.

    Raises:
        ValueError: ``x`` is not 4-D.

    Example:
        >>> x = torch.arange(4.0).view(1, 1, 1, 4)
        >>> flip_shift(x, torch.tensor([False]), torch.tensor([0]), torch.tensor([1])).tolist()
        [[[[0.0, 0.0, 1.0, 2.0]]]]
    """
    if x.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
    n, _, h, w = x.shape
    x = torch.where(flip.view(n, 1, 1, 1).to(x.device), x.flip(3), x)
    s = int(max(dy.abs().max(), dx.abs().max())) if n else 0
    if s == 0:
        return x.clone()
    padded = F.pad(x, (s, s, s, s))  # (N, C, H + 2s, W + 2s), zeros around
    rows = torch.arange(h, device=x.device).view(1, h) + s - dy.view(n, 1).to(x.device)  # (N, H)
    cols = torch.arange(w, device=x.device).view(1, w) + s - dx.view(n, 1).to(x.device)  # (N, W)
    c = x.shape[1]
    out = padded.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w + 2 * s))  # (N, C, H, W + 2s)
    return out.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))  # (N, C, H, W)


def random_flip_shift(x: Tensor, generator: torch.Generator | None, max_shift: int = 3, flip_p: float = 0.5) -> Tensor:
    """A new batch: each image flipped left-right with probability ``flip_p`` and shifted by up to
    ``max_shift`` pixels vertically and horizontally (independently, uniform integers), zero-filled.

    ``x`` is ``(N, C, H, W)`` on any device; the random draws are made on the CPU from ``generator``
    (same seed, same augmentation, whatever the device). The input is not modified.

    Source: Katharopoulos & Fleuret (2017, Sec. 4.2): "random flipping, horizontal and vertical shifting".

    Args:
        x: images ``(N, C, H, W)``.
        generator: CPU ``torch.Generator`` for the draws (None: the global RNG). Per batch it draws, in
            this order, ``N`` uniforms (flips), ``N`` vertical and ``N`` horizontal shifts.
        max_shift: largest shift in pixels (>= 0).
        flip_p: probability of a left-right flip, in ``[0, 1]``.

    Returns:
        The augmented batch, same shape, dtype and device as ``x``.

    Raises:
        ValueError: ``max_shift < 0``, ``flip_p`` outside ``[0, 1]``, or ``x`` not 4-D.

    Example:
        >>> g = torch.Generator().manual_seed(1)
        >>> y = random_flip_shift(torch.ones(2, 1, 4, 4), g, max_shift=1)
        >>> y.shape, bool((y == 0).any() or (y == 1).all())
        (torch.Size([2, 1, 4, 4]), True)
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if not 0.0 <= flip_p <= 1.0:
        raise ValueError(f"flip_p must be in [0, 1], got {flip_p}")
    n = x.shape[0]
    flip = torch.rand(n, generator=generator) < flip_p  # (N,)
    dy = torch.randint(-max_shift, max_shift + 1, (n,), generator=generator)  # (N,)
    dx = torch.randint(-max_shift, max_shift + 1, (n,), generator=generator)  # (N,)
    return flip_shift(x, flip, dy, dx)
