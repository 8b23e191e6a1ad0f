"""Implicit-bias reference quantities (Soudry et al. 2018; Lyu & Li 2020; Xu, Ye & Ruan 2021).

On linearly separable data, gradient descent on an exponential-tailed loss (logistic, exponential),
with or without fixed positive importance weights, converges *in direction* to the hard-margin
SVM; the weights only enter a bounded offset whose effect decays like ``1 / log t``. This package
provides the reference quantities to measure that:

* :mod:`~iwlab.implicit_bias.svm`:

  * :func:`hard_margin_svm` -- the exact hard-margin SVM (bias ``"none"``, ``"homogeneous"`` or
    ``"free"``) with its dual coefficients, support and margins (:class:`SVMSolution`);
  * :func:`max_margin_separator` -- ``(w, b)`` of the hard-margin SVM (``"homogeneous"`` or ``"free"``);
  * :func:`max_margin_direction` -- the homogeneous separator as one vector ``(w*, b*)``, the limit direction;

* :mod:`~iwlab.implicit_bias.offset`:

  * :func:`offset` -- the weight-dependent offset ``rho`` of ``theta(t) = theta_hat log t + rho + r(t)``
    (:class:`Offset`);
  * :func:`predicted_direction_error` -- the direction error that offset predicts at step ``t``;
  * :func:`asymptotic_constant` -- ``C = ||P_perp rho|| / ||theta_hat||``, the limit of ``dir_err log t``;

* :mod:`~iwlab.implicit_bias.homogeneous` (L-homogeneous networks, batched over models):

  * :func:`homogeneous_normalized_margin`, :func:`smoothed_margin`, :func:`parameter_norm`;

* :mod:`~iwlab.implicit_bias.regularized`: :func:`regularized_minimizer` -- the unique minimizer of the
  weighted logistic loss with L2 (P7: its direction depends on the weights, and tends to the SVM as the
  strength goes to 0);

* :mod:`~iwlab.implicit_bias.geometry`:

  * :func:`angle` -- angle between (batches of) vectors, accurate also for tiny angles;
  * :func:`normalized_margin` -- ``min_i s_i (w.x_i + b) / ||(w, b)||`` for (batches of) linear models;
  * :func:`linear_direction` -- the vector ``(w, b)`` to compare with the ``"homogeneous"`` separator.

Labels may be given in ``{0, 1}`` (``s_i = 2 y_i - 1``) or in ``{-1, +1}`` (``s_i = y_i``).

Example:
    >>> import torch
    >>> X = torch.tensor([[2.0, 0.0], [0.0, 1.0]]); y = torch.tensor([1, 0])
    >>> w, b = max_margin_separator(X, y)  # homogeneous: min ||(w, b)||
    >>> [round(v, 6) for v in w.tolist()], round(b, 6)
    ([0.666667, -0.666667], -0.333333)
"""

from iwlab.implicit_bias.geometry import angle, linear_direction, normalized_margin
from iwlab.implicit_bias.homogeneous import homogeneous_normalized_margin, parameter_norm, smoothed_margin
from iwlab.implicit_bias.offset import Offset, asymptotic_constant, offset, predicted_direction_error
from iwlab.implicit_bias.regularized import regularized_minimizer
from iwlab.implicit_bias.svm import (
    DATA_EXPONENT_RANGE,
    FREE_BIAS_SCALE,
    SVMSolution,
    hard_margin_svm,
    max_margin_direction,
    max_margin_separator,
)

__all__ = [
    "DATA_EXPONENT_RANGE",
    "FREE_BIAS_SCALE",
    "Offset",
    "SVMSolution",
    "angle",
    "asymptotic_constant",
    "hard_margin_svm",
    "homogeneous_normalized_margin",
    "linear_direction",
    "max_margin_direction",
    "max_margin_separator",
    "normalized_margin",
    "offset",
    "parameter_norm",
    "predicted_direction_error",
    "regularized_minimizer",
    "smoothed_margin",
]
