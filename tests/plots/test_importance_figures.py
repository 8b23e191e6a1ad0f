"""The importance-sampling figures added for issue 12: Fig. 2b's moving average of the test metric, the training
loss's within-epoch std relative to uniform (Fig. 3b, and every method), the lr search's figure, which
``figures`` draws when, and the paper's figure numbers in titles and captions. Drawn from hand-made frames;
figures are caught at savefig."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgba

from iwlab.experiments import importance_sampling_mnist as mnist_exp
from iwlab.experiments import importance_sampling_ptb as ptb_exp
from iwlab.plots import importance as PI
from iwlab.plots import importance_extra as PX
from iwlab.plots.style import read_captions
from iwlab.store import Store

MEMBERS = {
    "uniform": ("uniform", 1.0),
    "oracle_k0.5": ("oracle", 0.5),
    "approx_k1": ("approx", 1.0),
    "pcg_k1": ("pcg", 1.0),
}


def _cfg(methods, dataset="cifar10", metric="test_error"):
    return SimpleNamespace(methods=methods, steps_per_epoch=10, DATASET=dataset, METRIC=metric)


def _frame(values):
    """values[(method, name)] = list over seeds of list over epochs 1.. -> the store's long frame."""
    rows = []
    for (m, name), per_seed in values.items():
        strategy, k = MEMBERS[m]
        for s, series in enumerate(per_seed):
            rows += [(m, strategy, k, s, e, name, v, f"{m}/{s}") for e, v in enumerate(series, start=1)]
    return pd.DataFrame(rows, columns=["method", "strategy", "k", "seed", "epoch", "name", "value", "run_id"])


def _legend_texts(fig):
    return [t.get_text() for lg in fig.legends for t in lg.get_texts()]


def _band_ys(ax):
    ys = [p.vertices[:, 1] for c in ax.collections if isinstance(c, PolyCollection) for p in c.get_paths()]
    return np.concatenate(ys) if ys else np.array([])


def test_moving_average_is_each_seeds_trailing_mean_over_seeds_without_uniform(drawn, tmp_path):
    errors = {
        ("uniform", "test_error"): [[0.5, 0.4, 0.3, 0.2]],
        ("oracle_k0.5", "test_error"): [[0.4, 0.2, 0.1, 0.1], [0.2, 0.2, 0.3, 0.1]],
    }
    out = PX.metric_moving_average(
        _frame(errors), _cfg(("uniform", "oracle_k0.5")), "test_error", tmp_path / "ma", "svg"
    )
    assert out.exists() and out.suffix == ".svg"
    caption = read_captions(tmp_path)["ma.svg"]
    assert "Fig. 2b" in caption and "3 epochs" in caption and "band: min to max over 2 seeds" in caption
    fig = drawn[-1][0]
    ax = fig.axes[0]
    assert len(ax.lines) == 1 and "Uniform" not in _legend_texts(fig) and "Oracle k=0.5" in _legend_texts(fig)
    # trailing means over up to 3 epochs, in %: seed 0 40, 30, 23.33, 13.33; seed 1 20, 20, 23.33, 20
    s0 = np.array([40.0, 30.0, 70 / 3, 40 / 3])
    s1 = np.array([20.0, 20.0, 70 / 3, 20.0])
    x, y = ax.lines[0].get_data()
    assert list(x) == [1, 2, 3, 4] and np.allclose(y, (s0 + s1) / 2)
    ys = _band_ys(ax)
    assert np.isclose(ys, 40.0).any() and np.isclose(ys, 40 / 3).any()  # min and max of the two seeds
    with pytest.raises(ValueError, match="window"):
        PX.metric_moving_average(_frame(errors), _cfg(("oracle_k0.5",)), "test_error", tmp_path / "x", window=0)


def test_loss_std_ratio_is_the_ratio_to_uniforms_mean_and_filters_methods(drawn, tmp_path):
    stds = {
        ("uniform", "train_loss_std"): [[2.0, 1.0], [4.0, 1.0]],  # mean over seeds 3, 1
        ("oracle_k0.5", "train_loss_std"): [[1.0, 1.0], [1.0, 1.0]],
        ("approx_k1", "train_loss_std"): [[1.0, 0.5], [2.0, 0.5]],  # over uniform's mean: 1/3, 2/3; 0.5, 0.5
    }
    df = _frame(stds)
    cfg = _cfg(("uniform", "oracle_k0.5", "approx_k1"), dataset="ptb")
    out = PX.loss_std_ratio(df, cfg, tmp_path / "r", "svg", methods=("approx_k1",), paper_ref="Fig. 3b")
    assert out.exists()
    caption = read_captions(tmp_path)["r.svg"]
    assert "Fig. 3b" in caption and "1 = no variance reduction" in caption and "min to max over 2 seeds" in caption
    fig = drawn[-1][0]
    ax = fig.axes[0]
    assert _legend_texts(fig)[:2] == ["Uniform", "Approx k=1"] and "Oracle k=0.5" not in _legend_texts(fig)
    (xu, yu), (xa, ya) = (ln.get_data() for ln in ax.lines)
    assert np.allclose(yu, [1.0, 1.0]) and np.allclose(ya, [0.5, 0.5])
    assert ax.get_yscale() == "log"
    ys = _band_ys(ax)
    assert np.isclose(ys, 1 / 3).any() and np.isclose(ys, 2 / 3).any()
    # every method: the same function without the filter
    PX.loss_std_ratio(df, cfg, tmp_path / "all", "svg")
    assert [t for t in _legend_texts(drawn[-1][0]) if not t.startswith("band")] == [
        "Uniform",
        "Oracle k=0.5",
        "Approx k=1",
    ]
    with pytest.raises(ValueError, match="uniform"):
        PX.loss_std_ratio(df[df.method != "uniform"], cfg, tmp_path / "none", "svg")


def _run_dir(tmp_path, methods):
    """A run folder with an empty store (no losses artifacts) and a frame with every curve the figures read."""
    values = {}
    for m in methods:
        values[(m, "test_error")] = [[0.3, 0.2, 0.1]] * 2
        values[(m, "train_loss")] = [[1.0, 0.5, 0.3]] * 2
        values[(m, "train_loss_std")] = [[0.5, 0.3, 0.2]] * 2
        values[(m, "time_total")] = [[1.0, 2.0, 3.0]] * 2
    Store(tmp_path / "results.db").close()
    return tmp_path, _frame(values)


@pytest.mark.parametrize(
    "methods, extra",
    [
        (("uniform",), []),
        (("uniform", "oracle_k0.5"), ["test_error_moving_average", "loss_std_ratio"]),
        (("uniform", "approx_k1"), ["test_error_moving_average", "loss_std_ratio"]),  # 3b would repeat it
        (("uniform", "pcg_k1"), ["loss_std_ratio"]),
        (
            ("uniform", "oracle_k0.5", "pcg_k1"),
            ["test_error_moving_average", "loss_std_ratio", "loss_std_ratio_pcg_approx"],
        ),
    ],
)
def test_figures_draws_the_new_figures_only_when_their_methods_ran(tmp_path, methods, extra):
    run_dir, df = _run_dir(tmp_path, methods)
    paths = PI.figures(run_dir, df, _cfg(methods, dataset="mnist"), fmt="svg")
    base = ["train_loss", "sorted_losses", "test_error", "test_error_vs_time", "loss_vs_gradnorm"]
    assert [p.stem for p in paths] == base + extra and all(p.exists() for p in paths)
    captions = read_captions(run_dir / "figures")
    assert set(captions) == {p.name for p in paths}
    # the paper's panel numbers for MNIST
    assert captions["train_loss.svg"].startswith("Fig. 1a:") and captions["test_error.svg"].startswith("Fig. 1c:")
    if "loss_std_ratio_pcg_approx" in extra:
        assert "Fig. 3b" in captions["loss_std_ratio_pcg_approx.svg"]


def test_train_loss_title_and_caption_name_the_papers_panel_and_what_the_band_is(drawn, tmp_path):
    df = _frame({("uniform", "train_loss"): [[1.0, 0.5]], ("uniform", "train_loss_std"): [[0.2, 0.1]]})
    PI.train_loss_curves(df, _cfg(("uniform",), dataset="ptb"), tmp_path / "tl", "svg")
    assert "Fig. 3a" in drawn[-1][0].axes[0].get_title()
    caption = read_captions(tmp_path)["tl.svg"]
    assert caption.startswith("Fig. 3a:") and "moving average" in caption and "moving std" in caption


# ---- the lr search ---------------------------------------------------------------------------------------


def _lr_frame(values):
    """values[(lr, name)] = list over seeds of list over epochs 1.. -> the store's frame of an lr search (uniform)."""
    rows = [
        ("uniform", "uniform", 1.0, lr, s, e, name, v, f"uniform/lr{lr}/{s}")
        for (lr, name), per_seed in values.items()
        for s, series in enumerate(per_seed)
        for e, v in enumerate(series, start=1)
    ]
    cols = ["method", "strategy", "k", "lr", "seed", "epoch", "name", "value", "run_id"]
    return pd.DataFrame(rows, columns=cols).astype({"lr": np.float64})


def _bars(ax):
    """(x, low, high) of every error bar drawn on ``ax``."""
    out = []
    for c in ax.containers:
        for coll in c.lines[2]:
            out += [(seg[0, 0], seg[0, 1], seg[1, 1]) for seg in coll.get_segments()]
    return sorted(out)


def test_lr_search_figure_by_hand(drawn, tmp_path):
    # 3 epochs (120 iterations of 40): the final epoch is 3; 2 seeds
    cfg = mnist_exp.Config(methods=("uniform",), lrs=(0.004, 0.001, 0.002), seeds=2, iterations=120, steps_per_epoch=40)
    df = _lr_frame(
        {
            (0.001, "test_error"): [[0.05, 0.03, 0.020], [0.05, 0.04, 0.030]],  # final mean 2.5%
            (0.002, "test_error"): [[0.04, 0.02, 0.010], [0.06, 0.02, 0.014]],  # final mean 1.2%: the best complete
            (0.004, "test_error"): [[0.03, 0.01, 0.005], [0.02, 0.01, np.inf]],  # one seed diverged: not choosable
        }
    )
    out = PX.lr_search_figure(df, cfg, tmp_path / "lr_search", "svg")
    assert out.exists() and out.suffix == ".svg"
    fig = drawn[-1][0]
    ax_sel, ax_ep = fig.axes
    # left: the final epoch's mean over the finite seeds, in %, on the rates in ascending order
    (line,) = [ln for ln in ax_sel.lines if ln.get_marker() in ("None", "", None) and len(ln.get_xdata()) == 3]
    assert list(line.get_xdata()) == [0.001, 0.002, 0.004]
    assert np.allclose(line.get_ydata(), [2.5, 1.2, 0.5])
    # error bars: min to max over seeds; the rate with one finite seed has none
    bars = _bars(ax_sel)
    assert [b[0] for b in bars] == [0.001, 0.002] and np.allclose([b[1:] for b in bars], [(2.0, 3.0), (1.0, 1.4)])
    # the star marks 0.002: 0.004's mean is lower but one of its seeds diverged
    (star,) = [ln for ln in ax_sel.lines if ln.get_marker() == "*"]
    assert list(star.get_xdata()) == [0.002] and np.allclose(star.get_ydata(), [1.2])
    assert [t.get_text() for t in ax_sel.texts] == ["1/2"]
    assert ax_sel.get_yscale() == "log" and "at epoch 3" in ax_sel.get_ylabel()
    # right: one line per rate, the mean over the finite seeds per epoch, viridis from its dark end
    assert len(ax_ep.lines) == 3
    assert all(list(ln.get_xdata()) == [1, 2, 3] for ln in ax_ep.lines)
    by_color = {to_rgba(ln.get_color()): ln for ln in ax_ep.lines}
    viridis = colormaps["viridis"]
    first, last = by_color[to_rgba(viridis(0.0))], by_color[to_rgba(viridis(0.8))]  # 0.001 and 0.004
    assert np.allclose(first.get_ydata(), [5.0, 3.5, 2.5]) and np.allclose(last.get_ydata(), [2.5, 1.0, 0.5])
    widths = sorted(ln.get_linewidth() for ln in ax_ep.lines)
    assert widths[-1] > widths[0] and widths[0] == widths[1]  # only the chosen rate's line is wider
    assert _legend_texts(fig) == [
        "0.001",
        "0.002 (chosen)",
        "0.004",
        "chosen lr",
        "error bars: min to max over 2 seeds",
    ]
    caption = read_captions(tmp_path)["lr_search.svg"]
    assert "final epoch (3)" in caption and "star: the chosen rate, 0.002" in caption and "n/2" in caption
    assert "min to max" in caption and "as the paper did" in caption


def test_lr_search_figure_selects_on_held_out_error_and_draws_test_error(drawn, tmp_path):
    cfg = mnist_exp.Config(
        methods=("uniform",), lrs=(0.001, 0.002), seeds=1, iterations=40, steps_per_epoch=40, select_on="validation"
    )
    df = _lr_frame(
        {
            (0.001, "val_error"): [[0.02]],  # lower held-out error: chosen
            (0.002, "val_error"): [[0.03]],
            (0.001, "test_error"): [[0.05]],
            (0.002, "test_error"): [[0.01]],  # lower test error, not what the choice looks at
        }
    )
    PX.lr_search_figure(df, cfg, tmp_path / "lr", "svg")
    ax_sel, ax_ep = drawn[-1][0].axes
    (star,) = [ln for ln in ax_sel.lines if ln.get_marker() == "*"]
    assert list(star.get_xdata()) == [0.001] and np.allclose(star.get_ydata(), [2.0])
    assert ax_sel.get_ylabel().startswith("held-out error (%)") and ax_ep.get_ylabel() == "test error (%)"
    assert sorted(float(ln.get_ydata()[0]) for ln in ax_ep.lines) == pytest.approx([1.0, 5.0])
    assert _bars(ax_sel) == []  # one seed: no error bars
    caption = read_captions(tmp_path)["lr.svg"]
    assert "held-out training examples" in caption and "no error bars (1 seed)" in caption
    assert "no error bars: 1 seed" in _legend_texts(drawn[-1][0])


def test_lr_search_figure_without_a_choosable_rate_says_why_and_needs_the_lr_column(drawn, tmp_path):
    cfg = ptb_exp.Config(methods=("uniform",), lrs=(0.001, 0.002), seeds=2, iterations=40, steps_per_epoch=40)
    df = _lr_frame(
        {(0.001, "perplexity"): [[300.0], [np.nan]], (0.002, "perplexity"): [[250.0]]}  # a seed short everywhere
    )
    PX.lr_search_figure(df, cfg, tmp_path / "lr", "svg")
    ax_sel, ax_ep = drawn[-1][0].axes
    assert not [ln for ln in ax_sel.lines if ln.get_marker() == "*"]
    assert sorted(float(ln.get_ydata()[0]) for ln in ax_ep.lines) == [250.0, 300.0]  # perplexity: not scaled
    assert ax_ep.get_ylabel() == "validation perplexity"
    caption = read_captions(tmp_path)["lr.svg"]
    assert "no rate chosen: no lr has all 2 seed(s) with a finite perplexity at epoch 1" in caption
    with pytest.raises(ValueError, match="lr"):
        PX.lr_search_figure(df.drop(columns="lr"), cfg, tmp_path / "none", "svg")


def test_figures_of_an_lr_search_draw_the_lr_search_figure_alone(tmp_path):
    cfg = mnist_exp.Config(methods=("uniform",), lrs=(0.001, 0.002), seeds=2, iterations=80, steps_per_epoch=40)
    values = {}
    for lr in cfg.lrs:
        values[(lr, "test_error")] = [[0.3, 0.2], [0.25, 0.15]]
        values[(lr, "train_loss")] = [[1.0, 0.5], [1.0, 0.4]]
        values[(lr, "train_loss_std")] = [[0.5, 0.3], [0.5, 0.3]]
        values[(lr, "time_total")] = [[1.0, 2.0], [1.0, 2.0]]
    Store(tmp_path / "results.db").close()
    paths = PI.figures(tmp_path, _lr_frame(values), cfg, fmt="svg")
    assert [p.name for p in paths] == ["lr_search.svg"] and paths[0].exists()
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["captions.json", "lr_search.svg"]
    assert "Learning-rate search for the uniform baseline" in read_captions(tmp_path / "figures")["lr_search.svg"]
