"""How the func backend's step computes: its precision, the memory layout of conv inputs and weights, the conv
formulation; checked once, at the trainer's construction.

* ``precision``: ``"fp32"`` (default: today's numbers, bit for bit; the TF32 flags are left as the process has
  them, and PyTorch's own default lets cuDNN convolutions use TF32 on a GPU while matmuls do not);
  ``"tf32"`` sets ``torch.backends.cuda.matmul.allow_tf32`` and ``torch.backends.cudnn.allow_tf32`` for each
  step and restores them afterwards (CUDA only: on a CPU the flags change nothing, so ``"tf32"`` is ``"fp32"``
  there); ``"bf16"`` runs the members' forward under ``torch.autocast(device_type, dtype=torch.bfloat16)``.
  The loss, the parameters ("master weights"), their gradients and the optimizer state stay float32, so the
  update is the float32 update of bfloat16-rounded gradients.
* ``channels_last``: each member's 4-D conv input ``(B, C, H, W)`` and conv weight ``(O, I, kh, kw)`` in
  ``torch.channels_last`` memory format. The stacked tensors are laid out so that the grouped convolution the
  step runs (``vmap`` lowers M convolutions to one with ``groups=M``, and ``conv_impl="grouped"`` calls it
  directly) reads them as channels-last without a copy: inputs ``(M, B, C, H, W)`` stored as ``(B, H, W, M, C)``
  and weights ``(M, O, I, kh, kw)`` as ``(M, O, kh, kw, I)`` (:func:`channels_last_input`,
  :func:`channels_last_weights`). The values are unchanged; only the layout (and so the kernels) differ. Under
  ``vmap``, a pooling layer's batching rule copies its output back to the standard layout, so the convolutions
  after a pool read NCHW inputs again; ``conv_impl="grouped"`` stays channels-last throughout.
* ``conv_impl``: ``"vmap"`` (``torch.func.vmap`` over ``functional_call``, any module) or ``"grouped"``
  (:func:`iwlab.train.func_backend.make_step`: a chain of Conv2d/ReLU/pooling/Flatten/Linear/Dropout
  run directly on the ``(B, M*C, H, W)`` grouped layout, so no per-layer reshapes between the members' and the
  grouped layout).

Source: ``torch.autocast`` and the TF32 flags, https://pytorch.org/docs/stable/amp.html and
https://pytorch.org/docs/stable/notes/cuda.html#tensorfloat-32-tf32-on-ampere-and-later-devices; memory
formats, https://pytorch.org/tutorials/intermediate/memory_format_tutorial.html.

Example:
    >>> import torch
    >>> w = channels_last_weights({"conv.weight": torch.randn(2, 4, 3, 3, 3), "fc.weight": torch.randn(2, 1, 4)})
    >>> w["conv.weight"][0].is_contiguous(memory_format=torch.channels_last), w["fc.weight"].is_contiguous()
    (True, True)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

import torch
from torch import Tensor, nn

Precision = Literal["fp32", "tf32", "bf16"]
ConvImpl = Literal["vmap", "grouped"]
PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16")
CONV_IMPLS: tuple[str, ...] = ("vmap", "grouped")


def check_step_options(
    precision: object,
    channels_last: object,
    conv_impl: object,
    compile: object,
    backend: str,
    params: Any,
    template: nn.Module | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Refuse step options that are not valid, or not meaningful for this backend and parameter dtype.

    Args:
        precision: ``"fp32"``, ``"tf32"`` or ``"bf16"``.
        channels_last: True or False.
        conv_impl: ``"vmap"`` or ``"grouped"``.
        compile: True or False (meaningful on both backends).
        backend: the trainer's resolved backend, ``"stacked"`` or ``"func"``.
        params: the stacked parameters, a list or ``{name: tensor}`` (``"tf32"`` and ``"bf16"`` concern float32
            models only).
        template, device: the members' architecture and device, if known: ``"bf16"`` with BatchNorm is refused
            on the CPU, where ``vmap(grad(...))`` of batch norm under autocast fails inside torch.

    Returns:
        ``{"precision", "channels_last", "conv_impl", "compile"}``, the trainer's ``step_options``.

    Raises:
        TypeError: ``channels_last`` or ``compile`` is not a bool.
        ValueError: one line naming the argument: an unknown value, a non-default value on the stacked backend
            (plain batched matmuls on MLPs: no convolutions, no autocast region), or ``precision`` other than
            ``"fp32"`` on a model whose parameters are not float32.

    Example:
        >>> params = {"w": torch.zeros(2, 3)}
        >>> check_step_options("bf16", False, "vmap", False, "func", params)["precision"]
        'bf16'
        >>> check_step_options("bf16", False, "vmap", False, "stacked", params)
        Traceback (most recent call last):
        ...
        ValueError: precision='bf16' needs the func backend (the stacked backend runs MLPs in their parameters' dtype); got backend='stacked'
    """  # noqa: E501
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not isinstance(channels_last, bool):
        raise TypeError(f"channels_last must be True or False, got {channels_last!r}")
    if not isinstance(compile, bool):
        raise TypeError(f"compile must be True or False, got {compile!r}")
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {conv_impl!r}")
    if backend == "stacked":
        for name, value, default in (
            ("precision", precision, "fp32"),
            ("channels_last", channels_last, False),
            ("conv_impl", conv_impl, "vmap"),
        ):
            if value != default:
                raise ValueError(
                    f"{name}={value!r} needs the func backend (the stacked backend runs MLPs in their parameters' "
                    f"dtype); got backend='stacked'"
                )
    param_dtype = next(iter(params.values() if isinstance(params, dict) else params)).dtype
    if precision != "fp32" and param_dtype != torch.float32:
        raise ValueError(f"precision={precision!r} is for float32 models; this model's parameters are {param_dtype}")
    if precision == "bf16" and device is not None and torch.device(device).type == "cpu" and template is not None:
        # vmap(grad(...)) of batch, instance and layer norm under CPU autocast fails inside torch (a bf16/float32
        # mix in the norm's kernel); GroupNorm runs
        norms = (nn.modules.batchnorm._NormBase, nn.LayerNorm)
        bad = next((type(m).__name__ for m in template.modules() if isinstance(m, norms)), None)
        if bad is not None:
            raise ValueError(
                f"precision='bf16' with {bad} does not run on the CPU (torch autocast under vmap); use fp32"
            )
    return {"precision": precision, "channels_last": channels_last, "conv_impl": conv_impl, "compile": compile}


@contextlib.contextmanager
def tf32_flags(precision: str, device: torch.device) -> Iterator[None]:
    """With ``precision="tf32"`` on CUDA: allow TF32 in cuBLAS matmuls and cuDNN convolutions, then restore.

    Anything else (``"fp32"``, ``"bf16"``, or a CPU device, where the flags change nothing) leaves the flags
    alone. The caller's values come back even if the step raises.

    Args:
        precision: the trainer's ``precision``.
        device: the trainer's device.

    Example:
        >>> with tf32_flags("tf32", torch.device("cpu")):
        ...     torch.backends.cuda.matmul.allow_tf32  # unchanged on a CPU
        False
    """
    with _allow_tf32(True) if precision == "tf32" and device.type == "cuda" else contextlib.nullcontext():
        yield


def strict_fp32(device: torch.device) -> contextlib.AbstractContextManager:
    """No TF32 on CUDA (PyTorch lets cuDNN convolutions use it by default) until the block ends; a CPU: nothing.

    For checks that compare two float32 computations at float32 round-off.

    Example:
        >>> with strict_fp32(torch.device("cpu")):
        ...     pass
    """
    return _allow_tf32(False) if device.type == "cuda" else contextlib.nullcontext()


@contextlib.contextmanager
def _allow_tf32(allow: bool) -> Iterator[None]:
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def forward_autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context the members' forward runs in: bfloat16 autocast for ``"bf16"``, else nothing.

    Args:
        precision: the trainer's ``precision``.
        device: the trainer's device (its type is autocast's ``device_type``).

    Returns:
        ``torch.autocast(device.type, dtype=torch.bfloat16)`` or a null context.

    Example:
        >>> with forward_autocast("bf16", torch.device("cpu")):
        ...     (torch.ones(2, 3) @ torch.ones(3, 1)).dtype
        torch.bfloat16
    """
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def channels_last_input(x: Tensor) -> Tensor:
    """``(M, B, C, H, W)`` with the same values, stored as ``(B, H, W, M, C)``; any other shape as it is.

    In that layout the grouped input ``(B, M*C, H, W)`` (formed by ``vmap``'s convolution rule, and by
    ``conv_impl="grouped"``) is a channels-last view, no copy; each member's ``(B, C, H, W)`` has channels
    innermost too.

    Args:
        x: ``(M, B, C, H, W)`` one batch per member (any float dtype), or a tensor of another rank.

    Returns:
        ``x`` re-laid (one copy), or ``x`` itself when it is not 5-D.

    Example:
        >>> x = channels_last_input(torch.randn(2, 4, 3, 8, 8))  # (M, B, C, H, W)
        >>> grouped = x.transpose(0, 1).reshape(4, 6, 8, 8)  # (B, M*C, H, W)
        >>> x.shape, grouped.is_contiguous(memory_format=torch.channels_last), grouped._base is not None
        (torch.Size([2, 4, 3, 8, 8]), True, True)
    """
    if x.dim() != 5:
        return x
    return x.permute(1, 3, 4, 0, 2).contiguous().permute(3, 0, 4, 1, 2)  # (M, B, C, H, W) over (B, H, W, M, C)


def channels_last_weights(params: dict[str, Tensor]) -> dict[str, Tensor]:
    """Stacked parameters with every 5-D conv weight ``(M, O, I, kh, kw)`` stored as ``(M, O, kh, kw, I)``.

    Each member's ``(O, I, kh, kw)`` and the grouped weight ``(M*O, I, kh, kw)`` are then channels-last views.
    Other parameters are returned as they are. The in-place optimizer updates keep the layout.

    Args:
        params: ``{name: (M, ...)}`` the func backend's stacked parameters.

    Returns:
        A new dict in the same order, with the same values.

    Example:
        >>> w = channels_last_weights({"w": torch.randn(3, 8, 4, 3, 3)})["w"]
        >>> w.stride()
        (288, 36, 1, 12, 4)
    """
    return {
        n: p.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3) if p.dim() == 5 else p
        for n, p in params.items()
    }
