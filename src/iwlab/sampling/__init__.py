"""Loss-based importance sampling for any PyTorch loop (Katharopoulos & Fleuret, 2017).

See :mod:`iwlab.sampling.samplers` for the strategies and :mod:`iwlab.functional.sampling` for the
pure functions (probabilities, weights ``alpha = 1/(N p^k)``, draws).

Example:
    >>> from iwlab.sampling import make_sampler
    >>> # sampler = make_sampler("approx", train_set, batch_size=128, k=0.5, smoothing="adaptive")
"""

from iwlab.sampling.predictor import LossPredictor as LossPredictor
from iwlab.sampling.samplers import METHODS as METHODS
from iwlab.sampling.samplers import ApproxSampler as ApproxSampler
from iwlab.sampling.samplers import ImportanceSampler as ImportanceSampler
from iwlab.sampling.samplers import OracleSampler as OracleSampler
from iwlab.sampling.samplers import PCGSampler as PCGSampler
from iwlab.sampling.samplers import SampledBatch as SampledBatch
from iwlab.sampling.samplers import UniformSampler as UniformSampler
from iwlab.sampling.samplers import fetch as fetch
from iwlab.sampling.samplers import make_sampler as make_sampler
