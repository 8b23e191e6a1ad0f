"""Loss-based importance sampling in PyTorch Lightning: the pool pattern in ``training_step``.

Run:
    python examples/lightning_pool.py

Shows: the train ``DataLoader`` is an ordinary shuffled one that yields pools of P = 3 * B examples;
``training_step`` scores the pool with a no-grad forward pass (the oracle of Katharopoulos & Fleuret,
2017), keeps B of them with ``sampler.select``, trains on ``(weights * per-example loss).mean()`` and
feeds the losses back with ``sampler.update``. The sampler's state goes into Lightning's checkpoints.
CPU only, about 10 s. Prints the last step's (weighted) training loss, then the plain loss and the
accuracy on the whole training set (``final loss ...; dataset loss ...; train accuracy ...``).

Why the pool pattern and not a custom batch sampler (``iwlab.sampling.ImportanceBatchSampler``): under
DDP, Lightning's ``use_distributed_sampler=True`` (the default) rebuilds every train ``DataLoader`` around
its own ``DistributedSampler``; a batch sampler that is not a ``torch.utils.data.BatchSampler`` is
rejected (``TypeError: Lightning can't inject a (distributed) sampler into your batch sampler``), and
turning the option off leaves sharding to you. The pool pattern needs nothing from the loader: each rank
gets uniform pools from Lightning's ``DistributedSampler`` and selects from its own pool.
"""

import os
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

import lightning as L  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from iwlab.sampling import IndexedDataset, OracleSampler  # noqa: E402

B, POOL, STEPS = 32, 96, 150  # minibatch B, pool P = 3 * B, optimizer steps
N, D, C = 2048, 10, 4  # examples, features, classes

# one DataLoader process on a shared CPU: Lightning's "consider more workers" hint is noise here
warnings.filterwarnings("ignore", ".*does not have many workers.*")


def make_data() -> TensorDataset:
    """A separable-ish toy problem: x (N, D) float32, y (N,) int64, most examples easy, a few hard."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(D, C, generator=g)
    x = torch.randn(N, D, generator=g)  # (N, D)
    y = (x @ w + 0.5 * torch.randn(N, C, generator=g)).argmax(1)  # (N,) noisy labels: some are hard
    return TensorDataset(x, y)


class PoolSampledClassifier(L.LightningModule):
    """A linear-softmax classifier trained on importance-sampled minibatches chosen from each pool."""

    def __init__(self, data: TensorDataset) -> None:
        super().__init__()
        self.data = data
        self.net = torch.nn.Sequential(torch.nn.Linear(D, 64), torch.nn.ReLU(), torch.nn.Linear(64, C))
        # The sampler needs the dataset only for its size (here); k = 0.5 is the paper's biased,
        # lower-variance choice, k = 1 would be unbiased. "adaptive" smoothing adds half the EMA of the
        # minibatch loss to every score so that easy examples keep p > 0 (paper §4.2).
        self.sampler = OracleSampler(data, batch_size=B, k=0.5, presample=POOL / B, smoothing="adaptive", seed=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (n, C) logits

    def per_example_loss(self, x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(self(x), y, reduction="none")  # (n,)

    def train_dataloader(self) -> DataLoader:
        # A plain shuffled loader: a shuffled batch of P is the paper's uniform presample. IndexedDataset
        # adds each example's dataset index, which ApproxSampler / PerClassGaussianSampler need (they score
        # by index); the oracle would also work on pool positions. Under DDP Lightning swaps in its
        # DistributedSampler (shuffled, one shard per rank) and this code does not change.
        g = torch.Generator().manual_seed(1)
        return DataLoader(IndexedDataset(self.data), batch_size=POOL, shuffle=True, drop_last=True, generator=g)

    def training_step(self, batch: tuple[tuple[Tensor, Tensor], Tensor], batch_idx: int) -> Tensor:
        pool, indices = batch  # pool = (x (P, D), y (P,)), indices (P,)
        # score_fn runs under torch.no_grad inside select: a cheap forward pass over the P pool examples
        b = self.sampler.select(pool, indices=indices, score_fn=self.per_example_loss)
        x, y = b.data  # (B, D), (B,): the kept examples, drawn with replacement, p ∝ loss + c
        losses = self.per_example_loss(x, y)  # (B,) with grad
        loss = (b.weights * losses).mean()  # weights (B,) = 1 / (P p^k): (1/B) sum w_i l_i
        self.sampler.update(b.indices, losses.detach())  # the adaptive-smoothing EMA (approx: its predictor)
        self.log("train_loss", loss)
        # the unweighted loss of the kept examples: what the model sees as hard (not what it optimizes)
        self.log("kept_mean_loss", losses.detach().mean())
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)

    # The sampler is not an nn.Module: save its state (generator, EMA, learned state) with the checkpoint
    # so that a resumed run draws what an uninterrupted one would.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["importance_sampler"] = self.sampler.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.sampler.load_state_dict(checkpoint["importance_sampler"])


def main() -> None:
    L.seed_everything(0, verbose=False)  # Python, NumPy and torch generators (model init)
    torch.set_num_threads(1)
    data = make_data()
    model = PoolSampledClassifier(data)
    trainer = L.Trainer(
        max_steps=STEPS,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model)
    with torch.no_grad():  # sanity: the model learned the task (chance is about 1 / C)
        x, y = data.tensors
        accuracy = (model(x).argmax(1) == y).float().mean()
        dataset_loss = F.cross_entropy(model(x), y)
    # the last step's weighted loss: with k = 0.5 the weights are about P^(k-1) ~ 0.1, so it reads small
    final = trainer.callback_metrics["train_loss"]
    print(
        f"final loss {float(final):.4f} (weighted, last step); dataset loss {float(dataset_loss):.3f}; "
        f"train accuracy {float(accuracy):.3f} after {trainer.global_step} steps"
    )


if __name__ == "__main__":
    main()
