"""End to end: ``iwlab run mrpc --profile ci`` on a generated MRPC fixture -> store, figure, report, export, resume."""

import io
import sqlite3

import pandas as pd
import pytest
import torch

pytest.importorskip("transformers")

from iwlab.cli import main as cli_main  # noqa: E402
from iwlab.data.mrpc import make_fixture  # noqa: E402
from iwlab.experiments import make_config  # noqa: E402
from iwlab.experiments import mrpc as M  # noqa: E402
from iwlab.runner import run_experiment  # noqa: E402

WEIGHTS = (0.25, 1.0)  # the ci profile's
METRICS = ("frac_paraphrase_test", "test_acc", "train_loss", "train_acc", "seconds")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_fixture(root / "mrpc", n_train=32, n_test=16, layout="glue")
    return root


@pytest.fixture(scope="module")
def ci_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("mrpc") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IWLAB_DATA", str(data_dir))
        assert cli_main(["run", "mrpc", "--profile", "ci", "--out", str(out), "--workers", "1"]) == 0
    return out


def _csv(run_dir, capsys):
    capsys.readouterr()
    assert cli_main(["results", str(run_dir), "--format", "csv"]) == 0
    return pd.read_csv(io.StringIO(capsys.readouterr().out))


def test_metrics_for_every_weight_and_epoch(ci_run, capsys):
    df = _csv(ci_run, capsys)
    assert set(df.status) == {"done"}
    assert {"weight", "class_weight_0", "class_weight_1", "model", "optimizer", "lr"} <= set(df.columns)
    cfg = make_config("mrpc", "ci")
    for w in WEIGHTS:
        d = df[df.weight == w]
        for m in METRICS:
            assert sorted(d[d.name == m].epoch) == list(range(1, cfg.epochs + 1)), (w, m)
    frac = df[df.name == "frac_paraphrase_test"].value
    assert frac.between(0, 1).all()
    # the down-weighted class gets the factor, the other 1
    cw = df[df.weight == 0.25][["class_weight_0", "class_weight_1"]].iloc[0].tolist()
    assert cw == [1.0, 0.25]


def test_files_report_and_figure(ci_run):
    md = (ci_run / "report.md").read_text()
    assert "paraphrase fraction, first epoch" in md and "| 1/4 |" in md
    png = ci_run / "figures" / "fig6_paraphrase_fraction_vs_epoch.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (ci_run / "checkpoints").glob("*.pt")) == ["w-0.25.pt", "w-1.pt"]
    assert len(list((ci_run / "cache").glob("tokens-minilm-32-*.pt"))) == 2  # train and test, shared by cells


def test_resume_after_complete_run_does_no_work(ci_run, data_dir, monkeypatch):
    monkeypatch.setenv("IWLAB_DATA", str(data_dir))
    before = {p.name: p.stat().st_mtime_ns for p in (ci_run / "checkpoints").glob("*.pt")}
    called = []
    monkeypatch.setattr(M, "run_cell", lambda *a, **k: called.append(a) or pytest.fail("re-ran a done cell"))
    run_experiment("mrpc", "ci", out=ci_run, workers=1, progress=False)
    assert not called
    assert {p.name: p.stat().st_mtime_ns for p in (ci_run / "checkpoints").glob("*.pt")} == before


def test_interrupted_cell_resumes_from_checkpoint(data_dir, tmp_path, monkeypatch):
    """A cell whose checkpoint holds epoch 1 trains only epoch 2 and ends where an uninterrupted run ends."""
    from iwlab.experiments.base import CellContext

    monkeypatch.setenv("IWLAB_DATA", str(data_dir))
    cfg = make_config("mrpc", "ci", ["weights=1"])
    full = M.run_cell(cfg, "w=1", {"weight": 1.0}, CellContext(tmp_path / "a", "w=1", progress=False))
    one = make_config("mrpc", "ci", ["weights=1", "epochs=1"])
    ctx = CellContext(tmp_path / "b", "w=1", progress=False)
    M.run_cell(one, "w=1", {"weight": 1.0}, ctx)
    assert torch.load(ctx.checkpoint_path, weights_only=False)["epoch"] == 1
    resumed = M.run_cell(cfg, "w=1", {"weight": 1.0}, ctx)
    assert [r[0] for r in resumed.rows if r[2] == "test_acc"] == [1, 2]
    strip = lambda rows: [(e, m, n, round(v, 5)) for e, m, n, v in rows if n != "seconds"]  # noqa: E731
    assert strip(resumed.rows) == strip(full.rows)


def test_fixture_option_runs_without_data_files(tmp_path, monkeypatch):
    monkeypatch.setenv("IWLAB_DATA", str(tmp_path / "empty"))
    train, test = M.load_splits(make_config("mrpc", "ci", ["fixture=true"]))
    assert (len(train), len(test)) == (24, 12)


def test_missing_data_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("IWLAB_DATA", str(tmp_path / "empty"))
    run_dir = run_experiment("mrpc", "ci", ["download=false"], out=tmp_path / "run", workers=1, progress=False)
    con = sqlite3.connect(run_dir / "results.db")
    try:
        rows = con.execute("SELECT status FROM runs").fetchall()
    finally:
        con.close()
    assert rows and {r[0] for r in rows} == {"failed"}


def test_profiles_and_cells():
    assert set(M.PROFILES) == {"quick", "cpu_hour", "paper", "ci"}
    paper = make_config("mrpc", "paper")
    assert paper.weights == tuple(4.0**k for k in range(-4, 5)) and paper.lr == 0.01 and paper.weight_decay == 0
    assert paper.optimizer == "sgd" and paper.momentum == 0 and paper.epochs >= 100 and paper.n_train == 0
    hour = make_config("mrpc", "cpu_hour")
    assert hour.weights == (1.0, 1 / 16, 1 / 256) and hour.n_train == 0 and hour.max_length >= 104
    assert [c for c, _ in M.cells(hour)] == ["w=1", "w=0.0625", "w=0.00390625"]
    with pytest.raises(ValueError, match="weights must be positive"):
        M.cells(make_config("mrpc", "ci", ["weights=0"]))


def test_weighted_loss_is_the_cores():
    # batch_size normalization: (1/B) sum_i w_i l_i; weight 1/4 on the paraphrase class
    logits, y = torch.zeros(4, 2), torch.tensor([1, 1, 0, 0])
    from iwlab.functional.losses import weighted_cross_entropy

    cw = torch.tensor(M.class_weight_for(0.25))
    assert float(weighted_cross_entropy(logits, y, class_weight=cw)) == pytest.approx(0.625 * 0.693147, 1e-5)


def test_train_batches_cover_every_pair_once():
    lengths = torch.randint(5, 50, (103,))
    g = torch.Generator().manual_seed(0)
    for grouped in (False, True):
        b = M.train_batches(lengths, 8, g, grouped)
        assert sorted(torch.cat(b).tolist()) == list(range(103))
