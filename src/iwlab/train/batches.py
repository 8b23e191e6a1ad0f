"""Batch sources: which examples each step of an epoch trains on.

* :func:`member_shuffles`: the per-member random protocol of the ensemble. Member ``i`` owns a
  generator ``g_i = Generator().manual_seed(seed_i)``; every epoch draws ``randperm(N, generator=g_i)``
  and, for a model with dropout, one epoch of keep masks
  (:func:`~iwlab.models.draw_dropout_masks`). A single model trained with the same seed draws the same
  permutation and masks, which is how the tests compare M single runs with one ensemble.
* :func:`length_grouped_batches`: shuffled batches of similar-length text (Hugging Face's
  ``group_by_length``), so dynamic padding wastes little.
* Importance samplers (:mod:`iwlab.sampling`) draw each batch from the model's own losses and are used
  directly by :func:`~iwlab.train.sampled.train_sampled`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from iwlab.models.mlp import draw_dropout_masks


def member_shuffles(
    generators: Sequence[torch.Generator],
    n: int,
    *,
    n_steps: int = 0,
    batch_size: int = 0,
    hidden: Sequence[int] = (),
    dropout: float = 0.0,
) -> tuple[Tensor, list[Tensor] | None]:
    """One epoch of the per-member random protocol: permutations and dropout keep masks.

    Args:
        generators: one CPU generator per member, advanced in place.
        n: examples per epoch (N).
        n_steps, batch_size, hidden, dropout: the masks' layout: ``n_steps`` batches of ``batch_size``
            for hidden layers of widths ``hidden``, each unit kept with probability ``1 - dropout``.
            ``dropout=0`` draws no masks.

    Returns:
        ``perm`` ``(M, N)`` int64 on the CPU and, with dropout, per hidden layer a ``(M, steps, B, h)``
        0/1 mask tensor (else None).

    Example:
        >>> perm, masks = member_shuffles([torch.Generator().manual_seed(s) for s in (0, 1)], 4)
        >>> perm.shape, masks
        (torch.Size([2, 4]), None)
        >>> bool((perm[0] == torch.randperm(4, generator=torch.Generator().manual_seed(0))).all())
        True
    """
    perms, masks = [], []
    for g in generators:  # per member: the permutation first, then the epoch's masks
        perms.append(torch.randperm(n, generator=g))
        if dropout:
            masks.append(draw_dropout_masks(g, n_steps, batch_size, hidden, dropout))
    stacked = [torch.stack([mk[li] for mk in masks]) for li in range(len(masks[0]))] if masks else None
    return torch.stack(perms), stacked


def _cut(order: Tensor, size: int) -> list[Tensor]:
    return [order[i : i + size] for i in range(0, len(order), size)]


def length_grouped_batches(lengths: Tensor, size: int, g: torch.Generator, group_by_length: bool) -> list[Tensor]:
    """One epoch's minibatches of example indices, drawn from ``g``.

    Plain: a random permutation cut into batches. ``group_by_length`` (as Hugging Face's
    ``group_by_length``): the permutation is cut into chunks of 50 batches, each chunk sorted by length
    and cut into batches, and the batch order shuffled; batches stay random in content but hold pairs of
    similar length, so dynamic padding wastes little (about 30% less work on MRPC at batch 32).

    Args:
        lengths: ``(N,)`` token counts.
        size: batch size (the last batch of a chunk may be smaller).
        g: the CPU generator to draw from, advanced in place.
        group_by_length: sort chunks by length (else a plain shuffle).

    Returns:
        A list of int64 index tensors covering ``0 .. N-1`` once.

    Example:
        >>> b = length_grouped_batches(torch.tensor([5, 1, 4, 2]), 2, torch.Generator().manual_seed(0), True)
        >>> sorted(sorted(x.tolist()) for x in b)
        [[0, 2], [1, 3]]
    """
    n = len(lengths)
    perm = torch.randperm(n, generator=g)
    if not group_by_length:
        return _cut(perm, size)
    chunk = 50 * size
    out: list[Tensor] = []
    for i in range(0, n, chunk):
        part = perm[i : i + chunk]
        part = part[torch.argsort(lengths[part], stable=True, descending=True)]
        out += _cut(part, size)
    order = torch.randperm(len(out), generator=g)
    return [out[int(j)] for j in order]


def sorted_batches(lengths: Tensor, size: int) -> list[Tensor]:
    """Batches of indices in order of length (evaluation: least padding, order irrelevant).

    Example:
        >>> [b.tolist() for b in sorted_batches(torch.tensor([3, 1, 2]), 2)]
        [[1, 2], [0]]
    """
    return _cut(torch.argsort(lengths, stable=True), size)
