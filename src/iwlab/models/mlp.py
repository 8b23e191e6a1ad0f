"""Fully connected models: logistic regression and the one-hidden-layer MLP of Byrd & Lipton.

Both are :class:`MLP` instances (logistic regression is an MLP with no hidden layer), so the ensemble
trainer's fast path, which stacks linear layers on a leading model axis, covers them. Parameters are
initialised from an explicit ``torch.Generator`` with the same distribution as ``nn.Linear``'s default
(uniform in +-1/sqrt(fan_in) for weights and biases), so that a model built alone and a model built
inside an ensemble from the same seed are identical.

Source: Byrd & Lipton (2019, Sec. 3 and Figure 1): an MLP with one hidden layer of 64 units and a
logistic regression, on 2-D synthetic data.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class MLP(nn.Module):
    """Linear layers with ReLU and optional dropout between them.

    Args:
        in_dim: input features.
        hidden: widths of the hidden layers; ``()`` gives logistic regression.
        out_dim: outputs (1 for a binary model with one logit, C for C classes).
        dropout: probability of zeroing a hidden unit in training (0 disables).
        generator: source of the initial parameters; ``None`` uses the global RNG.
        bias: give every layer a bias. ``bias=False`` makes a bias-free ReLU network, which is
            positively homogeneous of degree ``L = len(hidden) + 1`` in its parameters,
            ``f(c theta; x) = c^L f(theta; x)`` (the networks of Lyu & Li 2020 and of Xu, Ye & Ruan
            2021's deep-model results).

    Raises:
        ValueError: ``dropout`` outside ``[0, 1)``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> model = MLP(2, (64,), 1, dropout=0.5, generator=g)
        >>> model(torch.zeros(8, 2)).shape
        torch.Size([8, 1])
    """

    def __init__(
        self,
        in_dim: int,
        hidden: tuple[int, ...] = (64,),
        out_dim: int = 1,
        dropout: float = 0.0,
        generator: torch.Generator | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be True or False, got {bias!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_dim, self.hidden, self.out_dim, self.dropout = (
            in_dim,
            tuple(hidden),
            out_dim,
            dropout,
        )
        self.bias = bias
        dims = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=bias) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw weights then bias (if any) of each layer, in layer order, from ``generator``.

        Example:
            >>> MLP(2, (), 1).reset_parameters(torch.Generator().manual_seed(1))
        """
        for layer in self.layers:
            bound = 1.0 / math.sqrt(layer.in_features)
            for p in (layer.weight, layer.bias) if layer.bias is not None else (layer.weight,):
                p.copy_(torch.rand(p.shape, generator=generator) * (2 * bound) - bound)

    def forward(self, x: Tensor, masks: list[Tensor] | None = None) -> Tensor:
        """Logits ``(B, out_dim)``.

        ``masks`` (one boolean ``(B, h)`` keep-mask per hidden layer) replaces the module's own
        dropout draws; the ensemble trainer and its single-model reference pass the same masks, drawn
        by :func:`draw_dropout_masks`, so that both see identical randomness.

        Args:
            x: ``(B, in_dim)`` float inputs.
            masks: per hidden layer a ``(B, h)`` bool keep-mask, or None for the module's own dropout.

        Returns:
            ``(B, out_dim)`` logits in ``x``'s dtype.

        Example:
            >>> MLP(2, (4,), 3)(torch.ones(5, 2)).shape
            torch.Size([5, 3])
        """
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
                if masks is not None:
                    x = x * masks[i] / (1.0 - self.dropout)
                elif self.dropout > 0:
                    x = nn.functional.dropout(x, self.dropout, self.training)
        return x


def logistic_regression(in_dim: int, out_dim: int = 1, generator: torch.Generator | None = None) -> MLP:
    """Logistic regression as an :class:`MLP` with no hidden layer.

    Args:
        in_dim: input features.
        out_dim: logits (1 for a binary model).
        generator: source of the initial parameters; ``None`` uses the global RNG.

    Returns:
        An :class:`MLP` with ``hidden == ()`` and no dropout.

    Example:
        >>> logistic_regression(2).hidden
        ()
    """
    return MLP(in_dim, (), out_dim, 0.0, generator)


def draw_dropout_masks(
    generator: torch.Generator, n_steps: int, batch_size: int, hidden: tuple[int, ...], p: float
) -> list[Tensor]:
    """One epoch of keep-masks: a ``(n_steps, batch_size, h)`` bool tensor per hidden layer.

    This is the dropout half of the per-model random protocol (the other half is one ``randperm``
    per epoch, drawn first): drawing a whole epoch at once keeps the ensemble's hot loop free of
    per-model RNG calls.

    Args:
        generator: the member's generator (its state advances by ``n_steps * batch_size * sum(hidden)``
            uniforms).
        n_steps: minibatches in the epoch.
        batch_size: examples per minibatch.
        hidden: widths of the hidden layers.
        p: dropout probability; a unit is kept where its uniform is ``>= p``.

    Returns:
        One bool tensor ``(n_steps, batch_size, h)`` per hidden layer (True: keep).

    Example:
        >>> [m.shape for m in draw_dropout_masks(torch.Generator(), 3, 8, (64,), 0.5)]
        [torch.Size([3, 8, 64])]
    """
    return [torch.rand(n_steps, batch_size, h, generator=generator) >= p for h in hidden]
