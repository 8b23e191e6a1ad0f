"""Loss-based importance sampling in a plain PyTorch loop, through an ordinary DataLoader with 2 workers.

``ImportanceBatchSampler`` draws each minibatch from the approx sampler's state (an LSTM predicts every
example's loss from its history; Katharopoulos & Fleuret 2017, §3.3); the DataLoader's workers fetch the
items; each batch arrives with the weights ``1/(P p^k)`` and the dataset indices, and ``update`` feeds the
observed losses back. Run:

    python examples/dataloader_importance.py

It prints the weighted training loss every 100 steps and ``final loss ...`` (the unweighted mean loss on
the training set) at the end; about 10 s on 2 CPU cores.
"""

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from iwlab.sampling import ApproxSampler, ImportanceBatchSampler

torch.manual_seed(0)
# a toy 10-class problem: 4,000 examples, 20 features, a linear rule plus noise
x = torch.randn(4000, 20)
y = (x[:, :10].argmax(1) + (torch.rand(4000) < 0.1) * torch.randint(0, 10, (4000,))) % 10
train_set = TensorDataset(x, y)

model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)

# k=1: unbiased weights; the pool is presample x batch_size examples drawn uniformly each step
batch_sampler = ImportanceBatchSampler(ApproxSampler(train_set, batch_size=64, k=1.0, presample=3.0, seed=0))
loader = batch_sampler.loader(num_workers=2)  # = DataLoader(WeightedDataset(train_set), batch_sampler=..., ...)

step = 0
for epoch in range(5):
    batch_sampler.set_epoch(epoch)
    for batch in loader:  # a SampledBatch: .data = (x, y), .weights (B,), .indices (B,), .probs (B,)
        xb, yb = batch.data
        losses = F.cross_entropy(model(xb), yb, reduction="none")  # (B,)
        loss = (batch.weights * losses).mean()  # unbiased for the mean training loss when k = 1
        loss.backward()
        opt.step()
        opt.zero_grad()
        batch_sampler.update(batch.indices, losses.detach())  # histories, predictor, EMA; retires the batch
        if step % 100 == 0:
            print(f"step {step:4d}  weighted loss {loss.item():.4f}")
        step += 1

# a checkpoint resumes exactly, prefetched batches included: torch.save(batch_sampler.state_dict(), path)
with torch.no_grad():
    print(f"final loss {F.cross_entropy(model(x), y).item():.4f} after {step} steps")
