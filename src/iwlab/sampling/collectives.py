"""Small ``torch.distributed`` helpers of the samplers: per-stream seeds and the collectives they run.

:func:`stream_seed` mixes (seed, rank, epoch, ...) into one 63-bit seed, the same in every process;
:func:`all_gather_pairs` gathers every rank's (indices, losses); :func:`ranks_refusing` lets the ranks
agree that an update is valid before gathering it; :func:`ranks_differing` compares a value across
ranks. Each collective must be called by every rank of the process group (gloo gathers CPU tensors,
NCCL CUDA ones).

Example:
    >>> stream_seed(0, 1) != stream_seed(1, 0)
    True
"""

from __future__ import annotations

import hashlib

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["all_gather_pairs", "ranks_differing", "ranks_refusing", "stream_seed"]


def stream_seed(*parts: int) -> int:
    """A seed in [0, 2**63) that depends on ``parts`` only (e.g. seed, epoch; or seed, rank, epoch).

    The same in every process (blake2b; Python's ``hash`` is salted per process for strings), and well
    mixed: ``DistributedSampler``'s ``seed + epoch`` makes seed 0 at epoch 1 repeat seed 1 at epoch 0.

    Example:
        >>> stream_seed(0, 1) != stream_seed(1, 0)
        True
    """
    text = "iwlab.stream:" + ":".join(str(int(p)) for p in parts)
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def all_gather_pairs(indices: Tensor, losses: Tensor) -> tuple[Tensor, Tensor]:
    """Every rank's (indices, losses), concatenated in rank order; sizes may differ between ranks."""
    world = dist.get_world_size()
    dev = _collective_device()
    loss = losses.detach().reshape(-1).to(dev, torch.float64)  # float64: no rank's loss is rounded on the way
    n = torch.tensor([indices.numel()], device=dev)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    top = int(max(s.item() for s in sizes))
    pad_i = torch.zeros(top, dtype=torch.long, device=dev)
    pad_l = torch.zeros(top, dtype=torch.float64, device=dev)
    pad_i[: indices.numel()] = indices.to(dev)
    pad_l[: loss.numel()] = loss
    got_i = [torch.empty_like(pad_i) for _ in range(world)]
    got_l = [torch.empty_like(pad_l) for _ in range(world)]
    dist.all_gather(got_i, pad_i)
    dist.all_gather(got_l, pad_l)
    keep = [int(s.item()) for s in sizes]
    all_i = torch.cat([g[:k] for g, k in zip(got_i, keep, strict=True)]).cpu()
    all_l = torch.cat([g[:k] for g, k in zip(got_l, keep, strict=True)]).cpu()
    return all_i, all_l


def _collective_device() -> torch.device:
    # NCCL gathers CUDA tensors only; gloo (the CPU backend) CPU ones
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def ranks_refusing(refused: bool) -> list[int]:
    """The ranks whose ``refused`` is True (a collective: every rank must call it, with its own flag)."""
    flag = torch.tensor([int(refused)], device=_collective_device())
    flags = [torch.zeros_like(flag) for _ in range(dist.get_world_size())]
    dist.all_gather(flags, flag)
    return [r for r, f in enumerate(flags) if int(f.item())]


def ranks_differing(value: int) -> list[int]:
    """The ranks whose ``value`` (an int below 2**60) differs from rank 0's (a collective)."""
    mine = torch.tensor([value], dtype=torch.long, device=_collective_device())
    got = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(got, mine)
    return [r for r, v in enumerate(got) if int(v.item()) != int(got[0].item())]
