"""Per-member losses and learned example weights for the ensemble trainer's stacked backend.

Every member of an :class:`~iwlab.train.ensemble.EnsembleTrainer` trains on its own loss
(:attr:`Member.loss <iwlab.train.members.Member>`), so one ensemble can hold, side by side, models trained
with the logistic and the exponential loss, or with the focal loss (Lin et al. 2017). The stacked
backend's hand-written backward needs only ``d loss / d logits``: :func:`logit_grads_fn` builds that
function for an ensemble, in closed form for ``"ce"`` and ``"exponential"`` and by autograd through the
functional loss otherwise.

Learned weights (the extension of Xu, Ye & Ruan 2021, notes Sec. 4): a ``reweight`` function
``fn(logits (M, B, out), y (M, B), x (M, B, in), params) -> (M, B)`` (``params`` the stacked parameters,
read-only) multiplies every example's gradient weight
at every step. It is evaluated on the current model and treated as a constant in the gradient
(``theta <- theta - lr * sum_i w_i(theta) grad l_i``), as learning-to-reweight (Ren et al. 2018) and
class-balanced weighting do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from iwlab.functional.losses_focal import binary_focal_loss, check_gamma, focal_loss
from iwlab.train.stacked import LogitGrads, ce_logit_grads

#: Losses a member can train with: name -> allowed keyword arguments.
MEMBER_LOSSES: dict[str, tuple[str, ...]] = {"ce": (), "exponential": (), "focal": ("gamma",)}

Reweight = Callable[[Tensor, Tensor, Tensor, list[Tensor]], Tensor]


def check_member_loss(name: Any, kwargs: Any, where: str) -> None:
    """Refuse an unknown member loss, keyword or keyword value when the trainer is built, naming the member.

    Raises:
        TypeError: ``name`` is not a string, or ``kwargs`` not a dict.
        ValueError: ``name`` is not in :data:`MEMBER_LOSSES`, a keyword is not one it takes, or a value is
            invalid (``gamma``: a finite number >= 0).
    """
    if not isinstance(name, str):
        raise TypeError(f"{where}: loss must be a string, one of {sorted(MEMBER_LOSSES)}; got {name!r}")
    if name not in MEMBER_LOSSES:
        raise ValueError(f"{where}: loss must be one of {sorted(MEMBER_LOSSES)}, got {name!r}")
    if not isinstance(kwargs, Mapping):
        raise TypeError(f"{where}: loss_kwargs must be a dict, got {kwargs!r}")
    extra = sorted(set(kwargs) - set(MEMBER_LOSSES[name]))
    if extra:
        raise ValueError(f"{where}: loss {name!r} takes {list(MEMBER_LOSSES[name])} as loss_kwargs, got {extra}")
    if "gamma" in kwargs:
        try:
            check_gamma(kwargs["gamma"])
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: loss_kwargs {err}") from None


def _checked_weights(w: Any, like: Tensor) -> Tensor:
    """The reweight hook's output: a real ``(M, B)`` tensor of ``like``'s dtype and device, finite and >= 0."""
    if not isinstance(w, Tensor) or w.shape != like.shape or w.dtype != like.dtype or w.device != like.device:
        got = f"{type(w).__name__} {tuple(w.shape)} {w.dtype} on {w.device}" if isinstance(w, Tensor) else repr(w)
        raise ValueError(
            f"reweight must return a {like.dtype} tensor of shape {tuple(like.shape)} (M, B) on {like.device}; "
            f"got {got}"
        )
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):  # a sync per step: only when a hook is set
        raise ValueError("reweight returned weights that are negative, NaN or infinite")
    return w


def _exponential_grads(logits: Tensor, y: Tensor, gw: Tensor) -> Tensor:
    """``d(sum_i gw_i exp(-s_i z_i)) / dz = -gw_i s_i exp(-s_i z_i)``, ``s_i = 2 y_i - 1`` (binary only)."""
    s = 2.0 * y - 1.0  # (m, B)
    return torch.exp(-s * logits.squeeze(-1)).mul_(gw * s).neg_().unsqueeze(-1)  # (m, B, 1)


def _autograd_grads(loss: str, kwargs: Mapping[str, Any], binary: bool) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    def grads(logits: Tensor, y: Tensor, gw: Tensor) -> Tensor:
        with torch.enable_grad():
            z = logits.detach().requires_grad_(True)  # (m, B, out)
            if loss == "focal" and binary:
                per = binary_focal_loss(z.squeeze(-1), y, reduction="none", validate=False, **kwargs)  # (m, B)
            elif loss == "focal":
                per = focal_loss(z, y, reduction="none", validate=False, **kwargs)  # (m, B)
            else:  # pragma: no cover - MEMBER_LOSSES lists every loss handled here
                raise ValueError(f"unknown loss {loss!r}")
            return torch.autograd.grad((per * gw).sum(), z)[0]

    return grads


def logit_grads_fn(members: Sequence[Any], binary: bool, reweight: Reweight | None = None) -> LogitGrads | None:
    """The ensemble's ``fn(logits, y, gw, x, params) -> d loss / d logits`` ``(M, B, out)``; None: all cross-entropy.

    Members are grouped by loss; each group's gradient is computed once for its rows.

    Args:
        members: the ensemble's :class:`~iwlab.train.members.Member` list (``loss``, ``loss_kwargs``).
        binary: one logit per example (``"exponential"`` needs it).
        reweight: learned weights ``fn(logits, y, x, params) -> (M, B)`` multiplied into ``gw`` every step, or None.

    Raises:
        ValueError: ``"exponential"`` for a multiclass model, or an unknown loss (see :func:`check_member_loss`).

    Example:
        >>> from iwlab.train.members import Member
        >>> fn = logit_grads_fn([Member(seed=0, loss="exponential")], binary=True)
        >>> fn(torch.zeros(1, 2, 1), torch.tensor([[1.0, 0.0]]), torch.ones(1, 2), torch.zeros(1, 2, 3), []).flatten()
        tensor([-1.,  1.])
    """
    groups: dict[tuple[str, tuple], list[int]] = {}
    for i, m in enumerate(members):
        check_member_loss(m.loss, m.loss_kwargs, f"member {i}")
        if m.loss == "exponential" and not binary:
            raise ValueError(f"member {i}: the exponential loss is binary-only (a model with one logit)")
        groups.setdefault((m.loss, tuple(sorted((k, float(v)) for k, v in m.loss_kwargs.items()))), []).append(i)
    if reweight is None and set(groups) <= {("ce", ())}:
        return None
    parts = []
    for (loss, kw), rows in groups.items():
        if loss == "ce":
            fn = lambda z, y, gw: ce_logit_grads(z, y, gw, binary)  # noqa: E731
        elif loss == "exponential":
            fn = _exponential_grads
        else:
            fn = _autograd_grads(loss, dict(kw), binary)
        # a contiguous group is a slice (a view: no gather, no scatter), as when members are listed by loss
        contiguous = rows == list(range(rows[0], rows[-1] + 1))
        parts.append((slice(rows[0], rows[-1] + 1) if contiguous else torch.tensor(rows), fn))

    def grads(logits: Tensor, y: Tensor, gw: Tensor, x: Tensor, params: list[Tensor]) -> Tensor:
        if reweight is not None:
            # (M, B): the learned weights, constants in the gradient
            gw = gw * _checked_weights(reweight(logits.detach(), y, x, params), gw)
        if len(parts) == 1:
            return parts[0][1](logits, y, gw)
        out = torch.empty_like(logits)  # (M, B, out)
        for rows, fn in parts:
            r = rows if isinstance(rows, slice) else rows.to(logits.device)
            out[r] = fn(logits[r], y[r], gw[r])
        return out

    return grads
