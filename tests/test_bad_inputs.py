"""Bad inputs get a one-line, specific error, before any training when it can be known up front.

CLI cases call ``iwlab.cli.main`` in-process: exit code 2 and one ``iwlab: error:`` line on stderr.
"""

import dataclasses
import gzip
import hashlib
import os
import struct
from collections import namedtuple

import pytest
import torch

import iwlab.experiments.synthetic as synthetic
from iwlab.cli import main
from iwlab.data.download import ChecksumError, read_idx, verify
from iwlab.data.resample import subsample_class
from iwlab.functional.losses import weighted_binary_cross_entropy, weighted_cross_entropy
from iwlab.models import MLP, logistic_regression
from iwlab.store import Store
from iwlab.train import EnsembleTrainer, Member

TINY = [
    "--set", "epochs=3",
    "--set", "n_per_class=16",
    "--set", "n_test_per_class=16",
    "--set", "grid_size=8",
    "--set", "weights=1,0.25",
    "--set", "weight_decay=0",
]  # fmt: skip


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def _cli_error(capsys, args) -> str:
    assert main(args) == 2
    err = _one_line(capsys.readouterr().err)
    assert err.startswith("iwlab: error: ")
    return err


def _patch_experiment(monkeypatch, **changes):
    """Swap parts of the registered synthetic experiment (the registry reads ``EXPERIMENT`` on each lookup)."""
    monkeypatch.setattr(synthetic, "EXPERIMENT", dataclasses.replace(synthetic.EXPERIMENT, **changes))


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if any cell starts training."""
    calls = []

    def run_cell(cfg, cell_id, params, ctx):
        calls.append(cell_id)
        raise RuntimeError("training started")

    _patch_experiment(monkeypatch, run_cell=run_cell)
    return calls


# -- config keys and values ------------------------------------------------------------------------


@pytest.mark.parametrize("cmd", ["run", "sweep"])
@pytest.mark.parametrize(
    "setting, expected",
    [
        ("epoch=3", "unknown config key 'epoch'. Did you mean 'epochs'?"),
        ("lr_scal=2", "unknown config key 'lr_scal'. Did you mean 'lr_scale'?"),
        ("epochs=ten", "epochs: expected an int, got 'ten'."),
        ("lr=fast", "lr: expected a float, got 'fast'."),
        ("compile=maybe", "compile: expected a bool (true/false), got 'maybe'."),
        ("normalization=mean", "normalization: expected one of batch_size, weight_sum; got 'mean'"),
        ("weights=1,x", "weights: expected a float, got 'x'."),
    ],
)
def test_bad_config_via_cli(capsys, tmp_path, no_training, cmd, setting, expected):
    out = tmp_path / "run"
    err = _cli_error(capsys, [cmd, "synthetic", "--set", setting, "--out", str(out), "--no-progress"])
    assert expected in err
    assert not out.exists() and not no_training


def test_bad_grid_key_via_cli(capsys, tmp_path, no_training):
    out = tmp_path / "run"
    err = _cli_error(capsys, ["sweep", "synthetic", "--grid", "lr_scle=1,2", "--out", str(out)])
    assert "unknown config key 'lr_scle'. Did you mean 'lr_scale'?" in err
    assert not out.exists()


# -- importance weights ----------------------------------------------------------------------------


@pytest.mark.parametrize("weights", ["-1,1", "1,nan", "inf,1", "0,0", "0", "1,-0.25"])
@pytest.mark.parametrize("how", ["--set", "--grid"])
def test_invalid_weights_via_cli(capsys, tmp_path, no_training, weights, how):
    out = tmp_path / "run"
    cmd = "run" if how == "--set" else "sweep"
    err = _cli_error(capsys, [cmd, "synthetic", how, f"weights={weights}", "--out", str(out)])
    # one line naming the key and the allowed range (nan/inf: "must be a finite number")
    assert err.startswith("iwlab: error: weights: must be ")
    assert not out.exists() and not no_training


BAD_WEIGHTS = [
    (
        torch.tensor([1.0, -0.5]),
        "has a negative entry (-0.5 at index 1); importance weights must be >= 0",
    ),
    (
        torch.tensor([float("nan"), 1.0]),
        "has a NaN entry at index 0; importance weights must be finite",
    ),
    (
        torch.tensor([1.0, float("inf")]),
        "has an infinite entry (inf at index 1); importance weights must be finite",
    ),
    (torch.zeros(2), "is all zeros (shape (2,)); at least one importance weight must be positive"),
]


def test_all_zero_weights_are_a_fully_masked_batch_in_the_losses():
    """Issue 10 item 13: all-zero weights give 0 under "batch_size"; "weight_sum" has no value then."""
    logits, target, w = torch.zeros(4, 2), torch.tensor([0, 1, 1, 0]), torch.zeros(2)
    assert weighted_cross_entropy(logits, target, class_weight=w).item() == 0.0
    assert weighted_binary_cross_entropy(torch.zeros(4), target, class_weight=w).item() == 0.0
    with pytest.raises(ValueError, match="zero total weight"):
        weighted_cross_entropy(logits, target, class_weight=w, normalization="weight_sum")


@pytest.mark.parametrize("w, msg", BAD_WEIGHTS[:3])  # all-zero weights are valid in a loss (issue 10 item 13)
def test_invalid_weights_via_losses(w, msg):
    logits, target = torch.zeros(4, 2), torch.tensor([0, 1, 1, 0])
    with pytest.raises(ValueError) as e:
        weighted_cross_entropy(logits, target, class_weight=w)
    assert _one_line(str(e.value)) == f"class_weight {msg}"
    with pytest.raises(ValueError, match="class_weight " + msg.split(" ")[0]):
        weighted_binary_cross_entropy(torch.zeros(4), target, class_weight=w)
    sw = torch.cat([w, torch.ones(2)])
    if not bool((w == 0).all()):  # [0, 0, 1, 1] is a valid sample weight
        with pytest.raises(ValueError, match="sample_weight "):
            weighted_cross_entropy(logits, target, sample_weight=sw)


def _xy(n=16, classes=2):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 2, generator=g), torch.arange(n) % classes


@pytest.mark.parametrize("w, msg", BAD_WEIGHTS)
def test_invalid_weights_via_trainer(w, msg):
    x, y = _xy()
    members = [Member(seed=0), Member(seed=1, class_weight=tuple(w.tolist()))]
    tr = EnsembleTrainer(lambda g: logistic_regression(2, 1, generator=g), members, batch_size=4)
    with pytest.raises(ValueError) as e:
        tr.fit(x, y, epochs=1, progress=False)
    assert _one_line(str(e.value)) == f"member 1 class_weight {msg}"
    assert tr.epoch == 0


def test_invalid_sample_weight_via_trainer():
    x, y = _xy()
    tr = EnsembleTrainer(lambda g: logistic_regression(2, 1, generator=g), [Member(0)], batch_size=4)
    with pytest.raises(ValueError, match="sample_weight is all zeros"):
        tr.fit(x, y, epochs=1, sample_weight=torch.zeros(16), progress=False)


@pytest.mark.parametrize("name, value", [("lr", float("nan")), ("lr", -0.1), ("weight_decay", float("inf"))])
def test_invalid_member_settings(name, value):
    with pytest.raises(ValueError, match=f"{name} must be finite and >= 0") as e:
        EnsembleTrainer(
            lambda g: logistic_regression(2, 1, generator=g),
            [Member(0, **{name: value})],
            batch_size=4,
        )
    _one_line(str(e.value))


# -- labels ----------------------------------------------------------------------------------------


def test_labels_out_of_range_losses():
    with pytest.raises(ValueError) as e:
        weighted_cross_entropy(torch.zeros(4, 3), torch.tensor([0, 1, 3, 0]))
    assert _one_line(str(e.value)) == (
        "target contains label 3 at index 2 but logits has C=3 classes; labels must be in [0, 3)"
    )
    with pytest.raises(ValueError, match="target contains label -1 at index 0"):
        weighted_cross_entropy(torch.zeros(2, 3), torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match="target contains label 2 at index 1; binary labels must be 0 or 1"):
        weighted_binary_cross_entropy(torch.zeros(3), torch.tensor([0, 2, 1]))


@pytest.mark.parametrize("bad", [2, -1])
def test_labels_out_of_range_trainer(bad):
    x, y = _xy()
    y[5] = bad
    tr = EnsembleTrainer(lambda g: logistic_regression(2, 1, generator=g), [Member(0)], batch_size=4)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)") as e:
        tr.fit(x, y, epochs=1, progress=False)
    _one_line(str(e.value))
    x3, y3 = _xy(classes=3)
    y3[0] = 3
    tr = EnsembleTrainer(lambda g: MLP(2, (4,), 3, generator=g), [Member(0)], batch_size=4)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got range \[0, 3\]"):
        tr.fit(x3, y3, epochs=1, progress=False)


# -- data files ------------------------------------------------------------------------------------


def test_dataset_wrong_checksum_and_truncated(tmp_path):
    payload = struct.pack(">IIII", 0x0803, 2, 2, 2) + bytes(range(8))
    good = hashlib.md5(payload).hexdigest()
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(payload))
    assert read_idx(p).shape == (2, 2, 2)
    with pytest.raises(ChecksumError) as e:
        verify(p, good)  # the md5 of the uncompressed bytes, not of the file
    msg = _one_line(str(e.value))
    assert str(p) in msg and f"expected md5 {good}" in msg and hashlib.md5(p.read_bytes()).hexdigest() in msg

    full = p.read_bytes()
    p.write_bytes(full[:-12])
    with pytest.raises(ChecksumError, match=f"truncated: {len(full) - 12} of {len(full)} bytes"):
        verify(p, hashlib.md5(full).hexdigest(), expected_size=len(full))
    with pytest.raises(ValueError, match="truncated") as e:
        read_idx(p)
    _one_line(str(e.value))
    raw = tmp_path / "raw-idx3-ubyte"
    raw.write_bytes(payload[:-3])
    with pytest.raises(ValueError, match=r"truncated: shape \(2, 2, 2\) needs 8 data bytes, found 5"):
        read_idx(raw)
    raw.write_bytes(b"PK\x03\x04" + payload[4:])
    with pytest.raises(ValueError, match="bad magic number 0x504b0304"):
        read_idx(raw)


def test_class_left_empty_by_subsampling():
    y = torch.tensor([0] * 20 + [1] * 10)
    with pytest.raises(ValueError) as e:
        subsample_class(y, 1, 1 / 32, torch.Generator().manual_seed(0))
    assert _one_line(str(e.value)) == "class 1 would be left empty by subsampling (n=10, fraction=0.03125)"


# -- output directory and disk ---------------------------------------------------------------------


def test_unwritable_output_dir(capsys, tmp_path, no_training):
    if os.geteuid() == 0:  # root ignores permission bits: use a path that cannot be a directory
        (tmp_path / "file").write_text("not a directory")
        out = tmp_path / "file" / "run"
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        out = locked / "run"
    try:
        err = _cli_error(capsys, ["run", "synthetic", *TINY, "--out", str(out), "--no-progress"])
    finally:
        if os.geteuid() != 0:
            (tmp_path / "locked").chmod(0o700)
    assert f"output directory {out} is not writable" in err
    assert not no_training


def test_full_disk(capsys, tmp_path, monkeypatch, no_training):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("iwlab.runner.rundir.shutil.disk_usage", lambda p: usage(2**40, 2**40 - 2**20, 2**20))
    out = tmp_path / "run"
    for cmd in ("run", "sweep"):
        err = _cli_error(capsys, [cmd, "synthetic", *TINY, "--out", str(out), "--no-progress"])
        assert f"only 1 MiB free on the disk of {out}; need at least" in err
    assert not no_training
    assert not (out / "results.db").exists()


# -- failures during a run -------------------------------------------------------------------------


def test_diverging_cell_is_marked_and_run_goes_on(capsys, tmp_path):
    out = tmp_path / "run"
    args = ["sweep", "synthetic", *TINY, "--set", "models=mlp", "--grid", "lr=0.05,1e30"]
    assert main([*args, "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    runs = {r["run_id"]: r for r in Store(out / "results.db").runs()}
    assert runs["lr=0.05/mlp"]["status"] == "done"
    bad = runs["lr=1e+30/mlp"]
    assert bad["status"] == "diverged" and bad["epoch"] == 1
    assert "diverged (NaN/inf)" in bad["error"]
    assert (out / "report.md").exists()


def test_worker_exception_is_recorded(capsys, tmp_path, monkeypatch):
    real = synthetic.EXPERIMENT.run_cell

    def run_cell(cfg, cell_id, params, ctx):
        if params["model"] == "mlp":
            raise RuntimeError("simulated worker bug")
        return real(cfg, cell_id, params, ctx)

    _patch_experiment(monkeypatch, run_cell=run_cell)
    out = tmp_path / "run"
    args = ["run", "synthetic", *TINY, "--set", "models=logreg,mlp,mlp_dropout"]
    main([*args, "--out", str(out), "--workers", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert "iwlab: cell mlp failed: RuntimeError: simulated worker bug" in err
    runs = {r["run_id"]: r for r in Store(out / "results.db").runs()}
    assert runs["logreg"]["status"] == runs["mlp_dropout"]["status"] == "done"
    assert runs["mlp"]["status"] == "failed"
    tb = runs["mlp"]["error"]
    assert tb.startswith("Traceback (most recent call last):")
    assert "RuntimeError: simulated worker bug" in tb and "in run_cell" in tb
