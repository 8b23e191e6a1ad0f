"""Label-shift estimator classes (state ending in ``_``) and the one-line errors of bad input."""

import numpy as np
import pytest
import torch
from label_shift_reference import SOURCE_PRIORS, TARGET_PRIORS, draw, empirical_w, posteriors

from iwlab.functional.label_shift import (
    adjust_priors,
    bbse,
    bootstrap_ci,
    calibrated_probs,
    condition_number,
    confusion_matrix,
    fit_bcts,
    fit_temperature,
    mlls,
    rlls,
)
from iwlab.label_shift import BBSE, BCTS, MLLS, RLLS, TemperatureScaling, VectorScaling

T = torch.tensor


def problem(seed=0, n=2000):
    rng = np.random.default_rng(seed)
    xs, ys = draw(rng, SOURCE_PRIORS, n)
    xt, yt = draw(rng, TARGET_PRIORS, n)
    zs = torch.from_numpy(np.log(posteriors(xs, SOURCE_PRIORS)))
    zt = torch.from_numpy(np.log(posteriors(xt, SOURCE_PRIORS)))
    return zs, torch.from_numpy(ys), zt, yt


def test_bbse_and_rlls_classes_match_the_functions():
    zs, ys, zt, _ = problem()
    ps, pt = zs.softmax(1), zt.softmax(1)
    for soft in (False, True):
        b = BBSE(soft=soft).fit(ps, ys, pt)
        torch.testing.assert_close(b.weights_, bbse(ps, ys, pt, soft=soft), rtol=0, atol=0)
        torch.testing.assert_close(b.confusion_, confusion_matrix(ps, ys, soft=soft))
        assert b.condition_number_ == condition_number(b.confusion_) and 1 < b.condition_number_ < 10
        r = RLLS(alpha=2.0, delta=0.1, soft=soft).fit(ps, ys, pt)
        torch.testing.assert_close(r.weights_, rlls(ps, ys, pt, alpha=2.0, delta=0.1, soft=soft), rtol=0, atol=0)
        assert r.rho_ > 0 and r.condition_number_ == b.condition_number_


def test_mlls_without_calibration_is_the_function():
    zs, ys, zt, _ = problem()
    ps, pt = zs.softmax(1), zt.softmax(1)
    m = MLLS(calibration=None, tol=1e-8, max_iter=500).fit(ps, ys, pt)
    w, n_iter = mlls(ps, pt, tol=1e-8, max_iter=500, return_n_iter=True)
    torch.testing.assert_close(m.weights_, w, rtol=0, atol=0)
    assert m.n_iter_ == n_iter and m.calibrator_ is None
    torch.testing.assert_close(m.target_priors_.sum(), T(1.0, dtype=torch.float64))
    labels = MLLS(calibration=None, source_priors="labels").fit(ps, ys, pt)
    torch.testing.assert_close(labels.source_priors_, torch.bincount(ys).double() / len(ys))


@pytest.mark.parametrize(
    "calibration, cls", [("bcts", BCTS), ("temperature", TemperatureScaling), ("vector", VectorScaling)]
)
def test_mlls_calibrates_logits_first(calibration, cls):
    zs, ys, zt, yt = problem(seed=1)
    miscal = lambda z: 2.5 * z + T([1.0, 0.0, -0.5], dtype=torch.float64)  # noqa: E731
    m = MLLS(calibration=calibration).fit(miscal(zs), ys, miscal(zt))
    assert type(m.calibrator_) is cls
    cal = m.calibrator_
    expected = mlls(cal.predict_proba(miscal(zs)), cal.predict_proba(miscal(zt)))
    torch.testing.assert_close(m.weights_, expected, rtol=0, atol=0)
    assert np.abs(m.weights_.numpy() - empirical_w(ys.numpy(), yt)).max() < 0.15


def test_calibrator_classes_match_the_functions():
    zs, ys, _, _ = problem(seed=2, n=1000)
    z = 2.0 * zs
    assert TemperatureScaling().fit(z, ys).temperature_ == fit_temperature(z, ys)
    t, b = fit_bcts(z, ys)
    bc = BCTS().fit(z, ys)
    assert bc.temperature_ == t
    torch.testing.assert_close(bc.predict_proba(z), calibrated_probs(z, temperature=t, bias=b))
    vs = VectorScaling().fit(z, ys)
    torch.testing.assert_close(vs.predict_proba(z), calibrated_probs(z, scale=vs.scale_, bias=vs.bias_))
    for c in (TemperatureScaling(), VectorScaling(), BCTS()):
        with pytest.raises(RuntimeError, match=f"^{type(c).__name__} is not fitted; call fit"):
            c.predict_proba(z)


@pytest.mark.parametrize(
    "make, err, msg",
    [
        (lambda: MLLS(calibration="platt"), ValueError, "^calibration must be one of 'bcts', 'temperature', 'vector'"),
        (lambda: MLLS(tol=0.0), ValueError, "^tol must be finite and > 0"),
        (lambda: MLLS(max_iter=0), ValueError, "^max_iter must be an integer >= 1"),
        (lambda: MLLS(source_priors="uniform"), ValueError, "^source_priors must be one of"),
        (lambda: RLLS(alpha=-1.0), ValueError, "^alpha must be finite and >= 0"),
        (lambda: RLLS(delta=1.5), ValueError, r"^delta must be in \(0, 1\)"),
        (lambda: BBSE(soft=1), TypeError, "^soft must be a bool"),
    ],
)
def test_bad_hyperparameters(make, err, msg):
    with pytest.raises(err, match=msg):
        make()


# --- bad input: one-line errors naming the argument -------------------------------------------------------------

P = T([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.2, 0.6, 0.2], [0.1, 0.1, 0.8]])
Y = T([0, 1, 2, 0, 1, 2])
G = torch.Generator


def estimators():
    return [
        ("bbse", lambda sp, sl, tp: bbse(sp, sl, tp)),
        ("bbse_soft", lambda sp, sl, tp: bbse(sp, sl, tp, soft=True)),
        ("rlls", lambda sp, sl, tp: rlls(sp, sl, tp)),
    ]


BAD_SYSTEM = [
    ((P * 1.1, Y, P), ValueError, "^source_probs row 0 sums to 1.1, not 1 .*pass probabilities"),
    ((P, Y, P.log()), ValueError, "^target_probs has a negative entry"),
    ((P, Y, torch.where(P > 0.75, float("nan"), P)), ValueError, r"^target_probs has a non-finite entry \(nan at"),
    ((P, T([0, 1, 0, 0, 1, 1]), P), ValueError, r"^source_labels has no example of class 2 \(K=3\)"),
    ((P, Y, T([[0.5, 0.25, 0.25, 0.0]])), ValueError, "^target_probs has K=4 classes but 3 are expected"),
    ((P[:0], Y[:0], P), ValueError, r"^source_probs is empty \(shape \(0, 3\)\)"),
    ((P, Y, P[:0]), ValueError, r"^target_probs is empty"),
    ((P.to(torch.int64), Y, P), TypeError, "^source_probs must be a floating-point .*; got dtype torch.int64$"),
    ((P, Y, P > 0.5), TypeError, "^target_probs must be a floating-point tensor .*torch.bool"),
    ((P, Y.double(), P), TypeError, "^source_labels must be an integer tensor of class .*; got dtype torch.float64$"),
    ((P, Y > 0, P), TypeError, "^source_labels must be an integer tensor .*torch.bool"),
    ((P, Y[:5], P), ValueError, r"^source_labels must have shape \(6,\)"),
    ((P, Y + 1, P), ValueError, r"^source_labels has label 3 at index 2, outside \[0, 3\)"),
    ((P[0], Y, P), ValueError, r"^source_probs must have shape \(N, K\)"),
    ((P.numpy(), Y, P), TypeError, "^source_probs must be a torch.Tensor"),
]  # fmt: skip


@pytest.mark.parametrize("args, err, msg", BAD_SYSTEM)
@pytest.mark.parametrize("name, est", estimators())
def test_bad_probabilities_and_labels(name, est, args, err, msg):
    with pytest.raises(err, match=msg):
        est(*args)


def test_singular_confusion_matrix():
    same = T([[0.5, 0.3, 0.2]] * 6)  # the classifier ignores x: C has rank 1
    for est in (bbse, rlls):
        with pytest.raises(ValueError, match=r"^the confusion matrix of source_probs is singular or ill-conditioned"):
            est(same, Y, P, soft=True)
    near = T([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]] * 2)  # classes 0 and 1 indistinguishable
    with pytest.raises(ValueError, match=r"condition number [0-9.e+]+ > 1e\+12\); the classifier does not tell"):
        bbse(near, T([0, 1, 2, 0, 1, 2]), P, soft=True)


def test_target_predicted_into_a_class_no_source_example_is_predicted_as():
    source = T([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.4, 0.3, 0.3], [0.6, 0.3, 0.1]])  # argmax never 2
    target = T([[0.1, 0.1, 0.8], [0.7, 0.2, 0.1]])
    for est in (bbse, rlls):
        with pytest.raises(ValueError, match=r"^target_probs predicts class 2 \(mean 0.5\) but no source example is"):
            est(source, T([0, 1, 2, 0]), target)


def test_mlls_bad_input():
    with pytest.raises(ValueError, match=r"^the mean of source_probs \(the default source_priors\) is 0 for class 2"):
        mlls(T([[0.5, 0.5, 0.0]]), P)
    with pytest.raises(ValueError, match=r"^source_priors must have shape \(3,\)"):
        mlls(P, P, source_priors=T([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"^source_priors row 0 sums to 0.9"):
        mlls(P, P, source_priors=T([0.5, 0.3, 0.1]))
    with pytest.raises(ValueError, match=r"^target_probs has K=2 classes but 3"):
        mlls(P, T([[0.5, 0.5]]))
    with pytest.raises(ValueError, match=r"^tol must be finite and > 0"):
        mlls(P, P, tol=float("nan"))
    with pytest.raises(TypeError, match=r"^max_iter must be an integer >= 1, got float"):
        mlls(P, P, max_iter=10.0)
    with pytest.raises(TypeError, match=r"^source must be a floating-point tensor"):
        MLLS().fit(P.to(torch.int32), Y, P)
    with pytest.raises(ValueError, match=r"^source_labels has label 3 at index 2"):
        MLLS().fit(P.log(), Y + 1, P.log())


def test_adjust_priors_bad_input():
    with pytest.raises(ValueError, match=r"^weights has a negative entry \(-1 at index 1\)"):
        adjust_priors(P, T([1.0, -1.0, 1.0]))
    with pytest.raises(TypeError, match=r"^weights must be a floating-point tensor of shape \(3,\)"):
        adjust_priors(P, T([1.0, 1.0]))
    with pytest.raises(ValueError, match=r"^probs row 0 has all its mass on classes of weight 0"):
        adjust_priors(T([[1.0, 0.0, 0.0]]), T([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"^probs row 0 sums to"):
        adjust_priors(P * 2, T([1.0, 1.0, 1.0]))


def test_calibration_bad_input():
    z = P.log()
    with pytest.raises(TypeError, match="^logits must be a floating-point tensor of logits; got dtype torch.int64"):
        fit_temperature(z.to(torch.int64), Y)
    with pytest.raises(ValueError, match=r"^labels has label 3 at index 0"):
        fit_bcts(z, T([3, 0, 1, 2, 0, 1]))
    with pytest.raises(ValueError, match="^temperature must be finite and > 0"):
        calibrated_probs(z, temperature=0.0)
    with pytest.raises(ValueError, match="^pass temperature or scale, not both"):
        calibrated_probs(z, temperature=2.0, scale=torch.ones(3))
    with pytest.raises(ValueError, match=r"^bias must have shape \(3,\)"):
        calibrated_probs(z, bias=torch.ones(2))
    with pytest.raises(ValueError, match="^logits carry no information about labels"):
        fit_temperature(torch.zeros(6, 3) + T([0.0, 1.0, 2.0]) * T([[1.0], [-1.0]] * 3), T([0, 0, 0, 0, 0, 0]))


def test_other_bad_arguments():
    with pytest.raises(ValueError, match=r"^level must be in \(0, 1\)"):
        bootstrap_ci(bbse, P, Y, P, level=1.0, generator=G().manual_seed(0))
    with pytest.raises(TypeError, match="^generator must be a torch.Generator; got int"):
        bootstrap_ci(bbse, P, Y, P, generator=0)
    with pytest.raises(ValueError, match="^n_boot must be an integer >= 2"):
        bootstrap_ci(bbse, P, Y, P, n_boot=1, generator=G())
    with pytest.raises(ValueError, match="^alpha must be finite and >= 0"):
        rlls(P, Y, P, alpha=-0.1)
    with pytest.raises(ValueError, match=r"^delta must be in \(0, 1\)"):
        rlls(P, Y, P, delta=0.0)
    with pytest.raises(ValueError, match="^C must be a non-empty square matrix"):
        condition_number(torch.ones(2, 3))


# --- found by a fresh-clone trial: each refused with one line ----------------------------------------


def _logits(seed=0, n=300, k=4):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(k).repeat(n // k)
    return torch.randn(len(y), k, generator=g, dtype=torch.float64) + 3 * torch.eye(k, dtype=torch.float64)[y], y


@pytest.mark.parametrize("calibration", ["bcts", "temperature", None])
def test_mlls_refuses_a_class_missing_from_the_source_labels(calibration):
    z, y = _logits()
    keep = y != 3
    src = z[keep] if calibration else torch.softmax(z[keep], 1)
    with pytest.raises(ValueError, match="source_labels has no example of class 3"):
        MLLS(calibration=calibration).fit(src, y[keep], src)


def test_mlls_refuses_probabilities_where_it_expects_logits():
    z, y = _logits()
    p = torch.softmax(z, 1)
    with pytest.raises(ValueError, match="source looks like probabilities .* pass logits, or calibration=None"):
        MLLS(calibration="bcts").fit(p, y, z)


def test_a_failed_refit_leaves_no_stale_state():
    z, y = _logits()
    p = torch.softmax(z, 1)
    est = BBSE().fit(p, y, p)
    with pytest.raises(ValueError):
        est.fit(p, y, torch.softmax(z[:, :3], 1))
    assert est.weights_ is None and est.confusion_ is None and est.condition_number_ is None


def test_the_functional_core_is_importable_from_iwlab_label_shift():
    from iwlab import label_shift

    assert {"adjust_priors", "bootstrap_ci", "bbse", "rlls", "mlls", "fit_bcts"} <= set(label_shift.__all__)
