"""A label-shift problem with a known answer, for the tests: a Dirichlet feature model with exact posteriors.

x | y ~ Dirichlet(A[y]) on the simplex; a model with priors pi has the posterior
p(y | x) ∝ pi_y Dir(x; A[y]) computed by Bayes' rule in float64, so it IS calibrated. Independent of
iwlab: numpy and scipy only.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

A = np.array([[8.0, 2.0, 2.0], [2.0, 8.0, 2.0], [2.0, 2.0, 8.0]])  # ~96% accurate: C is not diagonal
SOURCE_PRIORS = np.array([0.5, 0.3, 0.2])
TARGET_PRIORS = np.array([0.2, 0.3, 0.5])
TRUE_W = TARGET_PRIORS / SOURCE_PRIORS  # [0.4, 1, 2.5]


def draw(rng: np.random.Generator, priors: np.ndarray, n: int, a: np.ndarray = A) -> tuple[np.ndarray, np.ndarray]:
    """n examples: labels y ~ priors (i.i.d.), features x | y ~ Dir(a[y])."""
    y = rng.choice(len(priors), size=n, p=priors)
    g = rng.standard_gamma(a[y])  # Dir(a) = normalized independent Gamma(a_i, 1) draws
    return g / g.sum(axis=1, keepdims=True), y


def log_joint(x: np.ndarray, priors: np.ndarray, a: np.ndarray = A) -> np.ndarray:
    """(N, K): log pi_y + log Dir(x; a[y])."""
    log_norm = gammaln(a.sum(axis=1)) - gammaln(a).sum(axis=1)
    return np.log(priors)[None, :] + log_norm[None, :] + np.log(x) @ (a - 1).T


def posteriors(x: np.ndarray, priors: np.ndarray, a: np.ndarray = A) -> np.ndarray:
    """(N, K) exact Bayes posteriors p(y | x) of the model with class priors ``priors``."""
    lj = log_joint(x, priors, a)
    lj -= lj.max(axis=1, keepdims=True)
    p = np.exp(lj)
    return p / p.sum(axis=1, keepdims=True)


def empirical_w(source_y: np.ndarray, target_y: np.ndarray, k: int = 3) -> np.ndarray:
    """Ratio of the drawn samples' label frequencies."""
    return (np.bincount(target_y, minlength=k) / len(target_y)) / (np.bincount(source_y, minlength=k) / len(source_y))
