"""The remedies compared by :mod:`iwlab.experiments.remedies`, each as ensemble members for a weight ratio.

Byrd & Lipton's setting: class 1 is down-weighted by ``w`` (its importance weight relative to class 0). Each
method turns ``w`` into what it acts on:

* ``ce``: plain cross-entropy, ignoring ``w`` (the control: its spread across ``w`` is 0 by construction);
* ``ce_iw``, ``focal_iw``, ``poly_*_iw``: the loss with class weights ``(1, w)`` (importance weighting);
* ``ldam``, ``la``, ``vs``: the class counts that ``w`` stands for, ``(n, n / w)``: the down-weighted class
  plays the majority, as in the long-tail papers, where the weights are inverse frequencies. On a binary model
  (logits ``(0, f)``) VS equals LA exactly: its multiplicative factor is 1 for the majority class 1 and multiplies
  the logit 0 of class 0, so ``vs_gamma`` has no effect there (it acts on the multiclass long-tailed part);
* ``ldam_drw``: LDAM, then class-balanced weights of those counts from 80 % of the epochs on (Cao et al.'s DRW);
* ``la_posthoc``: cross-entropy, then post-hoc logit adjustment ``f + tau log w`` at prediction time
  (Menon et al. 2021: the additive shift of the counts above);
* ``cb``: cross-entropy with the class-balanced weights (Cui et al. 2019) of those counts;
* ``subsample``: cross-entropy on the data with class 1 sub-sampled to the fraction ``w`` (Byrd & Lipton's
  alternative to weighting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from iwlab.data.resample import kept_count
from iwlab.functional.weighting import class_balanced_weights
from iwlab.train import Member

Weighting = Literal["none", "iw", "counts", "cb", "subsample"]


@dataclass(frozen=True)
class Method:
    """One remedy: the member loss, how the weight ratio enters, and its hyperparameters."""

    loss: str = "ce"
    weighting: Weighting = "iw"
    kwargs: dict[str, Any] = field(default_factory=dict)
    drw: bool = False
    posthoc: bool = False
    label: str = ""


def methods(
    poly_alpha: float, focal_gamma: float, ldam_margin: float, ldam_scale: float, tau: float, vs_gamma: float
) -> dict[str, Method]:
    """The method table ``{name: Method}`` for these hyperparameters (see the module docstring).

    Example:
        >>> sorted(methods(1.0, 2.0, 0.5, 1.0, 1.0, 0.2))[:3]
        ['cb', 'ce', 'ce_iw']
    """
    ldam = {"max_margin": ldam_margin, "scale": ldam_scale}
    poly = lambda kind, a: Method("poly", "iw", {"alpha": a, "kind": kind}, label=f"poly-{kind} + IW")  # noqa: E731
    return {
        "ce": Method("ce", "none", label="CE"),
        "ce_iw": Method("ce", "iw", label="CE + IW"),
        "poly_logit_iw": poly("logit", poly_alpha),
        "poly_linear_iw": poly("linear", poly_alpha + 1.0),  # the linear kind needs alpha > 1
        "poly_exp_iw": poly("exp", poly_alpha),
        "ldam": Method("ldam", "counts", ldam, label="LDAM"),
        "ldam_drw": Method("ldam", "counts", ldam, drw=True, label="LDAM-DRW"),
        "la": Method("logit_adjusted", "counts", {"tau": tau}, label="LA (loss)"),
        "la_posthoc": Method("ce", "none", posthoc=True, label="LA (post-hoc)"),
        "vs": Method("vs", "counts", {"tau": tau, "gamma": vs_gamma}, label="VS"),
        "focal_iw": Method("focal", "iw", {"gamma": focal_gamma}, label="focal + IW"),
        "cb": Method("ce", "cb", label="class-balanced CE"),
        "subsample": Method("ce", "subsample", label="sub-sampling"),
    }


def implied_counts(n: int, w: float) -> list[int]:
    """Class counts ``(n, round(n / w))`` that a weight ``w`` on class 1 stands for (inverse frequency).

    Example:
        >>> implied_counts(100, 0.25)
        [100, 400]
    """
    return [int(n), max(1, round(n / w))]


def binary_member(
    name: str, m: Method, w: float, seed: int, lr: float, n: int, epochs: int, cb_beta: float, labels: dict
) -> Member:
    """The member of method ``m`` for weight ratio ``w`` on class 1 (binary model, one logit)."""
    counts = implied_counts(n, w)
    kwargs = dict(m.kwargs)
    class_weight: tuple[float, ...] | None = None
    if m.weighting == "iw":
        class_weight = (1.0, float(w))
    elif m.weighting == "counts":
        kwargs["class_counts"] = counts
    elif m.weighting == "cb":
        class_weight = tuple(class_balanced_weights(counts, beta=cb_beta).tolist())
    drw = None
    if m.drw:  # Cao et al.: re-weight with the class-balanced weights (beta 0.9999) from 80 % of training on
        drw = (max(1, math.floor(0.8 * epochs) + 1), tuple(class_balanced_weights(counts, beta=0.9999).tolist()))
    return Member(
        seed=seed,
        class_weight=class_weight,
        lr=lr,
        loss=m.loss,
        loss_kwargs=kwargs,
        deferred_class_weight=drw,
        labels={**labels, "method": name, "weight": float(w), "seed": seed},
    )


def subsample_weights(y: Tensor, w: float, seed: int) -> Tensor:
    """``(N,)`` 0/1 sample weights keeping a random ``w`` fraction of class 1 (:func:`~iwlab.data.resample.kept_count`).

    Example:
        >>> w = subsample_weights(torch.tensor([0, 1, 1, 1, 1]), 0.5, 0)
        >>> w[0].item(), int(w[1:].sum())  # class 0 kept; 2 of the 4 class-1 examples kept
        (1.0, 2)
    """
    ones = torch.nonzero(y == 1).flatten()
    g = torch.Generator().manual_seed(seed)
    keep = ones[torch.randperm(len(ones), generator=g)[: kept_count(len(ones), w)]]
    out = (y != 1).to(torch.float32)
    out[keep] = 1.0
    return out


def posthoc_offset(m: Method, w: float, tau: float) -> float:
    """The post-hoc shift of a binary logit: ``tau log w`` = ``-tau log(pi_1 / pi_0)`` for counts ``(n, n / w)``."""
    return tau * math.log(w) if m.posthoc else 0.0
