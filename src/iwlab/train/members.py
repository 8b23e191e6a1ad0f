"""What an ensemble trains and records: its members' settings and the metric history."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Member:
    """One model of the ensemble: its seed, importance weights and optimizer settings.

    ``class_weight[c]`` multiplies the loss of every example of class ``c``; ``labels`` travel with
    the results (e.g. ``{"weight": 0.25, "model": "mlp"}``). ``weight_decay`` is the coupled decay of
    ``torch.optim.SGD(weight_decay=...)``: the gradient gains ``weight_decay * p``. Keras' ``l2(lam)``
    penalty ``lam * ||p||^2`` (Byrd & Lipton's L2) equals ``weight_decay = 2 * lam``.

    ``loss`` is the member's own loss (see :mod:`iwlab.train.member_losses`): ``"ce"`` (cross-entropy;
    the logistic loss for a binary model), ``"exponential"`` (``exp(-s z)``, binary models) or
    ``"focal"``, ``"poly"``, ``"ldam"``, ``"logit_adjusted"`` or ``"vs"``, with their keywords in ``loss_kwargs``
    (:data:`iwlab.train.member_losses.MEMBER_LOSSES`).

    ``deferred_class_weight=(E, weights)`` is deferred re-weighting (DRW; Cao et al. 2019, Sec. 3.3 and Alg. 1):
    from epoch ``E`` on (1-based), ``weights`` replace ``class_weight``, e.g. ``class_balanced_weights(counts,
    0.9999)`` from epoch 160 of 200.

    Example:
        >>> Member(seed=3, class_weight=(1.0, 1 / 256), lr=0.045, weight_decay=1e-3).weight_decay
        0.001
    """

    seed: int
    class_weight: tuple[float, ...] | None = None
    lr: float = 0.1
    weight_decay: float = 0.0
    labels: dict[str, Any] = field(default_factory=dict)
    loss: str = "ce"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    deferred_class_weight: tuple[int, tuple[float, ...]] | None = None


@dataclass
class History:
    """Metrics recorded at evaluation epochs, in long form: ``(epoch, member, name, value)``.

    Example:
        >>> History([(1, 0, "train_loss", 0.5)]).values("train_loss")
        {1: [0.5]}
    """

    rows: list[tuple[int, int, str, float]] = field(default_factory=list)

    def values(self, name: str) -> dict[int, list[float]]:
        """``{epoch: [value of member 0, 1, ...]}`` for one metric.

        Example:
            >>> History([(2, 1, "a", 1.0), (2, 0, "a", 3.0)]).values("a")
            {2: [3.0, 1.0]}
        """
        out: dict[int, dict[int, float]] = {}
        for epoch, member, n, v in self.rows:
            if n == name:
                out.setdefault(epoch, {})[member] = v
        return {e: [d[m] for m in sorted(d)] for e, d in sorted(out.items())}


def ensemble_rng_seed(seeds: Sequence[int]) -> int:
    """Seed of the func backend's private RNG stream for an ensemble with these members' seeds.

    A stable hash (SHA-256, independent of ``PYTHONHASHSEED``) of the ordered seeds, in ``[0, 2**63)``.

    Example:
        >>> ensemble_rng_seed([0, 1]) == ensemble_rng_seed([0, 1]) != ensemble_rng_seed([1, 0])
        True
    """
    digest = hashlib.sha256(",".join(str(int(s)) for s in seeds).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)
