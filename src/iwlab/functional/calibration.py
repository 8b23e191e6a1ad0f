"""Calibration of a classifier's logits on held-out source data: temperature, vector and BCTS scaling.

MLLS (EM prior adaptation) assumes calibrated posteriors. Alexandari et al. (ICML 2020, "Maximum
likelihood with bias-corrected calibration is hard-to-beat at label shift adaptation", Sec. 3) fit,
by minimizing the negative log-likelihood (NLL) of held-out labelled source data,

- temperature scaling (TS, Guo et al. 2017): ``softmax(z / T)``;
- bias-corrected temperature scaling (BCTS): ``softmax(z / T + b)``, one bias per class;
- vector scaling (VS): ``softmax(a * z + b)``, one scale and one bias per class.

Each NLL is convex in the parameters used here (the inverse temperature ``1/T``, ``a`` and ``b``
enter the logits linearly and log-sum-exp is convex), so L-BFGS-B (scipy, float64, gradients by
torch autograd) finds the global minimum. Softmax is unchanged by adding one constant to every
bias, so biases are returned centred (mean 0): only their differences are identified.

Example:
    >>> z = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    >>> round(fit_temperature(z, torch.tensor([0, 1, 1, 0, 0])), 3)  # 3 of 5 right: p = 0.6 at the optimum
    4.933
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor

from iwlab.functional.checks import check_real
from iwlab.functional.prob_checks import check_class_labels, check_logits

__all__ = ["calibrated_probs", "fit_bcts", "fit_temperature", "fit_vector_scaling", "nll"]

_MIN_INV_TEMPERATURE = 1e-8
_GRAD_TOL = 1e-7


def nll(logits: Tensor, labels: Tensor) -> float:
    """Mean negative log-likelihood ``-(1/N) sum_n log softmax(z_n)[y_n]`` in float64.

    Args:
        logits: floating-point tensor (N, K), finite.
        labels: integer tensor (N,), values in ``[0, K)``.

    Returns:
        The NLL as a Python float (nats per example).

    Raises:
        TypeError, ValueError: bad ``logits`` or ``labels`` (see :func:`check_logits`).

    Example:
        >>> round(nll(torch.zeros(2, 4), torch.tensor([0, 3])), 6) == round(math.log(4), 6)
        True
    """
    z = check_logits(logits, "logits")
    y = check_class_labels(labels, "labels", n=z.shape[0], n_classes=z.shape[1])
    return float(torch.nn.functional.cross_entropy(z, y))


def _fit(logits: Tensor, labels: Tensor, x0: np.ndarray, transform: Callable, bounds: list, n_scale: int) -> np.ndarray:
    """Minimize the NLL of ``transform(z, params)`` with L-BFGS-B; raise unless it converged.

    The logits are divided by their largest magnitude first and the first ``n_scale`` parameters (the
    multiplicative ones) are scaled back after, so the fit and its convergence test do not depend on
    the logits' scale (``1e-7 * z`` gets ``1e7 ×`` the inverse temperature of ``z``).
    """
    z = check_logits(logits, "logits").cpu()
    y = check_class_labels(labels, "labels", n=z.shape[0], n_classes=z.shape[1]).cpu()
    s = float(z.abs().max())
    if s == 0.0:
        raise ValueError("logits are all zero: they carry no information about the labels to calibrate against")
    # every example's label strictly ranked first: the NLL keeps falling as the scale grows, no finite optimum
    top2 = z.topk(2, dim=1).values
    if bool(((z.gather(1, y[:, None])[:, 0] == top2[:, 0]) & (top2[:, 0] > top2[:, 1])).all()):
        raise ValueError(
            "held-out logits rank every label first (perfectly separated): the calibration NLL has no finite "
            "optimum; use more or harder held-out data"
        )
    z = z / s

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        params = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        with torch.enable_grad():  # callers may evaluate under torch.no_grad()
            loss = torch.nn.functional.cross_entropy(transform(z, params), y)
            (grad,) = torch.autograd.grad(loss, params)
        return float(loss.detach()), grad.numpy()

    res = minimize(objective, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10})  # fmt: skip
    value, grad = objective(res.x)
    free = np.array([lo is None or x > lo + 1e-12 for x, (lo, _) in zip(res.x, bounds, strict=True)])
    if not np.all(np.isfinite(res.x)) or np.max(np.abs(grad[free]), initial=0.0) > _GRAD_TOL:
        raise RuntimeError(
            f"calibration did not converge ({res.message}; max |gradient| {np.max(np.abs(grad)):.3g} after "
            f"{res.nit} L-BFGS-B iterations)"
        )
    if value < 1e-9:  # separable with a bias: the NLL only approaches 0 as the parameters grow
        raise ValueError(
            "held-out logits are separable by the calibration map (NLL -> 0): no finite optimum; use more or "
            "harder held-out data"
        )
    x = res.x.copy()
    x[:n_scale] = x[:n_scale] / s
    return x


def _check_inverse_temperature(beta: float, scale: float) -> float:
    # beta was fitted on logits / scale and divided by scale after: its bound sits at MIN / scale
    if beta * scale <= _MIN_INV_TEMPERATURE * 1.0001:
        raise ValueError(
            "logits carry no information about labels: the fitted temperature is infinite "
            f"(1/T hit its lower bound {_MIN_INV_TEMPERATURE:g})"
        )
    return 1.0 / beta


def fit_temperature(logits: Tensor, labels: Tensor) -> float:
    """Temperature ``T`` minimizing the NLL of ``softmax(logits / T)`` (temperature scaling).

    Alexandari et al. (ICML 2020), Sec. 3 (TS, from Guo et al. 2017), fitted on held-out source data.

    Args:
        logits: floating-point tensor (N, K), finite: held-out source logits.
        labels: integer tensor (N,) of their true classes in ``[0, K)``.

    Returns:
        ``T > 0`` as a Python float.

    Raises:
        TypeError, ValueError: bad ``logits`` or ``labels``; ValueError too when the optimum is
            ``T = inf`` (logits unrelated to labels).
        RuntimeError: L-BFGS-B did not converge (e.g. perfectly separated logits: ``T -> 0``).

    Example:
        >>> z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
        >>> fit_temperature(z, torch.tensor([0, 1, 0, 0])) > 0
        True
    """
    x = _fit(logits, labels, np.ones(1), lambda z, p: z * p[0], [(_MIN_INV_TEMPERATURE, None)], n_scale=1)
    return _check_inverse_temperature(float(x[0]), float(check_logits(logits, "logits").abs().max()))


def fit_vector_scaling(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Scale ``a`` (K,) and bias ``b`` (K,) minimizing the NLL of ``softmax(a * logits + b)``.

    Alexandari et al. (ICML 2020), Sec. 3 (vector scaling), fitted on held-out source data.

    Args:
        logits: floating-point tensor (N, K), finite: held-out source logits.
        labels: integer tensor (N,) of their true classes in ``[0, K)``.

    Returns:
        ``(scale, bias)``: float64 tensors (K,) on the CPU; ``bias`` centred (mean 0).

    Raises:
        TypeError, ValueError: bad ``logits`` or ``labels``.
        RuntimeError: L-BFGS-B did not converge (e.g. perfectly separated logits).

    Example:
        >>> z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
        >>> [t.shape for t in fit_vector_scaling(z, torch.tensor([0, 1, 0, 0]))]
        [torch.Size([2]), torch.Size([2])]
    """
    k = check_logits(logits, "logits").shape[1]
    x0 = np.concatenate([np.ones(k), np.zeros(k)])
    x = _fit(logits, labels, x0, lambda z, p: z * p[:k] + p[k:], [(None, None)] * (2 * k), n_scale=k)
    scale, bias = torch.from_numpy(x[:k].copy()), torch.from_numpy(x[k:].copy())
    return scale, bias - bias.mean()


def fit_bcts(logits: Tensor, labels: Tensor) -> tuple[float, Tensor]:
    """Temperature ``T`` and bias ``b`` (K,) minimizing the NLL of ``softmax(logits / T + b)``.

    Bias-corrected temperature scaling, Alexandari et al. (ICML 2020), Sec. 3, fitted on held-out
    source data; their recommended calibration before MLLS.

    Args:
        logits: floating-point tensor (N, K), finite: held-out source logits.
        labels: integer tensor (N,) of their true classes in ``[0, K)``.

    Returns:
        ``(T, bias)``: ``T > 0`` as a Python float, ``bias`` a float64 tensor (K,) on the CPU,
        centred (mean 0).

    Raises:
        TypeError, ValueError: bad ``logits`` or ``labels``; ValueError too when ``T = inf``.
        RuntimeError: L-BFGS-B did not converge (e.g. perfectly separated logits).

    Example:
        >>> z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
        >>> t, b = fit_bcts(z, torch.tensor([0, 1, 0, 0, 1]))
        >>> t > 0, b.shape
        (True, torch.Size([2]))
    """
    k = check_logits(logits, "logits").shape[1]
    x0 = np.concatenate([np.ones(1), np.zeros(k)])
    bounds = [(_MIN_INV_TEMPERATURE, None)] + [(None, None)] * k
    x = _fit(logits, labels, x0, lambda z, p: z * p[0] + p[1:], bounds, n_scale=1)
    bias = torch.from_numpy(x[1:].copy())
    scale = float(check_logits(logits, "logits").abs().max())
    return _check_inverse_temperature(float(x[0]), scale), bias - bias.mean()


def _check_vector(v: object, name: str, k: int, device: torch.device) -> Tensor:
    if not isinstance(v, Tensor) or not v.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor of shape ({k},); got {getattr(v, 'dtype', type(v))}")
    if tuple(v.shape) != (k,):
        raise ValueError(f"{name} must have shape ({k},) to match logits; got shape {tuple(v.shape)}")
    if not bool(torch.isfinite(v).all()):
        raise ValueError(f"{name} has a non-finite entry")
    return v.detach().to(device=device, dtype=torch.float64)


def calibrated_probs(
    logits: Tensor, *, temperature: float = 1.0, scale: Tensor | None = None, bias: Tensor | None = None
) -> Tensor:
    """Calibrated posteriors ``softmax(logits / T + b)``, or ``softmax(scale * logits + b)``.

    Applies what :func:`fit_temperature`, :func:`fit_bcts` or :func:`fit_vector_scaling` fitted
    (Alexandari et al., ICML 2020, Sec. 3).

    Args:
        logits: floating-point tensor (N, K), finite.
        temperature: ``T``, finite and > 0 (1 = unchanged); not together with ``scale``.
        scale: float tensor (K,) of per-class scales (vector scaling), or None.
        bias: float tensor (K,) of per-class biases, or None (0).

    Returns:
        Float64 tensor (N, K) on ``logits``' device, rows summing to 1.

    Raises:
        TypeError, ValueError: bad ``logits``, a non-positive or non-finite ``temperature``, both
            ``temperature != 1`` and ``scale``, ``scale``/``bias`` of the wrong shape, or calibrated
            logits that overflow float64.

    Example:
        >>> calibrated_probs(torch.tensor([[0.0, 0.0]]), bias=torch.tensor([0.0, math.log(3.0)]))
        tensor([[0.2500, 0.7500]], dtype=torch.float64)
    """
    z = check_logits(logits, "logits")
    t = check_real(temperature, "temperature")
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be finite and > 0, got {t!r}")
    k = z.shape[1]
    if scale is not None:
        if t != 1.0:
            raise ValueError(f"pass temperature or scale, not both (got temperature={t!r} and a scale)")
        z = z * _check_vector(scale, "scale", k, z.device)
    else:
        z = z / t
    if bias is not None:
        z = z + _check_vector(bias, "bias", k, z.device)
    if not bool(torch.isfinite(z).all()):  # softmax would turn inf into NaN rows
        raise ValueError(
            "calibrated logits overflow float64 (the temperature is too small, or scale/bias too large, "
            f"for these logits: largest |logit| {float(check_logits(logits, 'logits').abs().max()):g})"
        )
    return torch.softmax(z, dim=1)
