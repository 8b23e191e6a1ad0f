"""Bad inputs of iwlab.implicit_bias found by the issue-14 break-it round, each with the right answer.

References: scipy's brentq on the 1-D stationarity equation, mpmath Newton in 80 digits, and answers by hand
(algebra in the comments).
"""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

import iwlab.implicit_bias as ib
from iwlab.implicit_bias import (
    asymptotic_constant,
    hard_margin_svm,
    homogeneous_normalized_margin,
    offset,
    parameter_norm,
    predicted_direction_error,
    regularized_minimizer,
)

T64 = torch.float64
X2, Y2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([1, 0])  # none: w = (1, -1), alpha = (1, 1)


# ---------------------------------------------------------------- 1. regularized_minimizer, small lambda


def root_1d(lam, c=1.0):
    """theta of X = [[c, 0], [-c, 0]], y = [1, 0], unit weights: c sigma(-c theta) = lam theta.

    In t = c theta: sigma(-t) = (lam / c**2) t, solved in logs (-log(1 + e^t) = log(lam t / c**2)) by brentq.
    """
    k = math.log(lam) - 2 * math.log(c)
    t = brentq(lambda t: -np.logaddexp(0.0, t) - k - math.log(t), 1e-300, 2000.0, xtol=1e-300, rtol=1e-15)
    return t / c


@pytest.mark.parametrize("lam", [1e-3, 1e-12, 1e-16, 1e-50, 1e-300])
def test_regularized_small_lambda_matches_brentq(lam):
    X, y = torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), torch.tensor([1, 0])
    theta = regularized_minimizer(X, y, torch.ones(2), lam)
    assert float(theta[0]) == pytest.approx(root_1d(lam), rel=4e-15)  # was 24.401 (1e-12), 27.94 (1e-16)
    assert float(theta[1]) == 0.0


def test_regularized_huge_data_matches_brentq():
    c = 1e100  # L-BFGS alone stopped with "ABNORMAL" here
    X = torch.tensor([[c, 0.0], [-c, 0.0]], dtype=T64)
    theta = regularized_minimizer(X, torch.tensor([1, 0]), torch.ones(2), 0.1)
    assert float(theta[0]) == pytest.approx(root_1d(0.1, c), rel=4e-15)


def test_regularized_2d_matches_mpmath():
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 80
    X = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [-1.0, -2.0]])
    y, w = np.array([1, 0, 1, 0]), np.array([1.0, 4.0, 2.0, 0.5])
    A = (2 * y - 1)[:, None] * X
    for lam in (1e-8, 1e-16, 1e-100):
        ours = regularized_minimizer(torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(w), lam).numpy()
        th = mp.matrix([mp.mpf(float(v)) for v in ours])  # Newton in 80 digits from our answer
        Am, lm = mp.matrix(A.tolist()), mp.mpf(lam)
        for _ in range(30):
            p = [1 / (1 + mp.exp((Am[i, :] * th)[0])) for i in range(4)]
            g = -sum((w[i] * p[i] * Am[i, :].T for i in range(4)), mp.matrix(2, 1)) / 4 + lm * th
            H = sum((w[i] * p[i] * (1 - p[i]) * Am[i, :].T * Am[i, :] for i in range(4)), mp.matrix(2, 2)) / 4
            th = th - mp.lu_solve(H + lm * mp.eye(2), g)
        ref = np.array([float(v) for v in th])
        assert np.linalg.norm(ours - ref) <= 1e-14 * np.linalg.norm(ref), lam


def test_regularized_refuses_what_float64_cannot_hold_and_bad_types():
    X, y = torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), torch.tensor([1, 0])
    # sigma(-t) = 1e-305 t needs forces ~1e-302: the underflow bound tiny / (lambda ||theta||) ~ 3e-6 > 1e-10
    for lam in (1e-305, 5e-324):
        with pytest.raises(ValueError, match="hard_margin_svm"):
            regularized_minimizer(X, y, torch.ones(2), lam)
    for bad in (True, "0.1", torch.tensor([0.1, 0.2])):
        with pytest.raises(TypeError, match="weight_decay"):
            regularized_minimizer(X, y, torch.ones(2), bad)
    assert regularized_minimizer(X, y, torch.ones(2), np.float32(0.25)).equal(
        regularized_minimizer(X, y, torch.ones(2), 0.25)
    )
    with pytest.raises(TypeError, match="X"):
        regularized_minimizer(X.to(torch.complex64), y, torch.ones(2), 0.1)
    with pytest.raises(TypeError, match="weights"):
        regularized_minimizer(X, y, torch.tensor([True, True]), 0.1)
    assert regularized_minimizer(X, y, torch.tensor([1, 3]), 0.1).equal(
        regularized_minimizer(X, y, torch.tensor([1.0, 3.0]), 0.1)
    )
    with pytest.raises(ValueError, match="d = 0"):
        regularized_minimizer(torch.zeros(2, 0), y, torch.ones(2), 0.1)


# ---------------------------------------------------------------- 2. offset with an svm of other data


def test_offset_refuses_svm_of_other_data():
    w = torch.tensor([1.0, 4.0])
    # by hand (X2, none): w = (1, -1), alpha = (1, 1); rho_1 = log(0.5 * 1 / 1), -rho_2 = log(0.5 * 4 / 1)
    good = offset(X2, Y2, w, 0.5, svm=hard_margin_svm(X2, Y2)).rho
    assert torch.allclose(good, torch.tensor([math.log(0.5), -math.log(2.0)], dtype=T64), rtol=0, atol=1e-15)
    for other in (hard_margin_svm(2 * X2, Y2), hard_margin_svm(X2, torch.tensor([0, 1]))):  # same N: was accepted
        with pytest.raises(ValueError, match="svm"):
            offset(X2, Y2, w, 0.5, svm=other)
    with pytest.raises(ValueError, match="svm"):  # other d
        offset(X2, Y2, w, 0.5, svm=hard_margin_svm(torch.tensor([[1.0], [-1.0]]), Y2))


# ---------------------------------------------------------------- 3. data scales where alpha or w overflow


def test_hard_margin_svm_refuses_unrepresentable_alpha_or_w():
    X = X2.to(T64)
    for c in (1e-150, 1e150):  # alpha = 1 / c**2, w = (1, -1) / c: still representable
        sol = hard_margin_svm(X * c, Y2)
        assert torch.allclose(sol.alpha, torch.full((2,), 1 / c**2, dtype=T64), rtol=1e-14, atol=0)
        assert torch.allclose(sol.w, torch.tensor([1 / c, -1 / c], dtype=T64), rtol=1e-15, atol=0)
        assert sol.support.all()
    for c in (1e-155, 1e160):  # alpha ~ 1e310 (was inf) or 1e-320 (was 0 with an empty support)
        for bias in ("none", "homogeneous", "free"):
            with pytest.raises(ValueError, match="alpha .* scale"):
                hard_margin_svm(X * c, Y2, bias=bias)
    with pytest.raises(ValueError, match="w .* overflows"):  # was numpy's "array must not contain infs or NaNs"
        hard_margin_svm(X * 1e-310, Y2)
    with pytest.raises(TypeError, match="X"):
        hard_margin_svm(X.to(torch.complex128), Y2)


# ---------------------------------------------------------------- 4. extreme scales in the offset formulas


def test_direction_error_and_constant_at_extreme_scales():
    t = torch.tensor([10.0, 1e6], dtype=T64)
    th, rho = torch.tensor([1.0, -1.0], dtype=T64), torch.tensor([1.0, 2.0], dtype=T64)
    # by hand: v = (log t + 1, 2 - log t), u = (1, -1) / sqrt 2; P_perp rho = (1.5, 1.5), so C = 1.5 sqrt 2 / sqrt 2
    v = np.stack([np.log(t.numpy()) + 1, 2 - np.log(t.numpy())], axis=1)
    chord = np.linalg.norm(v / np.linalg.norm(v, axis=1, keepdims=True) - np.array([1, -1]) / math.sqrt(2), axis=1)
    for c in (1.0, 1e170, 1e-170, 1e300):  # scale-invariant in (theta_hat, rho) jointly
        got = predicted_direction_error(t, c * th, c * rho)
        np.testing.assert_allclose(got.numpy(), chord, rtol=1e-14)
        assert float(asymptotic_constant(c * th, c * rho)) == pytest.approx(1.5, rel=1e-15)
    tiny = torch.tensor([1e-170, -1e-170], dtype=T64)  # v ~ rho = (1, 1), orthogonal to u (was inf / nan)
    one = torch.ones(2, dtype=T64)
    assert float(predicted_direction_error(t[:1], tiny, one)[0]) == pytest.approx(math.sqrt(2), rel=1e-15)
    assert float(predicted_direction_error(t[:1], tiny, one, kind="angle")[0]) == pytest.approx(math.pi / 2, rel=1e-15)
    # tangent: ||P_perp rho|| / (||theta_hat|| log t + rho.u) = sqrt 2 / (sqrt 2 1e-170 log 10)
    tan = float(predicted_direction_error(t[:1], tiny, one, kind="tangent")[0])
    assert tan == pytest.approx(1 / (1e-170 * math.log(10.0)), rel=1e-14)
    assert float(asymptotic_constant(tiny, one)) == pytest.approx(1e170, rel=1e-15)  # was nan
    for bad in (th.to(torch.complex128), torch.tensor([True, False])):
        with pytest.raises(TypeError, match="svm_direction"):
            predicted_direction_error(t, bad, rho)


def test_parameter_norm_without_overflow_and_bad_inputs():
    assert parameter_norm([torch.full((1, 4), 1e30)]).tolist() == [torch.tensor(2e30).item()]  # was inf (float32)
    assert parameter_norm([torch.full((1, 4), 1e-30)]).tolist() == [torch.tensor(2e-30).item()]  # was 0
    got = parameter_norm([torch.full((2, 4), 1e200, dtype=T64), torch.full((2, 1), 1e200, dtype=T64)])
    assert got.dtype == T64 and torch.allclose(got, torch.full((2,), math.sqrt(5) * 1e200, dtype=T64), rtol=1e-15)
    p = torch.tensor([[3.0, 4.0], [1e-3, 0.0]], requires_grad=True)  # still differentiable
    parameter_norm([p]).sum().backward()
    assert torch.allclose(p.grad, torch.tensor([[0.6, 0.8], [1.0, 0.0]]))
    with pytest.raises(TypeError, match="params"):
        parameter_norm(torch.ones(2, 3))  # a tensor, not a list: was read as 2 parameters of M = 3
    for bad in (torch.ones(2, 3, dtype=torch.int64), torch.ones(2, 3, dtype=torch.bool)):
        with pytest.raises(TypeError, match="params"):
            parameter_norm([bad])
    with pytest.raises(ValueError, match="M = 0"):
        parameter_norm([torch.ones(0, 3)])
    with pytest.raises(TypeError, match="scores"):
        homogeneous_normalized_margin(torch.ones(2, 2, dtype=torch.complex64), Y2, torch.ones(2), 1)


# ---------------------------------------------------------------- 5, 6. one class with a free bias; d = 0


def test_free_bias_one_class_and_single_point():
    # min ||w|| s.t. s (w.x + b) >= 1, b free, one class s: w = 0 and any s b >= 1; the smallest |b| is b = s.
    for X, y, s in (
        (torch.tensor([[1.0, 0.0], [2.0, 2.0]]), torch.tensor([1, 1]), 1.0),
        (torch.tensor([[1.0, 0.0]]), torch.tensor([0]), -1.0),
    ):
        sol = hard_margin_svm(X, y, bias="free")  # was "could not solve the SVM's KKT equations"
        assert sol.w.tolist() == [0.0, 0.0] and sol.b == s
        assert sol.alpha.tolist() == [0.0] * len(y) and not sol.support.any()  # w = sum a s x = 0, sum a s = 0
        assert sol.margins.tolist() == [1.0] * len(y)


def test_no_features():
    X0 = torch.zeros(2, 0)
    with pytest.raises(ValueError, match="d = 0"):
        hard_margin_svm(X0, Y2, bias="none")
    with pytest.raises(ValueError, match="d = 0"):
        offset(X0, Y2, torch.ones(2), 0.5)
    # with a bias, one class is separated by it alone: min b^2 s.t. s b >= 1 gives b = s; b = sum a s: sum a = 1
    for bias in ("homogeneous", "free"):
        sol = hard_margin_svm(X0, torch.tensor([0, 0]), bias=bias)
        assert sol.w.shape == (0,) and sol.b == -1.0 and sol.margins.tolist() == [1.0, 1.0]
        assert float(sol.alpha.sum()) == pytest.approx(1.0 if bias == "homogeneous" else 0.0, abs=1e-15)
        with pytest.raises(ValueError, match="not linearly separable"):  # two classes: no separator
            hard_margin_svm(X0, Y2, bias=bias)


# ---------------------------------------------------------------- 7. argument checks of offset and friends


def test_offset_argument_checks():
    w = torch.tensor([1.0, 4.0])
    ref = offset(X2, Y2, w, 0.5).rho
    assert offset(X2, Y2, w, np.float32(0.5)).rho.equal(ref)  # was refused while np.float64 was accepted
    assert offset(X2, Y2, torch.tensor([1, 4]), 0.5).rho.equal(ref)  # int weights, exact in float64
    with pytest.raises(TypeError, match="weights"):
        offset(X2, Y2, torch.tensor([True, True]), 0.5)
    with pytest.raises(TypeError, match="lr"):
        offset(X2, Y2, w, True)
    with pytest.raises(ValueError, match="X must have shape"):  # was "weights must be ... shape (-1,)"
        offset(torch.tensor([1.0, 2.0]), Y2, w, 0.5)
    with pytest.raises(ValueError, match=r"values \[1.0, inf\]"):  # was -9223372036854775808
        hard_margin_svm(X2, torch.tensor([float("inf"), 1.0]))
    with pytest.raises(TypeError, match="X"):
        offset(X2.to(torch.complex64), Y2, w, 0.5)


# ---- third hunt (re-hunt of the fixes) -----------------------------------------------------------


def _bisect(f, lo, hi):
    for _ in range(300):
        mid = (lo + hi) / 2
        if f(mid) < 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@pytest.mark.parametrize("lam", [1e-230, 1e-240, 1e-280, 1e-300])
def test_regularized_minimizer_with_a_constant_part_at_tiny_lambda(lam):
    """Two identical points with opposite labels add a constant to the objective, next to which its decrease is
    below rounding: the polish used to stop 22 % short (533.55 for 683.15 at 1e-300). theta = (t*, 0) with
    lam t = sigmoid(-t) / 3, solved here by bisection in float64 (sigmoid(-t) = e^-t / (1 + e^-t), representable)."""
    X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    theta = ib.regularized_minimizer(X, torch.tensor([1, 1, 0]), torch.ones(3), lam)
    t_star = _bisect(lambda t: lam * t - math.exp(-t) / (1.0 + math.exp(-t)) / 3, 1.0, 2000.0)
    assert abs(float(theta[0]) - t_star) <= 1e-12 * t_star and float(theta[1]) == 0.0


def test_regularized_minimizer_refuses_a_singular_hessian_with_a_message():
    X = torch.tensor([[1.0, 1.0, 0.0], [2.0, 2.0, 0.0]], dtype=torch.float64)  # two directions short of d = 3
    with pytest.raises(ValueError, match="below float64's resolution"):
        ib.regularized_minimizer(X, torch.tensor([1, 1]), torch.ones(2), 1e-40)


def test_offset_refuses_an_svm_of_other_points_on_the_same_margin_lines():
    svm = ib.hard_margin_svm(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([1, 1]))
    other = torch.tensor([[2.0, 1.0], [2.0, 3.0]])  # margins agree with svm's, alphas do not
    with pytest.raises(ValueError, match="not computed from these X and y"):
        ib.offset(other, torch.tensor([1, 1]), torch.ones(2), 1.0, svm=svm)


def test_asymptotic_constant_of_empty_vectors_is_refused():
    with pytest.raises(ValueError, match="D >= 1"):
        ib.asymptotic_constant(torch.tensor([]), torch.tensor([]))
