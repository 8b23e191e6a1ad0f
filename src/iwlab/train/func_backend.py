"""The ensemble's ``torch.func`` backend: any ``nn.Module``, its parameters and buffers stacked per member.

For any ``nn.Module`` (conv nets, ResNets with or without BatchNorm): ``torch.func.vmap(grad(...))`` over
``functional_call`` gives per-member gradients. Buffers are stacked per member like the parameters (``(M,
...)`` each, ``num_batches_tracked`` included). A training step runs the module in train mode on each member's
own buffers and keeps what its forward wrote into them, so BatchNorm normalizes with batch statistics and
updates each member's ``running_mean``/``running_var`` (and ``num_batches_tracked``) exactly as one
``nn.Module`` in train mode does; :meth:`~iwlab.train.ensemble.EnsembleTrainer.logits` runs it in eval mode
(running statistics, no dropout). BatchNorm with ``momentum=None`` (a cumulative average, which reads
``num_batches_tracked`` as a Python number) cannot run under ``vmap`` and is refused.

Dropout in the func backend (``nn.Dropout``) draws its masks under ``vmap(randomness="different")`` from the
default RNG, so it cannot reproduce a single-model run's masks (only the stacked backend does). To keep
func-backend runs deterministic and resumable anyway, the trainer owns a private RNG stream, seeded at
construction from all members' seeds (:func:`~iwlab.train.members.ensemble_rng_seed`): training steps swap it
in for the global RNG and swap the caller's state back afterwards, so the masks depend only on the members
(not on what else the process draws) and the global RNG is left untouched. Its state
(``torch.get_rng_state()`` format, plus the CUDA generator's on a GPU) is part of
:meth:`~iwlab.train.ensemble.EnsembleTrainer.state_dict`, so a resumed run is bitwise equal to an
uninterrupted one. The masks depend on the whole ensemble, so a member's dropout run differs between packs of
different composition (see :func:`~iwlab.train.packs.fit_in_packs`).

The step's precision, memory layout and conv formulation (:mod:`iwlab.train.precision`) are chosen once,
by :func:`make_step`: ``conv_impl="vmap"`` (:func:`grads_fn`, :func:`logit_grads_step`: any module) or
``"grouped"`` (a chain of Conv2d, pooling, elementwise, Flatten and Linear layers,
such as :class:`~iwlab.models.ByrdLiptonCNN`, run on the ``(B, M*C, H, W)`` layout in which one convolution
with ``groups=M`` is every member's convolution), optionally under ``torch.compile``. ``"grouped"`` draws its
dropout masks on ``(M, B, h)`` in one call, so they differ from ``"vmap"``'s (and compiled masks from eager
ones); each is deterministic and resumable as above.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vjp, vmap

from iwlab.train.compiled import compile_step
from iwlab.train.precision import channels_last_input, forward_autocast, strict_fp32, tf32_flags

#: ``fn(params, buffers, x (M, B, ...), y (M, B), gw (M, B)) -> (grads, new_buffers)``: the func backend's step.
Step = Callable[[dict[str, Tensor], dict[str, Tensor], Tensor, Tensor, Tensor], tuple[dict, dict]]


def stack_modules(
    modules: list[nn.Module], device: torch.device
) -> tuple[dict[str, Tensor], dict[str, Tensor], nn.Module]:
    """Stack M modules' parameters and buffers ``{name: (M, ...)}`` and keep a storage-free template.

    Raises:
        ValueError: a BatchNorm with ``momentum=None`` (a cumulative average, which reads
            ``num_batches_tracked`` as a Python number and cannot run under ``vmap``).
    """
    template = modules[0]
    for name, mod in template.named_modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.track_running_stats and mod.momentum is None:
            raise ValueError(
                f"the func backend does not support BatchNorm with momentum=None ('{name}'): its buffers "
                "(a cumulative average over num_batches_tracked) cannot be updated under vmap; set a momentum"
            )
    params = {
        n: torch.stack([dict(m.named_parameters())[n].detach() for m in modules]).to(device)
        for n, _ in template.named_parameters()
    }
    buffers = {
        n: torch.stack([dict(m.named_buffers())[n].detach() for m in modules]).to(device)
        for n, _ in template.named_buffers()
    }
    # the template only supplies the architecture to functional_call; keep no real storage
    return params, buffers, copy.deepcopy(template).to("meta")


def forward(
    template: nn.Module, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor, shared: bool
) -> Tensor:
    """Eval-mode logits ``(M, N, out)`` of every member; ``x`` is ``(N, ...)`` (shared) or ``(M, N, ...)``."""

    def f(p: dict[str, Tensor], b: dict[str, Tensor], xi: Tensor) -> Tensor:
        return functional_call(template, (p, b), (xi,))

    template.eval()  # running statistics, no dropout; the next training step switches back
    return vmap(f, in_dims=(0, 0, None if shared else 0), randomness="different")(params, buffers, x)


def _weighted_ce(z: Tensor, y: Tensor, w: Tensor, binary: bool) -> Tensor:
    """``sum_i w_i * CE_i`` of logits ``z`` ``(..., B, out)``, labels and weights ``(..., B)``."""
    if binary:
        per = nn.functional.binary_cross_entropy_with_logits(z.squeeze(-1), y, reduction="none")
    else:
        per = nn.functional.cross_entropy(z.reshape(-1, z.shape[-1]), y.reshape(-1), reduction="none")
    return (per.reshape(w.shape) * w).sum()


def grads_fn(template: nn.Module, binary: bool, precision: str = "fp32", device_type: str = "cpu") -> Callable:
    """``fn(params, buffers, x, y, gw) -> (grads, new_buffers)``: per-member gradients of ``sum_i gw_i * CE_i``.

    ``x`` ``(M, B, ...)``, ``y`` ``(M, B)`` (float 0/1 when ``binary``), ``gw`` ``(M, B)`` gradient weights.
    ``precision="bf16"``: the forward under bfloat16 autocast on ``device_type``, the loss on float32 logits.
    """
    dev = torch.device(device_type)

    def loss(
        p: dict[str, Tensor], b: dict[str, Tensor], xi: Tensor, yi: Tensor, wi: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        # clone inside the transforms: the forward writes running statistics into these
        # (in place, as nn.BatchNorm does); the clones come back as aux, the inputs stay intact
        b = {k: v.clone() for k, v in b.items()}
        with forward_autocast(precision, dev):
            z = functional_call(template, (p, b), (xi,))
        if precision == "bf16":  # the loss and everything after it in float32 (the fp32 path stays as it was)
            z = z.float()
        return _weighted_ce(z, yi, wi, binary), b

    return vmap(grad(loss, has_aux=True), randomness="different")


def logit_grads_step(
    template: nn.Module, logit_grads: Callable, precision: str = "fp32", device_type: str = "cpu"
) -> Callable:
    """``fn(params, buffers, x, y, gw) -> (grads, new_buffers)`` for members with their own losses.

    The members' forward runs under ``vmap`` as in :func:`grads_fn`; ``torch.func.vjp`` of it pulls back
    ``d loss / d logits`` ``(M, B, out)`` from ``logit_grads(logits, y, gw, x, params)`` (the same function the
    stacked backend uses, :func:`iwlab.train.member_losses.logit_grads_fn`), so every per-member loss and the
    ``reweight`` hook work on any module. Members on plain cross-entropy keep :func:`grads_fn`'s path.
    ``precision`` and ``device_type`` as for :func:`grads_fn`.
    """
    dev = torch.device(device_type)

    def member_forward(p: dict[str, Tensor], b: dict[str, Tensor], xi: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        b = {k: v.clone() for k, v in b.items()}  # the forward writes running statistics into these (see grads_fn)
        with forward_autocast(precision, dev):
            z = functional_call(template, (p, b), (xi,))
        return (z.float() if precision == "bf16" else z), b

    def step(
        params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor, y: Tensor, gw: Tensor
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        def forward(p: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
            return vmap(member_forward, randomness="different")(p, buffers, x)

        logits, pull_back, new_buffers = vjp(forward, params, has_aux=True)  # logits (M, B, out)
        g = logit_grads(logits.detach(), y, gw, x, list(params.values()))  # (M, B, out)
        return pull_back(g)[0], new_buffers

    return step


# -- conv_impl="grouped": the members' layers on the grouped layout, no vmap -----------------------------------
_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.Dropout)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)  # per channel: per member


def _grouped_chain(template: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers ``[(name, module)]`` that ``conv_impl="grouped"`` runs one after another.

    The template must be an ``nn.Sequential`` (nested ones are flattened), or a module without parameters or
    buffers of its own whose only child is one (as :class:`~iwlab.models.ByrdLiptonCNN`'s ``net``). Its forward
    is assumed to be that chain; the first training step checks it (see :func:`make_step`).

    Raises:
        ValueError: one line naming ``conv_impl`` and the first layer it cannot run (BatchNorm: its running
            statistics; a residual or custom module; a pool or conv after Flatten; a Linear before it).
    """
    root, prefix = template, ""
    if not isinstance(root, nn.Sequential):
        kids = list(root.named_children())
        own = [*root.named_parameters(recurse=False), *root.named_buffers(recurse=False)]
        if len(kids) != 1 or not isinstance(kids[0][1], nn.Sequential) or own:
            raise ValueError(
                f"conv_impl='grouped' runs nn.Sequential chains; {type(template).__name__} is not one (nor a "
                "wrapper of exactly one); use conv_impl='vmap'"
            )
        root, prefix = kids[0][1], kids[0][0] + "."

    def flat(seq: nn.Sequential, pre: str) -> list[tuple[str, nn.Module]]:
        out: list[tuple[str, nn.Module]] = []
        for n, m in seq.named_children():
            out += flat(m, f"{pre}{n}.") if isinstance(m, nn.Sequential) else [(f"{pre}{n}", m)]
        return out

    chain, dense = flat(root, prefix), False
    for i, (name, m) in enumerate(chain):
        conv = isinstance(m, nn.Conv2d) and m.padding_mode == "zeros"
        ok = isinstance(m, _ELEMENTWISE) or (isinstance(m, nn.Linear) and (dense or i == 0))
        ok = ok or (not dense and (conv or (isinstance(m, _POOLS) and not getattr(m, "return_indices", False))))
        ok = ok or (isinstance(m, nn.Flatten) and (m.start_dim, m.end_dim) == (1, -1))
        if not ok:
            raise ValueError(
                f"conv_impl='grouped' cannot run layer '{name}' ({type(m).__name__}); use conv_impl='vmap'"
            )
        dense = dense or isinstance(m, nn.Flatten | nn.Linear)
    return chain


def _grouped_forward(chain: list[tuple[str, nn.Module]], params: dict[str, Tensor], x: Tensor) -> Tensor:
    """Logits ``(M, B, out)`` of every member from inputs ``x`` ``(M, B, C, H, W)`` (or ``(M, B, F)``).

    Conv layers run on ``(B, M*C, H, W)``, member ``m`` owning channels ``[m*C, (m+1)*C)``: one ``conv2d`` with
    ``groups=M`` (times the layer's own groups) is every member's convolution, and pooling and elementwise layers
    act per channel. Flatten turns it into ``(M, B, C*H*W)`` (each member's ``(C, H, W)`` order, as
    ``nn.Flatten``); Linear layers are batched matmuls. Dropout draws one mask for all members.
    """
    M, B = x.shape[0], x.shape[1]
    h = x.transpose(0, 1).reshape(B, M * x.shape[2], *x.shape[3:]) if x.dim() == 5 else x  # (B, M*C, H, W)
    for name, m in chain:
        if isinstance(m, nn.Conv2d):
            w = params[f"{name}.weight"]  # (M, O, I, kh, kw)
            b = params[f"{name}.bias"].reshape(-1) if m.bias is not None else None  # (M*O,)
            h = nn.functional.conv2d(
                h, w.reshape(-1, *w.shape[2:]), b, m.stride, m.padding, m.dilation, m.groups * M
            )  # (B, M*O, H', W')
        elif isinstance(m, nn.Flatten):
            h = h if h.dim() == 3 else h.reshape(B, M, -1).transpose(0, 1)  # (M, B, C*H*W)
        elif isinstance(m, nn.Linear):
            w = params[f"{name}.weight"]  # (M, out, in)
            z = torch.bmm(h, w.transpose(1, 2))  # (M, B, out)
            h = z + params[f"{name}.bias"].unsqueeze(1) if m.bias is not None else z
        else:  # elementwise or per-channel pooling: the module's own forward (it has no state)
            h = m(h)
    return h


def _grouped_grads_fn(
    template: nn.Module,
    binary: bool,
    logit_grads: Callable | None = None,
    precision: str = "fp32",
    device_type: str = "cpu",
) -> Callable:
    """``fn(params, buffers, x, y, gw) -> (grads, buffers)`` as :func:`grads_fn` (``logit_grads`` None) or
    :func:`logit_grads_step`, with the forward of :func:`_grouped_forward` and ``torch.func.grad``/``vjp`` (no
    ``vmap``). The members are independent, so the gradient of the sum of their losses is each one's own.

    Raises:
        ValueError: the template is not a chain :func:`_grouped_chain` can run, or it has buffers.
    """
    chain = _grouped_chain(template)
    if any(True for _ in template.buffers()):
        raise ValueError("conv_impl='grouped' takes models without buffers (no BatchNorm); use conv_impl='vmap'")
    dev = torch.device(device_type)

    def logits_of(p: dict[str, Tensor], x: Tensor) -> Tensor:
        with forward_autocast(precision, dev):
            z = _grouped_forward(chain, p, x)  # (M, B, out)
        return z.float() if precision == "bf16" else z

    def loss(p: dict[str, Tensor], x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        return _weighted_ce(logits_of(p, x), y, w, binary)

    ce_grads = grad(loss)

    def step(
        params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor, y: Tensor, gw: Tensor
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        if logit_grads is None:
            return ce_grads(params, x, y, gw), buffers
        logits, pull_back = vjp(lambda p: logits_of(p, x), params)  # (M, B, out)
        return pull_back(logit_grads(logits.detach(), y, gw, x, list(params.values())))[0], buffers

    return step


def make_step(
    template: nn.Module,
    binary: bool,
    logit_grads: Callable | None,
    *,
    precision: str = "fp32",
    channels_last: bool = False,
    conv_impl: str = "vmap",
    compile: bool = False,
    device: torch.device | str = "cpu",
) -> Step:
    """The trainer's func-backend step with its options (see :mod:`iwlab.train.precision`).

    Args:
        template: the storage-free module of :func:`stack_modules`.
        binary: one logit (logistic loss) or C logits (softmax cross-entropy).
        logit_grads: the members' own ``d loss / d logits`` (:func:`iwlab.train.member_losses.logit_grads_fn`),
            or None for plain cross-entropy.
        precision: ``"fp32"``, ``"tf32"`` or ``"bf16"``.
        channels_last: re-lay each step's ``x`` ``(M, B, C, H, W)`` with :func:`channels_last_input` (the
            caller keeps the conv weights in :func:`~iwlab.train.precision.channels_last_weights`' layout).
        conv_impl: ``"vmap"`` or ``"grouped"``; the first ``"grouped"`` step checks, once and in eval mode, that
            its logits equal the ``vmap`` forward's on that batch (so a forward that is not its chain of layers
            is refused, never trained silently).
        compile: run the gradient function under ``torch.compile(dynamic=False)`` (compiled on the first step,
            and again for a batch of another shape, such as a smaller last batch).
        device: where the step runs (autocast's device type; TF32 flags on CUDA only).

    Returns:
        ``fn(params, buffers, x (M, B, ...), y (M, B), gw (M, B)) -> (grads, new_buffers)``.

    Raises:
        ValueError: ``channels_last`` on a model without ``nn.Conv2d``; a model ``"grouped"`` cannot run (at
            once, or from the first step's check).
        RuntimeError: (from the step) ``torch.compile``'s backend failed, with the first line of its error
            (:func:`~iwlab.train.compiled.compile_step`).

    Source: ``torch.func`` (https://pytorch.org/docs/stable/func.html); ``torch.compile``.

    Example:
        >>> from iwlab.models import ByrdLiptonCNN
        >>> nets = [ByrdLiptonCNN(width=1 / 16, dense=(4,), image_size=8, generator=torch.Generator().manual_seed(s))
        ...         for s in (0, 1)]
        >>> params, buffers, template = stack_modules(nets, torch.device("cpu"))
        >>> step = make_step(template, True, None, conv_impl="grouped", channels_last=True)
        >>> x, y, gw = torch.randn(2, 4, 3, 8, 8), torch.ones(2, 4), torch.full((2, 4), 0.25)
        >>> grads, _ = step(params, buffers, x, y, gw)
        >>> grads["net.0.weight"].shape
        torch.Size([2, 4, 3, 3, 3])
    """
    device = torch.device(device)
    if channels_last and not any(isinstance(m, nn.Conv2d) for m in template.modules()):
        raise ValueError("channels_last=True needs a model with nn.Conv2d layers (it sets their memory format)")
    if conv_impl == "grouped":
        inner = _grouped_grads_fn(template, binary, logit_grads, precision, device.type)
        chain = _grouped_chain(template)
    elif logit_grads is None:
        inner = grads_fn(template, binary, precision, device.type)
    else:
        inner = logit_grads_step(template, logit_grads, precision, device.type)
    # a private code copy per trainer, backend failures in one line (iwlab.train.compiled)
    fn = compile_step(inner, "the func backend's step") if compile else inner
    pending = {"check": conv_impl == "grouped"}

    def step(
        params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor, y: Tensor, gw: Tensor
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        if channels_last:
            x = channels_last_input(x)  # (M, B, C, H, W) stored as (B, H, W, M, C)
        if pending["check"]:
            _check_grouped(template, chain, params, buffers, x)
            pending["check"] = False
        with tf32_flags(precision, device):
            grads, new_buffers = fn(params, buffers, x, y, gw)
        # each gradient in its parameter's layout (grouped Linear gradients come transposed): the in-place
        # optimizer update then reads matching strides, which a CPU does several times faster
        return {
            k: g if g.stride() == params[k].stride() else _like(params[k], g) for k, g in grads.items()
        }, new_buffers

    return step


def _like(p: Tensor, g: Tensor) -> Tensor:
    """``g``'s values in ``p``'s memory layout (one copy)."""
    return torch.empty_like(p).copy_(g)


@torch.no_grad()
def _check_grouped(
    template: nn.Module, chain: list[tuple[str, nn.Module]], params: dict[str, Tensor], buffers: dict, x: Tensor
) -> None:
    """Refuse ``conv_impl="grouped"`` unless its eval-mode logits equal ``vmap``'s on ``x`` (float32 round-off)."""
    mode = template.training
    template.eval()  # no dropout: both sides deterministic, no RNG drawn
    try:
        with strict_fp32(x.device):  # TF32 would round the two layouts' kernels apart by ~1e-3
            want = forward(template, params, buffers, x, shared=False)  # (M, B, out)
            got = _grouped_forward(chain, params, x)
    finally:
        template.train(mode)
    scale = float(want.abs().max()) if want.numel() else 0.0
    err = float((got - want).abs().max()) if want.numel() else 0.0
    if not err <= 1e-4 * (1.0 + scale):
        raise ValueError(
            f"conv_impl='grouped' gives other logits than the model's forward (max |diff| {err:.3g} at scale "
            f"{scale:.3g}): its forward is not the chain of its layers; use conv_impl='vmap'"
        )
