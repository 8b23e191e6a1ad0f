"""Label-shifted samples: draw a target set whose class priors are Dirichlet or "tweak-one", and its true weights.

The standard shifts of the label-shift literature (Lipton et al., ICML 2018, Sec. 7; Azizzadenesheli
et al., ICLR 2019, Sec. 5): target priors ``q ~ Dirichlet(alpha * 1)`` (small ``alpha``: a few
classes dominate) or "tweak-one" (one class gets ``rho``, the others share ``1 - rho``). The
labels of an ``n``-example sample are drawn i.i.d. from ``q`` (multinomial counts), then each class's
examples are drawn *without replacement* from the pool; a class whose pool runs short raises (it
is never topped up by repetition, which would change the data's distribution silently).

All draws come from the ``torch.Generator`` passed in, so the same seed gives the same indices.

Example:
    >>> y = torch.tensor([0, 1, 2] * 100)
    >>> idx, q = tweak_one_shift(y, 2, 0.8, 50, torch.Generator().manual_seed(0))
    >>> q.tolist(), idx.shape
    ([0.09999999999999998, 0.09999999999999998, 0.8], torch.Size([50]))
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from iwlab.functional.checks import check_int, check_real
from iwlab.functional.prob_checks import check_probs

__all__ = [
    "dirichlet_shift",
    "empirical_weights",
    "label_frequencies",
    "sample_by_priors",
    "true_weights",
    "tweak_one_shift",
]


def _labels(labels: object, name: str, n_classes: int | None) -> tuple[Tensor, int]:
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.dtype == torch.bool or labels.is_floating_point():
        what = f"dtype {labels.dtype}, shape {tuple(labels.shape)}" if isinstance(labels, Tensor) else type(labels)
        raise TypeError(f"{name} must be a 1-D integer tensor of class labels; got {what}")
    y = labels.detach().to(torch.int64).cpu()
    if y.numel() == 0:
        raise ValueError(f"{name} is empty")
    if int(y.min()) < 0:
        raise ValueError(f"{name} has a negative label {int(y.min())}")
    k = int(y.max()) + 1 if n_classes is None else check_int(n_classes, "n_classes", minimum=2)
    if int(y.max()) >= k:
        raise ValueError(f"{name} has label {int(y.max())}, outside [0, n_classes={k})")
    if k < 2:
        raise ValueError(f"{name} has a single class; label shift needs K >= 2 (pass n_classes)")
    return y, k


def _priors(priors: object, name: str, k: int | None = None) -> Tensor:
    if not isinstance(priors, Tensor) or priors.dim() != 1:
        raise TypeError(f"{name} must be a 1-D floating-point tensor of class priors; got {type(priors).__name__}")
    if k is not None and priors.shape[0] != k:
        raise ValueError(f"{name} has {priors.shape[0]} classes but {k} are expected")
    return check_probs(priors.reshape(1, -1), name)[0].cpu()


def label_frequencies(labels: Tensor, n_classes: int) -> Tensor:
    """Fraction of ``labels`` in each class, float64 (K,).

    Args:
        labels: 1-D integer tensor of class labels in ``[0, n_classes)``, not empty.
        n_classes: K, >= 2.

    Returns:
        Float64 tensor (K,) on the CPU, summing to 1.

    Raises:
        TypeError, ValueError: not 1-D integer labels, empty, or a label out of range.

    Example:
        >>> label_frequencies(torch.tensor([0, 2, 2, 2]), 3)
        tensor([0.2500, 0.0000, 0.7500], dtype=torch.float64)
    """
    y, k = _labels(labels, "labels", n_classes)
    return torch.bincount(y, minlength=k).to(torch.float64) / y.numel()


def sample_by_priors(labels: Tensor, priors: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """Indices of ``n`` examples of ``labels`` whose labels are drawn i.i.d. from ``priors``.

    Class counts are multinomial(``n``, ``priors``); each class's examples are then drawn without
    replacement from its pool, and the result is shuffled.

    Args:
        labels: 1-D integer tensor (N,) of the pool's labels in ``[0, K)``, K = ``len(priors)``.
        priors: float tensor (K,) on the simplex (entries >= 0, summing to 1 within 1e-4).
        n: sample size, >= 1.
        generator: the ``torch.Generator`` (CPU) all draws come from.

    Returns:
        Int64 tensor (n,) of distinct indices into ``labels`` (CPU).

    Raises:
        TypeError, ValueError: bad ``labels``/``priors``/``n``; ValueError naming the class when
            its pool runs short (more examples drawn than the pool holds).

    Example:
        >>> y = torch.tensor([0, 0, 1, 1])
        >>> sample_by_priors(y, torch.tensor([1.0, 0.0]), 3, torch.Generator().manual_seed(0))
        Traceback (most recent call last):
        ...
        ValueError: class 0 runs short: 3 examples drawn for prior 1 (n=3) but labels has only 2; lower n
    """
    q = _priors(priors, "priors")
    y, k = _labels(labels, "labels", q.shape[0])
    n = check_int(n, "n", minimum=1)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator; got {type(generator).__name__}")
    counts = torch.bincount(torch.multinomial(q, n, replacement=True, generator=generator), minlength=k)
    pools = [(y == c).nonzero()[:, 0] for c in range(k)]
    for c in range(k):
        if int(counts[c]) > pools[c].numel():
            raise ValueError(
                f"class {c} runs short: {int(counts[c])} examples drawn for prior {float(q[c]):.3g} (n={n}) "
                f"but labels has only {pools[c].numel()}; lower n"
            )
    picked = [pools[c][torch.randperm(pools[c].numel(), generator=generator)[: int(counts[c])]] for c in range(k)]
    idx = torch.cat(picked)
    return idx[torch.randperm(n, generator=generator)]


def dirichlet_shift(
    labels: Tensor, alpha: float, n: int, generator: torch.Generator, *, n_classes: int | None = None
) -> tuple[Tensor, Tensor]:
    """Target priors ``q ~ Dirichlet(alpha * 1)`` and ``n`` indices drawn with them (:func:`sample_by_priors`).

    Lipton et al. (ICML 2018), Sec. 7 (Dirichlet shift). The Dirichlet draw uses numpy's
    ``Generator.dirichlet`` (exact for small ``alpha``) seeded from one draw of ``generator``.

    Args:
        labels: 1-D integer tensor (N,) of the pool's labels.
        alpha: concentration, finite and > 0 (0.1: nearly one class; 10: nearly uniform).
        n: sample size, >= 1.
        generator: the ``torch.Generator`` (CPU) all draws come from.
        n_classes: K; default ``labels.max() + 1``.

    Returns:
        ``(indices (n,) int64, priors (K,) float64)``: the drawn priors, not the sample's frequencies.

    Raises:
        TypeError, ValueError: bad arguments; a class's pool runs short (see :func:`sample_by_priors`).

    Example:
        >>> idx, q = dirichlet_shift(torch.arange(300) % 3, 10.0, 30, torch.Generator().manual_seed(0))
        >>> idx.shape, q.shape, round(float(q.sum()), 12)
        (torch.Size([30]), torch.Size([3]), 1.0)
    """
    _, k = _labels(labels, "labels", n_classes)
    alpha = check_real(alpha, "alpha")
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be finite and > 0, got {alpha!r}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator; got {type(generator).__name__}")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    q = torch.from_numpy(np.random.default_rng(seed).dirichlet(np.full(k, alpha)))
    q = q / q.sum()  # exact float64 renormalization of numpy's sample (changes it by ~1e-16)
    return sample_by_priors(labels, q, n, generator), q


def tweak_one_shift(
    labels: Tensor, cls: int, rho: float, n: int, generator: torch.Generator, *, n_classes: int | None = None
) -> tuple[Tensor, Tensor]:
    """Target priors with ``q[cls] = rho`` and ``(1 - rho) / (K - 1)`` elsewhere, and ``n`` indices drawn with them.

    Lipton et al. (ICML 2018), Sec. 7 ("tweak-one" shift).

    Args:
        labels: 1-D integer tensor (N,) of the pool's labels.
        cls: the tweaked class, in ``[0, K)``.
        rho: its prior, in [0, 1].
        n: sample size, >= 1.
        generator: the ``torch.Generator`` (CPU) all draws come from.
        n_classes: K; default ``labels.max() + 1``.

    Returns:
        ``(indices (n,) int64, priors (K,) float64)``.

    Raises:
        TypeError, ValueError: bad arguments; a class's pool runs short (see :func:`sample_by_priors`).

    Example:
        >>> _, q = tweak_one_shift(torch.arange(40) % 4, 0, 0.4, 10, torch.Generator().manual_seed(0))
        >>> q.tolist()
        [0.4, 0.19999999999999998, 0.19999999999999998, 0.19999999999999998]
    """
    _, k = _labels(labels, "labels", n_classes)
    cls = check_int(cls, "cls", minimum=0)
    if cls >= k:
        raise ValueError(f"cls must be in [0, {k}), got {cls}")
    rho = check_real(rho, "rho")
    if not 0 <= rho <= 1:
        raise ValueError(f"rho must be in [0, 1], got {rho!r}")
    q = torch.full((k,), (1 - rho) / (k - 1), dtype=torch.float64)
    q[cls] = rho
    return sample_by_priors(labels, q, n, generator), q


def true_weights(source_priors: Tensor, target_priors: Tensor) -> Tensor:
    """The label-shift weights ``w_y = q(y) / p(y)`` of known priors.

    Args:
        source_priors: float tensor (K,), entries > 0, summing to 1 (within 1e-4).
        target_priors: float tensor (K,), entries >= 0, summing to 1 (within 1e-4).

    Returns:
        Float64 tensor (K,) on the CPU.

    Raises:
        TypeError, ValueError: not priors, mismatched K, or a source prior of 0 (``w`` undefined).

    Example:
        >>> true_weights(torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.3, 0.5]))
        tensor([0.4000, 1.0000, 2.5000], dtype=torch.float64)
    """
    p = _priors(source_priors, "source_priors")
    q = _priors(target_priors, "target_priors", p.shape[0])
    if bool((p == 0).any()):
        raise ValueError(f"source_priors is 0 for class {int((p == 0).nonzero()[0, 0])}: its weight is undefined")
    w = q / p
    if not bool(torch.isfinite(w).all()):
        c = int((~torch.isfinite(w)).nonzero()[0, 0])
        raise ValueError(f"source_priors[{c}] = {float(p[c]):g} is too small: the weight q/p overflows float64")
    return w


def empirical_weights(source_labels: Tensor, target_labels: Tensor, n_classes: int) -> Tensor:
    """Ratio of two samples' label frequencies, ``freq_target(y) / freq_source(y)``.

    The weights an estimator could recover exactly from these samples (the acceptance test's reference).

    Args:
        source_labels: 1-D integer tensor of source labels in ``[0, n_classes)``; every class must occur.
        target_labels: 1-D integer tensor of target labels in ``[0, n_classes)``.
        n_classes: K, >= 2.

    Returns:
        Float64 tensor (K,) on the CPU.

    Raises:
        TypeError, ValueError: bad labels, or a class missing from ``source_labels``.

    Example:
        >>> empirical_weights(torch.tensor([0, 0, 1, 1]), torch.tensor([1, 1, 1, 0]), 2)
        tensor([0.5000, 1.5000], dtype=torch.float64)
    """
    ys, k = _labels(source_labels, "source_labels", n_classes)
    yt, _ = _labels(target_labels, "target_labels", k)
    ps = torch.bincount(ys, minlength=k).to(torch.float64) / ys.numel()
    qt = torch.bincount(yt, minlength=k).to(torch.float64) / yt.numel()
    if bool((ps == 0).any()):
        j = int((ps == 0).nonzero()[0, 0])
        raise ValueError(f"source_labels has no example of class {j}: its weight is undefined")
    return qt / ps
