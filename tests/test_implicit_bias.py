"""Reference tests of iwlab.implicit_bias against independent solvers and by-hand answers."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize

import iwlab.implicit_bias as ib
from iwlab.data.synthetic import make_moons, make_separable, sigma_max_lr
from iwlab.implicit_bias import angle, linear_direction, max_margin_direction, max_margin_separator, normalized_margin


def random_separable(seed, n=40, d=2, gap=0.3):
    """Uniform points in [-2, 2]^d, labelled by a random hyperplane, minus a margin slab."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(6 * n, d))
    w0 = rng.normal(size=d)
    w0 /= np.linalg.norm(w0)
    b0 = rng.uniform(-0.5, 0.5)
    X = X[np.abs(X @ w0 + b0) > gap][:n]
    y = (X @ w0 + b0 > 0).astype(np.int64)
    assert 0 < y.sum() < n
    return X, y


# ---------------------------------------------------------------- known answers


def test_symmetric_pair_free():
    X = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    y = torch.tensor([1, 0])
    w, b = max_margin_separator(X, y, bias="free")
    assert w.dtype == torch.float64 and w.shape == (2,) and isinstance(b, float)
    assert torch.allclose(w, torch.tensor([1.0, 0.0], dtype=torch.float64), atol=1e-9)
    assert b == pytest.approx(0.0, abs=1e-9)
    # homogeneous gives the same here (b = 0 by symmetry)
    w, b = max_margin_separator(X, y)
    assert torch.allclose(w, torch.tensor([1.0, 0.0], dtype=torch.float64), atol=1e-12)
    assert b == pytest.approx(0.0, abs=1e-12)


def test_symmetric_with_pm1_labels_and_more_points():
    X = torch.tensor([[1.0, 0.0], [1.0, 3.0], [2.0, -1.0], [-1.0, 0.0], [-3.0, 1.0], [-1.0, -2.0]])
    y = torch.tensor([1, 1, 1, -1, -1, -1])
    w, b = max_margin_separator(X, y, bias="free")
    assert torch.allclose(w, torch.tensor([1.0, 0.0], dtype=torch.float64), atol=1e-8)
    assert b == pytest.approx(0.0, abs=1e-8)
    w01, b01 = max_margin_separator(X, (y + 1) // 2, bias="free")
    assert torch.allclose(w, w01) and b == b01


def test_two_points_by_hand():
    """x+ = (2, 0), x- = (0, 1).

    homogeneous: min ||theta|| s.t. theta.(2, 0, 1) >= 1, theta.(0, -1, -1) >= 1; both active,
    theta = a (2, 0, 1) + c (0, -1, -1) with Gram [[5, -1], [-1, 2]] (a, c) = (1, 1) -> a = 1/3,
    c = 2/3, theta = (2/3, -2/3, -1/3).
    free: w = 2 (x+ - x-) / ||x+ - x-||^2 = (0.8, -0.4), b = -w . midpoint = -0.6.
    """
    X = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([1, 0])
    w, b = max_margin_separator(X, y, bias="homogeneous")
    expected = torch.tensor([2 / 3, -2 / 3], dtype=torch.float64)
    assert torch.allclose(w, expected, atol=1e-12, rtol=0)
    assert b == pytest.approx(-1 / 3, abs=1e-12)
    w, b = max_margin_separator(X, y, bias="free")
    assert torch.allclose(w, torch.tensor([0.8, -0.4], dtype=torch.float64), atol=1e-10, rtol=0)
    assert b == pytest.approx(-0.6, abs=1e-10)


def test_single_positive_point_homogeneous():
    # min ||theta|| s.t. theta . (1, 1, 1) >= 1  ->  theta = (1, 1, 1) / 3
    w, b = max_margin_separator(torch.tensor([[1.0, 1.0]]), torch.tensor([1]))
    assert torch.allclose(w, torch.full((2,), 1 / 3, dtype=torch.float64), atol=1e-12)
    assert b == pytest.approx(1 / 3, abs=1e-12)


def test_not_separable_raises():
    X = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    y = torch.tensor([1, 0, 1])  # XOR-like in 1-D
    for bias in ["homogeneous", "free"]:
        with pytest.raises(ValueError, match="not linearly separable"):
            max_margin_separator(X, y, bias=bias)
    # identical point with both labels
    with pytest.raises(ValueError, match="not linearly separable"):
        max_margin_separator(torch.tensor([[1.0, 2.0], [1.0, 2.0]]), torch.tensor([0, 1]))


def test_bad_arguments():
    X = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    with pytest.raises(ValueError):
        max_margin_separator(X, torch.tensor([1, 2]))
    with pytest.raises(ValueError):
        max_margin_separator(X, torch.tensor([1, 0]), bias="none")


# ---------------------------------------------------------------- independent solvers


@pytest.mark.parametrize("seed", range(5))
def test_free_matches_sklearn_svc(seed):
    from sklearn.svm import SVC

    X, y = random_separable(seed, n=60, d=2 + seed % 2)
    w, b = max_margin_separator(torch.from_numpy(X), torch.from_numpy(y), bias="free")
    svc = SVC(kernel="linear", C=1e7, tol=1e-10).fit(X, y)
    w_ref = torch.tensor(svc.coef_[0], dtype=torch.float64)
    b_ref = float(svc.intercept_[0])
    assert float(angle(w, w_ref)) < 1e-4
    assert torch.allclose(w, w_ref, rtol=1e-4, atol=1e-5)
    assert b == pytest.approx(b_ref, rel=1e-4, abs=1e-5)


def test_free_emulation_without_polish(monkeypatch):
    """The documented fallback (large constant feature only) is accurate to ~1e-6."""
    X, y = random_separable(11, n=60)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    w, b = max_margin_separator(Xt, yt, bias="free")
    monkeypatch.setattr(ib.svm, "_polish_free", lambda *args: None)
    w_em, b_em = ib.max_margin_separator(Xt, yt, bias="free")
    assert float(angle(w, w_em)) < 1e-5
    assert torch.allclose(w, w_em, rtol=1e-5, atol=1e-6)
    assert b == pytest.approx(b_em, rel=1e-5, abs=1e-6)
    margins = torch.from_numpy(2.0 * y - 1) * (Xt @ w_em + b_em)
    assert float(margins.min()) == pytest.approx(1.0, abs=1e-12)


def _slsqp_homogeneous(X, y):
    S = (2 * y - 1)[:, None] * np.c_[X, np.ones(len(X))]
    res = minimize(
        lambda t: t @ t,
        np.zeros(S.shape[1]),
        jac=lambda t: 2 * t,
        constraints=[{"type": "ineq", "fun": lambda t: S @ t - 1, "jac": lambda t: S}],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    assert res.success
    return res.x


@pytest.mark.parametrize("seed", range(5))
def test_homogeneous_matches_slsqp(seed):
    X, y = random_separable(100 + seed, n=50, d=2 + seed % 3)
    w, b = max_margin_separator(torch.from_numpy(X), torch.from_numpy(y))
    theta = linear_direction(w, b)
    theta_ref = torch.from_numpy(_slsqp_homogeneous(X, y))
    assert float(angle(theta, theta_ref)) < 1e-4
    assert torch.allclose(theta, theta_ref, rtol=1e-5, atol=1e-6)


def test_homogeneous_matches_slsqp_on_separable_dataset():
    X, y = make_separable(128, seed=0)
    Xd, yd = X.double().numpy(), y.numpy()
    w, b = max_margin_separator(X, y)
    theta_ref = torch.from_numpy(_slsqp_homogeneous(Xd, yd))
    assert float(angle(linear_direction(w, b), theta_ref)) < 1e-4


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("bias", ["homogeneous", "free"])
def test_kkt(seed, bias):
    X, y = random_separable(200 + seed, n=80)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    w, b = max_margin_separator(Xt, yt, bias=bias)
    s = torch.from_numpy(2.0 * y - 1)
    margins = s * (Xt @ w + b)
    # primal feasibility and normalization
    assert margins.min() >= 1 - 1e-8
    assert float(margins.min()) == pytest.approx(1.0, abs=1e-12)
    # stationarity: (w, b) = sum_i alpha_i s_i z_i with alpha >= 0 on the active set
    active = margins < 1 + 1e-7
    Z = torch.cat([Xt, torch.ones(len(X), 1, dtype=torch.float64)], 1)
    A = (s[:, None] * Z)[active]
    target = linear_direction(w, b) if bias == "homogeneous" else torch.cat([w, torch.zeros(1, dtype=torch.float64)])
    from scipy.optimize import nnls

    alpha, res = nnls(A.T.numpy(), target.numpy())
    assert res < 1e-6 * float(target.norm())
    # any other feasible direction has a smaller normalized margin (homogeneous optimality)
    if bias == "homogeneous":
        gamma = normalized_margin(w, b, Xt, yt)
        assert float(gamma) == pytest.approx(1.0 / float(target.norm()), rel=1e-10)
        rng = np.random.default_rng(seed)
        pert = target + 0.05 * torch.from_numpy(rng.normal(size=(200, 3))) * target.norm()
        assert (normalized_margin(pert[:, :2], pert[:, 2], Xt, yt) <= gamma + 1e-12).all()


def test_invariance_to_duplicates_and_weights_irrelevance():
    """The separator depends only on the point locations (duplicating points changes nothing)."""
    X, y = random_separable(7)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    w, b = max_margin_separator(Xt, yt)
    idx = torch.cat([torch.arange(len(X)), torch.nonzero(yt == 0).flatten().repeat(5)])
    w2, b2 = max_margin_separator(Xt[idx], yt[idx])
    assert torch.allclose(w, w2, atol=1e-10) and b == pytest.approx(b2, abs=1e-10)


# ---------------------------------------------------------------- implicit bias of GD


def _gd_logistic(X, y, class_weights, steps=20_000, checkpoints=(100, 1000, 5000, 20_000)):
    """Full-batch GD on weighted logistic loss with a trained bias, float64.

    Growing step eta_t = eta_0 / L(theta_t) (normalized GD, Nacson et al. 2019),
    eta_0 = 1 / sigma_max(X).
    """
    Xd = X.double()
    Z = torch.cat([Xd, torch.ones(len(Xd), 1, dtype=torch.float64)], 1)
    s = (2 * y - 1).double()
    wt = torch.where(y == 1, class_weights[1], class_weights[0]).double()
    wt = wt / wt.sum()
    eta0 = sigma_max_lr(X)
    theta = torch.zeros(Z.shape[1], dtype=torch.float64)
    out = {}
    for t in range(1, steps + 1):
        m = s * (Z @ theta)
        loss = (wt * F.softplus(-m)).sum()
        grad = -(wt * s * torch.sigmoid(-m)) @ Z
        theta = theta - eta0 / loss * grad
        if t in checkpoints:
            out[t] = theta.clone()
    return out


def test_gd_converges_to_homogeneous_separator_for_any_weighting():
    X, y = make_separable(64, seed=0)
    w, b = max_margin_separator(X, y, bias="homogeneous")
    target = linear_direction(w, b)
    finals = {}
    for weights in [(1.0, 1.0), (1.0 / 16, 1.0)]:  # (negatives, positives)
        traj = _gd_logistic(X, y, weights)
        ts = sorted(traj)
        thetas = torch.stack([traj[t] for t in ts])
        angles = angle(thetas, target)
        assert angles.shape == (len(ts),)
        assert (angles[1:] < angles[:-1]).all(), angles  # decreases over time
        assert float(angles[-1]) < 0.05, angles
        # normalized margin approaches the maximal one
        gam = normalized_margin(thetas[:, :2], thetas[:, 2], X, y)
        assert float(gam[-1]) > 0.95 * float(normalized_margin(w, b, X, y))
        finals[weights] = thetas[-1]
    # the two weightings end up (almost) the same classifier
    assert float(angle(finals[(1.0, 1.0)], finals[(1.0 / 16, 1.0)])) < 0.05


# ---------------------------------------------------------------- angle / margin helpers


def test_angle_known_values():
    e1 = torch.tensor([1.0, 0.0])
    assert float(angle(e1, torch.tensor([0.0, 3.0]))) == pytest.approx(math.pi / 2, abs=1e-6)
    assert float(angle(e1, torch.tensor([-2.0, 0.0]))) == pytest.approx(math.pi, abs=1e-6)
    assert float(angle(e1, torch.tensor([5.0, 5.0]))) == pytest.approx(math.pi / 4, abs=1e-6)
    assert float(angle(e1, 7 * e1)) == 0.0
    v = torch.tensor([0.3, -1.2, 2.5], dtype=torch.float64)
    assert float(angle(v, v)) == 0.0
    # tiny angles are resolved (acos would return 0 or ~1e-8 noise here)
    eps = 1e-10
    assert float(
        angle(
            torch.tensor([1.0, 0.0], dtype=torch.float64),
            torch.tensor([1.0, eps], dtype=torch.float64),
        )
    ) == pytest.approx(eps, rel=1e-6)
    # zero vector -> pi/2, no NaN
    assert float(angle(torch.zeros(2), e1)) == pytest.approx(math.pi / 2)


def test_angle_batched_shapes_against_loop():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(4, 5, 3, generator=g, dtype=torch.float64)
    v = torch.randn(3, generator=g, dtype=torch.float64)
    vb = torch.randn(4, 5, 3, generator=g, dtype=torch.float64)
    a = angle(u, v)
    ab = angle(u, vb)
    assert a.shape == (4, 5) and ab.shape == (4, 5)
    for i in range(4):
        for j in range(5):
            ref = np.arccos(np.clip(float(u[i, j] @ v) / float(u[i, j].norm() * v.norm()), -1.0, 1.0))
            assert float(a[i, j]) == pytest.approx(ref, abs=1e-7)
            refb = np.arccos(float(u[i, j] @ vb[i, j]) / float(u[i, j].norm() * vb[i, j].norm()))
            assert float(ab[i, j]) == pytest.approx(refb, abs=1e-7)
    # broadcasting (5, 1, 3) vs (4, 3) -> (5, 4)
    assert angle(u[0][:, None], u[:, 0]).shape == (5, 4)
    assert (angle(u, v) >= 0).all() and (angle(u, v) <= math.pi).all()


def test_normalized_margin_against_loop():
    X, y = random_separable(3, n=30)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    g = torch.Generator().manual_seed(1)
    W = torch.randn(3, 4, 2, generator=g, dtype=torch.float64)
    B = torch.randn(3, 4, generator=g, dtype=torch.float64)
    got = normalized_margin(W, B, Xt, yt)
    assert got.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            w, b = W[i, j].numpy(), float(B[i, j])
            ms = [(2 * yy - 1) * (w @ xx + b) for xx, yy in zip(X, y, strict=True)]
            ref = min(ms) / math.sqrt(w @ w + b * b)
            assert float(got[i, j]) == pytest.approx(ref, rel=1e-12, abs=1e-12)
    # float bias and +-1 labels
    m1 = normalized_margin(W[0, 0], float(B[0, 0]), Xt, 2 * yt - 1)
    assert float(m1) == pytest.approx(float(got[0, 0]), rel=1e-12)
    # the max-margin separator has the largest normalized margin 1/||(w, b)||
    w, b = max_margin_separator(Xt, yt)
    assert float(normalized_margin(w, b, Xt, yt)) == pytest.approx(1 / float(linear_direction(w, b).norm()), rel=1e-12)
    assert (got <= normalized_margin(w, b, Xt, yt) + 1e-12).all()


def test_linear_direction():
    w = torch.arange(6.0).reshape(3, 2)
    b = torch.tensor([10.0, 11.0, 12.0])
    out = linear_direction(w, b)
    assert out.shape == (3, 3)
    assert torch.equal(out[:, :2], w) and torch.equal(out[:, 2], b)
    assert torch.equal(linear_direction(torch.tensor([1.0, 2.0]), 3.0), torch.tensor([1.0, 2.0, 3.0]))


# ---------------------------------------------------------------- scale (issue 10, item 7)


def test_angle_of_subnormal_and_huge_vectors_is_scale_invariant():
    # angle((1, 1, 1), (1, 1, 2)) = acos(4 / sqrt(3 * 6)), by hand
    expected = math.acos(4 / math.sqrt(18))
    for scale in [1e-40, 1e-30, 1.0, 1e20, 1e38]:
        u = torch.tensor([1.0, 1.0, 1.0]) * scale
        v = torch.tensor([1.0, 1.0, 2.0]) * scale
        assert float(angle(u, v)) == pytest.approx(expected, rel=1e-6), scale
    # float64: subnormal (1e-310) and near-overflow (1e300) norms
    for scale in [1e-310, 1e300]:
        u = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64) * scale
        v = torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64) * scale
        assert float(angle(u, v)) == pytest.approx(expected, rel=1e-12), scale
    # mixed scales in one batch, and a zero vector still gives pi/2
    u = torch.tensor([[1e-40, 0.0], [1e30, 1e30], [0.0, 0.0]])
    got = angle(u, torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(got, torch.tensor([0.0, math.pi / 4, math.pi / 2]))
    assert float(angle(torch.zeros(2, 0), torch.zeros(0))[0]) == pytest.approx(math.pi / 2)


def test_angle_bitwise_unchanged_for_normal_vectors():
    def old_angle(u, v):
        a = u / torch.linalg.vector_norm(u, dim=-1, keepdim=True)
        b = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)
        return 2.0 * torch.atan2(torch.linalg.vector_norm(a - b, dim=-1), torch.linalg.vector_norm(a + b, dim=-1))

    g = torch.Generator().manual_seed(5)
    for dtype in [torch.float32, torch.float64]:
        for scale in [1e-8, 1.0, 1e8]:
            u = torch.randn(20, 5, generator=g, dtype=dtype) * scale
            v = torch.randn(20, 5, generator=g, dtype=dtype)
            assert torch.equal(angle(u, v), old_angle(u, v))


def test_normalized_margin_is_invariant_to_parameter_scale():
    X, y = random_separable(3, n=30)
    Xt, yt = torch.from_numpy(X).float(), torch.from_numpy(y)
    g = torch.Generator().manual_seed(2)
    W = torch.randn(4, 2, generator=g)
    B = torch.randn(4, generator=g)
    ref = normalized_margin(W.double(), B.double(), Xt.double(), yt)
    for scale in [1e-30, 1e-20, 1.0, 1e20, 1e30]:
        got = normalized_margin(W * scale, B * scale, Xt, yt)  # float32 throughout
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=0), scale


def test_normalized_margin_scales_linearly_with_the_data_through_the_origin():
    # With b = 0 the normalized margin of data c X is c times that of X.
    X, y = random_separable(4, n=30)
    Xt, yt = torch.from_numpy(X).float(), torch.from_numpy(y)
    W = torch.tensor([[1.0, 0.5], [-0.3, 2.0]])
    ref = normalized_margin(W.double(), 0.0, Xt.double(), yt)
    for c in [1e-20, 1e-6, 1e6, 1e20]:
        got = normalized_margin(W, torch.zeros(2), Xt * c, yt)
        torch.testing.assert_close(got.double() / c, ref, rtol=1e-5, atol=0)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("c", [1e-6, 1e6])
def test_free_separator_of_scaled_data_is_the_scaled_unit_solution(seed, c):
    from sklearn.svm import SVC

    X, y = random_separable(seed, n=60, d=2 + seed % 2)
    w1, b1 = max_margin_separator(torch.from_numpy(X), torch.from_numpy(y), bias="free")
    w, b = max_margin_separator(torch.from_numpy(X * c), torch.from_numpy(y), bias="free")
    # exact equivariance: (w, b) for c X is (w1 / c, b1); the geometric margin 1/||w|| scales by c
    torch.testing.assert_close(w * c, w1, rtol=1e-10, atol=1e-12)
    assert b == pytest.approx(b1, rel=1e-10, abs=1e-12)
    assert 1 / float(w.norm()) == pytest.approx(c / float(w1.norm()), rel=1e-10)
    assert float(angle(w, w1)) < 1e-12
    # and against an independent solver on the unit-scale data
    svc = SVC(kernel="linear", C=1e7, tol=1e-10).fit(X, y)
    assert torch.allclose(w * c, torch.tensor(svc.coef_[0]), rtol=1e-4, atol=1e-5)
    assert b == pytest.approx(float(svc.intercept_[0]), rel=1e-4, abs=1e-5)
    margins = torch.from_numpy(2.0 * y - 1) * (torch.from_numpy(X * c) @ w + b)
    assert float(margins.min()) == pytest.approx(1.0, abs=1e-12)


def _kkt_residuals_scaled(X, y, c, w, b):
    """Optimality certificate of the homogeneous SVM of the data c X, in well-scaled units.

    min ||w||^2 + b^2 s.t. s_i (w.(c x_i) + b) >= 1 is, with u = c w, the convex QP
    min ||u||^2 + c^2 b^2 s.t. s_i (u.x_i + b) >= 1, and (u, b) is its optimum iff it is feasible
    and (u, c^2 b) = sum_i a_i s_i (x_i, 1) with a >= 0 on the active constraints (KKT; checked by
    an independent NNLS). Returns (min margin - 1, relative stationarity residual).
    """
    from scipy.optimize import nnls

    s = 2.0 * y - 1
    u = c * np.asarray(w)
    margins = s * (X @ u + b)
    active = margins < margins.min() + 1e-9
    A = (s[:, None] * np.c_[X, np.ones(len(X))])[active]
    g = np.r_[u, c * c * b]
    _, res = nnls(A.T, g)
    return margins.min() - 1, res / np.linalg.norm(g)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("c", [1e-10, 1e-6, 1e6, 1e8])
def test_homogeneous_separator_of_scaled_data_is_kkt_optimal(seed, c):
    # Seed 301 needs a bias even at large scale (the data are not separable through the origin);
    # before the fix it was declared not separable at 1e8.
    X, y = random_separable(300 + seed, n=50, d=2 + seed % 2)
    w, b = max_margin_separator(torch.from_numpy(X * c), torch.from_numpy(y))
    feasibility, stationarity = _kkt_residuals_scaled(X, y, c, w.numpy(), b)
    assert abs(feasibility) < 1e-12
    assert stationarity < 1e-9  # the pre-fix solver: ~1 at 1e-6 (wrong support), and for seed 301 at 1e6
    Xc, yt = torch.from_numpy(X * c), torch.from_numpy(y)
    theta = linear_direction(w, b)
    assert float(normalized_margin(w, b, Xc, yt)) == pytest.approx(1 / float(theta.norm()), rel=1e-12)


def test_homogeneous_separator_of_tiny_data_tends_to_the_free_one():
    # For data c X with c -> 0 the bias costs b^2 against ||w||^2 ~ 1/c^2, so the homogeneous
    # separator tends to the free-bias one, (c w, b) -> (w_free, b_free) with an O(c^2) gap;
    # the free-bias SVM of the unit data comes from an independent solver (sklearn's SVC).
    from sklearn.svm import SVC

    X, y = random_separable(9, n=50)
    w_free, b_free = max_margin_separator(torch.from_numpy(X), torch.from_numpy(y), bias="free")
    svc = SVC(kernel="linear", C=1e7, tol=1e-10).fit(X, y)
    assert torch.allclose(w_free, torch.tensor(svc.coef_[0]), rtol=1e-4, atol=1e-5)
    for c in [1e-6, 1e-8, 1e-10]:
        w, b = max_margin_separator(torch.from_numpy(X * c), torch.from_numpy(y))
        torch.testing.assert_close(w * c, w_free, rtol=1e-9, atol=1e-9)
        assert b == pytest.approx(b_free, rel=1e-9, abs=1e-9)


def test_max_margin_direction_is_the_homogeneous_separator_as_one_vector():
    X, y = make_separable(64, seed=2)
    w, b = max_margin_separator(X, y, bias="homogeneous")
    d = max_margin_direction(X, y)
    assert d.dtype == torch.float64 and d.shape == (3,)
    assert torch.equal(d, linear_direction(w, torch.tensor(b, dtype=torch.float64)))
    assert float(normalized_margin(d[:2], d[2], X, y)) == pytest.approx(1 / float(d.norm()), rel=1e-6)
    with pytest.raises(ValueError, match="not linearly separable"):
        max_margin_direction(*make_moons(64, seed=0))
