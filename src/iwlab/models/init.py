"""Weight initialization schemes, drawn from an explicit ``torch.Generator`` (so a seed fixes a model).

Byrd & Lipton (2019) do not state their initialization; their networks were presumably Keras models,
whose default is Glorot-uniform weights and zero biases (Glorot & Bengio 2010, eq. 16). He-uniform
(He et al. 2015, eq. 10 with a uniform draw) starts narrow ReLU CNNs learning sooner.
:func:`iwlab.models.init_from_generator_` keeps PyTorch's default scales instead.

Example:
    >>> m = reinit_(torch.nn.Linear(4, 2), "he", torch.Generator().manual_seed(0))
    >>> bool(m.weight.abs().max() <= math.sqrt(6.0 / 4))
    True
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch

__all__ = ["INITS", "Init", "reinit_"]

Init = Literal["glorot", "he", "torch"]
INITS: tuple[str, ...] = get_args(Init)


@torch.no_grad()
def reinit_(module: torch.nn.Module, init: Init, generator: torch.Generator) -> torch.nn.Module:
    """Redraw every conv and linear weight of ``module`` in place from ``generator``; zero their biases.

    Layers are visited in ``module.modules()`` order, each weight drawn with one ``torch.rand`` call of
    its shape (float32, CPU generator), so the same generator state gives the same model. With
    ``receptive`` the kernel size (1 for linear layers), ``fan_in = in_channels * receptive`` and
    ``fan_out = out_channels * receptive``:

    * ``glorot``: uniform in ``+-sqrt(6 / (fan_in + fan_out))`` (Glorot & Bengio 2010, eq. 16; Keras'
      default ``glorot_uniform``);
    * ``he``: uniform in ``+-sqrt(6 / fan_in)``, variance ``2 / fan_in`` (He et al. 2015, eq. 10);
    * ``torch``: leave the module as built (PyTorch's defaults); draws nothing.

    Other layers (e.g. BatchNorm) are left as they are.

    Args:
        module: the model; changed in place.
        init: ``"glorot"``, ``"he"`` or ``"torch"``.
        generator: a CPU ``torch.Generator``.

    Returns:
        ``module``.

    Raises:
        ValueError: ``init`` is not one of the three.

    Example:
        >>> m = reinit_(torch.nn.Linear(4, 2), "glorot", torch.Generator().manual_seed(0))
        >>> float(m.bias.detach().abs().sum())
        0.0
    """
    if init == "torch":
        return module
    if init not in ("glorot", "he"):
        raise ValueError(f"init must be glorot, he or torch, got '{init}'")
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            receptive = m.weight[0, 0].numel()
            fan_in, fan_out = m.weight.shape[1] * receptive, m.weight.shape[0] * receptive
            bound = math.sqrt(6.0 / (fan_in + fan_out)) if init == "glorot" else math.sqrt(6.0 / fan_in)
            m.weight.copy_(torch.rand(m.weight.shape, generator=generator) * (2 * bound) - bound)
            if m.bias is not None:
                m.bias.zero_()
    return module
