"""Label-shift estimators and calibrators as objects: hyperparameters in ``__init__``, state ending in ``_``.

Thin classes over :mod:`iwlab.functional.label_shift` (imbalanced-learn / scikit-learn style):

- calibrators, fitted on held-out source logits and labels: :class:`TemperatureScaling`,
  :class:`VectorScaling`, :class:`BCTS` (``fit(logits, labels)`` / ``predict_proba(logits)``);
- weight estimators: :class:`BBSE` and :class:`RLLS` (``fit(source_probs, source_labels,
  target_probs)``) and :class:`MLLS` (``fit(source, source_labels, target)``: logits when it
  calibrates, probabilities when ``calibration=None``). Each sets ``weights_`` (K,) float64.

Example:
    >>> p = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
    >>> BBSE().fit(p, torch.tensor([0, 1]), torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.1, 0.9], [0.2, 0.8]])).weights_
    tensor([0.5000, 1.5000], dtype=torch.float64)
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from iwlab.functional.checks import check_choice, check_int, check_real
from iwlab.functional.label_shift import (
    adjust_priors,
    bbse,
    bootstrap_ci,
    calibrated_probs,
    condition_number,
    confusion_matrix,
    fit_bcts,
    fit_temperature,
    fit_vector_scaling,
    mlls,
    rlls,
    rlls_radius,
)
from iwlab.functional.prob_checks import check_class_labels, check_logits, check_probs

# the classes, and the functional core re-exported (importable from here too)
__all__ = [
    "BBSE",
    "BCTS",
    "MLLS",
    "RLLS",
    "TemperatureScaling",
    "VectorScaling",
    "adjust_priors",
    "bbse",
    "bootstrap_ci",
    "fit_bcts",
    "mlls",
    "rlls",
]

Calibration = Literal["bcts", "temperature", "vector"]
_CALIBRATIONS = ("bcts", "temperature", "vector")


def _fitted(obj: object, attr: str) -> None:
    if getattr(obj, attr, None) is None:
        raise RuntimeError(f"{type(obj).__name__} is not fitted; call fit() first")


def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


class TemperatureScaling:
    """Temperature scaling ``softmax(z / T)`` (Guo et al. 2017; Alexandari et al., ICML 2020, Sec. 3).

    Attributes:
        temperature_: the fitted ``T`` (float), None before ``fit``.

    Example:
        >>> z = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
        >>> round(TemperatureScaling().fit(z, torch.tensor([0, 1, 1, 0, 0])).temperature_, 3)
        4.933
    """

    def __init__(self) -> None:
        self.temperature_: float | None = None

    def fit(self, logits: Tensor, labels: Tensor) -> TemperatureScaling:
        """Minimize the NLL of held-out ``logits`` (N, K) float and ``labels`` (N,) int; see
        :func:`iwlab.functional.calibration.fit_temperature` (same errors). Returns ``self``."""
        self.temperature_ = fit_temperature(logits, labels)
        return self

    def predict_proba(self, logits: Tensor) -> Tensor:
        """Calibrated posteriors (N, K) float64 of ``logits`` (N, K); RuntimeError before ``fit``."""
        _fitted(self, "temperature_")
        return calibrated_probs(logits, temperature=self.temperature_)


class VectorScaling:
    """Vector scaling ``softmax(a * z + b)`` (Alexandari et al., ICML 2020, Sec. 3).

    Attributes:
        scale_, bias_: fitted float64 tensors (K,) (``bias_`` centred), None before ``fit``.

    Example:
        >>> z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
        >>> VectorScaling().fit(z, torch.tensor([0, 1, 0, 0])).predict_proba(z).shape
        torch.Size([4, 2])
    """

    def __init__(self) -> None:
        self.scale_: Tensor | None = None
        self.bias_: Tensor | None = None

    def fit(self, logits: Tensor, labels: Tensor) -> VectorScaling:
        """Minimize the NLL of held-out ``logits`` (N, K) float and ``labels`` (N,) int; see
        :func:`iwlab.functional.calibration.fit_vector_scaling` (same errors). Returns ``self``."""
        self.scale_, self.bias_ = fit_vector_scaling(logits, labels)
        return self

    def predict_proba(self, logits: Tensor) -> Tensor:
        """Calibrated posteriors (N, K) float64 of ``logits`` (N, K); RuntimeError before ``fit``."""
        _fitted(self, "scale_")
        return calibrated_probs(logits, scale=self.scale_, bias=self.bias_)


class BCTS:
    """Bias-corrected temperature scaling ``softmax(z / T + b)`` (Alexandari et al., ICML 2020, Sec. 3).

    Attributes:
        temperature_: the fitted ``T`` (float); bias_: float64 tensor (K,), centred. None before ``fit``.

    Example:
        >>> z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
        >>> BCTS().fit(z, torch.tensor([0, 1, 0, 0, 1])).bias_.shape
        torch.Size([2])
    """

    def __init__(self) -> None:
        self.temperature_: float | None = None
        self.bias_: Tensor | None = None

    def fit(self, logits: Tensor, labels: Tensor) -> BCTS:
        """Minimize the NLL of held-out ``logits`` (N, K) float and ``labels`` (N,) int; see
        :func:`iwlab.functional.calibration.fit_bcts` (same errors). Returns ``self``."""
        self.temperature_, self.bias_ = fit_bcts(logits, labels)
        return self

    def predict_proba(self, logits: Tensor) -> Tensor:
        """Calibrated posteriors (N, K) float64 of ``logits`` (N, K); RuntimeError before ``fit``."""
        _fitted(self, "temperature_")
        return calibrated_probs(logits, temperature=self.temperature_, bias=self.bias_)


class BBSE:
    """Black-box shift estimation (Lipton et al., ICML 2018, Sec. 4): ``w = max(C^{-1} mu, 0)``.

    Args:
        soft: soft confusion matrix and target means (posteriors) instead of hard argmax predictions.

    Attributes:
        weights_: float64 tensor (K,); confusion_: the (K, K) confusion matrix ``C``;
        condition_number_: its 2-norm condition number (float). None before ``fit``.

    Example:
        >>> p = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
        >>> round(BBSE(soft=True).fit(p, torch.tensor([0, 1]), p).condition_number_, 6)
        1.25
    """

    def __init__(self, soft: bool = False) -> None:
        self.soft = _check_bool(soft, "soft")
        self.weights_: Tensor | None = None
        self.confusion_: Tensor | None = None
        self.condition_number_: float | None = None

    def fit(self, source_probs: Tensor, source_labels: Tensor, target_probs: Tensor) -> BBSE:
        """Estimate ``w`` from held-out source posteriors (n, K) float, their labels (n,) int and
        target posteriors (m, K) float; see :func:`iwlab.functional.label_shift.bbse` (same errors).
        Returns ``self``."""
        self.weights_ = self.confusion_ = self.condition_number_ = None  # a failed re-fit keeps nothing stale
        self.weights_ = bbse(source_probs, source_labels, target_probs, soft=self.soft)
        self.confusion_ = confusion_matrix(source_probs, source_labels, soft=self.soft)
        self.condition_number_ = condition_number(self.confusion_)
        return self


class RLLS:
    """Regularized label-shift estimation (Azizzadenesheli et al., ICLR 2019, Sec. 3).

    Args:
        alpha: multiplier of the regularization radius ``Delta_C``, finite and >= 0.
        delta: failure probability of ``Delta_C``, in (0, 1).
        soft: soft confusion matrix and target means instead of hard argmax predictions.

    Attributes:
        weights_: float64 tensor (K,); confusion_: ``C`` (K, K); condition_number_: float;
        rho_: the regularization weight ``alpha * Delta_C`` used (float). None before ``fit``.

    Example:
        >>> p = torch.tensor([[0.9, 0.1], [0.1, 0.9]] * 50)
        >>> RLLS(alpha=1e3).fit(p, torch.tensor([0, 1] * 50), p[:3]).weights_  # huge rho: no shift
        tensor([1., 1.], dtype=torch.float64)
    """

    def __init__(self, alpha: float = 0.01, delta: float = 0.05, soft: bool = False) -> None:
        rlls_radius(1, 2, delta)  # checks delta
        if not (math.isfinite(check_real(alpha, "alpha")) and alpha >= 0):
            raise ValueError(f"alpha must be finite and >= 0, got {alpha!r}")
        self.alpha = alpha
        self.delta = delta
        self.soft = _check_bool(soft, "soft")
        self.weights_: Tensor | None = None
        self.confusion_: Tensor | None = None
        self.condition_number_: float | None = None
        self.rho_: float | None = None

    def fit(self, source_probs: Tensor, source_labels: Tensor, target_probs: Tensor) -> RLLS:
        """Estimate ``w`` from held-out source posteriors (n, K) float, their labels (n,) int and
        target posteriors (m, K) float; see :func:`iwlab.functional.label_shift.rlls` (same errors).
        Returns ``self``."""
        self.weights_ = self.confusion_ = self.condition_number_ = self.rho_ = None  # nothing stale on failure
        self.weights_ = rlls(
            source_probs, source_labels, target_probs, alpha=self.alpha, delta=self.delta, soft=self.soft
        )
        self.confusion_ = confusion_matrix(source_probs, source_labels, soft=self.soft)
        self.condition_number_ = condition_number(self.confusion_)
        self.rho_ = float(self.alpha) * rlls_radius(source_probs.shape[0], source_probs.shape[1], self.delta)
        return self


class MLLS:
    """EM prior adaptation (Saerens et al. 2002) on calibrated posteriors (Alexandari et al., ICML 2020).

    ``fit(source, source_labels, target)``: with ``calibration`` set, ``source`` and ``target`` are
    logits: the calibrator is fitted on ``(source, source_labels)`` (held-out source data) and
    applied to both; with ``calibration=None`` they are already probabilities. The source priors are
    the mean calibrated source prediction (``source_priors="predictions"``, the calibrated model's
    own prior) or the label frequencies of ``source_labels`` (``"labels"``).

    Args:
        calibration: ``"bcts"`` (the default, Alexandari et al.'s recommendation), ``"temperature"``,
            ``"vector"`` or None.
        tol: EM tolerance on ``max |Δw|``, finite and > 0.
        max_iter: most EM steps, >= 1.
        source_priors: ``"predictions"`` or ``"labels"``.

    Attributes:
        weights_: float64 tensor (K,); source_priors_, target_priors_ (``w * p``): float64 (K,);
        n_iter_: EM steps taken (int); calibrator_: the fitted :class:`BCTS`,
        :class:`TemperatureScaling` or :class:`VectorScaling` (None without calibration).

    Example:
        >>> z = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
        >>> m = MLLS().fit(z, torch.tensor([0, 1, 0, 1, 1, 1]), z[1:])
        >>> m.weights_.shape, type(m.calibrator_).__name__
        (torch.Size([2]), 'BCTS')
    """

    def __init__(
        self,
        calibration: Calibration | None = "bcts",
        tol: float = 1e-6,
        max_iter: int = 100,
        source_priors: Literal["predictions", "labels"] = "predictions",
    ) -> None:
        if calibration is not None:
            check_choice(calibration, "calibration", _CALIBRATIONS)
        check_choice(source_priors, "source_priors", ("predictions", "labels"))
        if not (math.isfinite(check_real(tol, "tol")) and tol > 0):
            raise ValueError(f"tol must be finite and > 0, got {tol!r}")
        check_int(max_iter, "max_iter", minimum=1)
        self.calibration = calibration
        self.tol = tol
        self.max_iter = max_iter
        self.source_priors = source_priors
        self.weights_: Tensor | None = None
        self.source_priors_: Tensor | None = None
        self.target_priors_: Tensor | None = None
        self.n_iter_: int | None = None
        self.calibrator_: TemperatureScaling | VectorScaling | BCTS | None = None

    def _calibrator(self) -> TemperatureScaling | VectorScaling | BCTS:
        return {"bcts": BCTS, "temperature": TemperatureScaling, "vector": VectorScaling}[self.calibration]()

    def fit(self, source: Tensor, source_labels: Tensor, target: Tensor) -> MLLS:
        """Estimate ``w`` by EM.

        Args:
            source: held-out source logits (n, K) float (probabilities with ``calibration=None``).
            source_labels: their classes, integer tensor (n,).
            target: unlabelled target logits (m, K) float (probabilities with ``calibration=None``).

        Returns:
            ``self``.

        Raises:
            TypeError, ValueError: bad inputs (probabilities passed where logits are expected
                are accepted as logits: pass ``calibration=None`` for probabilities), mismatched K,
                a source prior of 0; RuntimeError: calibration or EM did not converge.
        """
        self.weights_ = None  # a failed re-fit must not leave the previous estimate in place
        if self.calibration is None:
            sp = check_probs(source, "source")
            tp = check_probs(target, "target", n_classes=sp.shape[1])
            self.calibrator_ = None
        else:
            z = check_logits(source, "source")
            check_logits(target, "target", n_classes=z.shape[1])
            for name, v in (("source", source), ("target", target)):
                # rows of probabilities fitted as logits give a biased estimate with no error: refuse them
                if bool((v >= 0).all() and (v <= 1).all()) and bool(((v.double().sum(1) - 1).abs() < 1e-6).all()):
                    raise ValueError(
                        f"{name} looks like probabilities (rows in [0, 1] summing to 1) but calibration="
                        f"{self.calibration!r} expects logits: pass logits, or calibration=None for probabilities"
                    )
            check_class_labels(source_labels, "source_labels", n=z.shape[0], n_classes=z.shape[1])
            self.calibrator_ = self._calibrator().fit(source, source_labels)
            sp, tp = self.calibrator_.predict_proba(source), self.calibrator_.predict_proba(target)
        y = check_class_labels(source_labels, "source_labels", n=sp.shape[0], n_classes=sp.shape[1])
        absent = sorted(set(range(sp.shape[1])) - set(torch.unique(y).tolist()))
        if absent:  # EM would give such a class a weight of ~1e9 from a near-zero source prior
            raise ValueError(
                f"source_labels has no example of class {absent[0]}: its weight is not identifiable from this source"
            )
        if self.source_priors == "labels":
            p = torch.bincount(y, minlength=sp.shape[1]).to(torch.float64) / y.numel()
        else:
            p = sp.mean(dim=0)
        self.source_priors_ = p.to(tp.device)
        self.weights_, self.n_iter_ = mlls(
            sp, tp, source_priors=self.source_priors_, tol=self.tol, max_iter=self.max_iter, return_n_iter=True
        )
        self.target_priors_ = self.weights_ * self.source_priors_
        return self
