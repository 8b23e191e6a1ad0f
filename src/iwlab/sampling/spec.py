"""A sampler spec (strategy + bias exponent k), its CLI spelling, and the sampler it builds.

The command line, the configs and the store spell a spec as ``uniform`` or ``STRATEGY_kK``
(``oracle_k0.5``, ``approx_k1``, ``pcg_k-1``): the scoring strategy and the exponent k of the loss
weights ``alpha = 1/(P p^k)`` (Katharopoulos & Fleuret 2017, eq. 11-12). :meth:`SamplerSpec.parse` is
the one place that reads that spelling; everything downstream holds the typed :class:`SamplerSpec`.

Example:
    >>> spec = SamplerSpec.parse("oracle_k0.5")
    >>> spec, spec.label, str(spec)
    (SamplerSpec(strategy='oracle', k=0.5), 'Oracle k=0.5', 'oracle_k0.5')
    >>> str(SamplerSpec())
    'uniform'
"""

from __future__ import annotations

import math
import re
import typing
from dataclasses import dataclass
from typing import Any, Literal

from torch.utils.data import Dataset

from iwlab.config import exact_text
from iwlab.sampling.approx import ApproxSampler
from iwlab.sampling.base import ImportanceSampler
from iwlab.sampling.strategies import OracleSampler, PerClassGaussianSampler, UniformSampler

__all__ = ["STRATEGIES", "SamplerSpec", "Strategy", "make_sampler"]

Strategy = Literal["uniform", "oracle", "approx", "pcg"]
STRATEGIES: tuple[str, ...] = typing.get_args(Strategy)
# the strategies that score examples (every one but uniform); they take k, presample and smoothing
SCORED: tuple[str, ...] = STRATEGIES[1:]

_SPELLING = re.compile(r"^(uniform|oracle|approx|pcg)(?:_k(-?\d+(?:\.\d+)?))?$")
_NAMES = {"uniform": "Uniform", "oracle": "Oracle", "approx": "Approx", "pcg": "PCG"}

_CLASSES: dict[str, type[ImportanceSampler]] = {
    "uniform": UniformSampler,
    "oracle": OracleSampler,
    "approx": ApproxSampler,
    "pcg": PerClassGaussianSampler,
}


@dataclass(frozen=True)
class SamplerSpec:
    """Which sampler, and how biased its weights are.

    Attributes:
        strategy: ``uniform``, ``oracle`` (scores = the model's losses), ``approx`` (scores = a learned
            loss predictor's) or ``pcg`` (per-class Gaussian: scores = the running mean loss of each class).
        k: the bias exponent of ``alpha = 1/(P p^k)``, finite and <= 1; 1 is unbiased (eq. 11), k < 1
            favours high-loss examples (eq. 12). Uniform sampling has weights 1, so its k is 1.

    Raises:
        ValueError: an unknown strategy, a k that is not finite or above 1, or uniform with k != 1.

    Example:
        >>> SamplerSpec("pcg", -1.0).label
        'PCG k=-1'
    """

    strategy: Strategy = "uniform"
    k: float = 1.0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown sampling strategy '{self.strategy}'; choose one of {', '.join(STRATEGIES)}")
        if isinstance(self.k, bool | str) or not isinstance(self.k, int | float):
            raise TypeError(f"sampler spec '{self.strategy}': k must be a number, got {self.k!r}")
        k = float(self.k)
        if not (math.isfinite(k) and k <= 1):
            raise ValueError(f"sampler spec '{self.strategy}': k must be finite and <= 1, got {self.k}")
        if self.strategy == "uniform" and k != 1:
            raise ValueError(f"uniform sampling has weights 1 (k = 1); got k={self.k}")
        object.__setattr__(self, "k", k)

    @classmethod
    def parse(cls, text: str) -> SamplerSpec:
        """The spec a CLI/config spelling names: ``"oracle_k0.5"`` -> ``SamplerSpec("oracle", 0.5)``.

        Args:
            text: ``uniform`` or ``STRATEGY_kK`` with STRATEGY in oracle/approx/pcg and K a decimal
                number <= 1 (``1``, ``0.5``, ``-1``).

        Returns:
            The :class:`SamplerSpec`.

        Raises:
            ValueError: any other spelling (a strategy without its k, uniform with a k, k > 1), with the
                valid form in the message.

        Example:
            >>> SamplerSpec.parse("approx_k0.75")
            SamplerSpec(strategy='approx', k=0.75)
            >>> SamplerSpec.parse("uniform").k
            1.0
        """
        m = _SPELLING.match(text)
        if not m or (m.group(1) == "uniform" and m.group(2) is not None):
            raise ValueError(f"bad method '{text}': use 'uniform' or STRATEGY_kK with STRATEGY in oracle/approx/pcg")
        if m.group(1) != "uniform" and m.group(2) is None:
            raise ValueError(f"method '{text}' needs its k, e.g. '{text}_k1' or '{text}_k0.5'")
        k = float(m.group(2)) if m.group(2) is not None else 1.0
        if k > 1:
            raise ValueError(f"method '{text}': k must be <= 1")
        return cls(m.group(1), k)  # type: ignore[arg-type]

    @property
    def k_text(self) -> str:
        """``k`` as written in spellings and labels: ``:g`` (``0.5``, ``1``), or every digit when ``:g``
        would round it (``0.1234567``), so two different specs never print alike.

        Example:
            >>> SamplerSpec("oracle", 0.5).k_text, SamplerSpec("oracle", 0.1234567).k_text
            ('0.5', '0.1234567')
        """
        return exact_text(self.k)

    def __str__(self) -> str:
        """The CLI spelling: ``uniform``, or ``STRATEGY_kK`` (``oracle_k0.5``); it parses back to this spec."""
        return self.strategy if self.strategy == "uniform" else f"{self.strategy}_k{self.k_text}"

    @property
    def label(self) -> str:
        """Table and legend heading: ``Uniform``, ``Oracle k=0.5``, ``PCG k=1``; distinct specs, distinct labels."""
        name = _NAMES[self.strategy]
        return name if self.strategy == "uniform" else f"{name} k={self.k_text}"


def make_sampler(strategy: str | SamplerSpec, dataset: Dataset, batch_size: int, **kwargs: Any) -> ImportanceSampler:
    """A sampler by strategy name (``uniform``, ``oracle``, ``approx``, ``pcg``) or by :class:`SamplerSpec`.

    A spec passes its ``k`` to the scored strategies (unless ``kwargs`` sets one); uniform takes no k.

    Args:
        strategy: the strategy name, or a spec.
        dataset: a map-style dataset of ``(x, y, ...)`` items.
        batch_size: B, examples per minibatch.
        **kwargs: the sampler's keyword arguments (:class:`~iwlab.sampling.base.ImportanceSampler`:
            ``k``, ``presample``, ``smoothing``, ``ema``, ``seed``, ``match_unbiased_sum``; class-aware ones
            also ``labels``, ``num_classes``; :class:`~iwlab.sampling.approx.ApproxSampler` also ``history``,
            ``hidden``, ``predictor_lr``, ``score_floor``, ``device``;
            :class:`~iwlab.sampling.strategies.PerClassGaussianSampler` ``class_decay``).

    Returns:
        The sampler.

    Raises:
        ValueError: an unknown strategy, or (from the sampler) an invalid argument.

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> make_sampler("oracle", TensorDataset(torch.zeros(10, 2)), 4, k=0.5).k
        0.5
        >>> make_sampler(SamplerSpec("oracle", 0.5), TensorDataset(torch.zeros(10, 2)), 4).k
        0.5
    """
    if isinstance(strategy, SamplerSpec):
        if strategy.strategy in SCORED:
            kwargs.setdefault("k", strategy.k)
        strategy = strategy.strategy
    if strategy not in _CLASSES:
        raise ValueError(f"unknown sampling method '{strategy}'; choose one of {', '.join(STRATEGIES)}")
    return _CLASSES[strategy](dataset, batch_size, **kwargs)
