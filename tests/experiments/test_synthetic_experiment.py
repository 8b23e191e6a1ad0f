"""End to end: ``run_experiment("synthetic", ...)`` -> results.db, figures, report, CLI export, resume."""

import io
import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from reference_single import train_single

from iwlab.cli import main as cli_main
from iwlab.config import ConfigError
from iwlab.data.synthetic import make_dataset
from iwlab.experiments import make_config
from iwlab.experiments.synthetic import Config, spreads, summary, verdicts
from iwlab.models import MLP, logistic_regression
from iwlab.runner import RunError, run_experiment
from iwlab.store import Store, load
from iwlab.train import Member

TINY = ["epochs=3", "n_per_class=32", "n_test_per_class=32", "grid_size=20", "weights=1,0.25"]
DATASETS = ("separable", "moons", "gaussians")
WEIGHTS = (1.0, 0.25)
DECAYS = (0.0, 1e-3)
BASE_METRICS = ("frac_down_test", "frac_down_grid", "train_loss", "train_acc", "param_norm")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "run"
    run_dir = run_experiment("synthetic", "quick", TINY, out=out, workers=1, progress=False)
    assert run_dir == out
    return run_dir


def _csv(run_dir, capsys):
    capsys.readouterr()
    assert cli_main(["results", str(run_dir), "--format", "csv"]) == 0
    return pd.read_csv(io.StringIO(capsys.readouterr().out))


def _runs(run_dir):
    con = sqlite3.connect(run_dir / "results.db")
    try:
        return con.execute("SELECT run_id, status, finished FROM runs ORDER BY run_id").fetchall()
    finally:
        con.close()


def test_files_and_report(tiny_run):
    assert (tiny_run / "report.html").stat().st_size > 0
    md = (tiny_run / "report.md").read_text()
    assert "Spread" in md and "separable" in md
    pngs = sorted((tiny_run / "figures").glob("*.png"))
    assert len(pngs) >= 5
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert (tiny_run / "checkpoints").is_dir() and len(list((tiny_run / "checkpoints").glob("*.pt"))) == 3
    prov = json.loads((tiny_run / "provenance.json").read_text())
    assert {"versions", "git"} <= set(prov)
    assert prov["versions"]["torch"] == torch.__version__
    assert {"commit", "dirty"} <= set(prov["git"])
    cfg = json.loads((tiny_run / "config.json").read_text())
    assert cfg["experiment"] == "synthetic" and cfg["profile"] == "quick"
    assert cfg["config"]["epochs"] == 3 and cfg["config"]["weights"] == [1.0, 0.25]


def test_runs_all_done(tiny_run):
    runs = _runs(tiny_run)
    assert [(r[0], r[1]) for r in runs] == [("logreg", "done"), ("mlp", "done"), ("mlp_dropout", "done")]


def test_exported_metrics_complete(tiny_run, capsys):
    df = _csv(tiny_run, capsys)
    assert {"run_id", "member", "epoch", "name", "value", "dataset", "model", "weight", "weight_decay", "seed"} <= set(
        df.columns
    )
    assert set(df.status) == {"done"}
    # every member of every cell at every evaluation epoch (log_epochs(3) = 1, 2, 3)
    expected = []
    for model in ("logreg", "mlp", "mlp_dropout"):
        decays = (0.0,) if model == "mlp_dropout" else DECAYS
        for ds in DATASETS:
            for wd in decays:
                for w in WEIGHTS:
                    for epoch in (1, 2, 3):
                        names = BASE_METRICS + (("angle",) if (model, ds) == ("logreg", "separable") else ())
                        expected += [(model, ds, wd, w, epoch, n) for n in names]
    got = list(zip(df.model, df.dataset, df.weight_decay, df.weight, df.epoch, df.name, strict=True))
    missing = set(expected) - set(got)
    assert not missing, sorted(missing)[:5]
    assert len(df[df.name.isin(BASE_METRICS)]) == (12 + 12 + 6) * 3 * len(BASE_METRICS)
    # angles exist only for logistic regression on separable data
    assert set(df[df.name == "angle"].dataset) == {"separable"} and set(df[df.name == "angle"].model) == {"logreg"}
    for name in ("frac_down_test", "frac_down_grid", "train_acc"):
        v = df[df.name == name].value
        assert v.between(0, 1).all()
    assert (df[df.name.isin(["train_loss", "param_norm"])].value > 0).all()
    assert df.value.notna().all()


def _grid_fraction(model, x_train, size):
    lo, hi = x_train.min(0).values, x_train.max(0).values
    pad = 0.25 * (hi - lo)
    xs = torch.linspace(float(lo[0] - pad[0]), float(hi[0] + pad[0]), size)
    ys = torch.linspace(float(lo[1] - pad[1]), float(hi[1] + pad[1]), size)
    pts = torch.cartesian_prod(xs, ys)
    return (model(pts)[:, 0] > 0).float().mean().item()


@pytest.mark.parametrize(
    "model,ds,wd,w",
    [("logreg", "separable", 1e-3, 0.25), ("mlp", "moons", 0.0, 0.25), ("mlp_dropout", "gaussians", 0.0, 1.0)],
)
def test_metrics_match_an_independent_single_run(tiny_run, model, ds, wd, w):
    """Retrain one member alone (nn.Module + torch.optim) and recompute its metrics by hand."""
    x, y = make_dataset(ds, 32, seed=0)
    xt, _ = make_dataset(ds, 32, seed=10_007)
    lr = 1.0 / torch.linalg.matrix_norm(x.double(), ord=2).item()  # the paper's 1/sigma_max(X)
    if model == "logreg":

        def model_fn(g):
            return logistic_regression(2, 1, generator=g)
    else:
        p = 0.5 if model == "mlp_dropout" else 0.0

        def model_fn(g):
            return MLP(2, (64,), 1, p, generator=g)

    df = load(tiny_run)
    rows = df[(df.model == model) & (df.dataset == ds) & (df.weight_decay == wd) & (df.weight == w)]
    assert rows.lr.iloc[0] == pytest.approx(lr, rel=1e-9)
    seen = {}

    def on_epoch(m, epoch):
        m.eval()
        with torch.no_grad():
            z = m(x)[:, 0]
            cw = torch.where(y == 1, torch.tensor(w), torch.tensor(1.0))
            seen[epoch] = {
                "train_loss": (cw * F.binary_cross_entropy_with_logits(z, y.float(), reduction="none")).mean().item(),
                "train_acc": ((z > 0).long() == y).float().mean().item(),
                "frac_down_test": (m(xt)[:, 0] > 0).float().mean().item(),
                "frac_down_grid": _grid_fraction(m, x, 20),
                "param_norm": torch.cat([q.reshape(-1) for q in m.parameters()]).norm().item(),
            }
        m.train()

    member = Member(seed=0, class_weight=(1.0, w), lr=lr, weight_decay=wd)
    train_single(model_fn, member, x, y, epochs=3, batch_size=8, on_epoch=on_epoch)
    for epoch in (1, 2, 3):
        for name, want in seen[epoch].items():
            got = rows[(rows.epoch == epoch) & (rows.name == name)].value
            assert len(got) == 1, (epoch, name)
            tol = 1.5 / 64 if name.startswith(("frac", "train_acc")) else 1e-4
            if name == "frac_down_grid":
                tol = 1.5 / 400
            assert got.iloc[0] == pytest.approx(want, abs=tol), (epoch, name)


def test_rerun_is_a_noop(tiny_run, capsys):
    before_runs = _runs(tiny_run)
    before = _csv(tiny_run, capsys)
    run_experiment("synthetic", "quick", TINY, out=tiny_run, workers=1, progress=False, report=False)
    assert _runs(tiny_run) == before_runs  # same finished timestamps: nothing was re-run
    pd.testing.assert_frame_equal(_csv(tiny_run, capsys), before)


def test_interrupted_cell_resumes_from_checkpoint(tiny_run, capsys):
    """A cell left 'running' (as after a kill) reruns from its epoch-3 checkpoint to the same metrics."""
    before = _csv(tiny_run, capsys)
    con = sqlite3.connect(tiny_run / "results.db")
    with con:
        con.execute("UPDATE runs SET status='running' WHERE run_id='mlp_dropout'")
        con.execute("DELETE FROM metrics WHERE run_id='mlp_dropout'")
    con.close()
    run_experiment("synthetic", "quick", TINY, out=tiny_run, workers=1, progress=False, report=False)
    assert dict((r[0], r[1]) for r in _runs(tiny_run))["mlp_dropout"] == "done"
    pd.testing.assert_frame_equal(_csv(tiny_run, capsys), before)


def test_rerun_with_other_config_is_refused(tiny_run):
    before = _runs(tiny_run)
    with pytest.raises(RunError) as e:
        run_experiment("synthetic", "quick", [*TINY[:-1], "weights=1,0.5"], out=tiny_run, workers=1, progress=False)
    assert "weights" in str(e.value) and "epochs" not in str(e.value)
    with pytest.raises(RunError, match="keys differ: epochs"):
        run_experiment("synthetic", "quick", ["epochs=4", *TINY[1:]], out=tiny_run, workers=1, progress=False)
    assert _runs(tiny_run) == before


@pytest.mark.slow
def test_quick_profile_finding(tmp_path):
    """The paper's finding on the quick profile: without L2 the effect of the weights fades (separable
    data, MLP); with L2 it persists."""
    run_dir = run_experiment("synthetic", "quick", [], out=tmp_path / "quick", workers=2, progress=False)
    assert {r[1] for r in _runs(run_dir)} == {"done"}
    s = spreads(load(run_dir), "frac_down_test")
    sep = s[(s.dataset == "separable") & (s.model == "mlp")].set_index("weight_decay")
    plain, decayed = sep.loc[0.0], sep.loc[0.001]
    assert plain.first_epoch == 1 and plain.last_epoch == 300
    assert plain.spread_first >= 5 * plain.spread_last, (plain.spread_first, plain.spread_last)
    assert decayed.spread_last > 0.1, decayed.spread_last
    # the report's computed verdicts say the same (issue 10 item 16)
    v = verdicts(load(run_dir)).set_index(["dataset", "model", "weight_decay"])
    for key, word in ((("separable", "mlp", 0.0), "faded"), (("separable", "mlp", 0.001), "persists")):
        assert v.loc[key].verdict.startswith(word) and v.loc[key].matches == "yes", v.loc[key]
    assert "contradicts" not in (run_dir / "report.md").read_text()


def _verdict_frame():
    """frac_down_test at epochs 1 and 100 for weights 1 and 1/4, chosen so each row's verdict is known by hand."""
    spec = {
        # (dataset, model, weight_decay): ((w=1, w=1/4) at epoch 1, (w=1, w=1/4) at epoch 100, lowest train acc at 100)
        ("gaussians", "mlp", 0.0): ((0.5, 0.4), (0.5, 0.15), 0.85),  # 0.10 -> 0.35: grows, data not separated
        ("separable", "mlp", 0.0): ((0.5, 0.09), (0.5, 0.47), 1.0),  # 0.41 -> 0.03: shrinks, as the paper says
        ("separable", "logreg", 0.0): ((0.5, 0.4), (0.5, 0.2), 1.0),  # 0.10 -> 0.30: grows, against the paper
        ("moons", "mlp", 0.001): ((0.5, 0.1), (0.5, 0.12), 1.0),  # 0.40 -> 0.38: stays, as the paper says for L2
    }
    rows = []
    for (ds, model, wd), (first, last, acc) in spec.items():
        for w, f, la in zip((1.0, 0.25), first, last, strict=True):
            rows += [(ds, model, wd, w, 0, 1, "frac_down_test", f), (ds, model, wd, w, 0, 100, "frac_down_test", la)]
            rows += [(ds, model, wd, w, 0, 1, "train_acc", 0.5), (ds, model, wd, w, 0, 100, "train_acc", acc)]
    return pd.DataFrame(rows, columns=["dataset", "model", "weight_decay", "weight", "seed", "epoch", "name", "value"])


def test_summary_verdict_follows_the_numbers_per_row_separable_first():
    md = summary(_verdict_frame(), Config(weights=(1.0, 0.25)))
    table = [ln for ln in md.splitlines() if ln.startswith("| ") and "(epoch 1)" in ln]
    assert table == [
        "| separable | logreg | 0 | 0.100 (epoch 1) | 0.300 (epoch 100) | 0.500 | 0.200 | persists; grows (0.100 -> "
        "0.300) | faded | no |",
        "| separable | mlp | 0 | 0.410 (epoch 1) | 0.030 (epoch 100) | 0.500 | 0.470 | faded; shrinks (0.410 -> "
        "0.030) | faded | yes |",
        "| moons | mlp | 0.001 | 0.400 (epoch 1) | 0.380 (epoch 100) | 0.500 | 0.120 | persists; stays (0.400 -> "
        "0.380) | persists (weight decay keeps the effect) | yes |",
        "| gaussians | mlp | 0 | 0.100 (epoch 1) | 0.350 (epoch 100) | 0.500 | 0.150 | persists; grows (0.100 -> "
        "0.350) | no claim (models not trained yet: best train acc 0.850) | n/a |",
    ]
    assert (
        "**Finding** (test points, computed from the table below): matches Byrd & Lipton in 2 of 3 rows; contradicts "
        "them in separable logreg wd=0: persists; grows (0.100 -> 0.300), expected faded; no verdict for 1 row" in md
    )
    # the old fixed sentence, which contradicted the numbers, is gone
    assert (
        "large early, small late" not in md
        and "'faded' if the spread across weights at the last epoch is below 0.1" in md
    )


def test_spreads_put_separable_first_and_count_the_weights_recorded():
    df = _verdict_frame()
    # a diverged member: w = 1/4 of separable mlp has no value at epoch 100
    df = df[~((df.dataset == "separable") & (df.model == "mlp") & (df.weight == 0.25) & (df.epoch == 100))]
    s = spreads(df)
    assert list(zip(s.dataset, s.model, strict=True)) == [
        ("separable", "logreg"),
        ("separable", "mlp"),
        ("moons", "mlp"),
        ("gaussians", "mlp"),
    ]
    row = s.iloc[1]
    assert (row.n_weights, row.n_weights_first, row.n_weights_last, row.spread_last) == (2, 2, 1, 0.0)
    assert verdicts(df).matches.iloc[1] == "n/a (2 / 1 of 2 weights recorded)"


def test_weight_decay_rows_get_no_claim_before_the_models_have_trained():
    """Found by a new user: weight-decay (L2) rows were judged "persists = matches" after 20 epochs at train
    accuracy 0.5."""
    rows = []
    for w, (f1, f9) in ((1.0, (0.5, 0.5)), (0.25, (0.0, 0.0))):
        rows += [
            ("separable", "mlp", 0.001, w, 0, 1, "frac_down_test", f1),
            ("separable", "mlp", 0.001, w, 0, 9, "frac_down_test", f9),
        ]
        rows += [
            ("separable", "mlp", 0.001, w, 0, 1, "train_acc", 0.5),
            ("separable", "mlp", 0.001, w, 0, 9, "train_acc", 0.5),
        ]
    df = pd.DataFrame(rows, columns=["dataset", "model", "weight_decay", "weight", "seed", "epoch", "name", "value"])
    v = verdicts(df).iloc[0]
    assert v.claim == "no claim (models not trained yet: best train acc 0.500)" and v.matches == "n/a"


def test_each_cell_saves_the_training_sets_its_figures_draw(tiny_run):
    """Plots read the data from the run (issue 11): every cell records its data.npz in the store."""
    store = Store(tiny_run / "results.db")
    try:
        saved = {a["run_id"]: tiny_run / a["path"] for a in store.artifacts("data")}
    finally:
        store.close()
    assert set(saved) == {"logreg", "mlp", "mlp_dropout"}
    with np.load(saved["mlp"]) as f:
        assert sorted(f.files) == sorted(f"{k}_{ds}" for ds in DATASETS for k in "xy")
        for ds in DATASETS:
            x, y = make_dataset(ds, 32, seed=0)
            assert np.array_equal(f[f"x_{ds}"], x.numpy()) and np.array_equal(f[f"y_{ds}"], y.numpy())


def test_config_takes_weight_decay_and_rejects_what_it_cannot_use():
    with pytest.raises(ConfigError, match="unknown config key 'l2'"):
        make_config("synthetic", "quick", ["l2=0"])  # renamed: the coupled decay is weight_decay
    assert make_config("synthetic", "quick", ["weight_decay=0,0.002"]).weight_decay == (0.0, 0.002)
    for bad, word in (
        ("down_class=2", "down_class"),
        ("datasets=separable,spirals", "datasets"),
        ("models=svm", "models"),
        ("weight_decay=0,0", "weight_decay repeat"),
        ("weight_decay=-0.1", "weight_decay"),
        ("weights=1,0", "weights"),
    ):
        with pytest.raises(ConfigError, match=word):
            make_config("synthetic", "quick", [bad])
    # the same checks for a Config built in code
    for kwargs in ({"down_class": 2}, {"datasets": ("spirals",)}, {"epochs": 0}, {"weights": (1.0, 1.0)}):
        with pytest.raises(ValueError):
            Config(**kwargs).validate()
