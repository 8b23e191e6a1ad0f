"""The paper's learning-rate protocol in the importance-sampling experiments (§4): cells per lr, the held-out
validation split, the choice of the lr and its write-up, and the sampler options passed from the config."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from iwlab.config import ConfigError
from iwlab.experiments import importance_sampling_common as common
from iwlab.experiments import importance_sampling_mnist as mnist_exp
from iwlab.experiments import importance_sampling_ptb as ptb_exp
from iwlab.experiments import make_config
from iwlab.experiments.base import CellContext
from iwlab.experiments.importance_sampling_common import PAPER_LR_GRID, cells
from iwlab.experiments.importance_sampling_lr import best_lr, hold_out, lr_search_lines, lr_table, train_split
from iwlab.runner import run_experiment
from iwlab.store import Store, load

Config = mnist_exp.Config


# ---- cells ---------------------------------------------------------------------------------------------


def test_cells_without_lrs_keep_their_ids_and_params():
    got = cells(Config(methods=("uniform", "approx_k1"), seeds=2, seed=3))
    assert got == [
        ("uniform/seed=3", {"method": "uniform", "seed": 3}),
        ("uniform/seed=4", {"method": "uniform", "seed": 4}),
        ("approx_k1/seed=3", {"method": "approx_k1", "seed": 3}),
        ("approx_k1/seed=4", {"method": "approx_k1", "seed": 4}),
    ]


def test_cells_with_lrs_are_one_per_method_lr_and_seed_and_their_ids_name_them():
    lrs = (0.001, 0.0025, 1e-5)
    cfg = Config(methods=("uniform", "oracle_k0.5"), lrs=lrs, seeds=2)
    got = cells(cfg)
    want = {(m, lr, s) for m in cfg.methods for lr in lrs for s in (0, 1)}
    assert len(got) == len(want) and len({cid for cid, _ in got}) == len(want)
    assert {(p["method"], p["lr"], p["seed"]) for _, p in got} == want
    for cid, p in got:
        method, lr, seed = cid.split("/")
        assert method == p["method"] and seed == f"seed={p['seed']}"
        assert lr.startswith("lr=") and float(lr[3:]) == p["lr"]  # the id's lr reads back exactly
    assert "uniform/lr=0.0025/seed=1" in dict(got)


def test_lrs_that_print_alike_rounded_still_get_distinct_ids():
    got = [cid for cid, _ in cells(Config(methods=("uniform",), lrs=(0.001, 0.0010000001), seeds=1))]
    assert len(set(got)) == 2 and all(float(c.split("/")[1][3:]) in (0.001, 0.0010000001) for c in got)


# ---- config ------------------------------------------------------------------------------------------


def test_lr_search_profiles_use_the_papers_grid_on_uniform_and_paper_profiles_its_seeds():
    assert PAPER_LR_GRID == (0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009, 0.01)
    for name, seeds in (("is_mnist", 10), ("is_cifar10", 3), ("is_ptb", 3)):  # Table 1's caption
        cfg = make_config(name, "lr_search")
        assert cfg.lrs == PAPER_LR_GRID and cfg.methods == ("uniform",)
        quick = make_config(name, "quick")
        assert (cfg.iterations, cfg.steps_per_epoch, cfg.n_train) == (
            quick.iterations,
            quick.steps_per_epoch,
            quick.n_train,
        )
        assert make_config(name, "paper").seeds == seeds
    cfg = make_config("is_mnist", "paper", ["methods=uniform", "lrs=0.001,0.002", "select_on=validation", "n_val=1000"])
    assert cfg.lrs == (0.001, 0.002) and cfg.select_on == "validation" and cfg.seeds == 10
    assert len(cells(cfg)) == 2 * 10
    # an lr search trains uniform only; a held-out split only serves a search (user trial: both were silent)
    with pytest.raises(ValueError, match=r"methods must be \('uniform',\)"):
        make_config("is_mnist", "paper", ["lrs=0.001,0.002"]).validate()
    with pytest.raises(ValueError, match="select_on='validation' chooses an lr, so it needs lrs"):
        make_config("is_mnist", "quick", ["select_on=validation"]).validate()


@pytest.mark.parametrize(
    "setting, pattern",
    [
        ("lrs=0", r"^lrs: must be > 0"),
        ("lrs=0.001,0.001", r"^lrs repeat"),
        ("n_val=0", r"^n_val: must be in \[1,"),
        ("select_on=train", r"^select_on: expected one of test, validation"),
        ("score_floor=0", r"^score_floor: must be in \(0, 1\]"),
        ("score_floor=1.5", r"^score_floor: must be in \(0, 1\]"),
        ("match_unbiased_sum=maybe", r"^match_unbiased_sum: expected a bool"),
    ],
)
def test_config_refuses_bad_lr_protocol_and_sampler_values(setting, pattern):
    with pytest.raises(ConfigError, match=pattern):
        make_config("is_mnist", "quick", [setting])


# ---- validation split --------------------------------------------------------------------------------


def test_hold_out_is_a_seeded_partition_or_the_tail():
    rest, val = hold_out(50, 7, seed=4)
    assert len(val) == 7 and len(rest) == 43
    assert sorted(rest.tolist() + val.tolist()) == list(range(50))  # disjoint, and nothing lost
    assert torch.equal(hold_out(50, 7, seed=4)[1], val) and not torch.equal(hold_out(50, 7, seed=5)[1], val)
    rest, val = hold_out(50, 7, seed=4, contiguous=True)
    assert val.tolist() == list(range(43, 50)) and rest.tolist() == list(range(43))
    for n in (0, 50):
        with pytest.raises(ValueError, match="n_val must be in"):
            hold_out(50, n, seed=0)


def _row_index(full, part):
    """Position in ``full`` of each row of ``part``, in order (rows compared exactly; each found once)."""
    flat, rows = full.reshape(len(full), -1), part.reshape(len(part), -1)
    hits = (rows[:, None, :] == flat[None, :, :]).all(-1)  # (P, N)
    assert (hits.sum(1) == 1).all()
    return hits.float().argmax(1).tolist()


@pytest.mark.parametrize("n_train", [0, 40])
def test_mnist_validation_split_is_disjoint_from_training_and_of_size_n_val(n_train):
    full = mnist_exp.load_data(Config(fixture=True, n_train=0))
    assert len(set(_row_index(full.x_train, full.x_train))) == len(full.x_train)  # fixture rows are distinct
    d = mnist_exp.load_data(Config(fixture=True, n_train=n_train, select_on="validation", n_val=10))
    assert d.x_val.shape == (10, 1, 28, 28) and d.y_val.shape == (10,)
    assert len(d.x_train) == (n_train or len(full.x_train) - 10)
    tr, va = _row_index(full.x_train, d.x_train), _row_index(full.x_train, d.x_val)
    assert not set(tr) & set(va)
    assert torch.equal(d.y_val, full.y_train[va]) and torch.equal(d.y_train, full.y_train[tr])  # labels travel along
    assert torch.equal(d.x_test, full.x_test)  # the test set does not move
    # select_on=test holds nothing out: the training set is the old subset
    plain = mnist_exp.load_data(Config(fixture=True, n_train=n_train))
    assert plain.x_val is None and plain.y_val is None
    assert torch.equal(plain.x_train, common.subset(full.x_train, full.y_train, n_train, 0)[0])


def test_ptb_holds_out_the_tail_of_the_training_text():
    full = ptb_exp.load_data(ptb_exp.Config(fixture=True, n_train=0, context=5))
    d = ptb_exp.load_data(ptb_exp.Config(fixture=True, n_train=0, context=5, select_on="validation", n_val=6))
    assert torch.equal(d.x_val, full.x_train[-6:]) and torch.equal(d.y_val, full.y_train[-6:])
    assert torch.equal(d.x_train, full.x_train[:-6]) and torch.equal(d.y_train, full.y_train[:-6])


def test_train_split_refuses_an_n_val_that_leaves_nothing_to_train_on():
    cfg = Config(select_on="validation", n_val=10)
    with pytest.raises(ValueError, match=r"n_val must be in \[1, 9\]"):
        train_split(cfg, torch.zeros(10, 2), torch.zeros(10))


# ---- choosing the lr -----------------------------------------------------------------------------------


def _frame(values, method="uniform"):
    """Long frame like iwlab.store.load: values[(lr, name)] = list over seeds of list over epochs."""
    rows = []
    for (lr, name), per_seed in values.items():
        for s, series in enumerate(per_seed):
            rows += [(method, lr, s, e, name, v) for e, v in enumerate(series, start=1)]
    return pd.DataFrame(rows, columns=["method", "lr", "seed", "epoch", "name", "value"])


# 2 seeds, 2 epochs (iterations 80 of 40 per epoch). At epoch 1, 0.001 is best; at the final epoch, among
# complete rates, test_error picks 0.002 and val_error picks 0.001. 0.003 would win but lost a seed (NaN).
HAND = {
    (0.001, "test_error"): [[0.01, 0.05], [0.01, 0.07]],  # final mean 0.06
    (0.002, "test_error"): [[0.20, 0.03], [0.20, 0.05]],  # final mean 0.04
    (0.003, "test_error"): [[0.20, 0.01], [0.20, math.nan]],
    (0.001, "val_error"): [[0.10, 0.02], [0.10, 0.04]],  # final mean 0.03
    (0.002, "val_error"): [[0.10, 0.05], [0.10, 0.09]],  # final mean 0.07
    (0.003, "val_error"): [[0.10, 0.00], [0.10, math.inf]],
}
HAND_CFG = {"methods": ("uniform", "approx_k1"), "lrs": (0.003, 0.001, 0.002), "seeds": 2, "iterations": 80}


def _hand_df():
    # approx is better everywhere; it must not influence the baseline's lr
    approx = {k: [[v / 10 for v in s] for s in per_seed] for k, per_seed in HAND.items()}
    return pd.concat([_frame(HAND), _frame(approx, "approx_k1")], ignore_index=True)


def test_best_lr_on_the_test_set_takes_the_lowest_final_mean_among_complete_rates():
    cfg = Config(**HAND_CFG, steps_per_epoch=40)
    lr, t = best_lr(_hand_df(), cfg)
    assert lr == 0.002
    assert list(t.index) == [0.001, 0.002, 0.003] and t.attrs == {"metric": "test_error", "epoch": 2}
    assert t.loc[0.001, "test_error_mean"] == pytest.approx(0.06)
    assert t.loc[0.002, "test_error_std"] == pytest.approx(np.std([0.03, 0.05], ddof=1))
    assert t.loc[0.003, "seeds"] == 1 and t.loc[0.003, "test_error_mean"] == pytest.approx(0.01)
    assert np.isnan(t.loc[0.003, "test_error_std"])
    assert "val_error_mean" not in t


def test_best_lr_on_the_validation_split_uses_val_error_and_reports_the_test_error_beside():
    cfg = Config(**HAND_CFG, steps_per_epoch=40, select_on="validation")
    lr, t = best_lr(_hand_df(), cfg)
    assert lr == 0.001 and t.attrs["metric"] == "val_error"
    assert t.loc[0.001, "val_error_mean"] == pytest.approx(0.03)
    assert t.loc[0.001, "test_error_mean"] == pytest.approx(0.06)
    assert t.loc[0.003, "seeds"] == 1  # the infinite value counts as a lost seed


def test_best_lr_breaks_ties_towards_the_smaller_rate_and_minimizes_perplexity():
    df = _frame({(0.002, "test_error"): [[0.05]], (0.001, "test_error"): [[0.05]], (0.004, "test_error"): [[0.08]]})
    assert (
        best_lr(
            df, Config(methods=("uniform",), lrs=(0.004, 0.002, 0.001), iterations=40, steps_per_epoch=40, seeds=1)
        )[0]
        == 0.001
    )
    df = _frame({(0.001, "perplexity"): [[300.0]], (0.002, "perplexity"): [[150.0]]})
    cfg = ptb_exp.Config(methods=("uniform",), lrs=(0.001, 0.002), iterations=50, steps_per_epoch=50)
    assert best_lr(df, cfg)[0] == 0.002


def test_best_lr_refuses_when_no_rate_has_every_seed_or_the_run_had_no_lrs():
    cfg = Config(**HAND_CFG, steps_per_epoch=40)
    df = _hand_df()
    with pytest.raises(ValueError, match="no lr has all 2 seed"):
        best_lr(df[df.seed == 0], cfg)
    with pytest.raises(ValueError, match="no lr"):
        lr_table(df.drop(columns="lr"), cfg)


def test_lr_search_lines_on_the_test_set():
    cfg = Config(**HAND_CFG, steps_per_epoch=40)
    md = "\n".join(lr_search_lines(_hand_df(), cfg))
    assert "| lr | test error | seeds |" in md
    assert f"| 0.002 | 4.00% ± {100 * np.std([0.03, 0.05], ddof=1):.2f} | 2/2 |" in md
    assert "| 0.003 | 1.00% ± — | 1/2 |" in md
    assert "Chosen lr: **0.002**" in md and "at epoch 2 over 2 seed(s)" in md
    assert "as the paper did" in md and "favours the uniform baseline" in md
    # the command keeps the run's settings and says that another profile needs its own search (user trial:
    # a rate chosen at ci scale was offered for the paper profile)
    assert md.splitlines()[-1].startswith("Every method then uses it, at these settings: `--set lr=0.002`.")
    assert "(80 iterations of batch 64)" in md.splitlines()[-1]
    assert "The grid is the paper's" not in md


def test_lr_search_lines_on_the_validation_split_say_so():
    cfg = Config(**HAND_CFG, steps_per_epoch=40, select_on="validation", n_val=500)
    md = "\n".join(lr_search_lines(_hand_df(), cfg))
    assert "| lr | held-out error | test error | seeds |" in md
    assert "| 0.001 | 3.00% ± 1.41 | 6.00% ± 1.41 | 2/2 |" in md
    assert "Chosen lr: **0.001**" in md and "500 training examples held out of training" in md
    assert "not on the test error" in md and "favours the uniform baseline" in md
    assert "Every method then uses it, at these settings: `--set lr=0.001`." in md


def test_lr_search_lines_without_a_choice_or_without_a_search():
    cfg = Config(**HAND_CFG, steps_per_epoch=40)
    df = _hand_df()
    lines = lr_search_lines(df[df.seed == 0], cfg)
    assert any(ln.startswith("No learning rate chosen: no lr has all 2 seed(s)") for ln in lines)
    assert not any("iwlab run" in ln for ln in lines)
    assert lr_search_lines(df.drop(columns="lr"), cfg)[0].startswith("No learning-rate search")
    grid = Config(methods=("uniform",), lrs=PAPER_LR_GRID, iterations=40, steps_per_epoch=40, seeds=1)
    one = _frame({(lr, "test_error"): [[0.1 if lr != 0.004 else 0.05]] for lr in PAPER_LR_GRID})
    md = "\n".join(lr_search_lines(one, grid))
    assert "Chosen lr: **0.004**" in md and "The grid is the paper's" in md and "edge of the grid" not in md


# ---- end to end ----------------------------------------------------------------------------------------


def test_ci_lr_search_on_a_validation_split_end_to_end(tmp_path):
    sets = ["lrs=0.001,0.002", "select_on=validation", "methods=uniform", "seeds=2"]
    out = run_experiment("is_mnist", "ci", sets, out=tmp_path / "search", workers=1, progress=False)
    cfg = make_config("is_mnist", "ci", sets)
    store = Store(out / "results.db")
    try:
        statuses = {r["run_id"]: r["status"] for r in store.runs()}
    finally:
        store.close()
    assert statuses == {cid: "done" for cid, _ in cells(cfg)}
    df = load(out)
    for cid, p in cells(cfg):
        d = df[df.run_id == cid]
        assert set(d.lr) == {p["lr"]} and set(d.method) == {p["method"]} and set(d.seed) == {p["seed"]}
        val = d[d.name == "val_error"]
        assert sorted(val.epoch) == [1, 2, 3] and val.value.between(0, 1).all()
        # n_val = 8 examples: the error is a multiple of 1/8
        assert np.allclose(val.value * 8, np.round(val.value * 8))
    # the choice, recomputed from the frame by hand
    final = df[(df.method == "uniform") & (df.name == "val_error") & (df.epoch == 3)]
    means = final.groupby("lr").value.mean()
    lr, _ = best_lr(df, cfg)
    assert lr == min(lr_ for lr_ in means.index if means[lr_] == means.min())
    assert any(f"--set lr={lr:g}`" in ln for ln in lr_search_lines(df, cfg))

    # a one-rate search at 0.002 with cfg.lr = 0.001 reproduces the lr=0.002 cell: the cell's lr is used
    single = run_experiment(
        "is_mnist",
        "ci",
        ["lrs=0.002", "select_on=validation", "methods=uniform", "lr=0.001"],
        out=tmp_path / "single",
        workers=1,
        progress=False,
    )
    p = load(single)
    assert set(p.run_id) == {"uniform/lr=0.002/seed=0"}
    loss = lambda frame, rid: frame[(frame.run_id == rid) & (frame.name == "train_loss")].value.to_numpy()  # noqa: E731
    assert np.array_equal(loss(p, "uniform/lr=0.002/seed=0"), loss(df, "uniform/lr=0.002/seed=0"))
    assert not np.array_equal(loss(df, "uniform/lr=0.002/seed=0"), loss(df, "uniform/lr=0.001/seed=0"))


# ---- sampler options -------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["uniform", "oracle_k0.5", "approx_k0.5"])
def test_run_cell_passes_the_sampler_options_that_the_strategy_takes(method, tmp_path, monkeypatch):
    made = []
    real = common.make_sampler

    def spy(strategy, dataset, batch_size, **kw):
        s = real(strategy, dataset, batch_size, **kw)
        made.append((kw, s))
        return s

    monkeypatch.setattr(common, "make_sampler", spy)
    cfg = make_config(
        "is_mnist",
        "ci",
        ["score_floor=0.5", "match_unbiased_sum=true", "iterations=2", "steps_per_epoch=2", "table_epochs=1"],
    )
    ctx = CellContext(run_dir=tmp_path, cell_id=f"{method}/seed=0", progress=False)
    mnist_exp.run_cell(cfg, ctx.cell_id, {"method": method, "seed": 0}, ctx)
    ((kw, sampler),) = made
    if method == "uniform":
        assert "score_floor" not in kw and "match_unbiased_sum" not in kw
    else:
        assert kw["match_unbiased_sum"] is True and sampler.match_unbiased_sum is True
        if method.startswith("approx"):
            assert kw["score_floor"] == 0.5 and sampler.score_floor == 0.5
        else:
            assert "score_floor" not in kw
