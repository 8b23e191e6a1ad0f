"""Label-shift estimators against a problem with a known answer and against independent references.

The reference problem (issue 16's acceptance): 3 classes, source priors [0.5, 0.3, 0.2], target priors
[0.2, 0.3, 0.5], exact (calibrated) posteriors of a Dirichlet feature model, 3,000 examples per side.
References: numpy float64 closed forms (BBSE, one EM step, Bayes' rule) and cvxpy (RLLS).
"""

import numpy as np
import pytest
import torch
from label_shift_reference import SOURCE_PRIORS, TARGET_PRIORS, TRUE_W, draw, empirical_w, posteriors

from iwlab.functional.label_shift import (
    MAX_CONDITION,
    _rlls_program,
    adjust_priors,
    bbse,
    bootstrap_ci,
    calibrated_probs,
    condition_number,
    confusion_matrix,
    fit_bcts,
    fit_temperature,
    fit_vector_scaling,
    mlls,
    nll,
    rlls,
    rlls_radius,
)


def problem(seed=0, n_source=3000, n_target=3000, target_priors=TARGET_PRIORS):
    rng = np.random.default_rng(seed)
    xs, ys = draw(rng, SOURCE_PRIORS, n_source)
    xt, yt = draw(rng, target_priors, n_target)
    ps, pt = posteriors(xs, SOURCE_PRIORS), posteriors(xt, SOURCE_PRIORS)
    return ps, ys, pt, yt, xt


def torch_args(ps, ys, pt):
    return torch.from_numpy(ps), torch.from_numpy(ys), torch.from_numpy(pt)


def numpy_bbse(ps, ys, pt, soft):
    """Independent closed form: C[i, j] = mean(pred_i 1[y = j]), w = max(solve(C, mu), 0), in numpy."""
    k = ps.shape[1]
    pred_s = ps if soft else np.eye(k)[ps.argmax(axis=1)]
    pred_t = pt if soft else np.eye(k)[pt.argmax(axis=1)]
    C = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            C[i, j] = np.mean(pred_s[:, i] * (ys == j))
    return np.maximum(np.linalg.solve(C, pred_t.mean(axis=0)), 0.0)


def test_reference_problem_all_estimators_within_0_1_of_empirical_weights():
    ps, ys, pt, yt, _ = problem()
    emp = empirical_w(ys, yt)
    args = torch_args(ps, ys, pt)
    estimates = {
        "bbse_hard": bbse(*args),
        "bbse_soft": bbse(*args, soft=True),
        "rlls": rlls(*args),
        "rlls_soft": rlls(*args, soft=True),
        "mlls": mlls(args[0], args[2]),
    }
    for name, w in estimates.items():
        w = w.numpy()
        print(f"{name}: w={np.round(w, 4)} |w - empirical|_inf={np.abs(w - emp).max():.4f} "
              f"|w - true [0.4, 1, 2.5]|_inf={np.abs(w - TRUE_W).max():.4f}")  # fmt: skip
        assert w.dtype == np.float64 and w.shape == (3,)
        assert np.abs(w - emp).max() < 0.1, name
        assert np.abs(w - TRUE_W).max() < 0.25, name  # sampling error of 3,000 + 3,000 draws


@pytest.mark.parametrize("soft", [False, True])
def test_bbse_equals_its_closed_form(soft):
    ps, ys, pt, _, _ = problem(seed=1)
    w = bbse(*torch_args(ps, ys, pt), soft=soft).numpy()
    np.testing.assert_allclose(w, numpy_bbse(ps, ys, pt, soft), rtol=0, atol=1e-10)


def test_bbse_clips_negative_solutions_at_zero():
    # a target with almost no class 0: the unconstrained solution goes negative from sampling error
    ps, ys, pt, _, _ = problem(seed=2, n_source=300, n_target=300, target_priors=np.array([0.0, 0.5, 0.5]))
    C = confusion_matrix(*torch_args(ps, ys, pt)[:2]).numpy()
    raw = np.linalg.solve(C, np.eye(3)[pt.argmax(axis=1)].mean(axis=0))
    w = bbse(*torch_args(ps, ys, pt)).numpy()
    assert raw.min() < 0 and w.min() == 0.0
    np.testing.assert_allclose(w, np.maximum(raw, 0), atol=1e-12)


def test_confusion_matrix_columns_are_label_frequencies_and_condition_number():
    ps, ys, _, _, _ = problem(seed=3, n_source=500)
    for soft in (False, True):
        C = confusion_matrix(torch.from_numpy(ps), torch.from_numpy(ys), soft=soft).numpy()
        np.testing.assert_allclose(C.sum(axis=0), np.bincount(ys, minlength=3) / 500, atol=1e-12)
        assert condition_number(torch.from_numpy(C)) == pytest.approx(np.linalg.cond(C), rel=1e-10)
    assert condition_number(torch.zeros(2, 2)) == float("inf")


def numpy_em_step(pt, source_priors, w):
    post = pt * w
    post /= post.sum(axis=1, keepdims=True)
    return post.mean(axis=0) / source_priors


@pytest.mark.parametrize("tol", [1e-6, 1e-10])
def test_mlls_reaches_its_fixed_point(tol):
    ps, _, pt, _, _ = problem()
    w, n_iter = mlls(torch.from_numpy(ps), torch.from_numpy(pt), tol=tol, max_iter=1000, return_n_iter=True)
    w = w.numpy()
    assert 1 < n_iter < 1000
    assert np.abs(numpy_em_step(pt, ps.mean(axis=0), w) - w).max() < tol


def test_mlls_uses_given_source_priors_and_raises_when_not_converged():
    ps, _, pt, _, _ = problem(seed=4, n_source=200, n_target=200)
    p = torch.tensor(SOURCE_PRIORS)
    w = mlls(torch.from_numpy(ps), torch.from_numpy(pt), source_priors=p, tol=1e-12, max_iter=5000).numpy()
    assert np.abs(numpy_em_step(pt, SOURCE_PRIORS, w) - w).max() < 1e-12
    with pytest.raises(RuntimeError, match=r"^mlls did not converge: .* tol=1e-12 after max_iter=2 steps"):
        mlls(torch.from_numpy(ps), torch.from_numpy(pt), tol=1e-12, max_iter=2)


def cvxpy_rlls(C, b, rho):
    # an independent solver: SCS (operator splitting), not the interior-point CLARABEL that rlls uses
    cp = pytest.importorskip("cvxpy", reason="cvxpy is in the test extra: pip install -e '.[test]'")
    theta = cp.Variable(len(b))
    prob = cp.Problem(cp.Minimize(cp.norm(C @ theta - b, 2) + rho * cp.norm(theta, 2)), [theta >= -1])
    prob.solve(solver=cp.SCS, eps_abs=1e-10, eps_rel=1e-10, max_iters=500_000)
    assert prob.status == "optimal"
    return theta.value, prob.value


@pytest.mark.parametrize(
    "alpha, target_priors",
    [
        (0.01, TARGET_PRIORS),  # small rho: the exact fit C theta = b (= unclipped BBSE)
        (1.0, TARGET_PRIORS),  # shrunk towards w = 1 (smooth optimum)
        (3.0, TARGET_PRIORS),
        (100.0, TARGET_PRIORS),  # theta = 0, w = 1
        (0.5, np.array([0.01, 0.49, 0.5])),  # the bound theta >= -1 (w >= 0) may be active
        (0.0, np.array([0.0, 0.5, 0.5])),
    ],
)
@pytest.mark.parametrize("soft", [False, True])
def test_rlls_equals_cvxpy_solution_of_the_same_program(alpha, target_priors, soft):
    ps, ys, pt, _, _ = problem(seed=5, n_source=400, n_target=300, target_priors=target_priors)
    args = torch_args(ps, ys, pt)
    w = rlls(*args, alpha=alpha, delta=0.05, soft=soft).numpy()
    C = confusion_matrix(args[0], args[1], soft=soft).numpy()
    mu = (pt if soft else np.eye(3)[pt.argmax(axis=1)]).mean(axis=0)
    b = mu - C.sum(axis=1)
    rho = alpha * 3 * (2 * np.log(2 * 3 / 0.05) / (3 * 400) + np.sqrt(2 * np.log(2 * 3 / 0.05) / 400))
    assert rho == pytest.approx(alpha * rlls_radius(400, 3, 0.05), rel=1e-12)
    theta_ref, value_ref = cvxpy_rlls(C, b, rho)
    theta = w - 1
    ours = np.linalg.norm(C @ theta - b) + rho * np.linalg.norm(theta)
    assert theta.min() >= -1
    assert ours <= value_ref + 1e-8  # at least as good as the independent solver
    np.testing.assert_allclose(theta, theta_ref, atol=1e-4)


def test_rlls_where_a_quasi_newton_solver_stalled():
    # found by the bad-input hunt: L-BFGS-B stopped at theta = [-0.868, 0.491]; the optimum has the bound active
    C = np.array([[0.21322444, 0.31560963], [0.14677556, 0.32439037]])
    b = np.array([-0.05822271, 0.05822271])
    theta_ref, _ = cvxpy_rlls(C, b, 0.0)
    np.testing.assert_allclose(_rlls_program(C, b, 0.0), theta_ref, atol=1e-5)
    assert abs(_rlls_program(C, b, 0.0)[0] + 1.0) < 1e-8  # w_0 = 0: the bound is active


def test_rlls_on_ten_classes_at_the_default_alpha():
    # found by the hunt: 2-17% of such K=10 problems raised "did not converge" with L-BFGS-B
    g = np.random.default_rng(1024)
    K, n = 10, 3000
    ps, qt = g.dirichlet(np.ones(K)), g.dirichlet(np.ones(K))
    ys, yt = g.choice(K, n, p=ps), g.choice(K, n, p=qt)
    A = np.ones((K, K)) + np.eye(K)
    P = np.stack([g.dirichlet(A[c]) for c in ys])
    T = np.stack([g.dirichlet(A[c]) for c in yt])
    w = rlls(torch.tensor(P), torch.tensor(ys), torch.tensor(T)).numpy()
    C = confusion_matrix(torch.tensor(P), torch.tensor(ys)).numpy()
    b = np.eye(K)[T.argmax(1)].mean(0) - C.sum(1)
    theta_ref, value_ref = cvxpy_rlls(C, b, 0.01 * rlls_radius(n, K, 0.05))
    rho = 0.01 * rlls_radius(n, K, 0.05)
    assert np.linalg.norm(C @ (w - 1) - b) + rho * np.linalg.norm(w - 1) <= value_ref + 1e-8
    np.testing.assert_allclose(w - 1, theta_ref, atol=1e-4)


def test_rlls_small_alpha_is_bbse_and_large_alpha_is_one():
    ps, ys, pt, _, _ = problem(seed=6, n_source=1000, n_target=1000)
    args = torch_args(ps, ys, pt)
    np.testing.assert_allclose(rlls(*args, alpha=1e-6).numpy(), bbse(*args).numpy(), atol=1e-12)
    np.testing.assert_array_equal(rlls(*args, alpha=1e3).numpy(), np.ones(3))


def test_adjust_priors_is_bayes_rule():
    ps, _, _, _, xt = problem(seed=7, n_target=500)
    w = np.array([0.3, 1.7, 0.9])
    expected = ps * w / (ps * w).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(adjust_priors(torch.from_numpy(ps), torch.from_numpy(w)).numpy(), expected, atol=1e-15)
    # with the true w, the source model's posteriors on target x become the target model's posteriors
    source_model = torch.from_numpy(posteriors(xt, SOURCE_PRIORS))
    corrected = adjust_priors(source_model, torch.from_numpy(TRUE_W)).numpy()
    np.testing.assert_allclose(corrected, posteriors(xt, TARGET_PRIORS), atol=1e-12)


@pytest.mark.parametrize("estimator", [bbse, lambda sp, sl, tp: mlls(sp, tp)])
def test_bootstrap_ci_covers_the_truth_on_a_large_sample(estimator):
    ps, ys, pt, _, _ = problem(seed=8, n_source=6000, n_target=6000)
    args = torch_args(ps, ys, pt)
    low, high = bootstrap_ci(estimator, *args, n_boot=200, level=0.95, generator=torch.Generator().manual_seed(0))
    point = estimator(*args)
    print(low, high)
    assert bool((low <= point).all() and (point <= high).all())
    assert bool((low <= torch.from_numpy(TRUE_W)).all() and (torch.from_numpy(TRUE_W) <= high).all())
    assert float((high - low).max()) < 0.4
    # the same generator state gives the same interval
    small = [a[:500] for a in args]
    first = bootstrap_ci(estimator, *small, n_boot=10, generator=torch.Generator().manual_seed(1))
    again = bootstrap_ci(estimator, *small, n_boot=10, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(first, again, rtol=0, atol=0)


def test_bootstrap_ci_names_a_refused_replicate():
    ps, ys, pt, _, _ = problem(seed=9, n_source=30, n_target=30)
    ys[:] = 0
    ys[0], ys[1] = 1, 2  # a resample will likely miss class 1 or 2
    with pytest.raises(ValueError, match=r"^bootstrap replicate \d+ was refused by the estimator: source_labels"):
        bootstrap_ci(bbse, *torch_args(ps, ys, pt), n_boot=50, generator=torch.Generator().manual_seed(0))


def test_max_condition_is_1e12():
    assert MAX_CONDITION == 1e12


# --- calibration: logits of a miscalibrated model, z = s * log p(y|x) + c, with p the exact posterior --------

A_CAL = np.array([[4.0, 2.0, 2.0], [2.0, 4.0, 2.0], [2.0, 2.0, 4.0]])  # overlapping: each label carries information


def calibration_data(seed=0, n=20000):
    rng = np.random.default_rng(seed)
    x, y = draw(rng, SOURCE_PRIORS, n, A_CAL)
    return torch.from_numpy(np.log(posteriors(x, SOURCE_PRIORS, A_CAL))), torch.from_numpy(y)


C_TRUE = torch.tensor([1.0, -0.5, 0.0], dtype=torch.float64)


def centred(v):
    return v - v.mean()


def test_temperature_scaling_recovers_the_temperature_and_reduces_nll():
    z, y = calibration_data()
    T = fit_temperature(3.0 * z, y)
    assert T == pytest.approx(3.0, rel=0.06)  # Monte Carlo: the MLE's sd is ~1.5% at n = 20,000
    assert nll(3.0 * z / T, y) < nll(3.0 * z, y)
    z2, y2 = calibration_data(seed=1)  # on fresh data too
    assert nll(3.0 * z2 / T, y2) < nll(3.0 * z2, y2)


def test_bcts_recovers_temperature_and_bias():
    z, y = calibration_data()
    T, b = fit_bcts(2.0 * z + C_TRUE, y)
    assert T == pytest.approx(2.0, rel=0.06)
    np.testing.assert_allclose(b.numpy(), centred(-C_TRUE / 2).numpy(), atol=0.06)  # sd ~0.015
    assert abs(float(b.sum())) < 1e-12
    probs = calibrated_probs(2.0 * z + C_TRUE, temperature=T, bias=b)
    assert float(-probs[torch.arange(len(y)), y].log().mean()) < nll(2.0 * z + C_TRUE, y)


def test_vector_scaling_recovers_scales_and_biases():
    z, y = calibration_data()
    s = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    scale, bias = fit_vector_scaling(z * s + C_TRUE, y)
    np.testing.assert_allclose((scale * s).numpy(), np.ones(3), atol=0.1)  # sd ~0.03
    np.testing.assert_allclose(bias.numpy(), centred(-C_TRUE / s).numpy(), atol=0.1)  # sd ~0.02


@pytest.mark.parametrize("method", ["temperature", "bcts", "vector"])
def test_calibration_is_at_the_nll_minimum(method):
    """Known answer: the gradient of the NLL vanishes, so with a bias the mean calibrated
    prediction equals the label frequencies exactly (d NLL / d b = mean(p - onehot(y)))."""
    z, y = calibration_data(seed=2, n=5000)
    logits = 2.5 * z + C_TRUE
    if method == "temperature":
        params = [torch.tensor(1 / fit_temperature(logits, y), dtype=torch.float64)]
        make = lambda p: logits * p[0]  # noqa: E731
    elif method == "bcts":
        T, b = fit_bcts(logits, y)
        params = [torch.tensor(1 / T, dtype=torch.float64), b]
        make = lambda p: logits * p[0] + p[1]  # noqa: E731
    else:
        params = list(fit_vector_scaling(logits, y))
        make = lambda p: logits * p[0] + p[1]  # noqa: E731
    params = [p.clone().requires_grad_(True) for p in params]
    loss = torch.nn.functional.cross_entropy(make(params), y)
    grads = torch.autograd.grad(loss, params)
    assert max(float(g.abs().max()) for g in grads) < 1e-6
    if method != "temperature":
        freq = torch.bincount(y, minlength=3).double() / len(y)
        torch.testing.assert_close(torch.softmax(make(params), 1).mean(0), freq, rtol=0, atol=1e-6)


def test_bcts_then_mlls_beats_uncalibrated_mlls():
    errors = {"raw": [], "bcts": []}
    for seed in range(3):
        rng = np.random.default_rng(seed)
        xs, ys = draw(rng, SOURCE_PRIORS, 3000)
        xt, yt = draw(rng, TARGET_PRIORS, 3000)
        miscal = lambda x: 3.0 * torch.from_numpy(np.log(posteriors(x, SOURCE_PRIORS))) + torch.tensor([1.5, 0, -1])  # noqa: E731
        zs, zt = miscal(xs), miscal(xt)
        w_raw = mlls(torch.softmax(zs, 1), torch.softmax(zt, 1), max_iter=1000)
        T, b = fit_bcts(zs, torch.from_numpy(ys))
        w_cal = mlls(calibrated_probs(zs, temperature=T, bias=b), calibrated_probs(zt, temperature=T, bias=b))
        emp = empirical_w(ys, yt)
        errors["raw"].append(np.abs(w_raw.numpy() - emp).max())
        errors["bcts"].append(np.abs(w_cal.numpy() - emp).max())
    print(errors)
    assert np.mean(errors["bcts"]) < 0.6 * np.mean(errors["raw"])


# --- found by the bad-input hunt: each now right, or refused with one line ------------------------


@pytest.mark.parametrize("scale", [1e-8, 1e-7, 1.0, 1e3, 1e10])
def test_calibration_fits_do_not_depend_on_the_logits_scale(scale):
    # the convergence test was absolute: at 1e-7 the fit returned its starting point T = 1
    z = torch.tensor([[2.0, 0], [0, 2], [2, 0], [0, 2], [2, 0]], dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 0])
    t1, tb, (a, _) = fit_temperature(z, y), fit_bcts(z, y)[0], fit_vector_scaling(z, y)
    assert fit_temperature(z * scale, y) == pytest.approx(t1 * scale, rel=1e-6)
    assert fit_bcts(z * scale, y)[0] == pytest.approx(tb * scale, rel=1e-6)
    np.testing.assert_allclose(fit_vector_scaling(z * scale, y)[0].numpy(), a.numpy() / scale, rtol=1e-5)


def test_calibration_refuses_uninformative_or_separated_logits():
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    for fit in (fit_temperature, fit_bcts, fit_vector_scaling):
        with pytest.raises(ValueError, match="logits are all zero"):
            fit(torch.zeros(6, 2, dtype=torch.float64), y)
        with pytest.raises(ValueError, match="perfectly separated"):
            fit(torch.tensor([[2.0, 0], [0, 2]] * 3, dtype=torch.float64), y)


@pytest.mark.parametrize(
    "z, kw",
    [
        ([[1.0, 0.0]], dict(temperature=1e-310)),
        ([[1e308, 0.0]], dict(temperature=0.1)),
        ([[1e308, 0.0]], dict(scale=torch.tensor([10.0, 1.0], dtype=torch.float64))),
    ],
)
def test_calibrated_probs_refuses_overflow_instead_of_nan(z, kw):
    with pytest.raises(ValueError, match="overflow"):
        calibrated_probs(torch.tensor(z, dtype=torch.float64), **kw)


def test_flags_must_be_bools():
    p, y = torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 1])
    for fn in (bbse, rlls):
        with pytest.raises(TypeError, match="soft must be True or False"):
            fn(p, y, p, soft="no")
    with pytest.raises(TypeError, match="soft must be True or False"):
        confusion_matrix(p, y, soft=1)
    with pytest.raises(TypeError, match="return_n_iter must be True or False"):
        mlls(p, p, return_n_iter="no")


def test_adjust_priors_keeps_subnormal_weights_exact():
    w = torch.tensor([1e-320, 1e-320], dtype=torch.float64)
    out = adjust_priors(torch.tensor([[0.9, 0.1]], dtype=torch.float64), w)
    np.testing.assert_allclose(out.numpy(), [[0.9, 0.1]], rtol=1e-15)


@pytest.mark.parametrize(
    "C", [torch.zeros(0, 0), torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), torch.eye(2, dtype=torch.complex64)]
)
def test_condition_number_refuses_what_is_not_a_real_matrix(C):
    with pytest.raises(ValueError, match="^C must (be a non-empty square matrix|hold finite real numbers)"):
        condition_number(C)


def test_calibration_fits_under_no_grad():
    z = torch.tensor([[2.0, 0], [0, 2], [2, 0], [0, 2], [2, 0]], dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 0])
    want = fit_temperature(z, y)
    with torch.no_grad():
        assert fit_temperature(z, y) == want and fit_bcts(z, y)[0] > 0 and fit_vector_scaling(z, y)[0].shape == (2,)
