"""The CIFAR-10 experiments end to end on the generated fixture, plus the agreement and weighted-accuracy maths."""

import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
import torch

from iwlab.cli import main as cli_main
from iwlab.config import ConfigError
from iwlab.data.cifar10 import make_fixture, write_cifar_batches
from iwlab.experiments import cifar_binary, cifar_imbalanced, cifar_multiclass, make_config
from iwlab.experiments.cifar_multiclass import multiclass_frame
from iwlab.experiments.cifar_summary import agreement_table
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
    frac = df[df.name.str.startswith(("frac_", "train_acc", "test_acc", "agree_"))].value
    assert frac.between(0, 1).all()
    # the paper's learning rates: 0.05 for the unweighted dropout model, 1e-4 for Adam
    lr = df.drop_duplicates(["variant", "weight"]).set_index(["variant", "weight"]).lr
    assert lr[("dropout", 1.0)] == 0.05 and lr[("dropout", 0.25)] == 0.1 and lr[("adam", 4.0)] == 1e-4
    assert "Spread across weights" in md and "Agreement between models" in md
    for name in ("fig4abc_fraction_vs_epoch", "fig4def_fraction_vs_weight", "figA3_l2", "figA9_adam"):
        assert any(p.name.startswith(name) for p in (binary_run / "figures").glob("*.png")), name


def test_binary_agreement_matches_artifacts(binary_run):
    """The summary's agreement (per-member metrics) equals a recomputation from the stored predictions."""
    df = load(binary_run)
    table = agreement_table(df).set_index(["variant", "set"])
    again = agreement_from_artifacts(binary_run).set_index(["cell", "set"])
    assert len(table) == len(again) == 12  # 4 variants x test/other/noise
    for key, row in again.iterrows():
        assert table.loc[key, "across_weightings"] == pytest.approx(row.across_weightings)
        assert table.loc[key, "across_seeds"] == pytest.approx(row.across_seeds)
    with np.load(binary_run / "artifacts" / "plain_predictions.npz") as z:
        pred = {k: z[f"pred_{k}"] for k in ("test", "other", "noise")}
    assert pred["test"].shape == (6, 8) and pred["other"].shape == (6, 16) and pred["noise"].shape == (6, 8)
    # the stored last-epoch fraction is the mean of the stored predictions
    last = df[(df.variant == "plain") & (df.name == "frac_dog_test") & (df.epoch == 3)].sort_values("member")
    np.testing.assert_allclose(last.value, pred["test"].mean(1), atol=1e-6)


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
    ],
)
def test_bad_values_fail_at_config_time(name, override, message):
    with pytest.raises(ConfigError, match=message):
        make_config(name, "ci", [override])
