"""Evaluation metrics of model ensembles: agreement between models, and class-weighted accuracy.

Byrd & Lipton (2019, Sec. 4.1) ask whether importance weights change *which* examples a model gets
right, or only reshuffle what random initialization reshuffles anyway: they compare how often
differently-weighted models agree with how often differently-seeded models agree (82% vs 78% on the
CIFAR-10 cats/dogs test set). :func:`agreement` computes both numbers from a grid of predictions
``(W weightings, S seeds, N examples)``; :func:`agreement_per_member` gives the per-model terms whose
means they are, and :func:`member_grid` arranges an ensemble's ``(M, N)`` predictions into that grid.

:func:`weighted_accuracy` scores predictions with each example weighted by its class's weight (their
Fig. 5: the test set weighted as the loss was).

Example:
    >>> p = np.array([[[1, 1], [1, 0], [1, 0]], [[0, 0], [0, 0], [1, 0]]])  # W=2, S=3, N=2
    >>> {k: round(v, 3) for k, v in agreement(p).items()}
    {'across_weightings': 0.75, 'across_seeds': 0.833}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from iwlab.functional.checks import check_weights

__all__ = ["agreement", "agreement_per_member", "grid_index", "member_grid", "weighted_accuracy"]


def _mode(labels: np.ndarray, axis: int) -> np.ndarray:
    """Most frequent label along ``axis``; ties go to the smallest label."""
    n_labels = int(labels.max()) + 1 if labels.size else 1
    counts = np.stack([(labels == k).sum(axis=axis) for k in range(n_labels)])
    return counts.argmax(0)


def agreement_per_member(preds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per model, how often it agrees with the majority of its seeds, and each weighting with the others.

    Majority votes break ties towards the smallest label. Averaging ``across_seeds`` over models gives
    Byrd & Lipton's "fraction of random initializations that agree" and averaging ``across_weightings``
    over weightings their "fraction of differently-weighted models that agree" (:func:`agreement`).

    Args:
        preds: ``(W, S, N)`` integer class labels >= 0: W weightings, S seeds, N examples.

    Returns:
        ``across_seeds (W, S)`` float64: per model, the fraction of examples on which it gives its
        weighting's majority vote over seeds; ``across_weightings (W,)`` float64: per weighting, the
        fraction of examples on which its majority vote gives the modal label over all weightings' votes.

    Raises:
        ValueError: ``preds`` is not 3-D.

    Example:
        >>> p = np.array([[[1, 1], [1, 0], [1, 0]], [[0, 0], [0, 0], [1, 0]]])  # W=2, S=3, N=2
        >>> seeds, weights = agreement_per_member(p)
        >>> seeds.round(3).tolist(), weights.tolist()
        ([[0.5, 1.0, 1.0], [1.0, 1.0, 0.5]], [0.5, 1.0])
    """
    preds = np.asarray(preds)
    if preds.ndim != 3:
        raise ValueError(f"preds must have shape (weightings, seeds, examples), got {preds.shape}")
    majority = _mode(preds, axis=1)  # (W, N)
    seeds = (preds == majority[:, None, :]).mean(2)  # (W, S)
    modal = _mode(majority, axis=0)  # (N,)
    weights = (majority == modal[None, :]).mean(1)  # (W,)
    return seeds, weights


def agreement(preds: np.ndarray) -> dict[str, float]:
    """Byrd & Lipton's agreement numbers (Sec. 4.1): across weightings vs across seeds.

    ``across_weightings``: per example, the fraction of the W weightings (each a majority vote over its
    S seeds) that give the modal label, averaged over examples. ``across_seeds``: per example and
    weighting, the fraction of the S seeds that give the weighting's majority label, averaged over both.

    Args:
        preds: ``(W, S, N)`` integer class labels >= 0.

    Returns:
        ``{"across_weightings": float, "across_seeds": float}``, fractions in [0, 1].

    Raises:
        ValueError: ``preds`` is not 3-D.

    Example:
        >>> p = np.array([[[1, 1], [1, 0], [1, 0]], [[0, 0], [0, 0], [1, 0]]])
        >>> {k: round(v, 3) for k, v in agreement(p).items()}
        {'across_weightings': 0.75, 'across_seeds': 0.833}
    """
    seeds, weights = agreement_per_member(preds)
    return {"across_weightings": float(weights.mean()), "across_seeds": float(seeds.mean())}


def grid_index(weights: Sequence[float], seeds: Sequence[int]) -> dict[tuple[float, int], tuple[int, int]]:
    """Where each model's ``(weight, seed)`` sits in the sorted ``(W, S)`` grid.

    Args:
        weights: the M models' weights (any hashable numbers; repeats allowed).
        seeds: the M models' seeds, in the same order.

    Returns:
        ``{(weight, seed): (i, j)}``, ``i`` the rank of the weight among the distinct weights and ``j``
        that of the seed; fewer than M entries when a ``(weight, seed)`` pair repeats.

    Raises:
        ValueError: ``weights`` and ``seeds`` differ in length.

    Example:
        >>> grid_index([4.0, 0.25, 4.0], [0, 0, 1])
        {(4.0, 0): (1, 0), (0.25, 0): (0, 0), (4.0, 1): (1, 1)}
    """
    ws, ss = sorted(set(weights)), sorted(set(seeds))
    return {(w, s): (ws.index(w), ss.index(s)) for w, s in zip(weights, seeds, strict=True)}


def member_grid(preds: np.ndarray, weights: Sequence[float], seeds: Sequence[int]) -> np.ndarray:
    """An ensemble's predictions ``(M, N)`` arranged as ``(W, S, N)`` by each model's weight and seed.

    Args:
        preds: ``(M, N)`` predictions, one row per model.
        weights: ``(M,)`` each model's weight.
        seeds: ``(M,)`` each model's seed.

    Returns:
        ``(W, S, N)`` of ``preds``' dtype, weights and seeds in increasing order.

    Raises:
        ValueError: not exactly one model per (weight, seed) pair of the grid.

    Example:
        >>> member_grid(np.array([[1, 0], [0, 0]]), [4.0, 0.25], [0, 0]).tolist()
        [[[0, 0]], [[1, 0]]]
    """
    where = grid_index(weights, seeds)
    n_w, n_s = len(set(weights)), len(set(seeds))
    if len(where) != n_w * n_s or len(weights) != len(where):
        raise ValueError("agreement needs exactly one model per (weight, seed)")
    grid = np.zeros((n_w, n_s, preds.shape[1]), dtype=preds.dtype)
    for i, (w, s) in enumerate(zip(weights, seeds, strict=True)):
        grid[where[(w, s)]] = preds[i]
    return grid


def weighted_accuracy(pred: Tensor, target: Tensor, class_weight: Tensor) -> Tensor:
    """Accuracy with each example weighted by its class: ``sum_i v[y_i] 1[pred_i = y_i] / sum_i v[y_i]``.

    Byrd & Lipton (2019), Fig. 5: the multiclass models are scored on a test set weighted as their
    loss was (class weights ``v``).

    Args:
        pred: ``(..., N)`` integer predicted classes.
        target: ``(N,)`` or ``(..., N)`` integer true classes in ``[0, C)``.
        class_weight: ``(C,)`` shared, or ``(..., C)`` per model; any real dtype (used as float32).

    Returns:
        ``(...)`` float32 weighted accuracies in [0, 1] (NaN when the weights of the examples sum to 0).

    Raises:
        ValueError: a target class outside ``[0, C)`` (a negative one would silently index from the end),
            or class weights that are negative, NaN, infinite or all zero (:func:`check_weights`).
        TypeError: bool or complex class weights.
        RuntimeError: shapes that do not broadcast as above.

    Example:
        >>> weighted_accuracy(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), torch.tensor([0.5, 0.25]))
        tensor(0.6000)
    """
    check_weights(class_weight, name="class_weight")
    C = class_weight.shape[-1]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= C):
        raise ValueError(f"target classes must lie in [0, {C}); got range [{int(target.min())}, {int(target.max())}]")
    target = target.expand_as(pred)
    if class_weight.dim() == 1:
        v = class_weight[target]
    else:
        v = class_weight.unsqueeze(-2).expand(*pred.shape, class_weight.shape[-1]).gather(-1, target.unsqueeze(-1))
        v = v.squeeze(-1)
    v = v.to(torch.float32)
    return (v * (pred == target).float()).sum(-1) / v.sum(-1)
