"""Single-model training with plain ``nn.Module`` + ``torch.optim``: the reference for the ensemble.

:func:`train_single` follows the same per-model random protocol as
:class:`~iwlab.train.ensemble.EnsembleTrainer` (see its module docstring) but computes everything the
ordinary way: autograd through the module, :mod:`iwlab.functional` losses and ``torch.optim``. Tests
check that M of these equal one ensemble of M members, so the ensemble's hand-written backward and
batched optimizers are checked against an independent computation.

Any ``nn.Module`` works, including BatchNorm and ``nn.Dropout``: training steps run the module in
train mode (batch statistics, running-statistic updates, dropout from the global RNG), ``on_epoch``
sees it in eval mode (running statistics, no dropout), and the returned module is in eval mode.

Example:
    >>> import torch
    >>> from iwlab.models import MLP
    >>> from iwlab.train import Member
    >>> x, y = torch.randn(32, 2), (torch.rand(32) > 0.5).long()
    >>> model = train_single(lambda g: MLP(2, (8,), 1, generator=g), Member(seed=0), x, y,
    ...                      epochs=2, batch_size=8)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from iwlab.functional.checks import check_int, check_seed
from iwlab.functional.losses import check_weights, weighted_binary_cross_entropy, weighted_cross_entropy
from iwlab.models.mlp import MLP, draw_dropout_masks
from iwlab.train import Member, class_indices
from iwlab.train.ensemble import output_size


def train_single(
    model_fn: Callable[[torch.Generator], nn.Module],
    member: Member,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    batch_size: int,
    optimizer: Literal["sgd", "adam"] = "sgd",
    momentum: float = 0.0,
    normalization: Literal["batch_size", "weight_sum"] = "batch_size",
    on_epoch: Callable[[nn.Module, int], None] | None = None,
) -> nn.Module:
    """Train one model by minibatch SGD/Adam with the member's seed, weights, lr and L2.

    ``on_epoch(model, epoch)`` runs after every epoch with the model in eval mode (switched back to
    train mode afterwards); the trained model is returned in eval mode.

    Args:
        model_fn: builds the model from the member's generator.
        member: seed, class weights, lr and L2.
        x: ``(N, ...)`` inputs.
        y: ``(N,)`` class indices of any integer dtype (bool for one output; integral floats), checked
            as :class:`~iwlab.train.ensemble.EnsembleTrainer` checks them
            (:func:`~iwlab.train.ensemble.class_indices`).
        epochs, batch_size: integers >= 1.
        optimizer, momentum, normalization: as for :class:`~iwlab.train.ensemble.EnsembleTrainer`.
        on_epoch: see above.

    Raises:
        TypeError, ValueError: a count that is not an integer >= 1, or invalid labels.

    Example:
        >>> # model = train_single(make_mlp, Member(seed=1, class_weight=(1, .5)), x, y, epochs=5, batch_size=8)
    """
    epochs = check_int(epochs, "epochs", minimum=1)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    g = torch.Generator().manual_seed(check_seed(member.seed, "member seed"))
    model = model_fn(g)
    # the losses run with validate=False: check the labels here (a float 0.5 would silently count as 0)
    try:
        n_classes: int | None = max(2, output_size(model))
    except ValueError:  # no nn.Linear to read C from: check integrality only
        n_classes = None
    y = class_indices(y, n_classes)
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=member.lr, momentum=momentum, weight_decay=member.weight_decay)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=member.lr, weight_decay=member.weight_decay)
    dropout = model.dropout if isinstance(model, MLP) else 0.0
    n = x.shape[0]
    n_steps = math.ceil(n / batch_size)
    cw = None if member.class_weight is None else torch.tensor(member.class_weight, dtype=x.dtype)
    if cw is not None:  # the losses below skip their checks (validate=False): check the weights once here
        check_weights(cw, name="member class_weight")
    model.train()
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(n, generator=g)
        masks = draw_dropout_masks(g, n_steps, batch_size, model.hidden, dropout) if dropout else None
        for s in range(n_steps):
            idx = perm[s * batch_size : (s + 1) * batch_size]
            xb, yb = x[idx], y[idx]
            mk = [m[s, : len(idx)] for m in masks] if masks else None
            out = model(xb, masks=mk) if isinstance(model, MLP) else model(xb)
            if out.shape[-1] == 1:
                loss = weighted_binary_cross_entropy(
                    out.squeeze(-1),
                    yb,
                    class_weight=cw,
                    normalization=normalization,
                    validate=False,
                )
            else:
                loss = weighted_cross_entropy(out, yb, class_weight=cw, normalization=normalization, validate=False)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if on_epoch is not None:
            model.eval()
            on_epoch(model, epoch)
            model.train()
    return model.eval()
