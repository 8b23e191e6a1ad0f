"""The CIFAR-10 experiments end to end on the generated fixture, plus the agreement and weighted-accuracy maths."""

import itertools
import json
import sqlite3
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from iwlab.cli import main as cli_main
from iwlab.config import ConfigError
from iwlab.data.cifar10 import make_fixture, write_cifar_batches
from iwlab.experiments import cifar_binary, cifar_imbalanced, cifar_multiclass, make_config
from iwlab.experiments.base import CellContext
from iwlab.experiments.cifar_fig4 import dropout_claim, noise_claim, paper_lines
from iwlab.experiments.cifar_multiclass import multiclass_frame
from iwlab.experiments.cifar_summary import agreement_table, null_verdict
from iwlab.files import atomic_save
from iwlab.functional.metrics import agreement, member_grid
from iwlab.functional.weighting import class_weights_from_ratio, one_class_share_weights
from iwlab.plots.cifar import agreement_from_artifacts
from iwlab.runner import run_experiment
from iwlab.store import load
from iwlab.train.evaluators import mask_diverged

FAST = ["n_train_per_class=8", "n_test_per_class=4", "size=8"]
BINARY_FAST = [*FAST, "n_other=16", "n_noise=8", "width=0.125", "dense=8"]
PNG = b"\x89PNG\r\n\x1a\n"


def _statuses(run_dir):
    con = sqlite3.connect(run_dir / "results.db")
    try:
        return dict(con.execute("SELECT run_id, status FROM runs").fetchall())
    finally:
        con.close()


def _check_run(run_dir, n_figures):
    assert set(_statuses(run_dir).values()) == {"done"}, _statuses(run_dir)
    md = (run_dir / "report.md").read_text()
    assert "## Results" in md and "Failed cell" not in md
    pngs = sorted((run_dir / "figures").glob("*.png"))
    assert len(pngs) >= n_figures, [p.name for p in pngs]
    assert all(p.read_bytes()[:8] == PNG for p in pngs)
    df = load(run_dir)
    assert df.value.notna().all()
    return df, md


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cifar") / "binary"
    overrides = [*BINARY_FAST, "seeds=2"]
    return run_experiment("cifar_binary", "ci", overrides, out=out, workers=1, progress=False)


def test_binary_end_to_end(binary_run):
    df, md = _check_run(binary_run, 6)
    assert set(df.variant) == {"plain", "l2", "dropout", "adam"}
    names = {"frac_dog_test", "frac_dog_other", "frac_dog_noise", "test_acc", "train_loss", "train_acc"}
    assert names <= set(df.name)
    for variant, ws in (("plain", {0.25, 1.0, 4.0}), ("l2", {0.25, 1.0}), ("dropout", {0.25, 1.0})):
        d = df[(df.variant == variant) & (df.name == "frac_dog_test")]
        assert set(d.weight) == ws and set(d.seed) == {0, 1} and set(d.epoch) == {1, 2, 3}
    fractions = ("frac_", "train_acc", "test_acc", "agree_weights_", "agree_seeds_", "agree_p_")
    frac = df[df.name.str.startswith(fractions)].value
    assert frac.between(0, 1).all()
    # the calibrated agreement: one cell-level row (member 0) per metric and set, the null interval around its mean
    for name in ("test", "other", "noise"):
        cell = df[df.name.str.endswith(f"_{name}") & df.name.str.match("agree_(gap|null|p_)")]
        assert set(cell.member) == {0} and cell.groupby("variant").size().eq(6).all()
        wide = cell.pivot_table(index="variant", columns="name", values="value")
        assert (wide[f"agree_null_lo_{name}"] <= wide[f"agree_null_gap_{name}"]).all()
        assert (wide[f"agree_null_gap_{name}"] <= wide[f"agree_null_hi_{name}"]).all()
        assert (wide[f"agree_p_above_{name}"] > 0).all() and (wide[f"agree_p_below_{name}"] > 0).all()
    # the paper's learning rates: 0.05 for the unweighted dropout model, 1e-4 for Adam
    lr = df.drop_duplicates(["variant", "weight"]).set_index(["variant", "weight"]).lr
    assert lr[("dropout", 1.0)] == 0.05 and lr[("dropout", 0.25)] == 0.1 and lr[("adam", 4.0)] == 1e-4
    assert "Spread across weights" in md and "Agreement between models" in md and "null 95% interval" in md
    assert "is not beyond what the statistic gives with no weight effect" in md or "weight effect (null" in md
    assert "Time budget" not in md  # no budget: nothing said about one
    for name in ("fig4abc_fraction_vs_epoch", "fig4def_fraction_vs_weight", "figA3_l2", "figA9_adam"):
        assert any(p.name.startswith(name) for p in (binary_run / "figures").glob("*.png")), name


def test_binary_agreement_matches_artifacts(binary_run):
    """The summary's agreement (per-member metrics) equals a recomputation from the stored predictions."""
    df = load(binary_run)
    table = agreement_table(df).set_index(["variant", "set"])
    again = agreement_from_artifacts(binary_run).set_index(["cell", "set"])
    assert len(table) == len(again) == 12  # 4 variants x test/other/noise
    for key, row in again.iterrows():
        for col in ("across_weightings", "across_seeds", "gap", "null_gap", "null_lo", "null_hi", "p_above", "p_below"):
            assert table.loc[key, col] == pytest.approx(row[col], abs=1e-12), (key, col)
        assert row.gap == pytest.approx(row.across_weightings - row.across_seeds, abs=1e-12)
    # the recorded gap is the difference of the per-member means the table shows
    assert (table.gap - (table.across_weightings - table.across_seeds)).abs().max() < 1e-12
    # the recorded null (1000 sampled permutations) against every reassignment within the 2 seed columns
    with np.load(binary_run / "artifacts" / "plain_predictions.npz") as z:
        grid = member_grid(z["pred_other"], z["weight"].tolist(), z["seed"].tolist())  # (3, 2, 16)
    gaps = []
    for perms in itertools.product(itertools.permutations(range(3)), repeat=2):
        a = agreement(np.stack([grid[list(p), j] for j, p in enumerate(perms)], axis=1))
        gaps.append(a["across_weightings"] - a["across_seeds"])
    assert table.loc[("plain", "other"), "null_gap"] == pytest.approx(np.mean(gaps), abs=4 * np.std(gaps) / 1000**0.5)
    with np.load(binary_run / "artifacts" / "plain_predictions.npz") as z:
        pred = {k: z[f"pred_{k}"] for k in ("test", "other", "noise")}
    assert pred["test"].shape == (6, 8) and pred["other"].shape == (6, 16) and pred["noise"].shape == (6, 8)
    # the stored last-epoch fraction is the mean of the stored predictions
    last = df[(df.variant == "plain") & (df.name == "frac_dog_test") & (df.epoch == 3)].sort_values("member")
    np.testing.assert_allclose(last.value, pred["test"].mean(1), atol=1e-6)


def test_slice_profile_is_the_paper_setting_for_a_few_epochs():
    cfg = make_config("cifar_binary", "slice")
    assert cfg.variants == ("plain", "l2", "dropout") and cfg.seeds == 9 and cfg.epochs == 6 and cfg.eval_every == 1
    assert cfg.weights == cfg.weights_regularized and len(cfg.weights) == 17
    assert min(cfg.weights) == 2.0**-8 and max(cfg.weights) == 2.0**8
    assert (cfg.n_train_per_class, cfg.n_test_per_class, cfg.n_other, cfg.n_noise, cfg.size) == (0, 0, 0, 1000, 32)
    assert cfg.width == 1.0 and cfg.dense == (512, 128) and cfg.init == "glorot"
    assert (cfg.lr, cfg.lr_dropout_unweighted, cfg.batch_size) == (0.1, 0.05, 16)
    assert cfg.time_budget_s == 150.0 and cfg.agreement_permutations == 1000
    fixture = make_config("cifar_binary", "slice", ["fixture=true"])
    assert [len(cifar_binary.members(fixture, v)) for v in fixture.variants] == [153, 153, 153]


def test_slice_report_on_the_fixture(tmp_path, capsys):
    """The slice profile's config with the fixture and tiny overrides: a budget that stops every cell after
    its first epoch, and the report's sections on the budget, the agreement null and the paper's Fig. 4."""
    out = tmp_path / "slice"
    args = ["run", "cifar_binary", "--profile", "slice", "--set", "fixture=true", "--set", "epochs=2"]
    tiny = [*BINARY_FAST, "seeds=2", "weights=1/4,1,4", "weights_regularized=1/4,4", "time_budget_s=1e-9"]
    args += [f"--set={o}" for o in tiny]
    assert cli_main([*args, "--out", str(out), "--workers", "1", "--no-progress", "--device", "cpu"]) == 0
    assert "iwlab: warning: profile 'slice' is sized for a GPU; on cpu an epoch takes hours" in capsys.readouterr().err
    df = load(out)
    assert set(df.variant) == {"plain", "l2", "dropout"} and set(df.epoch) == {1}
    stopped = df[df.name == "trained_epochs"]
    assert set(stopped.value) == {1.0} and set(stopped.member) == {0} and len(stopped) == 3
    assert {1} == set(df[df.name.str.startswith("agree_")].epoch)  # the agreement at the epoch it stopped at
    with np.load(out / "artifacts" / "plain_predictions.npz") as z:
        last = df[(df.variant == "plain") & (df.name == "frac_dog_test")].sort_values("member")
        np.testing.assert_allclose(last.value, z["pred_test"].mean(1), atol=1e-6)  # predictions of epoch 1
    md = (out / "report.md").read_text()
    assert "Time budget 1e-09 s per cell" in md and "plain stopped at epoch 1 of 2" in md
    assert "null 95% interval" in md and "### Accuracy at epoch 1 (the last" in md
    assert "### Against Byrd & Lipton's Fig. 4" in md and "| plain | 1 | noise |" in md
    assert "Test accuracy (paper: 80%-85%" in md
    # one epoch on the fixture: the models have not fit their data, so the claims are "not testable yet"
    # (or hold already); never "fails" before training has finished
    assert "Noise-image claim (Sec. 4.1" in md and "plain: fails" not in md
    assert "plain: holds at epoch 1" in md or "plain: not testable yet at epoch 1" in md
    assert "Dropout claim (Fig. 4 f" in md and ("holds at epoch 1" in md or "not testable yet at epoch 1" in md)


def _cell_rows(result):
    return sorted(r for r in result.rows if r[2] not in ("train_seconds", "trained_epochs"))


def test_time_budget_stops_resumes_and_otherwise_changes_nothing(tmp_path):
    cfg = make_config("cifar_binary", "ci", [*BINARY_FAST, "seeds=2", "variants=plain", "eval_every=1"])

    def run(where, **changes):
        ctx = CellContext(run_dir=tmp_path / where, cell_id="plain", progress=False)
        return cifar_binary.run_cell(replace(cfg, **changes), "plain", {"variant": "plain"}, ctx), ctx

    plain, _ = run("plain")  # no budget: one fit to epoch 3
    ample, ample_ctx = run("ample", time_budget_s=1e6)  # a fit per evaluated epoch, never stopped: the same numbers
    assert _cell_rows(ample) == _cell_rows(plain)
    assert ("trained_epochs", 3.0) in {(r[2], r[3]) for r in ample.rows}
    # killed after the last checkpoint, before the record of the fit (or of the cell) was written: reloads
    record = ample_ctx.checkpoint_path.with_suffix(".budget.pt")
    for epoch in (2, 3):
        atomic_save({"epoch": epoch, "seconds": 0.0, "stopped": False}, record)
        assert _cell_rows(run("ample", time_budget_s=1e6)[0]) == _cell_rows(plain)
    short, ctx = run("short", time_budget_s=1e-9)
    assert max(r[0] for r in short.rows) == 1 and (1, 0, "trained_epochs", 1.0) in short.rows
    again, _ = run("short", time_budget_s=1e-9)  # a rerun of the stopped cell reloads epoch 1, trains no further
    assert _cell_rows(again) == _cell_rows(short)
    # as if interrupted after epoch 1 with time to spare: it continues from its checkpoint to epoch 3
    atomic_save({"epoch": 1, "seconds": 0.0, "stopped": False}, ctx.checkpoint_path.with_suffix(".budget.pt"))
    resumed, _ = run("short", time_budget_s=1e6)
    assert _cell_rows(resumed) == _cell_rows(plain)


def test_agreement_and_fig4_verdicts_follow_the_numbers():
    row = {"gap": 0.01, "null_gap": 0.05, "null_lo": 0.03, "null_hi": 0.07, "p_above": 0.999, "p_below": 0.004}
    assert null_verdict(pd.Series(row)).startswith("the gap +0.010 is below what the statistic gives with no weight")
    assert "p below = 0.004" in null_verdict(pd.Series(row))
    assert "+0.090 is above what" in null_verdict(pd.Series({**row, "gap": 0.09, "p_above": 0.01, "p_below": 0.99}))
    # the decision is the one-sided p-value at 0.025, not the interval's edge (they can differ at ties)
    assert "+0.050 is not beyond what" in null_verdict(pd.Series({**row, "gap": 0.05, "p_below": 0.5}))
    assert "+0.030 is below" in null_verdict(pd.Series({**row, "gap": 0.03, "p_below": 0.02}))
    # one seed: nothing to compare across seeds, no verdict
    assert null_verdict(pd.Series({**row, "n_seeds": 1})).startswith("not calibrated: agreement across seeds needs")
    assert null_verdict(pd.Series({**row, "n_weightings": 1})).startswith("not calibrated: a permutation across")
    rows = []
    for w, (noise, test, acc) in {0.25: (0.2, 0.30, 0.7), 4.0: (0.4, 0.70, 1.0)}.items():
        for v in ("plain", "dropout"):
            rows += [(v, w, 0, 1, "frac_dog_test", 0.5), (v, w, 0, 6, "frac_dog_test", test)]
            rows += [(v, w, 0, 6, "frac_dog_noise", noise), (v, w, 0, 6, "train_acc", acc)]
            rows += [(v, w, 0, 6, "test_acc", 0.82)]
    df = pd.DataFrame(rows, columns=["variant", "weight", "seed", "epoch", "name", "value"])
    # not fitted yet (training accuracy 0.7 < 0.95): the claims are about trained models, so no verdict
    assert noise_claim(df, "plain", "dog").startswith("not testable yet at epoch 6: the models have not fit")
    assert dropout_claim(df, "dog").startswith("not testable yet at epoch 6")
    assert "lowest training accuracy 0.700 < 0.95" in dropout_claim(df, "dog")
    fitted = df.assign(value=np.where(df.name == "train_acc", 1.0, df.value))
    noise = "fails at epoch 6: mean dog fraction on noise 0.300 (max over models 0.400)"
    assert noise_claim(fitted, "plain", "dog") == noise
    assert dropout_claim(fitted, "dog").startswith("fails at epoch 6: spread across weights test 0.400, noise 0.200")
    close = fitted.assign(
        value=np.where(fitted.name.str.startswith("frac_dog") & (fitted.epoch == 6), 0.05, fitted.value)
    )
    # holding is judged on trained models only, like failing
    unfit_close = df.assign(value=np.where(df.name.str.startswith("frac_dog") & (df.epoch == 6), 0.05, df.value))
    assert dropout_claim(unfit_close, "dog").startswith("not testable yet at epoch 6")
    assert noise_claim(unfit_close, "dropout", "dog").startswith("not testable yet at epoch 6")
    one_weight = fitted[fitted.weight == 4.0]
    assert dropout_claim(one_weight, "dog").startswith("n/a at epoch 6: the dropout models have 1 weighting")
    holds = "holds at epoch 6: spread across weights test 0.000, noise 0.000 (all below 0.1)"
    assert dropout_claim(close, "dog") == holds
    assert noise_claim(close, "dropout", "dog").startswith("holds at epoch 6")
    md = "\n".join(paper_lines(df, make_config("cifar_binary", "ci")))
    assert "- plain: 0.820 / 0.820 / 0.820 (min / mean / max), mean within the paper's range." in md
    assert "| dropout | 6 | test | 0.500 | 0.300 / 0.700 | 0.30-0.70 |" in md
    assert "- dropout: 0.820 / 0.820 / 0.820 (min / mean / max), no paper value for this variant." in md


def test_class_weights_down_weight_one_class():
    assert class_weights_from_ratio(1 / 256) == (1.0, 1 / 256)
    assert class_weights_from_ratio(256.0) == (1 / 256, 1.0)
    cfg = make_config("cifar_binary", "paper")
    assert len(cfg.weights) == 17 and min(cfg.weights) == 2.0**-8 and max(cfg.weights) == 2.0**8
    assert len(cfg.weights_regularized) == 9 and cfg.seeds == 9 and cfg.epochs == 1000 and cfg.size == 32
    assert cfg.width == 1.0 and cfg.dense == (512, 128) and cfg.batch_size == 16 and cfg.lr == 0.1


def test_members_of_the_paper_profile():
    cfg = make_config("cifar_binary", "paper", ["fixture=true"])
    assert [c for c, _ in cifar_binary.cells(cfg)] == ["plain", "l2", "dropout", "adam"]
    plain = cifar_binary.members(cfg, "plain")
    assert len(plain) == 17 * 9 and {m.lr for m in plain} == {0.1} and {m.weight_decay for m in plain} == {0.0}
    dropout = cifar_binary.members(cfg, "dropout")
    assert len(dropout) == 9 * 9 and {m.labels["weight"] for m in dropout} == {4.0**k for k in range(-4, 5)}
    assert {m.lr for m in dropout if m.labels["weight"] == 1.0} == {0.05}
    l2 = cifar_binary.members(cfg, "l2")
    assert {m.weight_decay for m in l2} == {1e-3} and {m.labels["weight_decay"] for m in l2} == {1e-3}
    # imbalanced: dogs kept 1/4 -> the weighted model multiplies the cats' loss by 1/4 (dog weight 4)
    imb = make_config("cifar_imbalanced", "quick", ["subsampled=dog", "factors=4", "seeds=1", "fixture=true"])
    ((cell, params),) = cifar_imbalanced.cells(imb)
    members = cifar_imbalanced.members(imb, params["subsampled"], params["factor"])
    assert cell == "dog_x4" and [m.class_weight for m in members] == [(1.0, 1.0), (0.25, 1.0)]


def test_diverged_members_record_nothing():
    out = mask_diverged({"a": torch.tensor([0.5, 0.0, 1.0])}, torch.tensor([-1, 4, -1]))
    assert out["a"][0] == 0.5 and out["a"][1].isnan() and out["a"][2] == 1.0


def test_multiclass_end_to_end_and_gain(tmp_path):
    run_dir = run_experiment("cifar_multiclass", "ci", FAST, out=tmp_path / "mc", workers=1, progress=False)
    df, md = _check_run(run_dir, 1)
    assert set(df.rho) == {0.1, 0.5} and set(df.weighted_class) == {0, 3}
    wacc = df[df.name == "weighted_acc"]
    assert wacc.value.between(0, 1).all() and set(wacc.epoch) == {1, 2, 3}
    # recompute one member's weighted accuracy from its stored per-class accuracies (balanced test set)
    row = wacc[(wacc.rho == 0.5) & (wacc.weighted_class == 3) & (wacc.epoch == 3)].iloc[0]
    accs = df[(df.run_id == row.run_id) & (df.member == row.member) & (df.epoch == 3)]
    acc = {int(n.removeprefix("acc_class")): v for n, v in zip(accs.name, accs.value, strict=True) if "class" in n}
    v = one_class_share_weights(0.5, 3)
    assert row.value == pytest.approx(sum(v[c] * acc[c] for c in acc) / sum(v[c] for c in acc), abs=1e-6)
    t = multiclass_frame(df)
    assert t[t.rho == 0.1].gain.abs().max() < 1e-6  # the unweighted models against themselves
    assert "gain over unweighted" in md


def test_multiclass_frame_baseline():
    """The baseline is the unweighted (rho=0.1) model's per-class accuracies under the rho weights."""
    rows = []
    for c, a in enumerate([0.5] * 9 + [1.0]):
        rows.append(("rho=0.1", 0, f"acc_class{c}", a, 0.1, 9))
    rows += [("rho=0.1", 0, "weighted_acc", 0.55, 0.1, 9), ("rho=0.9", 0, "weighted_acc", 0.8, 0.9, 9)]
    df = pd.DataFrame(rows, columns=["run_id", "member", "name", "value", "rho", "weighted_class"])
    df = df.assign(seed=9, epoch=5)
    t = multiclass_frame(df).set_index("rho")
    assert t.loc[0.9, "baseline"] == pytest.approx(0.9 * 1.0 + 0.1 * 0.5)
    assert t.loc[0.9, "gain"] == pytest.approx(0.8 - 0.95)


@pytest.mark.parametrize(
    "name,n_figures",
    [("cifar_label_noise", 2), ("cifar_cars_trucks", 2), ("cifar_imbalanced", 2), ("cifar_resnet", 3)],
)
def test_other_binary_experiments_end_to_end(tmp_path, name, n_figures):
    extra = ["size=8", "width=0.0625", "dense=8"] if name == "cifar_resnet" else BINARY_FAST
    if name == "cifar_label_noise":
        extra = [*extra, "label_noise=0.25"]  # 2 of the 8 images per class
    run_dir = run_experiment(name, "ci", [*FAST, *extra], out=tmp_path / name, workers=1, progress=False)
    df, md = _check_run(run_dir, n_figures)
    if name == "cifar_cars_trucks":
        assert "frac_truck_test" in set(df.name) and "automobile (0) vs truck (1)" in md
    if name == "cifar_label_noise":
        assert "train_acc_flipped" in set(df.name)
    if name == "cifar_imbalanced":
        # cats kept 1/2: the weighted model multiplies the dogs' loss by 1/2 (dog weight 0.5)
        assert set(zip(df.weighted, df.weight, strict=True)) == {(False, 1.0), (True, 0.5)}
        assert "sub-sampling alone" in md
    if name == "cifar_resnet":
        assert set(df.variant) == {"plain", "batchnorm"}


def test_data_root_reads_canonical_batches(tmp_path):
    """Real-data path: pickled batches under DATA_ROOT/cifar10/cifar-10-batches-py (no fixture flag)."""
    write_cifar_batches(tmp_path / "data" / "cifar10" / "cifar-10-batches-py", make_fixture(8, 4, seed=3))
    overrides = [*BINARY_FAST, f"data_root={tmp_path / 'data'}", "fixture=false", "variants=plain", "epochs=2"]
    run_dir = run_experiment("cifar_binary", "ci", overrides, out=tmp_path / "run", workers=1, progress=False)
    assert _statuses(run_dir) == {"plain": "done"}
    cfg = json.loads((run_dir / "config.json").read_text())["config"]
    assert cfg["fixture"] is False and cfg["data_root"].endswith("data")


def test_missing_data_is_refused_before_training(tmp_path, capsys):
    overrides = [*BINARY_FAST, f"data_root={tmp_path / 'nothing'}", "fixture=false", "variants=plain"]
    with pytest.raises(FileNotFoundError, match="CIFAR-10 not found"):
        run_experiment("cifar_binary", "ci", overrides, out=tmp_path / "run", workers=1, progress=False)
    args = ["run", "cifar_binary", "--set", f"data_root={tmp_path / 'nothing'}", "--out", str(tmp_path / "cli")]
    assert cli_main(args) == 2
    assert "fixture=true" in capsys.readouterr().err


def test_cli_run(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["run", "cifar_binary", "--profile", "quick", "--set", "fixture=true", "--set", "epochs=2"]
    args += [f"--set={o}" for o in [*BINARY_FAST, "seeds=1", "weights=1/4,4", "variants=plain,adam"]]
    assert cli_main([*args, "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    assert "report:" in capsys.readouterr().out
    assert _statuses(out) == {"plain": "done", "adam": "done"}
    df = load(out)
    assert set(df.weight) == {0.25, 4.0} and df.epoch.max() == 2


def test_small_packs_equal_one_pack(binary_run, tmp_path):
    """pack_size=2 (the out-of-memory fallback's shape) gives the same metrics, agreement included."""
    out = tmp_path / "packs"
    run_experiment(
        "cifar_binary",
        "ci",
        [*BINARY_FAST, "seeds=2", "pack_size=2", "variants=plain,l2"],
        out=out,
        workers=1,
        progress=False,
    )
    packed = load(out).sort_values(["run_id", "member", "name", "epoch"]).reset_index(drop=True)
    whole = load(binary_run)
    whole = whole[whole.run_id.isin(set(packed.run_id))].sort_values(["run_id", "member", "name", "epoch"])
    whole = whole.reset_index(drop=True)
    assert len(packed) == len(whole) and any(n.startswith("agree_") for n in packed.name)
    assert (packed[["run_id", "member", "epoch", "name"]] == whole[["run_id", "member", "epoch", "name"]]).all().all()
    assert packed.value.to_numpy() == pytest.approx(whole.value.to_numpy(), abs=1e-6)
    assert len(list((out / "checkpoints").glob("*.members*.pt"))) >= 2


def _binary_frame(spec, sets=("test",)):
    """spec: variant -> ({weight: (first, last)} of frac_dog_<set>, lowest train acc at the last epoch)."""
    rows = []
    for variant, (fracs, acc) in spec.items():
        for w, (f, la) in fracs.items():
            for name in sets:
                rows += [(variant, w, 0, 1, f"frac_dog_{name}", f), (variant, w, 0, 9, f"frac_dog_{name}", la)]
            rows += [(variant, w, 0, 1, "train_acc", 0.6), (variant, w, 0, 9, "train_acc", acc)]
    return pd.DataFrame(rows, columns=["variant", "weight", "seed", "epoch", "name", "value"])


def test_binary_summary_verdict_follows_the_numbers():
    spec = {
        "plain": ({0.25: (0.2, 0.48), 1.0: (0.5, 0.5), 4.0: (0.8, 0.53)}, 1.0),  # 0.60 -> 0.05: faded
        "l2": ({0.25: (0.25, 0.45), 1.0: (0.75, 0.50)}, 1.0),  # 0.50 -> 0.05: faded, the paper says persists
        "dropout": ({0.25: (0.3, 0.1), 1.0: (0.5, 0.5)}, 0.9),  # not trained: no claim
    }
    md = cifar_binary.summary(_binary_frame(spec), make_config("cifar_binary", "ci"))
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and "| test |" in ln and "(epoch 1)" in ln]
    assert rows == [
        "| plain | test | 0.600 (epoch 1) | 0.050 (epoch 9) | 0.480 / 0.500 / 0.530 | faded; shrinks (0.600 -> "
        "0.050) | faded | yes |",
        "| l2 | test | 0.500 (epoch 1) | 0.050 (epoch 9) | 0.450 / 0.500 / 0.500 | faded; shrinks (0.500 -> "
        "0.050) | persists (L2 keeps the effect) | no |",
        "| dropout | test | 0.200 (epoch 1) | 0.400 (epoch 9) | 0.100 / 0.500 / 0.500 | persists; grows (0.200 -> "
        "0.400) | no claim (models not trained yet: best train acc 0.900) | n/a |",
    ]
    assert (
        "**Finding** (all sets, computed from the table below): matches Byrd & Lipton in 1 of 2 rows; contradicts "
        "them in l2 test: faded; shrinks (0.500 -> 0.050), expected persists (L2 keeps the effect); no verdict for "
        "1 row" in md
    )
    assert "larger with L2" not in md  # the old fixed sentence


def test_imbalanced_summary_verdict_follows_the_numbers():
    rows = []
    # cats kept 1/2: the weights move the test fraction by 0.2 at epoch 1 and by 0.01 at epoch 9
    for weighted, first, last in ((False, 0.3, 0.30), (True, 0.5, 0.31)):
        for e, v in ((1, first), (9, last)):
            rows.append(("cat", 2.0, weighted, 0, e, "frac_dog_test", v))
    df = pd.DataFrame(rows, columns=["subsampled", "factor", "weighted", "seed", "epoch", "name", "value"])
    md = cifar_imbalanced.summary(
        df.assign(variant="plain", weight=np.where(df.weighted, 0.5, 1.0)), make_config("cifar_imbalanced", "ci")
    )
    # dogs are the majority (cats sub-sampled): sub-sampling alone predicting 0.30 dog is not towards the majority
    assert (
        "| cat | 2 | test | 0.300 | 0.500 | 0.300 | 0.310 | no (0.300 predicted dog) | shrinks (0.200 -> 0.010) | yes |"
        in md
    )
    assert "matches Byrd & Lipton in 1 of 1 rows" in md


def test_multiclass_summary_verdict_follows_the_numbers():
    rows = []
    for e in (1, 2, 3):  # unweighted (rho = 0.1) models: every class at 0.5, so the baseline is 0.5
        rows += [(0.1, 0, 0, e, f"acc_class{c}", 0.5) for c in range(10)]
        rows.append((0.1, 0, 0, e, "weighted_acc", 0.5))
    for rho, accs in ((0.5, (0.7, 0.6, 0.52)), (0.9, (0.5, 0.6, 0.8))):
        rows += [(rho, 0, 0, e, "weighted_acc", a) for e, a in zip((1, 2, 3), accs, strict=True)]
    df = pd.DataFrame(rows, columns=["rho", "weighted_class", "seed", "epoch", "name", "value"])
    md = cifar_multiclass.summary(df, make_config("cifar_multiclass", "ci"))
    assert (
        "| 0.5 | 0.700 +- 0.000 | 0.520 +- 0.000 | +0.200 | +0.200 (1) | +0.020 | shrinks (0.200 -> 0.020) | yes |"
        in md
    )
    assert (
        "| 0.9 | 0.500 +- 0.000 | 0.800 +- 0.000 | +0.000 | +0.300 (3) | +0.300 | stays (0.300 -> 0.300) | no |" in md
    )
    assert "matches Byrd & Lipton in 1 of 2 rows; contradicts them in rho=0.9" in md


@pytest.mark.parametrize(
    "name,key",
    [
        ("cifar_imbalanced", "weights=1"),  # used to be inherited and silently ignored
        ("cifar_imbalanced", "lr_adam=0.1"),
        ("cifar_imbalanced", "dropout=0.1"),
        ("cifar_imbalanced", "variants=plain"),
        ("cifar_resnet", "weight_decay=0.1"),
        ("cifar_resnet", "weights_regularized=1"),
        ("cifar_resnet", "label_noise=0.1"),
        ("cifar_cars_trucks", "label_noise=0.1"),
        ("cifar_label_noise", "lr_adam=0.1"),
        ("cifar_binary", "label_noise=0.1"),
        ("cifar_binary", "arch=resnet"),
        ("cifar_multiclass", "pack_size=2"),
        ("cifar_multiclass", "n_noise=2"),
    ],
)
def test_keys_an_experiment_does_not_use_are_refused(name, key):
    with pytest.raises(ConfigError, match=f"unknown config key '{key.split('=')[0]}'"):
        make_config(name, "ci", [key])


@pytest.mark.parametrize(
    "name,override,message",
    [
        ("cifar_binary", "variants=batchnorm", "variants: expected one of plain, l2, dropout, adam"),
        ("cifar_resnet", "variants=dropout", "variants: expected one of plain, batchnorm"),
        ("cifar_resnet", "dense=8,8", "one hidden dense layer"),
        ("cifar_binary", "init=xavier", "init: expected one of glorot, he, torch"),
        ("cifar_binary", "weight_decay=-1", "weight_decay: must be >= 0"),
        ("cifar_imbalanced", "subsampled=truck", "subsampled must name classes"),
        ("cifar_label_noise", "label_noise=0.5", "label_noise: must be in"),
        ("cifar_binary", "time_budget_s=-1", "time_budget_s: must be"),
        ("cifar_binary", "agreement_permutations=-1", "agreement_permutations: must be"),
        ("cifar_binary", "agreement_permutations=1.5", "agreement_permutations"),
        ("cifar_imbalanced", "agreement_permutations=10", "cifar_imbalanced records no agreement"),
        ("cifar_resnet", "conv_impl=grouped", "the ResNet is not one"),
        ("cifar_binary", "precision=fp16", "precision: expected one of fp32, tf32, bf16"),
        ("cifar_binary", "conv_impl=loop", "conv_impl: expected one of vmap, grouped"),
    ],
)
def test_bad_values_fail_at_config_time(name, override, message):
    with pytest.raises(ConfigError, match=message):
        make_config(name, "ci", [override])
