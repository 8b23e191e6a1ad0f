"""The label_shift experiment end to end on the generated fixture, its config checks, summary and figures."""

import numpy as np
import pandas as pd
import pytest
import torch

from iwlab.config import ConfigError
from iwlab.experiments import get_experiment, make_config
from iwlab.experiments.label_shift import CI, Config, load_data, shifts
from iwlab.experiments.label_shift_eval import store_rows, trainable_weights
from iwlab.experiments.label_shift_summary import correction_frame, estimator_frame, finding
from iwlab.runner import run_experiment
from iwlab.store import load

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("label_shift") / "ci"
    return run_experiment("label_shift", "ci", [], out=out, workers=1, progress=False)


def test_ci_profile_end_to_end(ci_run):
    df = load(ci_run)
    assert set(df.status) == {"done"}
    cfg = make_config("label_shift", "ci")
    names = set(df.name)
    for corr in ("none", "posthoc_est", "posthoc_true", "iw_est", "iw_true"):
        assert f"acc_{corr}" in names, corr
    assert {
        "train_acc_source",
        "train_acc_iw_est",
        "train_acc_iw_true",
        "train_wacc_iw_est",
        "train_wacc_iw_true",
    } <= names
    for est in (*cfg.estimators, "empirical"):
        for n in cfg.n_targets:
            # the fixture's held-out logits separate perfectly: BCTS has no optimum, and that refusal is recorded
            # (failed_<estimator> = one per target size) instead of an estimate
            refused = df[(df.name == f"failed_{est}") & (df.value == len(cfg.n_targets))]
            assert f"mse_{est}_n{n}" in names or (est == "mlls_bcts" and len(refused)), (est, n)
    # one store member per (seed, shift), every evaluation epoch recorded
    assert set(df["shift"]) == {s.name for s in shifts(cfg)} and set(df.seed) == {0, 1}
    assert set(df[df.name == "acc_iw_est"].epoch) == set(cfg.eval_epochs())
    acc = df[df.name.str.startswith(("acc_", "train_acc", "train_wacc"))].value
    assert acc.between(0, 1).all() and (df[df.name.str.startswith("mse_")].value >= 0).all()
    figs = sorted((ci_run / "figures").glob("*.png"))
    assert [p.name for p in figs] == [
        "label_shift_mse_vs_target_size.png",
        "label_shift_target_accuracy_vs_epoch.png",
    ]
    assert all(p.read_bytes()[:8] == PNG for p in figs)
    md = (ci_run / "report.md").read_text()
    assert "**Finding** (all shifts, last epoch 3" in md and "wins by" in md
    assert "### Weight estimation error" in md and "### Target accuracy per correction" in md


def test_weights_artifact_holds_true_and_estimated_weights(ci_run):
    cfg = make_config("label_shift", "ci")
    with np.load(ci_run / "artifacts" / "mnist_weights.npz") as z:
        S, K = len(shifts(cfg)), 10
        assert z["w_true"].shape == (S, K) and z["w_correction"].shape == (cfg.seeds, S, K)
        # the true weights are q / p with the stratified (uniform) source priors
        np.testing.assert_allclose(z["w_true"], z["priors"] * K, rtol=1e-12)
        np.testing.assert_allclose(z["priors"].sum(1), 1.0, atol=1e-12)
        assert np.isfinite(z["w_correction"]).all() and (z["w_correction"] >= 0).all()


def test_data_splits_are_disjoint_stratified_and_targets_follow_the_shift():
    cfg = Config(**CI, alphas=(1.0,))
    d = load_data(cfg)
    assert torch.bincount(d.y_train, minlength=10).tolist() == [10] * 10
    assert torch.bincount(d.y_hold, minlength=10).tolist() == [10] * 10
    # training, held-out and pool images are different images (the fixture's images are all distinct)
    rows = {tuple(r.tolist()) for r in torch.cat([d.x_train, d.x_hold])}
    assert len(rows) == 200 and not rows & {tuple(r.tolist()) for r in d.x_pool[:50]}
    for t in d.targets:
        assert len(t) == max(cfg.n_targets) and len(set(t.tolist())) == len(t)  # drawn without replacement
    torch.testing.assert_close(d.w_true, d.priors / d.p_source)


def test_cifar10_option_runs_the_quick_cnn_on_the_fixture(tmp_path):
    over = ["dataset=cifar10", "size=8", "hidden=16", "tweak_rhos="]
    run = run_experiment("label_shift", "ci", over, out=tmp_path / "cifar", workers=1, progress=False)
    df = load(run)
    assert set(df.status) == {"done"} and set(df.dataset) == {"cifar10"}
    assert {"acc_iw_est", "acc_posthoc_est", "mse_mlls_bcts_n60"} <= set(df.name)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["n_targets=300,100"], "n_targets must be increasing"),
        (["alphas=", "tweak_rhos="], "no target shift"),
        (["estimators=bbse"], "estimators"),
        (["correction=em"], "correction"),
        (["tweak_rhos=1.5"], "tweak_rhos"),
        (["alphas=0"], "alphas"),
        (["size=5"], "size"),
        (["tweak_class=10"], "tweak_class"),
        (["weights=2"], "weights"),
    ],
)
def test_config_rejections(override, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        make_config("label_shift", "quick", override)


def test_profiles_validate_and_the_experiment_is_registered():
    exp = get_experiment("label_shift")
    assert set(exp.profiles) == {"quick", "paper", "cifar10", "ci"}
    for p in exp.profiles:
        make_config("label_shift", p)
    assert make_config("label_shift", "cifar10").dataset == "cifar10"


def test_trainable_weights_zeroes_only_what_float32_cannot_hold():
    assert trainable_weights(torch.tensor([3.0, 1e-39, 0.0, 1e-30], dtype=torch.float64)) == (3.0, 0.0, 0.0, 1e-30)
    with pytest.raises(ValueError, match="finite and >= 0"):
        trainable_weights(torch.tensor([1.0, -0.5]))


def test_store_rows_map_models_to_seed_shift_members():
    src = [(1, 1, "acc_none@0", 0.4), (1, 1, "cond_hard", 5.0)]
    # IW models shift-major: j = 2 (k * n_seeds + i) + e; j = 2 is shift 0 seed 1 (est), j = 7 shift 1 seed 1 (true)
    iw = [(1, 2, "acc_iw", 0.6), (1, 7, "acc_iw", 0.8)]
    iw_div = torch.tensor([-1, -1, -1, -1, 3, -1, -1, -1])  # j = 4: shift 1, seed 0
    rows, div = store_rows(src, torch.tensor([-1, 7]), iw, iw_div, 2)
    # seed 1, shift 0 = member 2; seed 1's unshifted metric goes to both its shifts
    assert (1, 2, "acc_none", 0.4) in rows and (1, 3, "cond_hard", 5.0) in rows
    assert (1, 2, "acc_iw_est", 0.6) in rows and (1, 3, "acc_iw_true", 0.8) in rows
    assert div == [-1, 3, 7, 7]


def test_summary_frames_and_finding_from_numbers():
    rows = []
    for seed in (0, 1):
        for epoch, (none, ph, iw, tr) in {1: (0.6, 0.7, 0.8, 0.7), 50: (0.8, 0.9, 0.81, 1.0)}.items():
            for name, v in (("acc_none", none), ("acc_posthoc_est", ph), ("acc_iw_est", iw)):
                rows.append((seed, epoch, name, v))
            rows += [(seed, epoch, "train_acc_source", tr), (seed, epoch, "train_acc_iw_est", tr - 0.2)]
            rows.append((seed, epoch, "train_wacc_iw_est", tr))
            rows.append((seed, epoch, "mse_mlls_bcts_n100", 0.1 * (seed + 1)))
    df = pd.DataFrame(rows, columns=["seed", "epoch", "name", "value"]).assign(family="f", shift="s")
    c = correction_frame(df)
    at = c[c.epoch == 50].set_index("correction")
    assert at.gain["posthoc_est"] == pytest.approx(0.1) and at.gain["iw_est"] == pytest.approx(0.01)
    line = finding(c)
    assert "post-hoc correction wins by 9.0 points" in line and "interpolates" in line
    assert "w-weighted train acc 1.000" in line
    assert at.train_acc["iw_est"] == pytest.approx(0.8) and np.isnan(at.train_wacc["none"])
    assert "shrinks (0.200 -> 0.010)" in line
    e = estimator_frame(df)
    assert e["mean"].iloc[0] == pytest.approx(0.15) and e["count"].iloc[0] == 2


def test_rlls_without_cvxpy_is_refused_before_training(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cvxpy" else real(name, *a))
    exp = get_experiment("label_shift")
    with pytest.raises(ValueError, match=r"estimator rlls needs cvxpy: pip install 'iwlab\[label_shift\]'"):
        exp.cells(make_config("label_shift", "quick"))
    ok = ["estimators=bbse_hard,mlls_bcts", "fixture=true"]
    assert exp.cells(make_config("label_shift", "quick", ok))  # without rlls it runs
