"""Figures of the implicit_bias experiment (issue 14): drawn from hand-made frames (every part, some parts, missing
metrics) and from a tiny real run; the L2 angle checked against a float64 hand formula."""

import math

import numpy as np
import pandas as pd
import pytest

from iwlab.experiments.implicit_bias import Config
from iwlab.plots import FIGURES, figures_for
from iwlab.plots import implicit_bias as P
from iwlab.runner import run_experiment
from iwlab.store import load

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALL = {"direction_error", "residual", "homogeneous_margin", "l2_sweep", "learned_weights"}
EPOCHS = (1, 2, 5, 10, 20)
COLS = ["member", "part", "loss", "weighting", "weight_decay", "seed", "steps_per_epoch", "epoch", "name", "value"]


def _rows(member, part, loss, weighting, metrics, wd=np.nan, seed=np.nan):
    """One member's rows: ``metrics`` maps a name to a function of the step t."""
    return [
        (member, part, loss, weighting, wd, seed, 100, e, n, f(100 * e)) for e in EPOCHS for n, f in metrics.items()
    ]


def _frame(parts=("linear", "byrd_lipton", "relu", "l2", "learned"), drop=()):
    """Fabricated values of the right sign and rough shape; ``drop``: metric names left out."""
    rows, m = [], 0
    lin = {
        "dir_err": lambda t: 1 / math.log(t),
        "pred_dir_err": lambda t: 1.1 / math.log(t),
        "residual": lambda t: 10 / t,
        "dir_err_svm": lambda t: 1 / math.log(t),
    }
    for part in ("linear", "byrd_lipton"):
        for w in ("uniform", "minority_x10", "alpha"):
            for loss in ("exponential", "ce"):
                rows += _rows(m, part, loss, w, lin)
                m += 1
    for w in ("uniform", "minority_x10"):
        for s in (0, 1):
            rel = {"norm_margin": lambda t: 0.3 - 1 / math.log(t), "smoothed_margin": lambda t: 0.25 - 1 / math.log(t)}
            rows += _rows(m, "relu", "ce", w, rel, seed=s)
            m += 1
    for lam in (1e-1, 1e-3):
        for w, ang in (("uniform", 0.3), ("minority_x10", 0.3 + 10 * lam)):
            unit = {
                "dir_err_svm": lambda t, a=lam: a,
                "u0": lambda t, a=ang: math.cos(a),
                "u1": lambda t, a=ang: math.sin(a),
            }
            rows += _rows(m, "l2", "ce", w, unit, wd=lam)
            m += 1
    for w, loss in (("focal", "focal"), ("margin_decay", "exponential")):
        rows += _rows(m, "learned", loss, w, {"dir_err": lambda t: 1 / math.log(t), "dir_err_svm": lambda t: 0.2})
        m += 1
    df = pd.DataFrame(rows, columns=COLS)
    return df[df.part.isin(parts) & ~df.name.isin(drop)].reset_index(drop=True)


def _written(paths):
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000, p
    return {p.stem for p in paths}


def test_every_part_gives_its_figure_as_a_non_empty_png(tmp_path):
    paths = P.figures(tmp_path, _frame(), Config())
    assert _written(paths) == ALL
    assert all(p.parent == tmp_path / "figures" and p.exists() for p in paths)


def test_absent_parts_and_metrics_are_skipped(tmp_path):
    paths = P.figures(tmp_path, _frame(parts=("linear", "relu"), drop=("pred_dir_err", "smoothed_margin")), Config())
    assert _written(paths) == {"direction_error", "residual", "homogeneous_margin"}
    assert P.figures(tmp_path, _frame(parts=("byrd_lipton",)).iloc[:0], Config()) == []


def test_only_byrd_lipton_draws_one_direction_panel_and_no_residual(drawn, tmp_path):
    assert _written(P.figures(tmp_path, _frame(parts=("byrd_lipton",)), Config())) == {"direction_error"}
    fig = drawn[-1][0]
    assert len(fig.axes) == 1


def test_legends_state_line_styles_and_bands(drawn, tmp_path):
    P.figures(tmp_path, _frame(), Config())
    texts = {
        str(f).rsplit("/", 1)[-1]: [t.get_text() for lg in fig.legends for t in lg.get_texts()] for fig, f in drawn
    }
    assert "dashed: predicted theta_hat log t + rho" in texts["direction_error.png"]
    assert "solid: measured (exp. loss)" in texts["direction_error.png"]
    assert "band: min to max over 2 seeds" in texts["homogeneous_margin.png"]
    assert "guide: slope 1/t" in texts["residual.png"]


def test_l2_angle_is_the_angle_between_the_unit_directions(drawn, tmp_path):
    P.figures(tmp_path, _frame(parts=("l2",)), Config())
    fig = drawn[-1][0]
    line = fig.axes[1].lines[0]
    lams = np.asarray(line.get_xdata(), dtype=np.float64)
    # the fabricated directions sit at angles 0.3 and 0.3 + 10 lambda: the angle between them is 10 lambda
    np.testing.assert_allclose(np.asarray(line.get_ydata()), 10 * lams, rtol=1e-12)
    np.testing.assert_allclose(lams, [1e-3, 1e-1])


def test_bad_format_and_missing_column_are_refused(tmp_path):
    with pytest.raises(ValueError, match="fmt"):
        P.figures(tmp_path, _frame(), Config(), fmt="jpg")
    with pytest.raises(ValueError, match="df: missing column"):
        P.figures(tmp_path, _frame().drop(columns="part"), Config())


def test_tiny_real_run_draws_its_parts_figures(tmp_path):
    assert FIGURES["implicit_bias"] == "iwlab.plots.implicit_bias:figures"
    out = run_experiment(
        "implicit_bias", "ci", ["parts=linear,relu"], out=tmp_path / "run", workers=1, progress=False, report=False
    )
    cfg = Config(parts=("linear", "relu"), steps=20_000, relu_steps=10_000, bl_n_per_class=8, seeds=2, l2=(1e-1, 1e-3))
    paths = figures_for("implicit_bias")(out, load(out), cfg)
    assert _written(paths) == {"direction_error", "residual", "homogeneous_margin"}
