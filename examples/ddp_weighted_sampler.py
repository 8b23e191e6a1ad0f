"""Class-balanced sampling under DistributedDataParallel with DistributedWeightedSampler (2 CPU processes).

Run:
    python examples/ddp_weighted_sampler.py

The file starts its own 2 processes (torch.multiprocessing, gloo backend, no GPU needed). The data
set is 80% / 15% / 5% over 3 classes; weighting each example by 1 / (its class's count) makes every
class equally likely to be drawn, so each rank prints roughly equal class counts. The ranks draw
from one global draw per epoch (same seed and epoch on every rank), each taking its own share.
"""

import gc
import os
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, TensorDataset

from iwlab.sampling.distributed import DistributedWeightedSampler

WORLD_SIZE, EPOCHS, BATCH = 2, 3, 32


def make_data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)  # the same data on every rank
    y = torch.cat([torch.full((n,), c) for c, n in enumerate([800, 150, 50])])  # (1000,) imbalanced labels
    x = torch.randn(len(y), 2, generator=g) + 2.0 * F.one_hot(y, 3)[:, :2]  # (1000, 2) features
    return TensorDataset(x, y)


def worker(rank: int, init_file: str) -> None:
    torch.set_num_threads(1)  # 2 processes on 2 cores
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    data = make_data()
    y = data.tensors[1]
    weights = 1.0 / torch.bincount(y).double()[y]  # (1000,) inverse class frequency: classes drawn equally
    # num_replicas and rank come from the process group; num_samples (default len(data)) is the total
    # over all ranks, so each rank draws 500 per epoch. Weights and seed must be the same on every rank:
    sampler = DistributedWeightedSampler(weights, seed=0)
    sampler.check_same_on_ranks()  # a collective that checks it (else the shards would overlap silently)
    loader = DataLoader(data, batch_size=BATCH, sampler=sampler)
    torch.manual_seed(0)  # DDP also broadcasts rank 0's parameters at construction
    model = DDP(torch.nn.Linear(2, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    counts = torch.zeros(3, dtype=torch.long)
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)  # a new global draw each epoch (otherwise every epoch repeats)
        for x, yb in loader:
            # no class weights in the loss: the sampler already balances the classes
            loss = F.cross_entropy(model(x), yb)
            opt.zero_grad()
            loss.backward()  # DDP averages the gradients over the ranks
            opt.step()
            counts += torch.bincount(yb, minlength=3)
    # to resume mid-epoch: save sampler.state_dict(consumed=batches_done * BATCH) per rank, then
    # load_state_dict into a new sampler on the same rank
    with torch.no_grad():  # the final model (identical on both ranks) on all the data, each class weighted alike
        x_all, y_all = data.tensors
        final = F.cross_entropy(model(x_all), y_all, weight=1.0 / torch.bincount(y_all).float())
    line = f"rank {rank}: drew class counts {counts.tolist()} over {EPOCHS} epochs; final balanced loss {final:.3f}"
    print(line + "\n", end="", flush=True)  # one write: the two ranks' lines do not interleave
    # tear down in order: free the DDP model (gc: its reducer sits in reference cycles and uses the
    # group), then destroy the group; otherwise gloo sometimes aborts the process at exit (SIGABRT)
    del model, opt
    gc.collect()
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:  # the processes meet through a file (no network port)
        mp.spawn(worker, args=(os.path.join(tmp, "rendezvous"),), nprocs=WORLD_SIZE)
