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
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vjp, vmap


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


def grads_fn(template: nn.Module, binary: bool) -> Callable:
    """``fn(params, buffers, x, y, gw) -> (grads, new_buffers)``: per-member gradients of ``sum_i gw_i * CE_i``.

    ``x`` ``(M, B, ...)``, ``y`` ``(M, B)`` (float 0/1 when ``binary``), ``gw`` ``(M, B)`` gradient weights.
    """

    def loss(
        p: dict[str, Tensor], b: dict[str, Tensor], xi: Tensor, yi: Tensor, wi: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        # clone inside the transforms: the forward writes running statistics into these
        # (in place, as nn.BatchNorm does); the clones come back as aux, the inputs stay intact
        b = {k: v.clone() for k, v in b.items()}
        z = functional_call(template, (p, b), (xi,))
        if binary:
            per = nn.functional.binary_cross_entropy_with_logits(z.squeeze(-1), yi, reduction="none")
        else:
            per = nn.functional.cross_entropy(z, yi, reduction="none")
        return (per * wi).sum(), b

    return vmap(grad(loss, has_aux=True), randomness="different")


def logit_grads_step(template: nn.Module, logit_grads: Callable) -> Callable:
    """``fn(params, buffers, x, y, gw) -> (grads, new_buffers)`` for members with their own losses.

    The members' forward runs under ``vmap`` as in :func:`grads_fn`; ``torch.func.vjp`` of it pulls back
    ``d loss / d logits`` ``(M, B, out)`` from ``logit_grads(logits, y, gw, x, params)`` (the same function the
    stacked backend uses, :func:`iwlab.train.member_losses.logit_grads_fn`), so every per-member loss and the
    ``reweight`` hook work on any module. Members on plain cross-entropy keep :func:`grads_fn`'s path.
    """

    def member_forward(p: dict[str, Tensor], b: dict[str, Tensor], xi: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        b = {k: v.clone() for k, v in b.items()}  # the forward writes running statistics into these (see grads_fn)
        return functional_call(template, (p, b), (xi,)), b

    def step(
        params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor, y: Tensor, gw: Tensor
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        def forward(p: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
            return vmap(member_forward, randomness="different")(p, buffers, x)

        logits, pull_back, new_buffers = vjp(forward, params, has_aux=True)  # logits (M, B, out)
        g = logit_grads(logits.detach(), y, gw, x, list(params.values()))  # (M, B, out)
        return pull_back(g)[0], new_buffers

    return step
