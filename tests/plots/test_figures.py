"""Figures of the importance and MRPC experiments drawn from hand-made frames (issue 10, item 19): no light-grey
line, one legend that says what the bands mean, loss bands that stay positive on log axes.

The figures are caught at ``Figure.savefig``, so these tests do not depend on how the plotting code is organised.
"""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
from colour_maths import MAX_LUMINANCE, chroma, delta_e_deuteranope, luminance
from matplotlib.collections import PolyCollection

from iwlab.plots import importance as PI
from iwlab.plots import mrpc as PM


def _legends(fig):
    return list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]


def _legend_texts(fig):
    return [t.get_text() for lg in _legends(fig) for t in lg.get_texts()]


def _mrpc_frame(weights, epochs=3, seeds=(0,)):
    rows = []
    for w in weights:
        for s in seeds:
            for e in range(1, epochs + 1):
                rows.append((w, s, e, "frac_paraphrase_test", 0.5 + 0.1 * math.log(w, 16) / e))
                rows.append((w, s, e, "test_acc", 0.7))
    return pd.DataFrame(rows, columns=["weight", "seed", "epoch", "name", "value"])


def test_mrpc_three_weights_have_no_light_grey_line_and_differ_for_deuteranopes(drawn, tmp_path):
    """The cpu_hour profile's weights 1, 1/16, 1/256: the middle one was coolwarm's light grey."""
    PM.figure6(_mrpc_frame((1.0, 1 / 16, 1 / 256)), tmp_path / "fig6.png")
    fig = drawn[-1][0]
    ax_f = fig.axes[0]
    colours = [ln.get_color() for ln in ax_f.lines]
    assert len(colours) == 3
    for c in colours:
        assert luminance(c) <= MAX_LUMINANCE and (chroma(c) >= 0.1 or luminance(c) < 0.05), c
    for i in range(3):
        for j in range(i + 1, 3):
            assert delta_e_deuteranope(colours[i], colours[j]) >= 15


def test_mrpc_figure_has_one_legend_that_names_every_weight_and_the_band(drawn, tmp_path):
    PM.figure6(_mrpc_frame((4.0, 1.0, 1 / 16)), tmp_path / "fig6.png")
    fig = drawn[-1][0]
    assert len(_legends(fig)) == 1
    texts = _legend_texts(fig)
    assert {"$4^{1}$", "1", "$4^{-2}$"} <= set(texts) and "no band: 1 seed" in texts


def _is_frame():
    """As the store gives it: the method's strategy and k are member columns (the figures never parse methods)."""
    rows = []
    for m, strategy, k in (("uniform", "uniform", 1.0), ("oracle_k0.5", "oracle", 0.5)):
        for seed, scale in ((0, 1.0), (1, 2.0)):
            member = (m, strategy, k, seed)
            for e in (1, 2, 3):
                # a within-epoch std 3x the mean: mean - std < 0 on a log axis
                rows.append((*member, e, "train_loss", 0.5 * scale / e))
                rows.append((*member, e, "train_loss_std", 1.5 * scale / e))
                rows.append((*member, e, "test_error", 0.02 * scale / e))
    return pd.DataFrame(rows, columns=["method", "strategy", "k", "seed", "epoch", "name", "value"])


def test_importance_styles_come_from_the_strategy_and_k_columns(drawn, tmp_path):
    """A method's line style and label follow its stored strategy and k, whatever its name says."""
    df = _is_frame()
    df.loc[df.method == "oracle_k0.5", ["strategy", "k"]] = ("pcg", 1.0)
    cfg = SimpleNamespace(methods=("uniform", "oracle_k0.5"), steps_per_epoch=10, DATASET="mnist")
    PI.metric_curves(df, cfg, "test_error", tmp_path / "test_error.png")
    fig = drawn[-1][0]
    assert "PCG k=1" in _legend_texts(fig) and "Oracle k=0.5" not in _legend_texts(fig)
    assert [ln.get_linestyle() for ln in fig.axes[0].lines] == ["-", ":"]


def _band_ys(ax):
    ys = [p.vertices[:, 1] for c in ax.collections if isinstance(c, PolyCollection) for p in c.get_paths()]
    return np.concatenate(ys) if ys else np.array([])


def test_importance_loss_band_is_computed_in_log_space_and_stays_positive(drawn, tmp_path):
    cfg = SimpleNamespace(methods=("uniform", "oracle_k0.5"), steps_per_epoch=10, DATASET="mnist")
    PI.train_loss_curves(_is_frame(), cfg, tmp_path / "train_loss.png")
    fig = drawn[-1][0]
    ys = _band_ys(fig.axes[0])
    assert ys.size and (ys > 0).all()
    # epoch 1 of uniform: seed means 0.75 and 2.25 -> the log-normal band of that mean and std
    m, sd = 0.75, 2.25
    r = 1 + (sd / m) ** 2
    g, s = m / math.sqrt(r), math.sqrt(math.log(r))
    assert np.isclose(ys, g * math.exp(s)).any() and np.isclose(ys, g * math.exp(-s)).any()
    assert any(t.startswith("band:") and "geometric" in t for t in _legend_texts(fig))


def test_importance_metric_band_is_min_to_max_over_seeds(drawn, tmp_path):
    cfg = SimpleNamespace(methods=("uniform", "oracle_k0.5"), steps_per_epoch=10, DATASET="mnist")
    PI.metric_curves(_is_frame(), cfg, "test_error", tmp_path / "test_error.png")
    fig = drawn[-1][0]
    ys = _band_ys(fig.axes[0])
    # seeds give 2% and 4% at epoch 1: the band spans exactly that (in %), not mean ± std clipped at a guess
    assert np.isclose(ys, 2.0).any() and np.isclose(ys, 4.0).any() and (ys > 0).all()
    assert "band: min to max over 2 seeds" in _legend_texts(fig)
    assert len(_legends(fig)) == 1
