"""SamplerSpec: the one reader of the CLI spelling ("oracle_k0.5"), and make_sampler from a spec."""

import pytest
import torch
from torch.utils.data import TensorDataset

from iwlab.sampling import STRATEGIES, PerClassGaussianSampler, SamplerSpec, make_sampler


@pytest.mark.parametrize(
    "text, strategy, k, label",
    [
        ("uniform", "uniform", 1.0, "Uniform"),
        ("oracle_k0.5", "oracle", 0.5, "Oracle k=0.5"),
        ("approx_k1", "approx", 1.0, "Approx k=1"),
        ("pcg_k-1", "pcg", -1.0, "PCG k=-1"),
        ("approx_k0.75", "approx", 0.75, "Approx k=0.75"),
    ],
)
def test_parse_reads_the_spelling_and_str_writes_it_back(text, strategy, k, label):
    spec = SamplerSpec.parse(text)
    assert spec == SamplerSpec(strategy, k) and spec.label == label
    assert str(spec) == text and SamplerSpec.parse(str(spec)) == spec


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("oracle", "needs its k"),
        ("uniform_k1", "bad method"),
        ("approx_k2", "k must be <= 1"),
        ("loss_k1", "bad method"),
        ("oracle_k", "bad method"),
        ("oracle_k1e-3", "bad method"),
        ("Oracle_k1", "bad method"),
    ],
)
def test_parse_refuses_other_spellings(text, pattern):
    with pytest.raises(ValueError, match=pattern):
        SamplerSpec.parse(text)


def test_spec_checks_its_fields():
    assert STRATEGIES == ("uniform", "oracle", "approx", "pcg")
    for bad in (dict(strategy="loss"), dict(strategy="oracle", k=1.5), dict(strategy="oracle", k=float("nan"))):
        with pytest.raises(ValueError):
            SamplerSpec(**bad)
    with pytest.raises(ValueError, match="uniform sampling has weights 1"):
        SamplerSpec("uniform", 0.5)
    assert isinstance(SamplerSpec("oracle", 1).k, float) and len({SamplerSpec.parse("oracle_k1"), SamplerSpec()}) == 2


@pytest.mark.parametrize("text", ["uniform", "oracle_k0.5", "approx_k1", "pcg_k0.5"])
def test_make_sampler_from_a_spec_draws_what_strategy_and_k_draw(text):
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.randn(30, 2, generator=g), torch.randint(0, 3, (30,), generator=g))
    spec = SamplerSpec.parse(text)
    kw = {} if spec.strategy == "uniform" else {"k": spec.k}
    a = make_sampler(spec, ds, 4, seed=3)
    b = make_sampler(spec.strategy, ds, 4, seed=3, **kw)
    assert type(a) is type(b) and a.k == b.k == spec.k
    score = lambda x, y: x.pow(2).sum(1)  # noqa: E731
    for _ in range(3):
        ba, bb = a.sample(score_fn=score), b.sample(score_fn=score)
        assert torch.equal(ba.indices, bb.indices) and torch.equal(ba.weights, bb.weights)


def test_pcg_key_builds_the_per_class_gaussian_sampler():
    ds = TensorDataset(torch.zeros(4, 1), torch.tensor([0, 1, 0, 1]))
    assert isinstance(make_sampler("pcg", ds, 2), PerClassGaussianSampler)
    with pytest.raises(ValueError, match="unknown sampling method 'PCG'"):
        make_sampler("PCG", ds, 2)
