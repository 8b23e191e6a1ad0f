"""Figures of the remedies experiment (issue 15): drawn from a fabricated frame with every part (random values),
the drawn bars checked against spreads and means recomputed here in float64 numpy; absent parts, a bad format
and missing columns."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer, ErrorbarContainer

from iwlab.experiments import EXPERIMENTS
from iwlab.experiments.remedies_summary import LABELS, PUBLISHED
from iwlab.plots import FIGURES, figures_for
from iwlab.plots import remedies as P

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COLS = ["member", "part", "method", "weight", "seed", "epoch", "name", "value"]
BINARY = ("ce_iw", "poly_logit_iw", "subsample")  # LABELS order
LT = ("ce", "poly_logit_iw", "ldam_drw", "vs")  # LABELS order; vs: an unverified paper number; poly: none
WEIGHTS = (1.0, 1 / 16, 1 / 256)
EPOCHS = (1, 10, 100)


def _frame(parts=("separable", "cifar_catdog", "cifar10_lt"), drop=(), fitted=True):
    """Random values of the right range; ``drop``: metric names left out; ``fitted=False``: subsample on the
    separable part never reaches training accuracy 0.95."""
    rng = np.random.default_rng(0)
    rows, m = [], 0
    for part in ("separable", "cifar_catdog"):
        names = ("frac_down_test", "frac_down_grid") if part == "separable" else ("frac_down_test",)
        for method in BINARY:
            for w in WEIGHTS:
                for s in (0, 1):
                    for e in EPOCHS:
                        for n in names:
                            rows.append((m, part, method, w, s, e, n, rng.uniform()))
                        acc = 0.9 if (not fitted and part == "separable" and method == "subsample") else 1.0
                        rows.append((m, part, method, w, s, e, "train_acc", acc))
                    m += 1
    for method in LT:
        for s in (0, 1, 2):
            for e in (1, 2):
                rows.append((m, "cifar10_lt", method, 1.0, s, e, "top1", rng.uniform(0.3, 0.8)))
            m += 1
    df = pd.DataFrame(rows, columns=COLS)
    return df[df.part.isin(parts) & ~df.name.isin(drop)].reset_index(drop=True)


def _written(paths):
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000, p
    return {p.stem for p in paths}


def _by_file(drawn):
    return {str(f).rsplit("/", 1)[-1]: fig for fig, f in drawn}


def _legend_texts(fig):
    return [t.get_text() for lg in fig.legends for t in [*lg.get_texts(), lg.get_title()]]


def _hand_spread(df, part, metric, epoch):
    """max - min over weights of the seed-mean value at ``epoch``, per method (float64 numpy, no pandas groupby)."""
    d = df[(df.part == part) & (df.name == metric) & (df.epoch == epoch)]
    out = []
    for method in BINARY:
        means = [np.mean(d[(d.method == method) & (d.weight == w)].value.to_numpy(np.float64)) for w in WEIGHTS]
        out.append(max(means) - min(means))
    return np.array(out)


def test_every_part_gives_its_figure_as_a_non_empty_png(tmp_path):
    paths = P.figures(tmp_path, _frame(), None)
    assert _written(paths) == {"spread", "fraction_over_epochs", "long_tailed"}
    assert all(p.parent == tmp_path / "figures" for p in paths)


def test_spread_bars_are_the_spreads_across_weights_at_the_first_and_last_epoch(drawn, tmp_path):
    df = _frame()
    P.figures(tmp_path, df, None)
    fig = _by_file(drawn)["spread.png"]
    axes = [ax for ax in fig.axes if ax.containers]
    assert len(axes) == 3  # separable: test points and grid; cifar_catdog: test points (its grid panel is empty)
    panels = [("separable", "frac_down_test"), ("separable", "frac_down_grid"), ("cifar_catdog", "frac_down_test")]
    for ax, (part, metric) in zip(axes, panels, strict=True):
        first, last = (np.array([r.get_width() for r in c]) for c in ax.containers[:2])
        np.testing.assert_allclose(first, _hand_spread(df, part, metric, EPOCHS[0]), rtol=1e-12)
        np.testing.assert_allclose(last, _hand_spread(df, part, metric, EPOCHS[-1]), rtol=1e-12)
        assert [t.get_text() for t in ax.get_yticklabels()] in ([LABELS[m] for m in BINARY], [""] * 3)
        assert np.all(np.diff(ax.get_yticks()) < 0)  # the summary table's order, top to bottom
        assert [ln.get_xdata()[0] for ln in ax.lines] == [0.1]  # the threshold
    texts = _legend_texts(fig)
    assert "0.1: 'survives' threshold" in texts and not any("train acc <" in t for t in texts)


def test_a_method_that_has_not_interpolated_is_hatched(drawn, tmp_path):
    P.figures(tmp_path, _frame(parts=("separable",), fitted=False), None)
    fig = _by_file(drawn)["spread.png"]
    last = fig.axes[0].containers[1]
    assert [r.get_hatch() or "" for r in last] == ["", "", "///"]  # subsample: train acc 0.9
    assert "train acc < 0.95" in _legend_texts(fig)


def test_fraction_panels_are_seed_means_with_a_stated_band(drawn, tmp_path):
    df = _frame(parts=("separable",))
    P.figures(tmp_path, df, None)
    fig = _by_file(drawn)["fraction_over_epochs.png"]
    axes = [ax for ax in fig.axes if ax.lines]
    assert [ax.get_title() for ax in axes] == [LABELS[m] for m in BINARY]
    assert all(ax.get_xscale() == "log" for ax in axes)
    d = df[(df.name == "frac_down_test") & (df.method == "poly_logit_iw")]
    for line, w in zip(axes[1].lines, sorted(WEIGHTS), strict=True):  # smallest weight drawn first
        ref = [np.mean(d[(d.weight == w) & (d.epoch == e)].value.to_numpy(np.float64)) for e in EPOCHS]
        np.testing.assert_allclose(np.asarray(line.get_ydata()), ref, rtol=1e-12)
    texts = _legend_texts(fig)
    assert "weight of class 1 (seed mean)" in texts and "band: min to max over 2 seeds" in texts
    assert {"1", "1/16", "1/256"} <= set(texts)


def test_long_tailed_bars_are_seed_means_with_std_and_the_papers_numbers(drawn, tmp_path):
    df = _frame(parts=("cifar10_lt",))
    assert _written(P.figures(tmp_path, df, None)) == {"long_tailed"}
    ax = _by_file(drawn)["long_tailed.png"].axes[0]
    bars = next(c for c in ax.containers if isinstance(c, BarContainer))
    last = df[df.epoch == 2]
    vals = [100 * last[last.method == m].value.to_numpy(np.float64) for m in LT]  # LT is in LABELS order
    np.testing.assert_allclose([r.get_width() for r in bars], [v.mean() for v in vals], rtol=1e-12)
    err = next(c for c in ax.containers if isinstance(c, ErrorbarContainer))
    half = [(seg[1][0] - seg[0][0]) / 2 for seg in err.lines[2][0].get_segments()]
    np.testing.assert_allclose(half, [v.std(ddof=1) for v in vals], rtol=1e-9)
    marks = [ln for ln in ax.lines if ln.get_marker() == "D"]
    # the paper's number: the first word of its PUBLISHED entry; no marker for a method without one
    assert [ln.get_xdata()[0] for ln in marks] == [float(PUBLISHED[m][0].split()[0]) for m in ("ce", "ldam_drw", "vs")]
    assert [ln.get_markerfacecolor() for ln in marks][-1] == "white"  # vs: unverified, hollow
    texts = _legend_texts(_by_file(drawn)["long_tailed.png"])
    assert {"ours (epochs reached: 2)", "paper (200 epochs)", "paper, unverified"} <= set(texts)


def test_absent_parts_and_metrics_are_skipped(drawn, tmp_path):
    paths = P.figures(tmp_path, _frame(parts=("cifar_catdog",)), None)
    assert _written(paths) == {"spread", "fraction_over_epochs"}
    assert sum(bool(ax.containers) for ax in _by_file(drawn)["spread.png"].axes) == 1  # no grid panel
    assert _written(P.figures(tmp_path, _frame(drop=("top1", "frac_down_test")), None)) == set()
    assert P.figures(tmp_path, _frame().iloc[:0], None) == []


def test_bad_format_and_missing_column_are_refused(tmp_path):
    with pytest.raises(ValueError, match="fmt"):
        P.figures(tmp_path, _frame(), None, fmt="jpg")
    with pytest.raises(ValueError, match="df: missing column"):
        P.figures(tmp_path, _frame().drop(columns="method"), None)


def test_registered():
    assert EXPERIMENTS["remedies"] == "iwlab.experiments.remedies"
    assert FIGURES["remedies"] == "iwlab.plots.remedies:figures"
    assert figures_for("remedies") is P.figures
