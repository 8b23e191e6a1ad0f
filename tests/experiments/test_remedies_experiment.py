"""The remedies experiment: the ci profile end to end, the long-tailed part on the fixture, the method table by hand."""

import math
import re

import pandas as pd
import pytest
import torch

from iwlab.config import ConfigError
from iwlab.data.resample import kept_count
from iwlab.experiments import get_experiment, make_config
from iwlab.experiments.remedies import Config, binary_metrics
from iwlab.experiments.remedies_methods import binary_member, implied_counts, methods, posthoc_offset, subsample_weights
from iwlab.experiments.remedies_summary import PUBLISHED, spreads, summary, verdict
from iwlab.functional.weighting import class_balanced_weights
from iwlab.runner import run_experiment
from iwlab.store import load

TABLE = methods(1.0, 2.0, 1.0, 1.0, 1.0, 0.2)


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("remedies") / "ci"
    return run_experiment("remedies", "ci", [], out=out, workers=1, progress=False)


def test_ci_profile_reports_every_method_on_both_binary_parts(ci_run):
    df = load(ci_run)
    assert set(df.status) == {"done"}
    assert set(df.part) == {"separable", "cifar_catdog"}
    text = (ci_run / "report.md").read_text()
    for m in TABLE.values():
        assert text.count(f"| {m.label} |") >= 2, m.label  # one row per binary table
    verdicts = re.findall(r"\| (survives|fades|n/a \([^|]*\)) \|\n", text)
    assert len(verdicts) == text.count("| sub-sampling |") * len(TABLE), verdicts
    assert "Wang et al.'s claim" in text


def test_the_headline_ratio_is_computed_from_the_spreads(ci_run):
    df = load(ci_run)
    s = spreads(df, "separable").set_index("method")
    best = s.loc[["poly_logit_iw", "poly_linear_iw", "poly_exp_iw"], "spread_last"].max()
    ratio = best / s.loc["ce_iw", "spread_last"]
    text = (ci_run / "report.md").read_text()
    assert f"is {ratio:.1f}x that with CE+IW" in text


def test_long_tailed_part_runs_on_the_fixture_and_cites_the_papers(tmp_path):
    over = [
        "parts=cifar10_lt",
        "fixture=true",
        "lt_imbalance=10",
        "lt_epochs=1",
        "lt_blocks=1",
        "lt_width=4",
        "lt_batch_size=32",
        "lt_n_test_per_class=5",
        "lt_warmup=0",
        "lt_milestones=160,180",
        "methods=ce,ldam,la_posthoc,vs",
    ]
    run = run_experiment("remedies", "quick", over, out=tmp_path / "lt", workers=1, progress=False)
    df = load(run)
    top1 = df[df.name == "top1"]
    assert set(top1.method) == {"ce", "ldam", "la_posthoc", "vs"}
    assert ((top1.value >= 0) & (top1.value <= 1)).all()
    text = (run / "report.md").read_text()
    assert "CIFAR-10-LT" in text and PUBLISHED["ldam"][1] in text


def test_binary_members_by_hand():
    n, w, epochs = 100, 0.25, 50
    ce_iw = binary_member("ce_iw", TABLE["ce_iw"], w, 3, 0.1, n, epochs, 0.999, {})
    assert ce_iw.class_weight == (1.0, 0.25) and ce_iw.loss == "ce" and ce_iw.labels["method"] == "ce_iw"
    la = binary_member("la", TABLE["la"], w, 3, 0.1, n, epochs, 0.999, {})
    assert la.class_weight is None and la.loss_kwargs == {"tau": 1.0, "class_counts": [100, 400]}
    cb = binary_member("cb", TABLE["cb"], w, 3, 0.1, n, epochs, 0.999, {})
    torch.testing.assert_close(
        torch.tensor(cb.class_weight, dtype=torch.float64), class_balanced_weights([100, 400], 0.999)
    )
    drw = binary_member("ldam_drw", TABLE["ldam_drw"], w, 3, 0.1, n, epochs, 0.999, {})
    assert drw.deferred_class_weight[0] == 41  # from 80 % of 50 epochs on: epoch 41
    assert implied_counts(100, 1 / 256) == [100, 25600]
    assert posthoc_offset(TABLE["la_posthoc"], w, 1.0) == pytest.approx(math.log(0.25))
    assert posthoc_offset(TABLE["ce"], w, 1.0) == 0.0
    y = torch.tensor([0] * 10 + [1] * 13)
    keep = subsample_weights(y, 0.125, seed=0)
    assert int(keep[y == 1].sum()) == kept_count(13, 0.125) == 2 and bool((keep[y == 0] == 1).all())


def test_binary_metrics_by_hand():
    z_test = torch.tensor([[2.0, -1.0, 1.0, -3.0]])  # predictions 1, 0, 1, 0
    y_test = torch.tensor([1, 1, 0, 0])  # class 1: 1 of 2 right; class 0: 1 of 2 right
    z_train = torch.tensor([[1.0, -1.0, 5.0]])
    y_train = torch.tensor([1, 0, 0])
    keep = torch.tensor([[1.0, 1.0, 0.0]])  # the third example was sub-sampled away
    out = binary_metrics(z_test, y_test, z_train, y_train, keep, torch.tensor([0.25]))
    assert float(out["frac_down_test"][0]) == 0.5
    assert float(out["train_acc"][0]) == 1.0
    assert float(out["balanced_acc"][0]) == 0.5
    assert float(out["weighted_acc"][0]) == pytest.approx((0.5 + 0.25 * 0.5) / 1.25)


def test_verdicts_need_interpolation():
    assert verdict(0.3, 1.0) == "survives" and verdict(0.01, 0.99) == "fades"
    assert verdict(0.3, 0.5).startswith("n/a (not interpolated") and verdict(float("nan"), 1.0) == "n/a (missing)"


@pytest.mark.parametrize(
    "override, message",
    [("methods=ce,hinge", "unknown 'hinge'"), ("weights=1,2", "in (0, 1]"), ("parts=mnist", "got 'mnist'")],
)
def test_config_rejections(override, message):
    with pytest.raises((ConfigError, ValueError), match=re.escape(message)):
        make_config("remedies", "quick", [override])


def test_profiles_validate_and_the_summary_of_nothing_says_so():
    for profile in get_experiment("remedies").profiles:
        make_config("remedies", profile, [])
    assert summary(pd.DataFrame(), Config()) == "No remedies results recorded."


def test_headline_needs_both_rows_interpolated_and_a_real_spread():
    """Found by the break-it round: the headline checked only the ratio (0.001 vs 0.000 read "3.0x ... holds")."""
    from iwlab.experiments.remedies_summary import headline

    base = {"method": ["ce_iw", "poly_logit_iw"], "diverged": [False, False]}
    zero = pd.DataFrame({**base, "spread_last": [0.0, 0.001], "train_acc": [1.0, 1.0]})
    assert "fails" in headline(zero)
    unfit = pd.DataFrame({**base, "spread_last": [0.05, 0.2], "train_acc": [0.5, 1.0]})
    assert ": n/a (not interpolated" in headline(unfit)
    real = pd.DataFrame({**base, "spread_last": [0.05, 0.2], "train_acc": [1.0, 1.0]})
    assert "4.0x" in headline(real) and ": holds" in headline(real)


def test_post_hoc_members_are_judged_by_the_shifted_classifier(tmp_path):
    """LA (post-hoc) used the raw logits for train_acc and the shifted ones for the spread: its verdict came from
    another classifier than the one measured (found by the break-it round)."""
    over = ["parts=separable", "syn_steps=100", "weights=1,0.00390625", "methods=la_posthoc"]
    run = run_experiment("remedies", "ci", over, out=tmp_path / "r", workers=1, progress=False)
    df = load(run)
    acc = df[(df.name == "train_acc") & (df.weight < 1) & (df.epoch == df.epoch.max())].value
    assert float(acc.min()) < 0.95  # w = 1/256 shifts the boundary through class 1's training points


@pytest.mark.parametrize(
    "override, message",
    [("syn_steps=150", "not a multiple of syn_steps_per_epoch"), ("lt_warmup=200", "must come after lt_warmup")],
)
def test_more_config_rejections(override, message):
    with pytest.raises((ConfigError, ValueError), match=re.escape(message)):
        make_config("remedies", "quick", [override])


def test_count_losses_need_their_counts():
    from iwlab.losses.remedies import LDAMLoss, LogitAdjustedLoss, VSLoss

    for cls in (LDAMLoss, LogitAdjustedLoss, VSLoss):
        with pytest.raises(TypeError, match="needs class_counts"):
            cls(None)
