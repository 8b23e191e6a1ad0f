"""Bad inputs for issue 12 (approx sampler, floored scores, match_unbiased_sum, lr grid search).

Each test states the right behaviour against an independent reference (float64 arithmetic, a Python
re-implementation) or the documented error. The first block are defects found by hunting, each fixed in
the same change (a docstring's "now" describes the code before the fix); the last block are cheap
regression checks of inputs that already behaved.
"""

from __future__ import annotations

import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from iwlab.experiments.importance_sampling_mnist import Config
from iwlab.functional.sampling import floored_scores, importance_weights
from iwlab.sampling import ApproxSampler, OracleSampler
from iwlab.sampling.approx import append_losses
from iwlab.sampling.predictor import LossPredictor

ROOT = Path(__file__).resolve().parents[1]


def _dataset(n: int = 30, classes: int = 3) -> TensorDataset:
    return TensorDataset(torch.randn(n, 2, generator=torch.Generator().manual_seed(0)), torch.arange(n) % classes)


def _matched_reference(probs: list[float], k: float, n: int) -> list[float]:
    """float64 ``t / (n p^k)`` with ``t = B / sum_b p_b^(1-k)``, in log space (no over/underflow on the way)."""
    logs = [math.log(p) for p in probs]
    top = max((1 - k) * lp for lp in logs)
    log_sum = top + math.log(sum(math.exp((1 - k) * lp - top) for lp in logs))  # log sum_b p_b^(1-k)
    return [math.exp(math.log(len(probs)) - log_sum - math.log(n) - k * lp) for lp in logs]


# ---- defects (fixed) ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [float("nan"), float("inf"), float("-inf")])
def test_approx_sample_raises_for_non_finite_predictions(bias: float) -> None:
    """ApproxSampler's docstring: "``sample`` raises if the predictor's output is not finite".

    Now floored_scores(validate=False) turns NaN/inf predictions into all-ones scores (``m`` is NaN, so
    ``torch.where(m > 0, ...)`` takes the uniform branch), and -inf into 0 before the floor: sampling becomes
    silently uniform (or treats -inf as 0) and the base class's finiteness check never sees it.
    """
    s = ApproxSampler(_dataset(), batch_size=4, seed=0)
    with torch.no_grad():
        s.predictor.out.bias.fill_(bias)
    assert not bool(torch.isfinite(s.predict(torch.arange(30))).any())  # the premise
    with pytest.raises(ValueError, match="finite"):
        s.sample()


def test_approx_checkpoint_with_nan_predictor_does_not_sample_silently_uniform() -> None:
    """A checkpoint whose predictor weights are NaN must be refused at load, or make sample() raise."""
    a = ApproxSampler(_dataset(), batch_size=4, seed=0)
    b = a.sample()
    a.update(b.indices, torch.rand(4))
    state = a.state_dict()
    pred = {k: v.clone() for k, v in state["predictor"].items()}
    pred["out.bias"].fill_(float("nan"))
    s = ApproxSampler(_dataset(), batch_size=4, seed=0)
    with pytest.raises(ValueError):
        s.load_state_dict({**state, "predictor": pred})
        s.sample()


@pytest.mark.parametrize(
    ("predicted", "floor"),
    [
        ([-1.0, 1.0], 1e-50),  # a floor that passes the (0, 1] check but underflows float32 to 0
        ([-1.0, 1e-44], 0.1),  # subnormal predictions: f * m underflows to 0
    ],
)
def test_floored_scores_never_gives_a_zero_score(predicted: list[float], floor: float) -> None:
    """floored_scores promises "every example keeps p > 0"; a floor score that underflows to 0 breaks it.

    Right behaviour: every score > 0, or a ValueError naming the floor (one float32 cannot represent).
    """
    x = torch.tensor(predicted)
    try:
        s = floored_scores(x, floor)
    except ValueError as e:
        assert "floor" in str(e)
        return
    assert bool((s > 0).all()), s.tolist()


def test_match_unbiased_sum_does_not_refuse_representable_weights() -> None:
    """k very negative: the eq. 12 weights underflow float32, but the rescaled ones are ~1 (float64 reference).

    Now importance_weights raises "not representable in float32" before rescaling, though its Returns
    says it computes in float64 "when float32 would overflow or underflow on the way".
    """
    p = torch.tensor([1 / 384, 1 / 384, 0.01])
    ref = _matched_reference(p.double().tolist(), -20.0, 384)
    assert all(1e-30 < r < 1e30 for r in ref)  # representable in float32
    w = importance_weights(p, k=-20.0, n=384, match_unbiased_sum=True)
    assert w.dtype == torch.float32
    torch.testing.assert_close(w.double(), torch.tensor(ref, dtype=torch.float64), rtol=1e-5, atol=0)


def test_oracle_match_unbiased_sum_k_very_negative_uniform_scores_give_weight_one() -> None:
    """Equal scores over a pool of 384: p = 1/384, so the matched weights are 1/(P p) = 1 for every k."""
    s = OracleSampler(_dataset(400), batch_size=4, k=-20.0, presample=96.0, seed=0, match_unbiased_sum=True)
    b = s.sample(score_fn=lambda x, y: torch.ones(x.shape[0]))
    torch.testing.assert_close(b.weights, torch.ones(4), rtol=1e-6, atol=0)


def test_match_unbiased_sum_raises_instead_of_returning_inf() -> None:
    """Rescaled weights beyond float32 must raise (as the unscaled path does), not come back as inf.

    Reference: p = [1e-44, 1e-44], k = 0.5, n = 1 gives t / (n p^k) = 1/p ~ 7e43 > float32's max.
    """
    p = torch.tensor([1e-44, 1e-44])
    ref = _matched_reference(p.double().tolist(), 0.5, 1)
    assert ref[0] > torch.finfo(torch.float32).max
    with pytest.raises(ValueError, match="not representable"):
        importance_weights(p, k=0.5, n=1, match_unbiased_sum=True)


def test_importance_weights_refuses_a_non_bool_match_unbiased_sum() -> None:
    """The samplers refuse match_unbiased_sum='no' (truthy); the function silently rescales with it."""
    with pytest.raises(TypeError, match="match_unbiased_sum"):
        importance_weights(torch.tensor([0.5, 0.25]), k=0.5, n=4, match_unbiased_sum="no")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [True, float("nan"), -1.0])
def test_approx_checkpoint_refuses_a_bad_predictor_loss(bad: object) -> None:
    """predictor_loss_ is an MSE: a bool, NaN or negative is not one (ema_loss_ refuses the same values)."""
    a = ApproxSampler(_dataset(), batch_size=4, seed=0)
    state = a.state_dict()
    s = ApproxSampler(_dataset(), batch_size=4, seed=0)
    with pytest.raises(ValueError, match="predictor_loss_"):
        s.load_state_dict({**state, "predictor_loss_": bad})


def test_approx_checkpoint_with_huge_int_predictor_loss_fails_before_changing_state() -> None:
    """load_state_dict checks every field before anything changes; 2**2000 passes the check and then
    float() raises OverflowError in _set_state, after history_, lengths_ and the predictor were replaced."""
    a = ApproxSampler(_dataset(), batch_size=4, seed=1)
    for _ in range(3):
        b = a.sample()
        a.update(b.indices, torch.rand(4) + 1)
    state = a.state_dict()
    s = ApproxSampler(_dataset(), batch_size=4, seed=0)
    before = s.history_.clone()
    with pytest.raises(ValueError, match="predictor_loss_"):
        s.load_state_dict({**state, "predictor_loss_": 2**2000})
    assert torch.equal(s.history_, before)


def test_predictor_loss_is_the_mse_not_inf_for_large_representable_losses() -> None:
    """Losses of 9e18 (below the documented 9.2e18 bound) give squared errors ~8.1e37 each: their mean is
    representable in float32, but mse_loss sums 8 of them first and reports inf. Reference: float64 MSE."""
    s = ApproxSampler(_dataset(), batch_size=8, seed=0, presample=None)
    b = s.sample()
    losses = torch.full((8,), 9e18)
    pred = s.predict(b.indices).detach().double()
    ref = float(((pred - losses.double()) ** 2).mean())
    assert ref < torch.finfo(torch.float32).max
    s.update(b.indices, losses)
    assert s.predictor_loss_ is not None and math.isfinite(s.predictor_loss_)
    assert s.predictor_loss_ == pytest.approx(ref, rel=1e-4)


def test_lr_search_without_uniform_is_refused() -> None:
    """An lr search selects on uniform alone; without uniform in methods every cell trains for nothing, the
    report says "no lr has all 1 seed(s) with a finite test_error" (the wrong reason) and the lr figure fails
    with matplotlib's "Data cannot be log-scaled". Right: validate() names the problem."""
    with pytest.raises(ValueError, match="uniform"):
        Config(methods=("pcg_k1",), lrs=(0.001, 0.002)).validate()


@pytest.mark.slow
@pytest.mark.parametrize(("flag", "value"), [("--rounds", "0"), ("--warmup", "0")])
def test_bench_sampler_overhead_zero_rounds_or_warmup(flag: str, value: str) -> None:
    """--rounds 0 dies after the warm-up with statistics.StatisticsError ("no median for empty data");
    --warmup 0 (no warm-up) dies in train_sampled ("iterations must be an integer >= 1"). Right: --warmup 0
    runs without a warm-up, and --rounds 0 is an argparse error naming --rounds (exit 2, no traceback)."""
    args = ["--fixture", "--iterations", "1", "--rounds", "1", "--warmup", "1", "--methods", "uniform", "approx_k1"]
    args[args.index(flag) + 1] = value
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_sampler_overhead.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src")},
    )
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    if flag == "--warmup":
        assert r.returncode == 0
        assert "approx/uniform per-iteration time ratio" in r.stdout
    else:
        assert r.returncode == 2 and "--rounds" in r.stderr


# ---- regression checks of inputs that already behave (cheap) -----------------------------------------------------


def _append_reference(hist: list[list[float]], lens: list[int], idx: list[int], losses: list[float]) -> None:
    H = len(hist[0])
    last = {}
    for j, i in enumerate(idx):
        last[i] = losses[j]  # last write wins
    for i, v in last.items():
        kept = ([*hist[i][: lens[i]], v])[-H:]
        hist[i] = kept + hist[i][len(kept) :]
        lens[i] = min(lens[i] + 1, H)


def test_append_losses_matches_a_python_reference_with_repeats_empty_and_h1() -> None:
    rng = random.Random(12)
    for _ in range(100):
        N, H = rng.randint(1, 5), rng.randint(1, 3)
        hist, lens = torch.zeros(N, H), torch.zeros(N, dtype=torch.long)
        rh, rl = [[0.0] * H for _ in range(N)], [0] * N
        for _ in range(5):
            B = rng.randint(0, 7)
            idx = [rng.randrange(N) for _ in range(B)]
            vals = [float(rng.randint(1, 99)) for _ in range(B)]
            append_losses(hist, lens, torch.tensor(idx, dtype=torch.long), torch.tensor(vals))
            _append_reference(rh, rl, idx, vals)
            assert lens.tolist() == rl
            for i in range(N):
                assert hist[i, : rl[i]].tolist() == rh[i][: rl[i]]


def test_loss_predictor_matches_running_each_history_alone() -> None:
    torch.manual_seed(0)
    m = LossPredictor(4, hidden=8)
    P, H = 12, 5
    hist, lens, y = torch.randn(P, H), torch.tensor([0, 1, 2, 3, 4, 5] * 2), torch.arange(P) % 4
    out = m(hist, lens, y)
    with torch.no_grad():
        for i in range(P):
            L = int(lens[i])
            feat = torch.zeros(8) if L == 0 else m.lstm(hist[i, :L].reshape(1, L, 1))[0][0, -1]
            ref = m.out(torch.cat([feat, m.embed(y[i : i + 1])[0]]))
            assert float(out[i]) == pytest.approx(float(ref), abs=1e-5)


@pytest.mark.parametrize("floor", [0, float("nan"), 1.5, True, "0.1"])
def test_approx_score_floor_out_of_range_is_refused(floor: object) -> None:
    with pytest.raises((TypeError, ValueError), match="score_floor"):
        ApproxSampler(_dataset(), batch_size=4, score_floor=floor)  # type: ignore[arg-type]


def test_match_unbiased_sum_against_float64_reference() -> None:
    p = torch.tensor([0.5, 0.25, 1e-6])
    for k in (1.0, 0.5, 0.0, -2.0):
        w = importance_weights(p, k=k, n=7, match_unbiased_sum=True)
        ref = torch.tensor(_matched_reference(p.double().tolist(), k, 7), dtype=torch.float64)
        torch.testing.assert_close(w.double(), ref, rtol=1e-6, atol=0)
