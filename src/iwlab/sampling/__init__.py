"""Importance samplers for any PyTorch training loop (Katharopoulos & Fleuret, 2017).

Every sampler draws a minibatch of dataset indices, fetches the items from an ordinary
``torch.utils.data.Dataset`` and returns weights ``alpha`` that multiply the per-example losses:

    sampler = OracleSampler(train_set, batch_size=128, k=0.5, presample=3.0, smoothing="adaptive")
    for step in range(6000):
        batch = sampler.sample(score_fn=lambda x, y: F.cross_entropy(model(x), y, reduction="none"))
        x, y = batch.data
        losses = F.cross_entropy(model(x), y, reduction="none")          # (B,)
        (batch.weights * losses).mean().backward(); opt.step(); opt.zero_grad()
        sampler.update(batch.indices, losses.detach())                   # history, predictor, EMA

Strategies (``make_sampler(strategy, ...)`` or ``make_sampler(SamplerSpec(...), ...)``):

* ``uniform``: epochs of random permutations (plain SGD), weights 1;
* ``oracle``: draw a uniform pool of ``presample * B`` examples, score them with ``score_fn`` (a
  forward pass), draw B of them with ``p ∝ score + c`` (with replacement);
* ``approx``: as oracle, but the scores are the :class:`~iwlab.sampling.predictor.LossPredictor`'s
  predictions from each example's loss history and class, trained online with MSE in ``update``;
* ``pcg`` (:class:`PerClassGaussianSampler`): scores are the running mean of the loss of each class (a
  univariate Gaussian per class).

A :class:`SamplerSpec` names a strategy and its k; ``SamplerSpec.parse`` reads the CLI spelling
(``oracle_k0.5``).

Weights are ``alpha_i = 1 / (P p_i^k)`` with P the pool size (:mod:`iwlab.functional.sampling`), so
``mean(alpha * losses)`` is unbiased for the dataset mean loss when k = 1 and every example with a
nonzero loss can be drawn (p > 0). ``approx`` guarantees that for any predictor output: its scores are
the predictions floored at a fraction ``score_floor`` of the pool's mean positive prediction
(:func:`~iwlab.functional.sampling.floored_scores`), so no example or class is starved and every weight
is at most ``(1 + f)/f``. ``match_unbiased_sum=True`` rescales each k < 1 batch to the unbiased
weights' score-weighted sum, as the authors' code does.

Smoothing ``c`` is a constant or ``"adaptive"``: half the exponential moving average of the minibatch
mean loss (paper §4.2).

Samplers are checkpointable: ``state_dict()`` / ``load_state_dict()`` hold the random generator, the
uniform cursor, the loss histories, the predictor and its optimizer, the EMA and the class statistics,
so a resumed run draws exactly the batches an uninterrupted one would. The state also carries the
dataset size ``n`` (and ``num_classes``, ``history`` for the class-aware samplers); loading a state
that does not fit this sampler raises before anything changes.

Inputs are checked at the boundary, and a failed check leaves the sampler unchanged: ``update`` refuses
non-finite or negative losses and indices outside ``[0, n)``, naming them; the oracle refuses negative
or non-finite scores, naming the pool position and dataset index; class labels must be in
``[0, num_classes)``; weights that float32 cannot represent raise instead of becoming 0 or inf.

Inside a ``DataLoader`` (workers, pinned memory; :mod:`~iwlab.sampling.loader`):
:class:`ImportanceBatchSampler` yields each minibatch's indices with their weights, which
:class:`WeightedDataset` and :class:`ImportanceCollate` carry through the workers into a
:class:`SampledBatch`. The pool pattern, :meth:`ImportanceSampler.select`, keeps B examples of a pool
batch from any DataLoader (inside Lightning's ``training_step`` or a Trainer's ``compute_loss``, under
DDP). :class:`DistributedWeightedSampler` is a weighted draw sharded over ranks.

Modules: :mod:`~iwlab.sampling.base` (the base class), :mod:`~iwlab.sampling.batch` (:class:`SampledBatch`,
:func:`fetch`), :mod:`~iwlab.sampling.loader`, :mod:`~iwlab.sampling.distributed`,
:mod:`~iwlab.sampling.collectives`, :mod:`~iwlab.sampling.state` (checkpoints),
:mod:`~iwlab.sampling.strategies` (uniform, oracle, per-class Gaussian), :mod:`~iwlab.sampling.approx`
(the learned predictor's scores),
:mod:`~iwlab.sampling.spec` (:class:`SamplerSpec`, :func:`make_sampler`), :mod:`~iwlab.sampling.checks`.
Source: Katharopoulos & Fleuret (2017), "Biased Importance Sampling for Deep Neural Network
Training", §3-4.

Example:
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> ds = TensorDataset(torch.randn(100, 3), torch.randint(0, 2, (100,)))
    >>> s = OracleSampler(ds, batch_size=8, presample=4.0, seed=0)
    >>> b = s.sample(score_fn=lambda x, y: x.pow(2).sum(1))
    >>> b.indices.shape, b.weights.shape, b.data[0].shape
    (torch.Size([8]), torch.Size([8]), torch.Size([8, 3]))
"""

from iwlab.sampling.approx import ApproxSampler as ApproxSampler
from iwlab.sampling.base import MAX_POOL as MAX_POOL
from iwlab.sampling.base import ImportanceSampler as ImportanceSampler
from iwlab.sampling.batch import ImportanceCollate as ImportanceCollate
from iwlab.sampling.batch import IndexedDataset as IndexedDataset
from iwlab.sampling.batch import SampledBatch as SampledBatch
from iwlab.sampling.batch import WeightedDataset as WeightedDataset
from iwlab.sampling.batch import WeightedIndex as WeightedIndex
from iwlab.sampling.batch import fetch as fetch
from iwlab.sampling.distributed import DistributedWeightedSampler as DistributedWeightedSampler
from iwlab.sampling.loader import ImportanceBatchSampler as ImportanceBatchSampler
from iwlab.sampling.predictor import LossPredictor as LossPredictor
from iwlab.sampling.spec import STRATEGIES as STRATEGIES
from iwlab.sampling.spec import SamplerSpec as SamplerSpec
from iwlab.sampling.spec import Strategy as Strategy
from iwlab.sampling.spec import make_sampler as make_sampler
from iwlab.sampling.strategies import OracleSampler as OracleSampler
from iwlab.sampling.strategies import PerClassGaussianSampler as PerClassGaussianSampler
from iwlab.sampling.strategies import UniformSampler as UniformSampler
