"""The approx sampler (issue 12): positive scores for any prediction, no starved class, the vectorized
history, the sync-free predictor, and the k < 1 rescaling, each against an independent reference."""

import math

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence
from torch.utils.data import TensorDataset

from iwlab.functional.sampling import floored_scores, importance_weights
from iwlab.sampling import ApproxSampler, LossPredictor, OracleSampler, make_sampler
from iwlab.sampling.approx import append_losses

N, C = 30, 3


def _issue_problem():
    """The issue's example: 30 examples in 3 classes, true losses uniform in [0.5, 1.5]."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(N) % C
    return TensorDataset(torch.zeros(N, 1), y), y, 0.5 + torch.rand(N, generator=g)


def _mc_mean(s, losses, draws):
    """Mean and standard error of the weighted minibatch mean (1/B) sum alpha_b L_b over ``draws`` batches."""
    est = torch.tensor(
        [float((b.weights.double() * losses[b.indices]).mean()) for b in map(lambda _: s.sample(), range(draws))]
    )
    return float(est.mean()), float(est.std()) / math.sqrt(draws)


class _FixedPredictions(ApproxSampler):
    """An approx sampler whose predictor outputs fixed values (a hostile predictor)."""

    def __init__(self, *a, predictions, **kw):
        super().__init__(*a, **kw)
        self.fixed = predictions

    def predict(self, indices):
        return self.fixed[indices.to(self.fixed.device)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_k1_is_unbiased_before_and_after_learning_the_issue_example(seed):
    ds, y, true = _issue_problem()
    s = ApproxSampler(ds, batch_size=4, presample=None, seed=seed)  # k = 1, no smoothing
    mean, se = _mc_mean(s, true.double(), 1500)
    # the clamp gave 0.35 for a true mean of 0.97: a 4 standard-error band, plus float32 rounding
    assert abs(mean - float(true.double().mean())) < 4 * se + 1e-6
    for _ in range(400):
        b = s.sample()
        s.update(b.indices, true[b.indices])
    mean, se = _mc_mean(s, true.double(), 1500)
    assert abs(mean - float(true.double().mean())) < 4 * se + 1e-5


def test_no_class_is_starved_while_learning_or_after_400_updates_with_the_true_losses():
    """Stated bounds on each class's draw rate (its share is 1/3; the clamp drew [0, 0, 2272]).

    While the predictor learns (400 updates), every example keeps p >= f / (P (1 + f)), so each class's
    rate is at least its share times f / (1 + f) = 0.09 for f = 0.1, whatever the predictor outputs.
    After learning, the true losses lie in [0.5, 1.5] (class means 0.86-1.05 around 0.97), so each
    class's rate lies within a factor 1.5 of its share.
    """
    ds, y, true = _issue_problem()
    for seed in range(3):
        s = ApproxSampler(ds, batch_size=4, presample=None, seed=seed)
        counts = torch.zeros(C)
        for _ in range(400):
            b = s.sample()
            counts += torch.bincount(y[b.indices], minlength=C)
            s.update(b.indices, true[b.indices])
        rate = counts / counts.sum()
        assert bool((rate > 1 / 3 * 0.1 / 1.1).all()), rate.tolist()
        after = torch.bincount(y[torch.cat([s.sample().indices for _ in range(1500)])], minlength=C)
        rate = after / after.sum()
        assert bool((rate > 1 / 3 / 1.5).all()) and bool((rate < 1.5 / 3).all()), rate.tolist()


@pytest.mark.parametrize("k", [1.0, 0.5])
def test_a_hostile_predictor_negative_zero_and_huge_keeps_every_p_positive_and_k1_unbiased(k):
    ds, y, true = _issue_problem()
    pred = torch.linspace(-1, 2, N)
    pred[:5] = -5.0  # negative
    pred[5:10] = 0.0  # zero
    pred[10] = 1e30  # huge
    s = _FixedPredictions(ds, batch_size=4, presample=None, seed=0, k=k, predictions=pred)
    probs = floored_scores(pred, 0.1)
    probs = probs.double() / probs.double().sum()
    assert bool((probs > 0).all())
    # the floor's guarantee: alpha = 1/(P p) <= (1 + f)/f = 11 for f = 0.1
    assert float((1 / (N * probs)).max()) <= 11 + 1e-9
    counts = torch.zeros(N)
    for _ in range(3000):
        counts += torch.bincount(s.sample().indices, minlength=N)
    assert bool((counts[:10] > 0).all())  # the examples predicted <= 0 are still drawn
    if k == 1.0:
        # exact expectation of the estimator under these probabilities: sum_i p_i L_i / (P p_i) = mean L
        mean, se = _mc_mean(s, true.double(), 3000)
        assert abs(mean - float(true.double().mean())) < 4 * se + 1e-6


def test_a_class_predicted_negative_keeps_at_least_the_floor_rate():
    """The guaranteed lower bound: p_i >= f / (P (1 + f)), so a class of n_c examples gets >= n_c f / (P (1 + f))."""
    ds, y, true = _issue_problem()
    pred = torch.where(y == 0, -3.0, 1.0)
    s = _FixedPredictions(ds, batch_size=8, presample=None, seed=0, predictions=pred)
    drawn = torch.cat([s.sample().indices for _ in range(2000)])
    rate = float((y[drawn] == 0).double().mean())
    bound = (10 / N) * 0.1 / 1.1
    assert rate >= bound - 4 * math.sqrt(bound * (1 - bound) / drawn.numel())
    # and the exact rate for these predictions: class 0 scores the floor 0.1 * (20/30), others 1
    exact = 10 * 0.1 * 20 / 30 / (10 * 0.1 * 20 / 30 + 20)
    assert rate == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / drawn.numel()))


def test_floored_scores_reference_values_and_bad_inputs():
    pred = torch.tensor([-2.0, 0.0, 1.0, 3.0], dtype=torch.float64)
    m = (0 + 0 + 1 + 3) / 4  # mean positive part
    assert floored_scores(pred, 0.5).tolist() == [0.5 * m, 0.5 * m, 1.0, 3.0]
    assert floored_scores(torch.tensor([-1.0, -1.0])).tolist() == [1.0, 1.0]  # nothing positive: uniform
    big = floored_scores(torch.tensor([3e38, 3e38, 0.0]), 0.1)  # the mean must not overflow
    assert bool(torch.isfinite(big).all()) and float(big[2]) == pytest.approx(0.1 * 2e38, rel=1e-5)
    with pytest.raises(ValueError, match="floor must be in"):
        floored_scores(pred, 0.0)
    with pytest.raises(ValueError, match="predicted must be finite"):
        floored_scores(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="score_floor must be in"):
        ApproxSampler(_issue_problem()[0], 4, score_floor=1.5)


def test_oracle_refuses_a_negative_score_instead_of_sampling_uniformly():
    ds, y, true = _issue_problem()
    s = OracleSampler(ds, batch_size=4, presample=None)
    with pytest.raises(ValueError, match=r"score_fn's scores must be finite and >= 0.*score -1.0"):
        s.sample(score_fn=lambda x, yy: torch.full((N,), -1.0))


def _packed_reference(m: LossPredictor, history, lengths, labels):
    """The predictor's forward with pack_padded_sequence (its previous implementation)."""
    packed = pack_padded_sequence(
        history.unsqueeze(-1), lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
    )
    _, (h, _) = m.lstm(packed)
    feat = h[-1] * (lengths > 0).to(h.dtype).unsqueeze(-1)
    return m.out(torch.cat([feat, m.embed(labels)], dim=-1)).reshape(-1)


def test_predictor_without_packing_equals_the_packed_lstm_in_float64():
    torch.manual_seed(0)
    m = LossPredictor(4, hidden=8).double()
    g = torch.Generator().manual_seed(1)
    hist = torch.rand(50, 10, generator=g, dtype=torch.float64)
    lengths = torch.randint(0, 11, (50,), generator=g)
    lengths[:3] = torch.tensor([0, 1, 10])
    labels = torch.randint(0, 4, (50,), generator=g)
    torch.testing.assert_close(
        m(hist, lengths, labels), _packed_reference(m, hist, lengths, labels), rtol=1e-12, atol=1e-12
    )


def _append_reference(history, lengths, indices, losses):
    """A Python loop: each index keeps its last loss of the batch; full rows drop their oldest."""
    last = {}
    for j, i in enumerate(indices.tolist()):
        last[i] = float(losses[j])
    H = history.shape[1]
    for i, v in last.items():
        n = int(lengths[i])
        if n >= H:
            history[i] = torch.cat([history[i, 1:], torch.tensor([v], dtype=history.dtype)])
        else:
            history[i, n] = v
        lengths[i] = min(n + 1, H)


def test_vectorized_history_update_equals_a_python_loop_with_repeated_indices():
    g = torch.Generator().manual_seed(0)
    h1, n1 = torch.zeros(12, 4), torch.zeros(12, dtype=torch.long)
    h2, n2 = h1.clone(), n1.clone()
    for _ in range(60):
        idx = torch.randint(0, 12, (9,), generator=g)  # repeats are certain at this size
        val = torch.rand(9, generator=g)
        append_losses(h1, n1, idx, val)
        _append_reference(h2, n2, idx, val)
        assert torch.equal(h1, h2) and torch.equal(n1, n2)


def test_match_unbiased_sum_equals_the_authors_rescaling_in_float64():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(20, generator=g, dtype=torch.float64) + 0.1
    p_all = scores / scores.sum()
    pick = torch.randint(0, 20, (6,), generator=g)
    p, s = p_all[pick], scores[pick]
    for k in (1.0, 0.5, 0.0, -1.0):
        w = importance_weights(p, k, n=20, match_unbiased_sum=True)
        # the reference, written as in the authors' BiasedReweightingPolicy
        w1 = scores.sum() / 20 / s
        wk = w1**k
        wk = wk * (w1 @ s) / (wk @ s)
        torch.testing.assert_close(w, wk, rtol=1e-12, atol=0)
        torch.testing.assert_close((w * s).sum(), (s / (20 * p)).sum(), rtol=1e-12, atol=0)
    assert torch.equal(importance_weights(p, 1.0, n=20, match_unbiased_sum=True), importance_weights(p, 1.0, n=20))


@pytest.mark.parametrize("method", ["oracle", "approx", "pcg"])
def test_both_weight_conventions_in_the_samplers(method):
    _, y, true = _issue_problem()
    ds = TensorDataset(true.unsqueeze(1), y)  # the oracle scores x itself
    kw = {"presample": 2.0, "k": 0.5, "seed": 3}
    plain = make_sampler(method, ds, 6, **kw)
    matched = make_sampler(method, ds, 6, match_unbiased_sum=True, **kw)
    for _ in range(5):
        a, b = plain.sample(score_fn=lambda x, yy: x[:, 0]), matched.sample(score_fn=lambda x, yy: x[:, 0])
        if method == "approx":  # the same predictor state on both: learn the same losses
            plain.update(a.indices, true[a.indices])
            matched.update(b.indices, true[b.indices])
        assert torch.equal(a.indices, b.indices)  # the same draw: only the scale differs
        P = 12
        torch.testing.assert_close(a.weights.double(), 1 / (P * a.probs.double() ** 0.5), rtol=1e-6, atol=0)
        # matched: sum_b w_b p_b equals the unbiased weights' sum_b p_b / (P p_b) = B / P
        torch.testing.assert_close(float((b.weights.double() * b.probs.double()).sum()), 6 / P, rtol=1e-5, atol=0)
    with pytest.raises(TypeError, match="match_unbiased_sum must be True or False"):
        make_sampler(method, ds, 6, match_unbiased_sum="false")


def test_approx_state_lives_on_the_datasets_device_and_checkpoints_round_trip():
    ds, y, true = _issue_problem()
    s = ApproxSampler(ds, batch_size=4, seed=0)
    assert s.history_.device == s.lengths_.device == s.labels_.device == ds.tensors[0].device
    assert all(p.device == ds.tensors[0].device for p in s.predictor.parameters())
    b = s.sample()
    s.update(b.indices, true[b.indices])
    assert isinstance(s.predictor_loss_, float) and s.state_dict()["predictor_loss_"] == s.predictor_loss_
    t = ApproxSampler(ds, batch_size=4, seed=1)
    t.load_state_dict(s.state_dict())
    assert t.predictor_loss_ == s.predictor_loss_ and torch.equal(t.history_, s.history_)


@pytest.mark.parametrize("method", ["approx", "pcg"])
def test_labels_too_large_to_be_class_indices_are_refused_by_name_not_by_an_allocator(method):
    """User trial: labels holding 2**40 asked the allocator for 140 TB instead of naming the labels."""
    y = torch.tensor([0, 1, 2**40])
    with pytest.raises(ValueError, match=r"num_classes is 1099511627777 \(from labels\).*class indices"):
        make_sampler(method, TensorDataset(torch.zeros(3, 1)), 2, labels=y)


def test_append_losses_refuses_shapes_that_do_not_fit_and_changes_nothing():
    h, n = torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)
    before = (h.clone(), n.clone())
    bad = [
        (h, n, torch.tensor([0, 1]), torch.rand(3)),  # losses of another size
        (h, n, torch.tensor([0.0, 1.0]), torch.rand(2)),  # float indices
        (h, n, torch.tensor([[0, 1]]), torch.rand(1, 2)),  # 2-D indices
        (h, torch.zeros(3, dtype=torch.long), torch.tensor([0]), torch.rand(1)),  # lengths of another N
    ]
    for args in bad:
        with pytest.raises(ValueError, match="must be"):
            append_losses(*args)
    assert torch.equal(h, before[0]) and torch.equal(n, before[1])
