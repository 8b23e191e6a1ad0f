"""Prior adaptation (Saerens, Latinne & Decaestecker, Neural Computation 2002): EM and the Bayes correction.

:func:`mlls` estimates the target priors, hence ``w = q(y) / p(y)``, by maximizing the likelihood of
unlabelled target data under a fixed ``p(x | y)`` (EM); :func:`adjust_priors` applies a ``w`` to the
posteriors by Bayes' rule. Both are re-exported by :mod:`iwlab.functional.label_shift`.

Example:
    >>> adjust_priors(torch.tensor([[0.8, 0.2]]), torch.tensor([0.5, 2.0]))
    tensor([[0.5000, 0.5000]], dtype=torch.float64)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from iwlab.functional.checks import check_int, check_real, check_weights
from iwlab.functional.prob_checks import check_probs

__all__ = ["adjust_priors", "mlls"]


def _check_priors(priors: object, name: str, k: int) -> Tensor:
    if not isinstance(priors, Tensor) or not priors.is_floating_point():
        got = getattr(priors, "dtype", type(priors).__name__)
        raise TypeError(f"{name} must be a floating-point tensor of shape ({k},); got {got}")
    if tuple(priors.shape) != (k,):
        raise ValueError(f"{name} must have shape ({k},) to match the probabilities; got shape {tuple(priors.shape)}")
    return check_probs(priors.reshape(1, k), name)[0]


def mlls(
    source_probs: Tensor,
    target_probs: Tensor,
    *,
    source_priors: Tensor | None = None,
    tol: float = 1e-6,
    max_iter: int = 100,
    return_n_iter: bool = False,
) -> Tensor | tuple[Tensor, int]:
    """Maximum-likelihood label shift by EM (Saerens, Latinne & Decaestecker, Neural Computation 2002).

    From ``w = 1``, each EM step re-weights the target posteriors, ``q(y|x) ∝ w_y p(y|x)`` (E-step),
    and sets the target priors to their mean, ``q(y) = mean_x q(y|x)``, so ``w = q(y) / p(y)``
    (M-step). It stops at the first step that changes ``w`` by less than ``tol`` in every entry.
    The posteriors should be calibrated (:mod:`iwlab.functional.calibration`; Alexandari et al. 2020).

    Args:
        source_probs: float tensor (n, K) of posteriors on held-out source data; only used for the
            default ``source_priors`` (their mean, the calibrated model's own prior).
        target_probs: float tensor (m, K) of posteriors on unlabelled target data.
        source_priors: float tensor (K,) of ``p(y)``, all > 0 and summing to 1, or None.
        tol: convergence tolerance on ``max_y |Δw_y|``, finite and > 0.
        max_iter: most EM steps, >= 1.
        return_n_iter: also return the number of EM steps taken.

    Returns:
        Float64 tensor (K,) of weights on the inputs' device; with ``return_n_iter``, ``(w, n_iter)``.

    Raises:
        TypeError, ValueError: bad probabilities, mismatched K, a prior of 0 (a class the source
            never predicts: its weight is undefined), bad ``tol``/``max_iter``.
        RuntimeError: not converged within ``max_iter`` steps (the message names ``tol`` and ``max_iter``).

    Example:
        >>> p = torch.tensor([[0.8, 0.2], [0.2, 0.8]])
        >>> mlls(p, torch.tensor([[0.8, 0.2], [0.2, 0.8], [0.2, 0.8]]), tol=1e-10, max_iter=1000)
        tensor([0.4444, 1.5556], dtype=torch.float64)
    """
    if not isinstance(return_n_iter, bool):
        raise TypeError(f"return_n_iter must be True or False, got {return_n_iter!r}")
    sp = check_probs(source_probs, "source_probs")
    k = sp.shape[1]
    tp = check_probs(target_probs, "target_probs", n_classes=k)
    tol = check_real(tol, "tol")
    if not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be finite and > 0, got {tol!r}")
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    name = "source_priors"
    if source_priors is None:
        p, name = sp.mean(dim=0), "the mean of source_probs (the default source_priors)"
    else:
        p = _check_priors(source_priors, name, k).to(tp.device)
    if bool((p <= 0).any()):
        j = int((p <= 0).nonzero()[0, 0])
        raise ValueError(f"{name} is 0 for class {j}: the source never predicts it, so its weight is undefined")
    w = torch.ones(k, dtype=torch.float64, device=tp.device)
    step = math.inf
    for it in range(1, max_iter + 1):
        post = tp * w
        post = post / post.sum(dim=1, keepdim=True)
        w_new = post.mean(dim=0) / p
        step = float((w_new - w).abs().max())
        w = w_new
        if step < tol:
            return (w, it) if return_n_iter else w
    raise RuntimeError(
        f"mlls did not converge: the last EM step changed w by {step:.3g} >= tol={tol:g} after "
        f"max_iter={max_iter} steps; raise max_iter (or tol)"
    )


def adjust_priors(probs: Tensor, weights: Tensor) -> Tensor:
    """Post-hoc prior correction ``p'(y|x) = w_y p(y|x) / sum_c w_c p(c|x)`` (Saerens et al. 2002).

    With ``w = q(y) / p(y)`` this is Bayes' rule for the target posteriors, since ``p(x|y)`` is shared.

    Args:
        probs: float tensor (N, K) of source-model posteriors.
        weights: float tensor (K,) of class weights, finite, >= 0, not all 0.

    Returns:
        Float64 tensor (N, K), rows summing to 1, on ``probs``' device.

    Raises:
        TypeError, ValueError: bad ``probs`` or ``weights``, or a row whose mass lies only on
            classes of weight 0 (its corrected posterior is undefined).

    Example:
        >>> adjust_priors(torch.tensor([[0.5, 0.5]]), torch.tensor([1.0, 3.0]))
        tensor([[0.2500, 0.7500]], dtype=torch.float64)
    """
    p = check_probs(probs, "probs")
    k = p.shape[1]
    if not isinstance(weights, Tensor) or not weights.is_floating_point() or tuple(weights.shape) != (k,):
        got = getattr(weights, "shape", type(weights).__name__)
        raise TypeError(f"weights must be a floating-point tensor of shape ({k},); got {got}")
    check_weights(weights, name="weights")
    w = weights.detach().to(device=p.device, dtype=torch.float64)
    if bool((w > 0).any()):
        w = w / w.max()  # only ratios matter; this keeps subnormal weights from losing their bits
    out = p * w
    total = out.sum(dim=1, keepdim=True)
    if bool((total == 0).any()):
        row = int((total[:, 0] == 0).nonzero()[0, 0])
        raise ValueError(f"probs row {row} has all its mass on classes of weight 0: its posterior is undefined")
    return out / total
