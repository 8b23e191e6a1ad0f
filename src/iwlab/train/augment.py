"""Training-batch transforms for :class:`~iwlab.train.ensemble.EnsembleTrainer`'s ``transform`` option.

A transform takes one step's stacked batch ``xb`` ``(M, B, ...)`` and the trainer's own CPU generator and
returns a batch of the same shape and dtype; the trainer saves the generator with its checkpoints, so a resumed
run draws what an uninterrupted one draws.

Example:
    >>> import torch
    >>> t = flip_shift_transform()
    >>> t(torch.randn(2, 3, 3, 32, 32), torch.Generator().manual_seed(0)).shape
    torch.Size([2, 3, 3, 32, 32])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from iwlab.data.transforms import random_flip_shift
from iwlab.functional.checks import check_int, check_real


class FlipShift:
    """The transform of :func:`flip_shift_transform`; its ``repr`` shows the parameters (settings records)."""

    def __init__(self, max_shift: int, flip_p: float) -> None:
        self.max_shift, self.flip_p = max_shift, flip_p

    def __call__(self, xb: Tensor, generator: torch.Generator) -> Tensor:
        """``xb`` ``(M, B, C, H, W)`` with each of the M * B images flipped and shifted independently."""
        if not isinstance(xb, Tensor) or xb.dim() != 5:
            got = tuple(xb.shape) if isinstance(xb, Tensor) else type(xb).__name__
            raise ValueError(f"flip_shift_transform takes image batches xb (M, B, C, H, W), got {got}")
        m, b = xb.shape[:2]
        # one draw per image of the whole (M * B) batch: every member's every example gets its own flip and shift
        out = random_flip_shift(xb.reshape(m * b, *xb.shape[2:]), generator, self.max_shift, self.flip_p)
        return out.reshape(xb.shape)  # (M, B, C, H, W)

    def __repr__(self) -> str:
        return f"flip_shift_transform(max_shift={self.max_shift}, flip_p={self.flip_p!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FlipShift) and repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash(repr(self))


def flip_shift_transform(max_shift: int = 4, flip_p: float = 0.5) -> FlipShift:
    """The standard CIFAR augmentation as an ensemble ``transform``: random horizontal flip and shift.

    Each image of the step's batch ``(M, B, C, H, W)`` is mirrored left-right with probability ``flip_p`` and
    shifted by integers ``dy, dx`` uniform in ``[-max_shift, max_shift]``, zero-filled
    (:func:`~iwlab.data.transforms.random_flip_shift` on the ``(M * B, C, H, W)`` reshape). With ``max_shift=4``
    this is "pad 4 with zeros, random 32 x 32 crop, random horizontal flip": a crop at offset ``o`` in
    ``[0, 8]`` of the padded image is the image shifted by ``4 - o``.

    Source: He et al. (2016), "Deep Residual Learning for Image Recognition", Sec. 4.2 (CIFAR-10: 4-pixel
    padding, random 32 x 32 crop, horizontal flip), the augmentation of Cao et al. (2019)'s LDAM-DRW code
    (``transforms.RandomCrop(32, padding=4)``, ``transforms.RandomHorizontalFlip()``).

    Args:
        max_shift: largest shift in pixels (>= 0).
        flip_p: probability of a left-right flip, in ``[0, 1]``.

    Returns:
        A callable ``fn(xb (M, B, C, H, W), generator) -> (M, B, C, H, W)`` (same dtype and device) whose
        ``repr`` names these parameters; it draws ``3 * M * B`` numbers from ``generator`` per call.

    Raises:
        TypeError: a non-integer ``max_shift`` or non-real ``flip_p``.
        ValueError: ``max_shift < 0`` or ``flip_p`` outside ``[0, 1]``; when called, ``xb`` not 5-D.

    Example:
        >>> import torch
        >>> t = flip_shift_transform(max_shift=0, flip_p=1.0)  # always flip, never shift
        >>> x = torch.arange(4.0).reshape(1, 1, 1, 1, 4)
        >>> t(x, torch.Generator().manual_seed(0)).flatten().tolist(), t
        ([3.0, 2.0, 1.0, 0.0], flip_shift_transform(max_shift=0, flip_p=1.0))
    """
    max_shift = check_int(max_shift, "max_shift", minimum=0)
    flip_p = check_real(flip_p, "flip_p")
    if not (math.isfinite(flip_p) and 0.0 <= flip_p <= 1.0):
        raise ValueError(f"flip_p must be in [0, 1], got {flip_p}")
    return FlipShift(max_shift, flip_p)
