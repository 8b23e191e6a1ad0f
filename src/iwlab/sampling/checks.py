"""Boundary checks shared by the samplers: indices, labels, intervals and checkpoint fields.

Internal to :mod:`iwlab.sampling`: each function raises ``TypeError``/``ValueError`` with a one-line
message naming the offending entry, so a sampler can refuse bad input before any of its state changes.

Example:
    >>> import torch
    >>> check_indices(torch.tensor([2, 0]), 3, "indices").tolist()
    [2, 0]
    >>> check_interval(0.5, "ema", 0.0, 1.0, hi_open=True)
    0.5
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from iwlab.functional.checks import check_int, check_real

__all__ = [
    "check_indices",
    "check_interval",
    "dataset_labels",
    "first_entries",
    "and_more",
    "state_equal",
    "state_int",
    "state_tensor",
]


def first_entries(mask: Tensor, limit: int = 5) -> list[int]:
    return mask.nonzero().reshape(-1)[:limit].tolist()


def and_more(mask: Tensor, shown: int) -> str:
    extra = int(mask.sum()) - shown
    return f" (and {extra} more)" if extra > 0 else ""


def check_indices(indices: object, n: int | None, name: str, *, flatten: bool = False) -> Tensor:
    """``indices`` as a CPU int64 tensor, checked to be integer positions in ``[0, n)``."""
    if not isinstance(indices, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of dataset indices, got {type(indices).__name__}")
    if indices.dtype == torch.bool or indices.is_floating_point() or indices.is_complex():
        # a bool (or uint8) tensor would index as a mask; floats would be truncated
        raise TypeError(f"{name} must be an integer tensor of dataset indices, got dtype {indices.dtype}")
    idx = indices.detach()
    if flatten:
        idx = idx.reshape(-1)
    elif idx.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor of dataset indices, got shape {tuple(idx.shape)}")
    idx = idx.cpu().long()  # (B,)
    bad = idx < 0 if n is None else (idx < 0) | (idx >= n)
    if bool(bad.any()):
        where = first_entries(bad)
        shown = ", ".join(f"{name}[{j}] = {int(idx[j])}" for j in where)
        span = "[0, len(dataset))" if n is None else f"[0, {n})"
        raise ValueError(f"{name} must be dataset indices in {span}; got {shown}{and_more(bad, len(where))}")
    return idx


def dataset_labels(
    dataset: Dataset, labels: Tensor | Sequence[int] | None, n: int, who: str = "this sampler"
) -> tuple[Tensor, str]:
    """The (n,) int64 CPU class labels and where they came from (for error messages); ``who`` needs them."""
    if labels is not None:
        where = "labels"
        if isinstance(labels, Tensor):
            t = labels.detach()
        else:
            try:
                t = torch.as_tensor(labels)
            except (TypeError, ValueError, RuntimeError):
                raise TypeError(
                    f"labels must be a (N,) tensor or sequence of integer class labels, got {type(labels).__name__}"
                ) from None
    else:
        tensors = getattr(dataset, "tensors", None)
        targets = getattr(dataset, "targets", None)
        if tensors is not None and len(tensors) >= 2:
            t, where = tensors[1].detach(), "dataset.tensors[1]"
        elif targets is not None:
            t, where = torch.as_tensor(targets), "dataset.targets"
        else:
            raise ValueError(
                f"{who} needs the class of every example: pass labels=... (a (N,) tensor), or use a "
                "dataset with .tensors (x, y, ...) or .targets"
            )
    t = t.cpu()
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{where} must hold integer class labels, got dtype {t.dtype}")
    if t.dim() != 1 or t.numel() != n:
        raise ValueError(f"{where} must have shape ({n},), one class per example; got {tuple(t.shape)}")
    if t.is_floating_point():
        # 1.0 is class 1, but truncating 1.7 (or NaN) to a class would be a silent guess
        bad = ~(torch.isfinite(t) & (t == t.round()))
        if bool(bad.any()):
            j = int(bad.nonzero()[0])
            raise ValueError(f"{where} must hold integer class labels; {where}[{j}] = {t[j].item()}")
    return t.long(), where


def check_interval(
    value: object, name: str, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False
) -> float:
    """``value`` as a float in the interval (lo, hi) with the given open/closed ends; refuses bool and NaN."""
    v = check_real(value, name)
    ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ValueError(f"{name} must be in {span}, got {value}")
    return v


def state_int(state: dict[str, Any], key: str) -> int:
    try:
        return check_int(state[key], f"checkpoint field '{key}'")
    except TypeError as e:
        raise ValueError(str(e)) from None


def state_equal(state: dict[str, Any], key: str, mine: int, what: str) -> None:
    """Raise unless the checkpoint's ``key`` (when present: old checkpoints lack it) equals ``mine``."""
    if key in state and state_int(state, key) != mine:
        raise ValueError(f"checkpoint field '{key}' is {state[key]} but this sampler's {what} is {mine}")


def state_tensor(state: dict[str, Any], key: str, shape: tuple[int, ...], kind: str, what: str) -> Tensor:
    """The checkpoint's tensor ``key`` on the CPU, checked for ``shape`` and dtype kind (float, int, bool)."""
    t = state[key]
    if not isinstance(t, Tensor):
        raise ValueError(f"checkpoint field '{key}' must be a tensor, got {type(t).__name__}")
    if tuple(t.shape) != shape:
        raise ValueError(f"checkpoint field '{key}' has shape {tuple(t.shape)} but this sampler's is {shape} ({what})")
    is_kind = {
        "float": t.is_floating_point(),
        "int": not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool),
        "bool": t.dtype == torch.bool,
    }[kind]
    if not is_kind:
        raise ValueError(f"checkpoint field '{key}' must be a {kind} tensor, got dtype {t.dtype}")
    t = t.detach().cpu()
    if kind == "float":
        bad = ~(torch.isfinite(t) & (t >= 0))
        if bool(bad.any()):
            j = tuple(bad.nonzero()[0].tolist())
            raise ValueError(f"checkpoint field '{key}' must be finite and >= 0; entry {j} = {t[j].item()}")
    return t
