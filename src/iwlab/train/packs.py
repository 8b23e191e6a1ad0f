"""An ensemble too large for the device, trained as several smaller ensembles ("packs")."""

from __future__ import annotations

import gc
import inspect
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from iwlab.functional.checks import check_int
from iwlab.train.ensemble import EnsembleTrainer, ModelFn
from iwlab.train.members import History, Member

logger = logging.getLogger(__name__)


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


_TRAINER_KWARGS = frozenset(inspect.signature(EnsembleTrainer.__init__).parameters) - {"self", "model_fn", "members"}
_FIT_KWARGS = frozenset(inspect.signature(EnsembleTrainer.fit).parameters) - {"self", "x", "y"}


def _split_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    unknown = sorted(set(kwargs) - _TRAINER_KWARGS - _FIT_KWARGS)
    if unknown:
        raise TypeError(f"fit_in_packs got unexpected keyword arguments {unknown}")
    return (
        {k: v for k, v in kwargs.items() if k in _TRAINER_KWARGS},
        {k: v for k, v in kwargs.items() if k in _FIT_KWARGS},
    )


def pack_checkpoint_path(path: str | Path, lo: int, hi: int) -> Path:
    """Checkpoint file of the pack holding global members ``lo .. hi - 1`` (used by :func:`fit_in_packs`).

    Example:
        >>> pack_checkpoint_path("ck/cell.pt", 0, 4).as_posix()
        'ck/cell.members0-3.pt'
    """
    path = Path(path)
    return path.with_name(f"{path.stem}.members{lo}-{hi - 1}{path.suffix}")


def fit_in_packs(
    model_fn: ModelFn,
    members: Sequence[Member],
    x: Tensor,
    y: Tensor,
    *,
    pack_size: int | None = None,
    **kwargs: Any,
) -> list[EnsembleTrainer]:
    """Train ``members`` as consecutive packs of at most ``pack_size`` members (one trainer per pack).

    ``kwargs`` go to :class:`EnsembleTrainer` (``batch_size``, ``optimizer``, ``device``, ...) and to
    :meth:`EnsembleTrainer.fit` (``epochs``, ``callbacks``, ``eval_epochs``, ...) by name. With
    ``pack_size=None`` the first pack holds every member. When a pack runs out of memory
    (``torch.OutOfMemoryError``, or a ``RuntimeError`` saying "out of memory") it is discarded, the
    pack size is halved (logged as a warning) and the pack is retrained from scratch; later packs keep
    the smaller size; a single member that does not fit re-raises the error. Members are independent,
    so the result equals one big ensemble (up to float rounding of the batched kernels), except for
    the func backend's dropout masks, which come from one stream per pack (see the module docstring).

    Per-pack data: with ``per_member=True`` the rows of ``x``/``y`` (and a 2-D ``sample_weight``) are
    split with the members; each must hold one row per member (a ``(1, N)`` ``sample_weight`` is
    shared by every pack). ``checkpoint_path`` becomes one file per pack, named by the global member
    range (:func:`pack_checkpoint_path`), so a rerun with the same packs resumes each of them.
    Member ``j`` of pack ``k`` is global member ``sum(t.M for t in trainers[:k]) + j``;
    :func:`merge_histories` gives one :class:`History` with the global indices.

    Example:
        >>> import torch
        >>> from iwlab.models import MLP
        >>> x, y = torch.randn(32, 2), (torch.rand(32) > 0.5).long()
        >>> trainers = fit_in_packs(lambda g: MLP(2, (8,), 1, generator=g), [Member(seed=s) for s in range(5)],
        ...                         x, y, pack_size=2, batch_size=8, epochs=2, progress=False)
        >>> [t.M for t in trainers]
        [2, 2, 1]
        >>> torch.cat([t.logits(x) for t in trainers]).shape
        torch.Size([5, 32, 1])

    Raises:
        TypeError: unknown keyword arguments, or ``pack_size`` not an integer.
        ValueError: ``pack_size < 1``, per-member data or weights with another count than the members,
            and whatever :class:`EnsembleTrainer` and :meth:`EnsembleTrainer.fit` raise.
    """
    members = list(members)
    if not members:
        raise ValueError("an ensemble needs at least one member")
    if pack_size is not None:
        pack_size = check_int(pack_size, "pack_size", minimum=1)
    init_kw, fit_kw = _split_kwargs(kwargs)
    per_member = bool(fit_kw.get("per_member", False))
    sample_weight = fit_kw.get("sample_weight")
    # packs take consecutive slices of the per-member data: a count that differs from the members
    # would silently drop datasets or pair them with the wrong members
    if per_member:
        for name, v in (("x", x), ("y", y)):
            if len(v) != len(members):
                raise ValueError(f"per_member {name} holds {len(v)} datasets for {len(members)} members")
    split_weights = sample_weight is not None and torch.as_tensor(sample_weight).dim() == 2 and len(sample_weight) > 1
    if split_weights and len(sample_weight) != len(members):
        raise ValueError(f"sample_weight has {len(sample_weight)} rows for {len(members)} members (expected 1 or M)")
    checkpoint_path = fit_kw.get("checkpoint_path")
    size = len(members) if pack_size is None else pack_size
    trainers: list[EnsembleTrainer] = []
    lo = 0
    while lo < len(members):
        hi = min(lo + size, len(members))
        kw = dict(fit_kw)
        if split_weights:
            kw["sample_weight"] = torch.as_tensor(sample_weight)[lo:hi]
        if checkpoint_path is not None:
            kw["checkpoint_path"] = pack_checkpoint_path(checkpoint_path, lo, hi)
        xs, ys = (x[lo:hi], y[lo:hi]) if per_member else (x, y)
        trainer: EnsembleTrainer | None = None
        out_of_memory = False
        try:
            trainer = EnsembleTrainer(model_fn, members[lo:hi], **init_kw)
            trainer.fit(xs, ys, **kw)
        except RuntimeError as err:
            if not _is_oom(err) or hi - lo == 1:
                raise
            out_of_memory = True  # retry outside the handler, so the traceback's tensors are freed
        if out_of_memory:
            trainer = None
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            size = max(1, (hi - lo) // 2)
            logger.warning(
                "out of memory training members %d-%d as one pack of %d; retrying in packs of %d",
                lo,
                hi - 1,
                hi - lo,
                size,
            )
            continue
        assert trainer is not None
        trainers.append(trainer)
        lo = hi
    return trainers


def merge_histories(trainers: Sequence[EnsembleTrainer]) -> History:
    """One :class:`History` of consecutive packs, member indices remapped to the global index.

    Pack ``k``'s member ``j`` becomes ``sum(t.M for t in trainers[:k]) + j``. Rows are ordered by epoch,
    then metric (in order of first appearance), then member: the order a single ensemble of all the
    members records them in (for callbacks that return the same metrics at every evaluation).

    Example:
        >>> import torch
        >>> from iwlab.models import MLP
        >>> x, y = torch.randn(16, 2), (torch.rand(16) > 0.5).long()
        >>> acc = lambda t, e: {"acc": (t.predict(x) == y).double().mean(1)}
        >>> ts = fit_in_packs(lambda g: MLP(2, (4,), 1, generator=g), [Member(seed=s) for s in range(3)], x, y,
        ...                   pack_size=2, batch_size=8, epochs=1, callbacks=[acc], progress=False)
        >>> [r[1] for r in merge_histories(ts).rows]
        [0, 1, 2]
    """
    rows: list[tuple[int, int, str, float]] = []
    offset = 0
    for t in trainers:
        rows.extend((epoch, offset + member, name, value) for epoch, member, name, value in t.history.rows)
        offset += t.M
    order: dict[str, int] = {}
    for _, _, name, _ in rows:
        order.setdefault(name, len(order))
    rows.sort(key=lambda r: (r[0], order[r[2]], r[1]))
    return History(rows)
