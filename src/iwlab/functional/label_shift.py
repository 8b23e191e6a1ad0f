"""Label shift: estimate the class weights ``w_y = q(y) / p(y)`` from unlabelled target data, and correct.

Under label shift the source ``p`` and the target ``q`` share ``p(x | y)`` and differ in ``p(y)``. With
a fixed classifier ``f`` evaluated on a labelled held-out source set and on unlabelled target data:

- :func:`bbse`: black-box shift estimation (Lipton et al., ICML 2018, Sec. 4): solve ``C w = mu``
  with ``C[i, j] = (1/n) sum_n f_i(x_n) 1[y_n = j]`` on the source and ``mu_i`` the mean target
  prediction, then clip ``w`` at 0 (the paper's estimator; negative solutions are set to 0).
- :func:`rlls`: regularized learning under label shift (Azizzadenesheli et al., ICLR 2019, Sec. 3):
  ``theta = argmin_{theta >= -1} ||C theta - b||_2 + rho ||theta||_2``, ``b = mu - C 1``, ``w = 1 + theta``.
- :func:`mlls`: maximum-likelihood prior adaptation by EM (Saerens et al., Neural Computation 2002),
  on calibrated posteriors (:mod:`iwlab.functional.calibration`, Alexandari et al., ICML 2020).
- :func:`adjust_priors`: the post-hoc Bayes correction ``p'(y|x) ∝ w_y p(y|x)``.
- :func:`bootstrap_ci`: percentile bootstrap intervals over the held-out source and target sets.

All computations are float64; inputs are checked by :mod:`iwlab.functional.prob_checks` (re-exported
here with the calibration functions).

Example:
    >>> p = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.8, 0.2], [0.1, 0.9]])
    >>> bbse(p, torch.tensor([0, 1, 0, 1]), torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]]))
    tensor([0.6667, 1.3333], dtype=torch.float64)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from iwlab.functional.calibration import calibrated_probs, fit_bcts, fit_temperature, fit_vector_scaling, nll
from iwlab.functional.checks import check_int, check_real
from iwlab.functional.label_shift_em import adjust_priors, mlls
from iwlab.functional.prob_checks import PROB_SUM_TOL, check_class_labels, check_probs

__all__ = [
    "MAX_CONDITION",
    "PROB_SUM_TOL",
    "adjust_priors",
    "bbse",
    "bootstrap_ci",
    "calibrated_probs",
    "check_class_labels",
    "check_probs",
    "condition_number",
    "confusion_matrix",
    "fit_bcts",
    "fit_temperature",
    "fit_vector_scaling",
    "mlls",
    "nll",
    "rlls",
    "rlls_radius",
]

MAX_CONDITION = 1e12
"""BBSE and RLLS refuse a confusion matrix whose 2-norm condition number exceeds this."""


def _check_flag(value: object, name: str) -> bool:
    # "no" or 0 for a bool switch would silently pick a method
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def _predictions(probs: Tensor, soft: bool) -> Tensor:
    """The posteriors themselves (soft) or the one-hot argmax (hard; ties go to the lowest class)."""
    if soft:
        return probs
    return torch.nn.functional.one_hot(probs.argmax(dim=1), probs.shape[1]).to(torch.float64)


def confusion_matrix(source_probs: Tensor, source_labels: Tensor, *, soft: bool = False) -> Tensor:
    """Joint confusion matrix ``C[i, j] = (1/n) sum_n pred_i(x_n) 1[y_n = j]`` (Lipton et al. 2018, Sec. 4).

    Args:
        source_probs: float tensor (n, K) of the classifier's posteriors on held-out source data.
        source_labels: integer tensor (n,) of their true classes in ``[0, K)``.
        soft: use the posteriors as ``pred`` (soft confusion); else the one-hot argmax (hard).

    Returns:
        Float64 tensor (K, K) summing to 1; column ``j`` sums to the source frequency of class ``j``.

    Raises:
        TypeError, ValueError: bad probabilities or labels (see :func:`check_probs`).

    Example:
        >>> confusion_matrix(torch.tensor([[0.7, 0.3], [0.4, 0.6]]), torch.tensor([0, 0]), soft=True)
        tensor([[0.5500, 0.0000],
                [0.4500, 0.0000]], dtype=torch.float64)
    """
    _check_flag(soft, "soft")
    p = check_probs(source_probs, "source_probs")
    y = check_class_labels(source_labels, "source_labels", n=p.shape[0], n_classes=p.shape[1])
    k = p.shape[1]
    # column j sums the predictions of the examples labelled j (80x faster than pred.T @ one_hot(y) on CPU)
    C = torch.zeros(k, k, dtype=torch.float64, device=p.device).index_add_(1, y, _predictions(p, soft).T)
    return C / p.shape[0]


def condition_number(C: Tensor) -> float:
    """2-norm condition number ``sigma_max / sigma_min`` of a square matrix, in float64 (inf if singular).

    Args:
        C: square float tensor (K, K).

    Returns:
        The condition number as a Python float.

    Raises:
        ValueError: ``C`` is not a square matrix.

    Example:
        >>> condition_number(torch.diag(torch.tensor([2.0, 0.5])))
        4.0
    """
    if not isinstance(C, Tensor) or C.dim() != 2 or C.shape[0] != C.shape[1] or C.shape[0] == 0:
        raise ValueError(f"C must be a non-empty square matrix; got {getattr(C, 'shape', type(C).__name__)}")
    if not C.is_floating_point() or not bool(torch.isfinite(C).all()):
        raise ValueError(f"C must hold finite real numbers; got dtype {C.dtype}")
    s = torch.linalg.svdvals(C.detach().to(torch.float64))
    return math.inf if float(s[-1]) == 0.0 else float(s[0] / s[-1])


def _system(source_probs: Tensor, source_labels: Tensor, target_probs: Tensor, soft: bool) -> tuple[Tensor, Tensor]:
    """Checked ``(C, mu)`` of BBSE/RLLS; raises on missing classes and on a singular ``C``."""
    sp = check_probs(source_probs, "source_probs")
    k = sp.shape[1]
    tp = check_probs(target_probs, "target_probs", n_classes=k)
    y = check_class_labels(source_labels, "source_labels", n=sp.shape[0], n_classes=k)
    missing = torch.bincount(y, minlength=k) == 0
    if bool(missing.any()):
        j = int(missing.nonzero()[0, 0])
        raise ValueError(
            f"source_labels has no example of class {j} (K={k}); every class needs labelled source examples"
        )
    C = confusion_matrix(sp, y, soft=soft)
    mu = _predictions(tp, soft).mean(dim=0)
    unseen = (C.sum(dim=1) == 0) & (mu > 0)
    if bool(unseen.any()):
        i = int(unseen.nonzero()[0, 0])
        raise ValueError(
            f"target_probs predicts class {i} (mean {float(mu[i]):.3g}) but no source example is predicted as "
            f"class {i}: the source never saw that prediction, so w is not identified"
        )
    cond = condition_number(C)
    if not cond <= MAX_CONDITION:
        raise ValueError(
            f"the confusion matrix of source_probs is singular or ill-conditioned (condition number {cond:.3g} > "
            f"{MAX_CONDITION:g}); the classifier does not tell the classes apart on the source"
        )
    return C, mu


def bbse(source_probs: Tensor, source_labels: Tensor, target_probs: Tensor, *, soft: bool = False) -> Tensor:
    """Black-box shift estimation: ``w = max(C^{-1} mu, 0)`` (Lipton et al., ICML 2018, Sec. 4).

    ``C`` is :func:`confusion_matrix` on the source, ``mu`` the mean target prediction (one-hot argmax,
    or the posteriors when ``soft``; "soft BBSE" as in Alexandari et al. 2020). The unconstrained
    solution can be negative from sampling error; as in the paper, negative entries are set to 0.

    Args:
        source_probs: float tensor (n, K) of posteriors on labelled held-out source data.
        source_labels: integer tensor (n,) of their classes; every class must occur.
        target_probs: float tensor (m, K) of posteriors on unlabelled target data.
        soft: soft confusion matrix and soft target means instead of hard argmax predictions.

    Returns:
        Float64 tensor (K,) of weights ``>= 0``, on the inputs' device.

    Raises:
        TypeError, ValueError: bad probabilities or labels, mismatched K, a class missing from
            ``source_labels``, a target prediction no source example has, or a singular or
            ill-conditioned ``C`` (condition number > :data:`MAX_CONDITION`).

    Example:
        >>> p = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
        >>> bbse(p, torch.tensor([0, 1]), torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.1, 0.9], [0.2, 0.8]]))
        tensor([0.5000, 1.5000], dtype=torch.float64)
    """
    _check_flag(soft, "soft")
    C, mu = _system(source_probs, source_labels, target_probs, soft)
    return torch.linalg.solve(C, mu).clamp(min=0.0)


def rlls_radius(n: int, n_classes: int, delta: float) -> float:
    """``Delta_C = 3 (2 log(2K/delta) / (3n) + sqrt(2 log(2K/delta) / n))``, RLLS's regularization scale.

    The concentration radius of ``C``'s estimate from ``n`` source examples (Azizzadenesheli et al.,
    ICLR 2019, Sec. 3), as computed in the authors' code (``compute_3deltaC``).

    Args:
        n: number of held-out source examples, >= 1.
        n_classes: K, >= 2.
        delta: failure probability, in (0, 1).

    Returns:
        ``Delta_C`` as a Python float.

    Raises:
        TypeError, ValueError: ``n`` or ``n_classes`` not integers in range, ``delta`` outside (0, 1).

    Example:
        >>> round(rlls_radius(3000, 3, 0.05), 4)
        0.1727
    """
    n = check_int(n, "n", minimum=1)
    k = check_int(n_classes, "n_classes", minimum=2)
    delta = check_real(delta, "delta")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    log_term = 2 * math.log(2 * k / delta)
    return 3 * (log_term / (3 * n) + math.sqrt(log_term / n))


def _rlls_program(C: np.ndarray, b: np.ndarray, rho: float) -> np.ndarray:
    """``argmin_{theta >= -1} ||C theta - b|| + rho ||theta||`` for invertible ``C`` (float64).

    The objective is convex and smooth except where ``C theta = b`` or ``theta = 0``. Those two points
    are tested by their optimality (KKT) conditions and returned exactly; otherwise the program is
    solved as a second-order cone program (CLARABEL via cvxpy, to a duality gap of 1e-10).
    """
    exact = np.linalg.solve(C, b)  # C theta = b: optimal iff rho ||C^-T g|| <= 1, g = theta / ||theta||
    if np.all(exact >= -1) and (
        not np.any(exact) or rho * np.linalg.norm(np.linalg.solve(C.T, exact)) <= np.linalg.norm(exact)
    ):
        return exact
    if np.linalg.norm(C.T @ b) <= rho * np.linalg.norm(b):  # theta = 0: 0 in C^T(-b)/||b|| + rho * ball
        return np.zeros_like(b)

    # the general case: a second-order cone program, solved by an interior-point conic solver (CLARABEL,
    # through cvxpy: an optional dependency of the `label_shift` extra, imported only when RLLS needs it).
    # A quasi-Newton method stalls on this objective: its unsquared norms have a degenerate Hessian.
    try:
        import cvxpy as cp
    except ImportError:
        raise ImportError("RLLS needs cvxpy for this problem: pip install 'iwlab[label_shift]'") from None

    theta = cp.Variable(len(b))
    problem = cp.Problem(cp.Minimize(cp.norm(C @ theta - b, 2) + rho * cp.norm(theta, 2)), [theta >= -1])
    for tol in (1e-10, 1e-8):  # a gap of 1e-10 is sometimes beyond float64 here: then the solver's default 1e-8
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "solution may be inaccurate": checked below
            problem.solve(solver=cp.CLARABEL, tol_gap_abs=tol, tol_gap_rel=tol, tol_feas=tol)
        if problem.status == cp.OPTIMAL and theta.value is not None:
            break
    else:
        raise RuntimeError(f"RLLS: the conic solver ended with status {problem.status!r} (no optimum to report)")
    return np.maximum(np.asarray(theta.value, dtype=np.float64), -1.0)  # the bound, to solver precision


def rlls(
    source_probs: Tensor,
    source_labels: Tensor,
    target_probs: Tensor,
    *,
    alpha: float = 0.01,
    delta: float = 0.05,
    soft: bool = False,
) -> Tensor:
    """Regularized label-shift estimation (Azizzadenesheli et al., ICLR 2019, Sec. 3).

    ``theta = argmin_{theta >= -1} ||C theta - b||_2 + rho ||theta||_2`` with ``b = mu - C 1`` (target
    minus source mean prediction) and ``rho = alpha * Delta_C`` (:func:`rlls_radius` of the ``n``
    source examples), then ``w = 1 + theta`` (the paper's ``lambda = 1``). ``theta >= -1`` keeps
    ``w >= 0``, so nothing is clipped. The norms are not squared: for small ``rho`` the solution fits
    ``C theta = b`` exactly and equals unclipped BBSE; larger ``rho`` shrinks ``w`` towards 1.
    ``alpha = 0.01`` and ``delta = 0.05`` are the authors' code defaults.

    Args:
        source_probs: float tensor (n, K) of posteriors on labelled held-out source data.
        source_labels: integer tensor (n,) of their classes; every class must occur.
        target_probs: float tensor (m, K) of posteriors on unlabelled target data.
        alpha: multiplier of ``Delta_C``, finite and >= 0 (0: unregularized least-norm residual under
            ``w >= 0``, which differs from clipped BBSE when the bound is active).
        delta: failure probability of ``Delta_C``, in (0, 1).
        soft: soft confusion matrix and target means instead of hard argmax predictions.

    Returns:
        Float64 tensor (K,) of weights ``>= 0``, on the inputs' device.

    Raises:
        TypeError, ValueError: as :func:`bbse`, and ``alpha``/``delta`` out of range.
        RuntimeError: the solver did not reach the optimum (a wrong ``w`` is worse).
        ImportError: cvxpy is missing (``pip install 'iwlab[label_shift]'``) and the optimum is not
            one of the two closed-form cases.

    Example:
        >>> p = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
        >>> rlls(p, torch.tensor([0, 1]), torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.1, 0.9], [0.2, 0.8]]))
        tensor([0.5000, 1.5000], dtype=torch.float64)
    """
    _check_flag(soft, "soft")
    alpha = check_real(alpha, "alpha")
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be finite and >= 0, got {alpha!r}")
    C, mu = _system(source_probs, source_labels, target_probs, soft)
    n = source_probs.shape[0]
    rho = alpha * rlls_radius(n, C.shape[0], delta)
    Cn = C.cpu().numpy()
    theta = _rlls_program(Cn, mu.cpu().numpy() - Cn.sum(axis=1), rho)
    return torch.from_numpy(1.0 + theta).to(C.device)


def bootstrap_ci(
    estimator: Callable[[Tensor, Tensor, Tensor], Tensor],
    source_probs: Tensor,
    source_labels: Tensor,
    target_probs: Tensor,
    *,
    n_boot: int = 200,
    level: float = 0.95,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Percentile bootstrap interval of ``estimator``'s weights (Efron's percentile method).

    Each replicate resamples the held-out source set (probabilities with their labels) and the target
    set independently, with replacement, at their own sizes, and re-runs the estimator.

    Args:
        estimator: ``estimator(source_probs, source_labels, target_probs) -> (K,)``, e.g. :func:`bbse`,
            ``functools.partial(rlls, alpha=0.1)`` or ``lambda sp, sl, tp: mlls(sp, tp)``.
        source_probs: float tensor (n, K); source_labels: integer tensor (n,); target_probs: (m, K).
        n_boot: number of replicates, >= 2.
        level: coverage of the central interval, in (0, 1).
        generator: the ``torch.Generator`` the resampling indices are drawn from (CPU).

    Returns:
        ``(low, high)``: float64 tensors (K,), the ``(1 - level)/2`` and ``(1 + level)/2`` quantiles.

    Raises:
        TypeError, ValueError: bad inputs, ``n_boot``/``level`` out of range, a generator that is not
            a ``torch.Generator``; ValueError naming the replicate when the estimator refuses one
            (e.g. a resample with a class missing).

    Example:
        >>> p = torch.tensor([[0.9, 0.1], [0.1, 0.9]] * 20)
        >>> lo, hi = bootstrap_ci(bbse, p, torch.tensor([0, 1] * 20), p, n_boot=20, generator=torch.Generator().manual_seed(0))
        >>> bool((lo <= hi).all())
        True
    """  # noqa: E501
    sp = check_probs(source_probs, "source_probs")
    k = sp.shape[1]
    tp = check_probs(target_probs, "target_probs", n_classes=k)
    y = check_class_labels(source_labels, "source_labels", n=sp.shape[0], n_classes=k)
    n_boot = check_int(n_boot, "n_boot", minimum=2)
    level = check_real(level, "level")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator; got {type(generator).__name__}")
    draws = []
    for b in range(n_boot):
        i = torch.randint(sp.shape[0], (sp.shape[0],), generator=generator).to(sp.device)
        j = torch.randint(tp.shape[0], (tp.shape[0],), generator=generator).to(tp.device)
        try:
            w = estimator(sp[i], y[i], tp[j])
        except ValueError as e:
            raise ValueError(f"bootstrap replicate {b} was refused by the estimator: {e}") from e
        if not isinstance(w, Tensor) or tuple(w.shape) != (k,):
            raise ValueError(f"estimator must return a tensor of shape ({k},); got {getattr(w, 'shape', w)}")
        draws.append(w.to(torch.float64))
    W = torch.stack(draws)
    tail = (1 - level) / 2
    q = torch.tensor([tail, 1 - tail], dtype=torch.float64, device=W.device)
    low, high = torch.quantile(W, q, dim=0)
    return low, high
