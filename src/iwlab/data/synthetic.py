"""Seeded two-dimensional toy datasets (Byrd & Lipton 2019, section 3 "Synthetic Data").

Every generator returns ``(X, y)`` with ``X`` a ``float32`` tensor of shape ``(N, 2)`` and ``y`` an
``int64`` tensor of shape ``(N,)`` with values in ``{0, 1}``. Class 1 are the *positives*, class 0
the *negatives*; the first ``n_per_class`` rows are the positives, the last ``n_per_class`` rows the
negatives (``N = 2 * n_per_class``). All randomness comes from a ``torch.Generator`` seeded with
``seed`` on the CPU, so the same arguments always give bit-identical data.

Datasets and their parameters
-----------------------------
``"separable"`` -- :func:`make_separable`, constants in :data:`SEPARABLE_PARAMS`.
    The paper: "To form the positive examples, we sample 512 points from a 2D truncated normal
    distribution. To generate negative examples, we rotate and translate the positive examples."

    * ``z ~ N(0, diag(std**2))`` truncated to ``|z_k| <= truncation * std_k`` per coordinate
      (exact inverse-CDF sampling), with ``std = (0.5, 0.2)`` (elongated along x) and
      ``truncation = 2``;
    * positives ``x+ = mean + z`` with ``mean = (0.0, 0.75)``;
    * negatives ``x- = R(angle) x+ + translation``: rotation about the origin by
      ``angle = pi / 6`` (30 degrees) followed by ``translation = (0.5, -1.25)``.

    Separability holds *by construction*, for every seed: the positives lie in the box
    ``[-1, 1] x [0.35, 1.15]`` and the negatives in the rotated copy of that box, whose highest
    point is at ``y = 0.246``, so the horizontal line ``y = 0.298`` separates the two boxes with
    a gap of at least 0.104 (a guaranteed geometric margin >= 0.052). Typical samples have an
    empirical gap of roughly 0.3-0.5, since the box corners are rarely hit. The data lie in
    ``[-0.95, 1.2] x [-1.46, 1.15]``. With 512 points per class, the paper's learning rate
    ``1 / sigma_max(X)`` (:func:`sigma_max_lr`) is about 0.043 (paper: about 0.045).

``"moons"`` -- :func:`make_moons` (``noise = 0.2``, :data:`MOONS_PARAMS`).
    Two interleaving half circles as in ``sklearn.datasets.make_moons``: the *negatives* lie on
    the upper half circle ``(cos t, sin t)``, the *positives* on ``(1 - cos t, 0.5 - sin t)``,
    ``t`` evenly spaced in ``[0, pi]``, plus isotropic Gaussian noise of standard deviation
    ``noise``; everything is shifted by ``-(0.5, 0.25)`` so the dataset is centred at the origin.
    Not linearly separable (even at ``noise = 0``).

``"gaussians"`` -- :func:`make_gaussians` (``distance = 2.0``, ``std = 1.0``, :data:`GAUSSIANS_PARAMS`).
    Two isotropic Gaussians with standard deviation ``std``: positives centred at
    ``(+distance / 2, 0)``, negatives at ``(-distance / 2, 0)``. They overlap heavily (the Bayes
    error at the defaults is ``Phi(-1) ~ 16%``), so the data are not linearly separable.

Example
-------
>>> X, y = make_dataset("separable", n_per_class=512, seed=0)
>>> X.shape, X.dtype, y.dtype
(torch.Size([1024, 2]), torch.float32, torch.int64)
>>> round(sigma_max_lr(X), 3)
0.043
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "DATASETS",
    "GAUSSIANS_PARAMS",
    "MOONS_PARAMS",
    "SEPARABLE_PARAMS",
    "make_dataset",
    "make_gaussians",
    "make_moons",
    "make_separable",
    "plane_grid",
    "separable_support_corners",
    "sigma_max_lr",
]

SEPARABLE_PARAMS: dict[str, Any] = {
    "mean": (0.0, 0.75),  # centre of the positives (before truncation the normal's mean)
    "std": (0.5, 0.2),  # per-axis standard deviation of the positives (elongated along x)
    "truncation": 2.0,  # each coordinate truncated at +- truncation * std
    "angle": math.pi / 6,  # rotation (radians, counter-clockwise about the origin) positives -> negatives
    "translation": (0.5, -1.25),  # translation applied after the rotation
}
"""Constants of :func:`make_separable` (see the module docstring for the geometry)."""

MOONS_PARAMS: dict[str, Any] = {
    "noise": 0.2,  # default standard deviation of the Gaussian noise
    "shift": (0.5, 0.25),  # subtracted from every point, so the set is centred at the origin
}
"""Constants of :func:`make_moons` (``noise`` is its default)."""

GAUSSIANS_PARAMS: dict[str, Any] = {"distance": 2.0, "std": 1.0}
"""Defaults of :func:`make_gaussians`: distance between the means, per-coordinate standard deviation."""


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(int(seed))


def _labels(n_per_class: int) -> Tensor:
    return torch.cat([torch.ones(n_per_class, dtype=torch.int64), torch.zeros(n_per_class, dtype=torch.int64)])


def _check_n(n_per_class: int) -> None:
    if int(n_per_class) < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")


def _rotation(angle: float) -> Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


def separable_support_corners() -> tuple[Tensor, Tensor]:
    """Corners of the boxes that contain the ``"separable"`` classes, for every seed.

    The positives lie in the axis-aligned box ``mean + [-t*std, t*std]`` and the negatives in its
    rotated and translated copy (``t`` the truncation). Two convex sets are linearly separable iff
    their corner sets are, so these 8 points certify the separability of :func:`make_separable`.

    Returns:
        ``(X, y)`` as from the generators: ``float32 (8, 2)`` and ``int64 (8,)``, 4 positive
        corners, then 4 negative corners.

    Example:
        >>> Xc, yc = separable_support_corners()
        >>> Xc.shape, yc.tolist()
        (torch.Size([8, 2]), [1, 1, 1, 1, 0, 0, 0, 0])
    """
    p = SEPARABLE_PARAMS
    half = p["truncation"] * torch.tensor(p["std"], dtype=torch.float64)
    signs = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)
    pos = torch.tensor(p["mean"], dtype=torch.float64) + signs * half
    neg = pos @ _rotation(p["angle"]).T + torch.tensor(p["translation"], dtype=torch.float64)
    return torch.cat([pos, neg]).to(torch.float32), _labels(4)


def make_separable(n_per_class: int = 512, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Linearly separable data: truncated-normal positives, rotated and translated negatives.

    Follows Byrd & Lipton (2019, section 3); the constants are in :data:`SEPARABLE_PARAMS`.
    Negative ``i`` is the image of positive ``i`` under the rotation and translation.

    Args:
        n_per_class: number of points per class (the paper uses 512).
        seed: seed of the ``torch.Generator``.

    Returns:
        ``X`` ``float32 (2n, 2)`` and ``y`` ``int64 (2n,)``; positives (1) first, then
        negatives (0).

    Raises:
        ValueError: ``n_per_class < 1``.

    Example:
        >>> X, y = make_separable(512, seed=0)
        >>> X.shape, int(y.sum())
        (torch.Size([1024, 2]), 512)
    """
    _check_n(n_per_class)
    p = SEPARABLE_PARAMS
    g = _generator(seed)
    normal = torch.distributions.Normal(0.0, 1.0)
    t = float(p["truncation"])
    lo, hi = (
        normal.cdf(torch.tensor(-t, dtype=torch.float64)),
        normal.cdf(torch.tensor(t, dtype=torch.float64)),
    )
    u = torch.rand(n_per_class, 2, generator=g, dtype=torch.float64)
    z = torch.special.ndtri(lo + u * (hi - lo)).clamp(-t, t)  # exact inverse-CDF sampling
    pos = torch.tensor(p["mean"], dtype=torch.float64) + z * torch.tensor(p["std"], dtype=torch.float64)
    neg = pos @ _rotation(p["angle"]).T + torch.tensor(p["translation"], dtype=torch.float64)
    return torch.cat([pos, neg]).to(torch.float32), _labels(n_per_class)


def make_moons(n_per_class: int = 512, noise: float = MOONS_PARAMS["noise"], seed: int = 0) -> tuple[Tensor, Tensor]:
    """Two interleaving half circles (like ``sklearn.datasets.make_moons``), centred at the origin.

    Byrd & Lipton (2019), appendix Fig. A.1 (a non-separable 2-D set); the geometry is sklearn's.

    Positives (label 1) are the lower moon ``(1 - cos t, 0.5 - sin t)``, negatives (label 0) the
    upper moon ``(cos t, sin t)``, ``t`` evenly spaced in ``[0, pi]``; Gaussian noise of standard
    deviation ``noise`` is added and the whole set is shifted by ``-(0.5, 0.25)``.

    Args:
        n_per_class: number of points per class.
        noise: standard deviation of the isotropic Gaussian noise.
        seed: seed of the ``torch.Generator``.

    Returns:
        ``X`` ``float32 (2n, 2)`` and ``y`` ``int64 (2n,)``; positives (1) first, then
        negatives (0).

    Raises:
        ValueError: ``n_per_class < 1``.

    Example:
        >>> X, y = make_moons(256, noise=0.2, seed=1)
        >>> X.shape
        torch.Size([512, 2])
    """
    _check_n(n_per_class)
    g = _generator(seed)
    t = torch.linspace(0.0, math.pi, n_per_class, dtype=torch.float64)
    upper = torch.stack([torch.cos(t), torch.sin(t)], dim=1)
    lower = torch.stack([1.0 - torch.cos(t), 0.5 - torch.sin(t)], dim=1)
    X = torch.cat([lower, upper]) - torch.tensor(MOONS_PARAMS["shift"], dtype=torch.float64)
    X = X + float(noise) * torch.randn(X.shape, generator=g, dtype=torch.float64)
    return X.to(torch.float32), _labels(n_per_class)


def make_gaussians(
    n_per_class: int = 512,
    distance: float = GAUSSIANS_PARAMS["distance"],
    std: float = GAUSSIANS_PARAMS["std"],
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Two overlapping isotropic Gaussians (not linearly separable); Byrd & Lipton (2019), Fig. A.2.

    Positives (label 1) are drawn from ``N((+distance/2, 0), std^2 I)``, negatives (label 0) from
    ``N((-distance/2, 0), std^2 I)``.

    Args:
        n_per_class: number of points per class.
        distance: distance between the two means.
        std: standard deviation of each coordinate.
        seed: seed of the ``torch.Generator``.

    Returns:
        ``X`` ``float32 (2n, 2)`` and ``y`` ``int64 (2n,)``; positives (1) first, then
        negatives (0).

    Raises:
        ValueError: ``n_per_class < 1``.

    Example:
        >>> X, y = make_gaussians(100, distance=2.0, std=1.0, seed=0)
        >>> X.shape, y[:100].unique().tolist(), y[100:].unique().tolist()
        (torch.Size([200, 2]), [1], [0])
    """
    _check_n(n_per_class)
    g = _generator(seed)
    z = float(std) * torch.randn(2 * n_per_class, 2, generator=g, dtype=torch.float64)
    shift = torch.zeros(2 * n_per_class, 2, dtype=torch.float64)
    shift[:n_per_class, 0] = distance / 2
    shift[n_per_class:, 0] = -distance / 2
    return (z + shift).to(torch.float32), _labels(n_per_class)


DATASETS: dict[str, Callable[..., tuple[Tensor, Tensor]]] = {
    "separable": make_separable,
    "moons": make_moons,
    "gaussians": make_gaussians,
}
"""Name -> generator; every generator accepts ``n_per_class`` and ``seed`` keywords."""


def make_dataset(name: str, n_per_class: int = 512, seed: int = 0, **kwargs: Any) -> tuple[Tensor, Tensor]:
    """Build a dataset of :data:`DATASETS` by name.

    Args:
        name: one of ``"separable"``, ``"moons"``, ``"gaussians"``.
        n_per_class: number of points per class.
        seed: seed of the ``torch.Generator``.
        **kwargs: extra generator arguments (e.g. ``noise`` for moons, ``distance`` and ``std``
            for gaussians).

    Returns:
        ``X`` ``float32 (2 n_per_class, 2)`` and ``y`` ``int64 (2 n_per_class,)``, as the generator.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names), or ``n_per_class < 1``.

    Example:
        >>> X, y = make_dataset("moons", n_per_class=64, seed=3)
        >>> X.shape
        torch.Size([128, 2])
    """
    try:
        fn = DATASETS[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(k) for k in DATASETS)
        raise ValueError(f"unknown dataset {name!r}; valid names: {valid}") from None
    return fn(n_per_class=n_per_class, seed=seed, **kwargs)


def sigma_max_lr(X: Tensor) -> float:
    """The paper's learning rate ``1 / sigma_max(X)`` (``sigma_max``: largest singular value).

    Byrd & Lipton (following Soudry et al. 2018) train with this fixed learning rate; it was
    ``~0.045`` on their data (about 0.043 on :func:`make_separable` with 512 points per class).

    Args:
        X: data matrix of shape ``(N, d)`` (no bias column), any real dtype (computed in float64).

    Returns:
        The learning rate, a Python float (``inf`` for an all-zero ``X``).

    Raises:
        RuntimeError: ``X`` is not 2-d (from :func:`torch.linalg.matrix_norm`).

    Example:
        >>> X = torch.tensor([[3.0, 0.0], [0.0, 4.0]])
        >>> sigma_max_lr(X)
        0.25
    """
    s = torch.linalg.matrix_norm(X.detach().to(torch.float64), ord=2)
    return float(1.0 / s)


def plane_grid(X: Tensor, size: int) -> tuple[Tensor, tuple[float, float, float, float]]:
    """A ``size x size`` grid over the bounding box of 2-D data plus a margin of 25% per side.

    The decision surfaces and the fraction of the plane predicted as a class (Byrd & Lipton 2019,
    Figs. 1-3: "off-manifold" points) are evaluated on it. Row-major in ``y``: point ``i * size + j``
    is ``(xs[j], ys[i])`` (``meshgrid(..., indexing="xy")``), so ``values.reshape(size, size)``
    plots with ``contourf(xs, ys, ...)``.

    Args:
        X: data ``(N, 2)``, ``N >= 1``, float32.
        size: points per axis, >= 2.

    Returns:
        ``(points, box)``: ``points`` float32 ``(size * size, 2)``, ``box = (x0, x1, y0, y1)`` as
        Python floats (the grid's extent, data units).

    Raises:
        ValueError: ``X`` is not ``(N, 2)`` with ``N >= 1``, or ``size < 2``.

    Example:
        >>> g, box = plane_grid(torch.tensor([[0.0, 0.0], [1.0, 1.0]]), 3)
        >>> g.shape, box
        (torch.Size([9, 2]), (-0.25, 1.25, -0.25, 1.25))
    """
    if X.dim() != 2 or X.shape[0] < 1 or X.shape[1] != 2:
        raise ValueError(f"X must have shape (N, 2) with N >= 1, got {tuple(X.shape)}")
    if int(size) < 2:
        raise ValueError(f"size must be >= 2, got {size}")
    lo, hi = X.min(0).values, X.max(0).values
    pad = 0.25 * (hi - lo)
    x0, y0 = (lo - pad).tolist()
    x1, y1 = (hi + pad).tolist()
    gx, gy = torch.meshgrid(torch.linspace(x0, x1, size), torch.linspace(y0, y1, size), indexing="xy")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], 1), (x0, x1, y0, y1)
