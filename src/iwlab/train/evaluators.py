"""Metrics of an ensemble during training, written once: the training objective, accuracies, fractions.

Two levels:

* pure functions of an ensemble's outputs: :func:`binary_fit_metrics` and :func:`multiclass_fit_metrics`
  (``train_loss``, the weighted objective, and ``train_acc``), :func:`accuracy`,
  :func:`fraction_predicted`, :func:`member_class_weights` and :func:`mask_diverged`;
* evaluators, callbacks ``fn(trainer, epoch) -> {name: (M,) tensor}`` for ``EnsembleTrainer.fit(...,
  callbacks=[...])``, built from those: :func:`fit_metrics`, :func:`held_out_metrics`, and :func:`combine`
  to merge several into one (NaN for diverged members, which the trainer does not store).

The trainer calls an evaluator under ``torch.no_grad`` at its evaluation epochs; ``trainer`` may be a
pack of a larger ensemble (``fit_in_packs``), so per-member values come from ``trainer.members``.
The objective is the trainer's: IW-ERM ``(1/B) sum_i w_i l_i`` (Byrd & Lipton 2019, Sec. 3) with
``normalization="batch_size"``, or ``sum_i w_i l_i / sum_i w_i`` with ``"weight_sum"``, over the whole
training set in one batch.

Example:
    >>> from iwlab.models import MLP
    >>> from iwlab.train import EnsembleTrainer, Member
    >>> x, y = torch.randn(8, 2), torch.tensor([0, 1] * 4)
    >>> members = [Member(seed=0, class_weight=(1.0, 0.5)), Member(seed=1, class_weight=(0.5, 1.0))]
    >>> tr = EnsembleTrainer(lambda g: MLP(2, (), 1, generator=g), members, batch_size=4)
    >>> metrics = combine(fit_metrics(x, y), held_out_metrics(x, y))
    >>> {k: tuple(v.shape) for k, v in metrics(tr, 0).items()}
    {'train_loss': (2,), 'train_acc': (2,), 'test_acc': (2,)}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

import torch
from torch import Tensor

from iwlab.functional.losses import weighted_binary_cross_entropy, weighted_cross_entropy
from iwlab.functional.metrics import weighted_accuracy

__all__ = [
    "Evaluator",
    "accuracy",
    "binary_fit_metrics",
    "combine",
    "fit_metrics",
    "fraction_predicted",
    "mask_diverged",
    "member_class_weights",
    "multiclass_fit_metrics",
    "held_out_metrics",
]

Normalization = Literal["batch_size", "weight_sum"]


class Scorable(Protocol):
    """What an evaluator reads from a trainer (``iwlab.train.EnsembleTrainer`` has all of it)."""

    M: int
    members: Sequence[Any]  # each with ``class_weight``
    diverged_at: Tensor  # (M,) int64, -1 where the member never diverged

    def logits(self, x: Tensor, chunk: int = 8192, per_member: bool = False) -> Tensor: ...

    def predict(self, x: Tensor, chunk: int = 8192, per_member: bool = False) -> Tensor: ...


Evaluator = Callable[[Any, int], dict[str, Tensor]]


def member_class_weights(trainer: Scorable, device: str | torch.device = "cpu") -> Tensor:
    """The trainer's members' class weights as one tensor, ``(M, C)`` float32 on ``device``.

    Raises:
        TypeError: a member has no class weights (``class_weight=None``).
        ValueError: members with different numbers of classes.

    Example:
        >>> from types import SimpleNamespace as NS
        >>> member_class_weights(NS(members=[NS(class_weight=(1.0, 0.25)), NS(class_weight=(0.5, 1.0))]))
        tensor([[1.0000, 0.2500],
                [0.5000, 1.0000]])
    """
    return torch.tensor([m.class_weight for m in trainer.members], dtype=torch.float32, device=device)


def binary_fit_metrics(z: Tensor, y: Tensor, class_weight: Tensor, normalization: Normalization) -> dict[str, Tensor]:
    """``train_loss`` (the weighted binary cross-entropy objective) and ``train_acc`` of M models.

    Args:
        z: ``(M, N)`` float logits of class 1.
        y: ``(N,)`` or ``(M, N)`` int64 labels in {0, 1}.
        class_weight: ``(M, 2)`` or ``(2,)`` float32 class weights.
        normalization: ``"batch_size"`` (IW-ERM) or ``"weight_sum"``.

    Returns:
        ``{"train_loss": (M,), "train_acc": (M,)}``; accuracy counts ``z > 0`` as class 1.

    Raises:
        ValueError: shapes that do not match (from :func:`iwlab.functional.losses.weighted_binary_cross_entropy`).

    Example:
        >>> out = binary_fit_metrics(torch.tensor([[2.0, -1.0]]), torch.tensor([1, 1]), torch.ones(1, 2), "batch_size")
        >>> out["train_acc"]
        tensor([0.5000])
    """
    return {
        "train_loss": weighted_binary_cross_entropy(
            z, y.float(), class_weight=class_weight, normalization=normalization, validate=False
        ),
        "train_acc": ((z > 0).long() == y).float().mean(1),
    }


def multiclass_fit_metrics(
    z: Tensor, y: Tensor, class_weight: Tensor, normalization: Normalization
) -> dict[str, Tensor]:
    """``train_loss`` (the weighted cross-entropy objective) and ``train_acc`` of M models.

    Args:
        z: ``(M, N, C)`` float logits.
        y: ``(N,)`` or ``(M, N)`` int64 labels in ``[0, C)``.
        class_weight: ``(M, C)`` or ``(C,)`` float32 class weights.
        normalization: ``"batch_size"`` (IW-ERM) or ``"weight_sum"``.

    Returns:
        ``{"train_loss": (M,), "train_acc": (M,)}``; accuracy takes the arg-max class.

    Raises:
        ValueError: shapes that do not match (from :func:`iwlab.functional.losses.weighted_cross_entropy`).

    Example:
        >>> z = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])  # M=1, N=2, C=3
        >>> multiclass_fit_metrics(z, torch.tensor([0, 1]), torch.ones(1, 3), "weight_sum")["train_acc"]
        tensor([0.5000])
    """
    return {
        "train_loss": weighted_cross_entropy(
            z, y, class_weight=class_weight, normalization=normalization, validate=False
        ),
        "train_acc": (z.argmax(-1) == y).float().mean(1),
    }


def accuracy(pred: Tensor, target: Tensor) -> Tensor:
    """Fraction of examples predicted right, per model: ``pred (M, N)``, ``target (N,)`` -> ``(M,)`` float32.

    Example:
        >>> accuracy(torch.tensor([[0, 1, 0], [1, 1, 1]]), torch.tensor([0, 1, 0]))
        tensor([1.0000, 0.3333])
    """
    return (pred == target).float().mean(1)


def fraction_predicted(pred: Tensor, cls: int) -> Tensor:
    """Fraction of examples predicted as class ``cls``, per model: ``pred (M, N)`` -> ``(M,)`` float32.

    Byrd & Lipton's y-axis in Figs. 1-6 (fraction predicted as the up- or down-weighted class).

    Example:
        >>> fraction_predicted(torch.tensor([[0, 1, 1, 1]]), 1)
        tensor([0.7500])
    """
    return (pred == cls).float().mean(1)


def mask_diverged(out: dict[str, Tensor], diverged_at: Tensor) -> dict[str, Tensor]:
    """NaN for members whose parameters went NaN/inf (``diverged_at >= 0``); the trainer stores no NaN.

    A diverged member's NaN logits would otherwise read as predictions (``NaN > 0`` is class 0). With
    no diverged member ``out`` is returned unchanged; otherwise every value becomes float64 on the CPU.

    Args:
        out: ``{name: (M,) tensor}``.
        diverged_at: ``(M,)`` int64, the epoch each member diverged at, -1 for never.

    Example:
        >>> mask_diverged({"a": torch.tensor([0.5, 0.0])}, torch.tensor([-1, 3]))
        {'a': tensor([0.5000,    nan], dtype=torch.float64)}
    """
    dead = (diverged_at >= 0).cpu()
    if not dead.any():
        return out
    return {k: v.detach().cpu().double().masked_fill(dead, float("nan")) for k, v in out.items()}


def fit_metrics(
    x: Tensor,
    y: Tensor,
    *,
    class_weight: Tensor | None = None,
    normalization: Normalization = "batch_size",
    chunk: int = 8192,
    per_member: bool = False,
) -> Evaluator:
    """Evaluator of ``train_loss`` (the weighted objective) and ``train_acc`` on the training set.

    Binary models (one logit) get :func:`binary_fit_metrics`, others :func:`multiclass_fit_metrics`.

    Args:
        x: ``(N, ...)`` inputs shared by every member, or ``(M, N, ...)`` with ``per_member=True``.
        y: ``(N,)`` or ``(M, N)`` int64 labels, on the trainer's device.
        class_weight: ``(M, C)`` or ``(C,)`` float32 on the trainer's device; ``None`` reads each
            member's ``class_weight`` (:func:`member_class_weights`; right for a pack of a larger ensemble).
        normalization: the trainer's ``"batch_size"`` or ``"weight_sum"``.
        chunk: examples per forward pass.
        per_member: ``x`` holds one dataset per member.

    Returns:
        ``fn(trainer, epoch) -> {"train_loss": (M,), "train_acc": (M,)}``.

    Example:
        >>> from types import SimpleNamespace as NS
        >>> tr = NS(members=[NS(class_weight=(1.0, 1.0))], logits=lambda x, chunk, per_member: x[None, :, None])
        >>> fit_metrics(torch.tensor([1.0, -1.0]), torch.tensor([1, 1]))(tr, 1)["train_acc"]
        tensor([0.5000])
    """

    def evaluate(trainer: Scorable, epoch: int) -> dict[str, Tensor]:
        z = trainer.logits(x, chunk=chunk, per_member=per_member)  # (M, N, out)
        cw = member_class_weights(trainer, y.device) if class_weight is None else class_weight
        if z.shape[-1] == 1:
            return binary_fit_metrics(z.squeeze(-1), y, cw, normalization)
        return multiclass_fit_metrics(z, y, cw, normalization)

    return evaluate


def held_out_metrics(
    x: Tensor,
    y: Tensor,
    *,
    class_weight: Tensor | None = None,
    per_class: bool = False,
    chunk: int = 8192,
) -> Evaluator:
    """Evaluator of ``test_acc`` on a held-out set, and optionally the class-weighted and per-class accuracies.

    Args:
        x: ``(N, ...)`` test inputs, on the trainer's device.
        y: ``(N,)`` int64 test labels, on the trainer's device.
        class_weight: ``(M, C)`` or ``(C,)``: adds ``weighted_acc``, each test example weighted by its
            class's weight (:func:`iwlab.functional.metrics.weighted_accuracy`; Byrd & Lipton Fig. 5).
        per_class: adds ``acc_class<c>`` for every class ``c`` present in ``y``, from which any test
            weighting can be recomputed.
        chunk: examples per forward pass.

    Returns:
        ``fn(trainer, epoch) -> {"test_acc": (M,), ["weighted_acc": (M,)], ["acc_class<c>": (M,), ...]}``.

    Example:
        >>> from types import SimpleNamespace as NS
        >>> tr = NS(predict=lambda x, chunk: torch.tensor([[0, 1, 1]]))
        >>> held_out_metrics(torch.zeros(3, 2), torch.tensor([0, 1, 0]), per_class=True)(tr, 1)
        {'test_acc': tensor([0.6667]), 'acc_class0': tensor([0.5000]), 'acc_class1': tensor([1.])}
    """
    present = sorted({int(c) for c in y.unique().tolist()}) if per_class else []

    def evaluate(trainer: Scorable, epoch: int) -> dict[str, Tensor]:
        pred = trainer.predict(x, chunk=chunk)  # (M, N)
        out = {"test_acc": accuracy(pred, y)}
        if class_weight is not None:
            out["weighted_acc"] = weighted_accuracy(pred, y, class_weight)
        for c in present:
            out[f"acc_class{c}"] = (pred[:, y == c] == c).float().mean(1)
        return out

    return evaluate


def combine(*evaluators: Evaluator, mask: bool = True) -> Evaluator:
    """One evaluator holding every metric of ``evaluators``, in their order (a later name wins).

    Args:
        evaluators: callbacks ``fn(trainer, epoch) -> {name: (M,)}``.
        mask: NaN (not stored) for diverged members (:func:`mask_diverged` with ``trainer.diverged_at``).

    Example:
        >>> from types import SimpleNamespace as NS
        >>> both = combine(lambda t, e: {"a": torch.ones(2)}, lambda t, e: {"b": torch.zeros(2)})
        >>> sorted(both(NS(diverged_at=torch.tensor([-1, -1])), 1))
        ['a', 'b']
    """

    def evaluate(trainer: Scorable, epoch: int) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for ev in evaluators:
            out.update(ev(trainer, epoch))
        return mask_diverged(out, trainer.diverged_at) if mask else out

    return evaluate
