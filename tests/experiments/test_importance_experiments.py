"""importance_sampling_mnist / _cifar10 / _ptb end to end on generated data, their configs, and the Table 1 /
time-to-accuracy maths."""

import numpy as np
import pandas as pd
import pytest

from iwlab.cli import main as cli_main
from iwlab.config import ConfigError
from iwlab.data.mnist import make_fixture, write_mnist_idx
from iwlab.experiments import get_experiment, make_config
from iwlab.experiments import importance_sampling_cifar10 as cifar10_exp
from iwlab.experiments import importance_sampling_mnist as mnist_exp
from iwlab.experiments import importance_sampling_ptb as ptb_exp
from iwlab.experiments.importance_sampling_common import cells
from iwlab.experiments.importance_sampling_summary import summary, table1, time_to_accuracy
from iwlab.results import export
from iwlab.runner import run_experiment
from iwlab.sampling import SamplerSpec
from iwlab.store import Store, load

ISConfig = mnist_exp.Config  # the shared maths, checked on MNIST's config


def method_label(m):
    return SamplerSpec.parse(m).label


PNG = b"\x89PNG\r\n\x1a\n"


def _statuses(run_dir):
    store = Store(run_dir / "results.db")  # the store's own reader, not a second SQL query
    try:
        return {r["run_id"]: r["status"] for r in store.runs()}
    finally:
        store.close()


@pytest.mark.parametrize("name", ["is_mnist", "importance_sampling_cifar10", "is_ptb"])
def test_end_to_end_every_method_recorded(name, tmp_path):
    out = run_experiment(name, "ci", ["seeds=2"], out=tmp_path / name, workers=1, progress=False)
    cfg = make_config(name, "ci", ["seeds=2"])
    assert set(_statuses(out).values()) == {"done"}
    df = load(out)
    metric = "perplexity" if name == "is_ptb" else "test_error"
    assert metric == cfg.METRIC
    for m in cfg.methods:
        d = df[df.method == m]
        assert sorted(d.seed.unique()) == [0, 1]
        for name_ in (metric, "train_loss", "train_loss_std", "time_scoring", "time_training", "time_total"):
            got = d[d.name == name_]
            assert sorted(got.epoch.unique()) == [1, 2, 3], (m, name_)
        t = d.pivot_table(index=["seed", "epoch"], columns="name", values="value")
        assert np.allclose(t.time_total, t.time_scoring + t.time_training)
        assert (t.time_total.groupby("seed").diff().dropna() >= 0).all()  # cumulative
        assert "loss_gradnorm_spearman" in set(d.name)
        spec = SamplerSpec.parse(m)  # the member columns the figures read instead of parsing the method
        assert set(d.strategy) == {spec.strategy} and set(d.k) == {spec.k} and set(d.label) == {spec.label}
    if name != "is_ptb":
        assert df[df.name == "test_error"].value.between(0, 1).all()
    else:
        assert (df[df.name == "perplexity"].value > 1).all()
    md = (out / "report.md").read_text()
    assert "Table 1 format" in md and "Time to reach uniform" in md
    for m in cfg.methods:
        assert method_label(m) in md
    pngs = sorted((out / "figures").glob("*.png"))
    # the five figures of Figs. 1-3 that every run draws (more may join them), each a PNG shown in the report
    assert {"train_loss", "sorted_losses", metric, f"{metric}_vs_time", "loss_vs_gradnorm"} <= {p.stem for p in pngs}
    assert all(p.read_bytes()[:8] == PNG and f"figures/{p.name}" in md for p in pngs)
    arts = list((out / "artifacts").glob("*_losses.npz"))
    assert len(arts) == 2 * len(cfg.methods)
    z = np.load(arts[0])
    assert np.all(np.diff(z["sorted_losses"]) >= 0)


def test_cli_quick_reads_mnist_from_iwlab_data_and_exports_every_method(tmp_path, monkeypatch):
    """`iwlab run is_mnist` reads IDX files from IWLAB_DATA (fixture-sized here), resumes, exports."""
    write_mnist_idx(tmp_path / "data" / "mnist", make_fixture(120, 40, seed=1))
    monkeypatch.setenv("IWLAB_DATA", str(tmp_path / "data"))
    out = tmp_path / "run"
    sets = ["--set", "fixture=false", "--set", "verify_checksums=false"]
    args = ["run", "is_mnist", "--profile", "ci", *sets, "--workers", "1", "--out", str(out), "--no-progress"]
    assert cli_main(args) == 0
    cfg = make_config("is_mnist", "ci")
    df = load(out)
    assert set(df.method.unique()) == set(cfg.methods)
    before = (out / "results.db").stat().st_mtime_ns
    assert cli_main(args) == 0  # finished cells are not run again
    assert len(load(out)) == len(df)
    assert (out / "results.db").stat().st_mtime_ns >= before
    export(out, "csv", tmp_path / "r.csv")
    exported = pd.read_csv(tmp_path / "r.csv")
    assert set(exported.method.unique()) == set(cfg.methods)


def test_cells_refuse_a_method_without_its_k():
    with pytest.raises(ValueError, match="needs its k"):
        cells(ISConfig(methods=("approx",)))


@pytest.mark.parametrize("module, old", [(mnist_exp, "is_mnist"), (cifar10_exp, "is_cifar10"), (ptb_exp, "is_ptb")])
def test_each_experiment_registers_under_its_name_and_keeps_the_old_one_as_an_alias(module, old):
    exp = module.EXPERIMENT
    assert exp.name == f"importance_sampling_{module.Config.DATASET}" and exp.aliases == (old,)
    assert get_experiment(old) is exp and get_experiment(exp.name) is exp
    assert exp.profiles["quick"] == {} and set(exp.profiles) == {"quick", "lr_search", "paper", "ci"}
    for profile in exp.profiles:
        make_config(exp.name, profile)  # every profile validates


@pytest.mark.parametrize(
    "name, setting, pattern",
    [
        # keys of another dataset are not keys of this experiment: refused, not silently ignored
        ("is_ptb", "augment=true", r"^unknown config key 'augment'"),
        ("is_ptb", "image_size=8", r"^unknown config key 'image_size'"),
        ("is_mnist", "context=5", r"^unknown config key 'context'"),
        ("is_cifar10", "verify_checksums=false", r"^unknown config key 'verify_checksums'"),
        ("is_mnist", "dataset=ptb", r"^unknown config key 'dataset'"),
        # wrong values fail at config time, not at the first training step
        ("is_cifar10", "image_size=12", r"^image_size must divide 32, got 12$"),
        ("is_mnist", "methods=oracle", r"method 'oracle' needs its k"),
        ("is_mnist", "methods=oracle_k2", r"k must be <= 1"),
        ("is_mnist", "methods=uniform,oracle_k1,oracle_k1.0", r"name the same sampler twice"),
        ("is_mnist", "smooth_strategies=uniform", r"^smooth_strategies: expected one of oracle, approx, pcg"),
        ("is_mnist", "presample=inf", r"^presample: must be a finite number"),
    ],
)
def test_config_refuses_keys_it_does_not_use_and_bad_values(name, setting, pattern):
    with pytest.raises(ConfigError, match=pattern):
        make_config(name, "quick", [setting])


def _df(values):
    """Long frame like results.load: values[method] = list over seeds of list over epochs."""
    rows = []
    for m, per_seed in values.items():
        for s, series in enumerate(per_seed):
            for e, (err, t) in enumerate(series, start=1):
                rows += [(m, s, e, "test_error", err), (m, s, e, "time_total", t), (m, s, e, "time_scoring", t / 2)]
    return pd.DataFrame(rows, columns=["method", "seed", "epoch", "name", "value"])


def test_table1_mean_and_std_by_hand():
    cfg = ISConfig(methods=("uniform", "oracle_k0.5"), table_epochs=(1, 2, 7))
    df = _df({"uniform": [[(0.02, 1), (0.010, 2)], [(0.04, 1), (0.012, 2)]], "oracle_k0.5": [[(0.01, 2), (0.005, 4)]]})
    t = table1(df, cfg)
    assert list(t.index) == [1, 2]  # epoch 7 is not in the run
    assert t.loc[1, "Uniform"] == f"3.00% ± {np.std([2.0, 4.0], ddof=1):.2f}"
    assert t.loc[2, "Oracle k=0.5"] == "0.50% ± 0.00"


def test_time_to_accuracy_by_hand():
    cfg = ISConfig(methods=("uniform", "oracle_k0.5", "approx_k1"))
    df = _df(
        {
            "uniform": [[(0.05, 10), (0.03, 20), (0.02, 30)], [(0.05, 12), (0.03, 22), (0.02, 32)]],  # target 2%
            "oracle_k0.5": [[(0.02, 15), (0.01, 30), (0.01, 45)], [(0.03, 15), (0.02, 30), (0.01, 45)]],
            "approx_k1": [[(0.05, 11), (0.04, 21), (0.03, 31)], [(0.05, 11), (0.04, 21), (0.03, 31)]],
        }
    )
    t = time_to_accuracy(df, cfg).set_index("method")
    assert t.attrs["target"] == pytest.approx(0.02)
    assert t.loc["uniform", "seconds"] == pytest.approx(31)
    assert t.loc["oracle_k0.5", "seconds"] == pytest.approx(22.5)  # 15 and 30
    assert t.loc["oracle_k0.5", "ratio"] == pytest.approx(22.5 / 31)
    assert t.loc["approx_k1", "reached"] == "0/2" and np.isnan(t.loc["approx_k1", "seconds"])
    assert t.loc["uniform", "scoring_share"] == pytest.approx(0.5)


def test_summary_oracle_verdict_follows_the_numbers_and_says_when_one_is_missing():
    cfg = ISConfig(methods=("uniform", "oracle_k0.5"), table_epochs=(1,))
    uni = [
        [(0.02, 1), (0.02, 2), (0.02, 3), (0.02, 4), (0.010, 5)],
        [(0.02, 1), (0.02, 2), (0.02, 3), (0.02, 4), (0.012, 5)],
    ]
    ora = [
        [(0.02, 1), (0.01, 2), (0.01, 3), (0.01, 4), (0.006, 5)],
        [(0.02, 1), (0.01, 2), (0.01, 3), (0.01, 4), (0.004, 5)],
    ]
    md = summary(_df({"uniform": uni, "oracle_k0.5": ora}), cfg)
    # epoch 5: oracle (0.6 + 0.4) / 2 = 0.50%, uniform (1.0 + 1.2) / 2 = 1.10%; stds over seeds by hand
    so, su = np.std([0.6, 0.4], ddof=1), np.std([1.0, 1.2], ddof=1)
    se = np.sqrt(so**2 / 2 + su**2 / 2)  # 0.20: the difference 0.60 is 3 standard errors
    assert (
        "Oracle k=0.5 beats uniform at epoch 5 (mean test error over seeds): 0.50% vs 1.10% (difference +0.60 points; "
        f"std over seeds {so:.2f} and {su:.2f} points, standard error of the difference {se:.2f};" in md
    )
    # one seed: the seed noise is unknown, so no verdict however large the difference
    md = summary(_df({"uniform": uni[:1], "oracle_k0.5": ora[:1]}), ISConfig(methods=("uniform", "oracle_k0.5")))
    assert "Oracle k=0.5 vs uniform at epoch 5" in md and "1 seed, so no verdict" in md and " beats " not in md
    # two seeds whose means differ by less than 2 standard errors: no clear difference
    # (error, time) per epoch 1..5: oracle 1.0% and 0.3% at epoch 5, mean 0.65%, std 0.49; uniform 1.1%, std 0.14
    noisy = [
        [(0.02, 1), (0.02, 2), (0.02, 3), (0.02, 4), (0.010, 5)],
        [(0.02, 1), (0.02, 2), (0.02, 3), (0.02, 4), (0.003, 5)],
    ]
    md = summary(_df({"uniform": uni, "oracle_k0.5": noisy}), cfg)
    assert "Oracle k=0.5 shows no clear difference to uniform at epoch 5" in md
    # oracle stopped after epoch 4 (a failed cell): no verdict, instead of one computed from NaN
    md = summary(_df({"uniform": uni, "oracle_k0.5": [r[:4] for r in ora]}), cfg)
    assert "Oracle k=0.5 vs uniform at epoch 5: no verdict, Oracle k=0.5 has no test error there." in md
    assert not [ln for ln in md.splitlines() if ln.startswith("Oracle") and "nan" in ln.lower()]
