"""Per-member losses and learned example weights for the ensemble trainer.

Every member of an :class:`~iwlab.train.ensemble.EnsembleTrainer` trains on its own loss
(:attr:`Member.loss <iwlab.train.members.Member>`) with its own hyperparameters
(``Member.loss_kwargs``), so one ensemble can hold, side by side, models trained with cross-entropy, the
exponential loss, focal loss, a polynomially tailed loss, LDAM, the logit-adjusted loss or VS loss. Both
backends need only ``d loss / d logits``: :func:`logit_grads_fn` builds that function for an ensemble, in
closed form for ``"ce"`` and ``"exponential"`` and by autograd through the functional loss
(:mod:`iwlab.functional`, ``reduction="none"``) otherwise. The stacked backend feeds it to its hand-written
backward, the func backend pulls it back through the members' forward
(:func:`iwlab.train.func_backend.logit_grads_step`).

Learned weights (the extension of Xu, Ye & Ruan 2021, notes Sec. 4): a ``reweight`` function
``fn(logits (M, B, out), y (M, B), x (M, B, ...), params) -> (M, B)`` in the logits' dtype (``params`` must not
be modified; the logits are a copy) multiplies every
example's gradient weight at every step. It is evaluated on the current model and treated as a constant in
the gradient (``theta <- theta - lr * sum_i w_i(theta) grad l_i``), as learning-to-reweight (Ren et al.
2018) and class-balanced weighting do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from iwlab.functional.losses_focal import binary_focal_loss, focal_loss
from iwlab.functional.losses_margin import binary_poly_tailed_loss, poly_tailed_loss
from iwlab.functional.losses_remedies import ldam_loss, ldam_margins, logit_adjusted_loss, vs_loss
from iwlab.functional.weighting import check_class_counts
from iwlab.train.stacked import LogitGrads, ce_logit_grads

#: Losses a member can train with: name -> the keyword arguments it takes (``Member.loss_kwargs``).
MEMBER_LOSSES: dict[str, tuple[str, ...]] = {
    "ce": (),
    "exponential": (),
    "focal": ("gamma",),
    "poly": ("alpha", "kind"),
    "ldam": ("class_counts", "max_margin", "scale"),
    "logit_adjusted": ("class_counts", "tau"),
    "vs": ("class_counts", "tau", "gamma"),
}


def _two_logits(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """A multiclass loss for a model with one logit ``f``: the two-class logits ``(0, f)``.

    Binary cross-entropy on ``f`` is exactly cross-entropy on ``(0, f)``, so LDAM, the logit-adjusted and VS
    losses keep their two-class meaning (class counts ``(n_0, n_1)``) on a binary model.
    """

    def loss(z: Tensor, target: Tensor, **kwargs: Any) -> Tensor:
        return fn(torch.stack([torch.zeros_like(z), z], dim=-1), target.long(), **kwargs)

    return loss


# the functional losses behind the names, for models with C >= 2 logits and with one logit (binary)
_MULTICLASS: dict[str, Callable[..., Tensor]] = {
    "focal": focal_loss,
    "poly": poly_tailed_loss,
    "ldam": ldam_loss,
    "logit_adjusted": logit_adjusted_loss,
    "vs": vs_loss,
}
_BINARY: dict[str, Callable[..., Tensor]] = {
    "focal": binary_focal_loss,
    "poly": binary_poly_tailed_loss,
    **{k: _two_logits(_MULTICLASS[k]) for k in ("ldam", "logit_adjusted", "vs")},
}

Reweight = Callable[[Tensor, Tensor, Tensor, list[Tensor]], Tensor]


def check_member_loss(name: Any, kwargs: Any, where: str, out_dim: int = 2) -> None:
    """Refuse an unknown member loss, keyword or keyword value when the trainer is built, naming the member.

    The values are checked by the functional loss itself, on a one-example probe of the model's output size,
    so a bad ``gamma`` or ``class_counts`` of the wrong length fails here, not at the first step.

    Raises:
        TypeError: ``name`` is not a string, or ``kwargs`` not a dict.
        ValueError: ``name`` is not in :data:`MEMBER_LOSSES`, a keyword is not one it takes, the loss does not
            exist for the model's output size, or a value is invalid (the functional loss's message).
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
    if name == "exponential" and out_dim != 1:
        raise ValueError(f"{where}: the exponential loss is binary-only (a model with one logit)")
    if name in ("ce", "exponential"):
        return
    fn = (_BINARY if out_dim == 1 else _MULTICLASS)[name]
    probe = torch.zeros(1) if out_dim == 1 else torch.zeros(1, out_dim)
    try:
        fn(probe, torch.zeros(1, dtype=torch.long), reduction="none", **kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: loss_kwargs: {err}") from None


def _key(v: Any) -> Any:
    """A hashable, order-stable form of a keyword value (lists and tensors become tuples)."""
    if isinstance(v, Tensor):
        return tuple(v.detach().cpu().flatten().tolist())
    if isinstance(v, list | tuple):
        return tuple(_key(u) for u in v)
    return v


def _checked_weights(w: Any, logits: Tensor) -> Tensor:
    """The reweight hook's output: an ``(M, B)`` tensor in the logits' dtype and device, finite and >= 0.

    The logits' dtype is the model's, so the weighted logit gradients stay in it on both backends.
    """
    like = logits[..., 0]  # (M, B)
    if not isinstance(w, Tensor) or (w.shape, w.dtype, w.device) != (like.shape, like.dtype, like.device):
        got = f"{type(w).__name__} {tuple(w.shape)} {w.dtype} on {w.device}" if isinstance(w, Tensor) else repr(w)
        raise ValueError(
            f"reweight must return a {like.dtype} tensor (the logits' dtype) of shape {tuple(like.shape)} (M, B) on "
            f"{like.device}; got {got}"
        )
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):  # a sync per step: only when a hook is set
        raise ValueError("reweight returned weights that are negative, NaN or infinite")
    return w


def _exponential_grads(logits: Tensor, y: Tensor, gw: Tensor) -> Tensor:
    """``d(sum_i gw_i exp(-s_i z_i)) / dz = -gw_i s_i exp(-s_i z_i)``, ``s_i = 2 y_i - 1`` (binary only)."""
    s = 2.0 * y - 1.0  # (m, B)
    return torch.exp(-s * logits.squeeze(-1)).mul_(gw * s).neg_().unsqueeze(-1)  # (m, B, 1)


def _adjusted_logistic_params(loss: str, kwargs: Mapping[str, Any]) -> tuple[float, float, float, float, float]:
    """``(scale, delta_1, offset, m_0, m_1)`` of LDAM, LA or VS on the two-class logits ``(0, f)`` of a binary model.

    All three are cross-entropy on transformed logits ``l'_c = scale (Delta_c l_c + tau log pi_c - m_c [c = y])``;
    with ``l_0 = 0`` that is the logistic loss of the margin ``mu = scale (s (Delta_1 f + tau log(pi_1 / pi_0)) -
    m_y)``, ``s = 2y - 1`` (``Delta_0`` multiplies ``l_0 = 0``). The functional losses stay the reference: the tests
    compare this closed form with autograd through them.
    """
    n = check_class_counts(kwargs["class_counts"])  # (2,) float64
    log_ratio = float(torch.log(n[1] / n[0]))  # log(pi_1 / pi_0)
    if loss == "ldam":
        m = ldam_margins(n, kwargs.get("max_margin", 0.5))
        return float(kwargs.get("scale", 30.0)), 1.0, 0.0, float(m[0]), float(m[1])
    tau = float(kwargs.get("tau", 1.0))
    delta = float((n[1] / n.max()) ** kwargs.get("gamma", 0.2)) if loss == "vs" else 1.0
    return 1.0, delta, tau * log_ratio, 0.0, 0.0


def _adjusted_logistic_grads(params: Tensor) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """Closed-form ``d loss / d f`` of the loss of :func:`_adjusted_logistic_params`; ``params`` ``(m, 5)``."""

    def grads(logits: Tensor, y: Tensor, gw: Tensor) -> Tensor:
        p = params.to(logits)  # (m, 5)
        scale, delta, off, m0, m1 = (p[:, k : k + 1] for k in range(5))  # (m, 1) each
        s = 2.0 * y - 1.0  # (m, B)
        f = logits.squeeze(-1)  # (m, B)
        mu = scale * (s * (delta * f + off) - torch.where(y > 0.5, m1, m0))  # (m, B) the logistic margin
        return (-torch.sigmoid(-mu) * s * scale * delta * gw).unsqueeze(-1)  # (m, B, 1)

    return grads


def _poly_binary_grads(alpha: Tensor, kind: str) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """Closed-form ``d loss / d f`` of :func:`~iwlab.functional.losses_margin.binary_poly_tailed_loss` (``z = s f``).

    ``z >= 1``: ``-alpha z^(-alpha-1)`` (divided by ``alpha - 1`` for "linear"); ``z < 1``: ``-sigmoid(-z) / log(1 +
    e^-1)`` ("logit"), ``-1`` ("linear"), ``-exp(1 - z)`` ("exp"). ``alpha`` ``(m,)``, one per member.
    """
    c = math.log1p(math.exp(-1.0))

    def grads(logits: Tensor, y: Tensor, gw: Tensor) -> Tensor:
        a = alpha.to(logits).unsqueeze(1)  # (m, 1)
        s = 2.0 * y - 1.0
        z = s * logits.squeeze(-1)  # (m, B) margins
        # each branch reads z only where it is selected (the other side sees 1): no inf or NaN leaks through
        tail = -a * torch.where(z >= 1, z, torch.ones_like(z)) ** (-a - 1)
        if kind == "linear":
            tail = tail / (a - 1)
        zl = torch.where(z < 1, z, torch.ones_like(z))
        left = {"logit": -torch.sigmoid(-zl) / c, "linear": -torch.ones_like(zl), "exp": -torch.exp(1 - zl)}[kind]
        return (torch.where(z >= 1, tail, left) * s * gw).unsqueeze(-1)  # (m, B, 1)

    return grads


def _autograd_grads(fn: Callable[..., Tensor], kwargs: Mapping[str, Any], binary: bool) -> Callable:
    def grads(logits: Tensor, y: Tensor, gw: Tensor) -> Tensor:
        with torch.enable_grad():
            z = logits.detach().requires_grad_(True)  # (m, B, out)
            target = y.long() if binary else y
            per = fn(z.squeeze(-1) if binary else z, target, reduction="none", validate=False, **kwargs)  # (m, B)
            return torch.autograd.grad((per * gw).sum(), z)[0]

    return grads


def logit_grads_fn(
    members: Sequence[Any], binary: bool, reweight: Reweight | None = None, out_dim: int | None = None
) -> LogitGrads | None:
    """The ensemble's ``fn(logits, y, gw, x, params) -> d loss / d logits`` ``(M, B, out)``; None: all cross-entropy.

    Members are grouped by loss and keywords; each group's gradient is computed once for its rows.

    Args:
        members: the ensemble's :class:`~iwlab.train.members.Member` list (``loss``, ``loss_kwargs``).
        binary: one logit per example (``"exponential"`` needs it).
        reweight: learned weights ``fn(logits, y, x, params) -> (M, B)`` multiplied into ``gw`` every step, or None.
        out_dim: the model's logits per example (default: 1 if ``binary`` else 2), for the keyword checks.

    Raises:
        ValueError, TypeError: a member's loss or keywords (see :func:`check_member_loss`).

    Example:
        >>> from iwlab.train.members import Member
        >>> fn = logit_grads_fn([Member(seed=0, loss="exponential")], binary=True)
        >>> fn(torch.zeros(1, 2, 1), torch.tensor([[1.0, 0.0]]), torch.ones(1, 2), torch.zeros(1, 2, 3), []).flatten()
        tensor([-1.,  1.])
    """
    out_dim = out_dim if out_dim is not None else (1 if binary else 2)
    groups: dict[tuple, list[int]] = {}
    for i, m in enumerate(members):
        check_member_loss(m.loss, m.loss_kwargs, f"member {i}", out_dim)
        if binary and m.loss in ("ldam", "logit_adjusted", "vs"):
            key: tuple = ("adjusted_logistic",)  # one closed form for all of them, per-member parameters
        elif binary and m.loss == "poly":
            key = ("poly", m.loss_kwargs.get("kind", "logit"))  # alpha is per member
        else:
            key = (m.loss, tuple(sorted((k, _key(v)) for k, v in m.loss_kwargs.items())))
        groups.setdefault(key, []).append(i)
    if reweight is None and set(groups) <= {("ce", ())}:
        return None
    parts = []
    for key, rows in groups.items():
        loss = key[0]
        if loss == "ce":
            fn = lambda z, y, gw: ce_logit_grads(z, y, gw, binary)  # noqa: E731
        elif loss == "exponential":
            fn = _exponential_grads
        elif loss == "adjusted_logistic":
            rows_params = [_adjusted_logistic_params(members[i].loss, members[i].loss_kwargs) for i in rows]
            fn = _adjusted_logistic_grads(torch.tensor(rows_params, dtype=torch.float64))
        elif binary and loss == "poly":
            alphas = torch.tensor([float(members[i].loss_kwargs["alpha"]) for i in rows], dtype=torch.float64)
            fn = _poly_binary_grads(alphas, key[1])
        else:
            fn = _autograd_grads((_BINARY if binary else _MULTICLASS)[loss], members[rows[0]].loss_kwargs, binary)
        # a contiguous group is a slice (a view: no gather, no scatter), as when members are listed by loss
        contiguous = rows == list(range(rows[0], rows[-1] + 1))
        parts.append((slice(rows[0], rows[-1] + 1) if contiguous else torch.tensor(rows), fn))

    def grads(logits: Tensor, y: Tensor, gw: Tensor, x: Tensor, params: list[Tensor]) -> Tensor:
        if reweight is not None:
            # (M, B): the learned weights, constants in the gradient
            # a copy of the logits: an in-place edit in the hook must not change the step; params must not be
            # edited (documented; not copied, which would cost a model's worth of memory per step)
            gw = gw * _checked_weights(reweight(logits.detach().clone(), y, x, params), logits)
        if len(parts) == 1:
            return parts[0][1](logits, y, gw)
        out = torch.empty_like(logits)  # (M, B, out)
        for rows, fn in parts:
            r = rows if isinstance(rows, slice) else rows.to(logits.device)
            out[r] = fn(logits[r], y[r], gw[r])
        return out

    return grads
