"""Label-shifted samples: the drawn label frequencies match the requested priors (Monte Carlo bounds)."""

import numpy as np
import pytest
import torch

from iwlab.data.label_shift import (
    dirichlet_shift,
    empirical_weights,
    label_frequencies,
    sample_by_priors,
    true_weights,
    tweak_one_shift,
)

POOL = torch.arange(30000) % 3  # 10,000 examples per class


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def assert_frequencies_match(idx, priors, n, labels=POOL):
    assert idx.dtype == torch.int64 and idx.shape == (n,)
    assert len(set(idx.tolist())) == n, "drawn without replacement"
    freq = np.bincount(labels[idx].numpy(), minlength=len(priors)) / n
    q = priors.numpy()
    bound = 5 * np.sqrt(q * (1 - q) / n) + 1e-12  # multinomial counts: 5 standard deviations
    assert np.all(np.abs(freq - q) <= bound), (freq, q)


@pytest.mark.parametrize("priors", [[0.2, 0.3, 0.5], [0.0, 0.1, 0.9], [1.0, 0.0, 0.0]])
def test_sample_by_priors_matches_priors(priors):
    q = torch.tensor(priors, dtype=torch.float64)
    idx = sample_by_priors(POOL, q, 6000, gen())
    assert_frequencies_match(idx, q, 6000)
    torch.testing.assert_close(idx, sample_by_priors(POOL, q, 6000, gen()))  # same seed, same draw


@pytest.mark.parametrize("alpha", [0.1, 1.0, 10.0])
def test_dirichlet_shift_samples_its_drawn_priors(alpha):
    idx, q = dirichlet_shift(POOL, alpha, 5000, gen(1))
    assert q.dtype == torch.float64 and q.shape == (3,) and abs(float(q.sum()) - 1) < 1e-12 and bool((q >= 0).all())
    assert_frequencies_match(idx, q, 5000)


@pytest.mark.parametrize("alpha", [0.1, 1.0, 10.0])
def test_dirichlet_priors_have_the_dirichlet_mean_and_variance(alpha):
    g = gen(2)
    draws = torch.stack([dirichlet_shift(POOL, alpha, 1, g)[1] for _ in range(2000)]).numpy()
    k = 3
    var = (1 / k) * (1 - 1 / k) / (k * alpha + 1)  # Var of a Dir(alpha * 1) component
    assert np.all(np.abs(draws.mean(axis=0) - 1 / k) < 5 * np.sqrt(var / 2000))
    assert np.all(np.abs(draws.var(axis=0) / var - 1) < 0.2)


def test_tweak_one_shift():
    idx, q = tweak_one_shift(POOL, 1, 0.7, 4000, gen(3))
    np.testing.assert_allclose(q.numpy(), [0.15, 0.7, 0.15], atol=1e-15)
    assert_frequencies_match(idx, q, 4000)


def test_a_short_class_raises_naming_it():
    pool = torch.tensor([0] * 100 + [1] * 10)
    with pytest.raises(ValueError, match=r"^class 1 runs short: \d+ examples drawn for prior 0.9 \(n=50\) but labels"):
        sample_by_priors(pool, torch.tensor([0.1, 0.9]), 50, gen())
    with pytest.raises(ValueError, match=r"^class 1 runs short"):
        tweak_one_shift(pool, 1, 0.9, 50, gen())
    with pytest.raises(ValueError, match=r"^class 2 runs short: .* labels has only 0"):
        sample_by_priors(pool, torch.tensor([0.0, 0.0, 1.0]), 5, gen())


def test_true_and_empirical_weights():
    torch.testing.assert_close(
        true_weights(torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.3, 0.5])),
        torch.tensor([0.4, 1.0, 2.5], dtype=torch.float64),
    )
    rng = np.random.default_rng(0)
    ys, yt = rng.integers(0, 4, 500), rng.integers(0, 4, 300)
    expected = (np.bincount(yt, minlength=4) / 300) / (np.bincount(ys, minlength=4) / 500)
    w = empirical_weights(torch.from_numpy(ys), torch.from_numpy(yt), 4)
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-15)
    torch.testing.assert_close(label_frequencies(torch.from_numpy(yt), 4), torch.from_numpy(np.bincount(yt) / 300))


T = torch.tensor
HALF = T([0.5, 0.5])
BAD = [
    (lambda: true_weights(T([1.0, 0.0]), HALF), ValueError, "^source_priors is 0 for class 1"),
    (lambda: true_weights(HALF, T([0.2, 0.3, 0.5])), ValueError, "^target_priors has 3 classes but 2"),
    (lambda: true_weights(T([0.5, 0.6]), HALF), ValueError, "^source_priors row 0 sums to 1.1"),
    (lambda: true_weights(T([0.5, 0.5]), T([1.5, -0.5])), ValueError, "^target_priors has a negative entry"),
    (lambda: empirical_weights(T([0, 0]), T([0, 1]), 2), ValueError, "^source_labels has no example of class 1"),
    (lambda: empirical_weights(T([0.0, 1.0]), T([0, 1]), 2), TypeError, "^source_labels must be a 1-D integer"),
    (lambda: empirical_weights(T([0, 1]), T([0, 2]), 2), ValueError, r"^target_labels has label 2, outside \[0, n_c"),
    (lambda: dirichlet_shift(POOL, 0.0, 10, gen()), ValueError, "^alpha must be finite and > 0"),
    (lambda: dirichlet_shift(POOL, 1.0, 0, gen()), ValueError, "^n must be an integer >= 1"),
    (lambda: dirichlet_shift(POOL, 1.0, 10, 0), TypeError, "^generator must be a torch.Generator"),
    (lambda: tweak_one_shift(POOL, 3, 0.5, 10, gen()), ValueError, r"^cls must be in \[0, 3\)"),
    (lambda: tweak_one_shift(POOL, 0, 1.5, 10, gen()), ValueError, r"^rho must be in \[0, 1\]"),
    (lambda: sample_by_priors(POOL, HALF, 10, gen()), ValueError, r"^labels has label 2, outside"),
    (lambda: sample_by_priors(T([], dtype=torch.int64), HALF, 1, gen()), ValueError, "^labels is empty"),
]


@pytest.mark.parametrize("call, err, msg", BAD)
def test_bad_arguments_get_one_line_errors(call, err, msg):
    with pytest.raises(err, match=msg):
        call()


def test_n_classes_covers_classes_absent_from_the_pool():
    pool = T([0, 1] * 50)
    idx, q = tweak_one_shift(pool, 0, 1.0, 20, gen(4), n_classes=3)
    assert q.tolist() == [1.0, 0.0, 0.0] and bool((pool[idx] == 0).all())
    with pytest.raises(ValueError, match=r"^class 2 runs short: \d+ examples drawn for prior 0.25 .*only 0"):
        tweak_one_shift(pool, 0, 0.5, 20, gen(4), n_classes=3)
    with pytest.raises(ValueError, match="^n_classes must be an integer >= 2"):
        dirichlet_shift(pool, 1.0, 5, gen(), n_classes=1)


def test_true_weights_refuses_an_overflowing_ratio():
    with pytest.raises(ValueError, match="too small: the weight q/p overflows"):
        true_weights(torch.tensor([1e-320, 1.0], dtype=torch.float64), torch.tensor([0.5, 0.5], dtype=torch.float64))
