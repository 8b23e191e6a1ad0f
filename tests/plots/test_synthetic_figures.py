"""Figures and report of a tiny synthetic run (issue 10, item 19): one legend per figure, a caption per figure in
report.html and report.md, every band explained, the down-weighted class named on the decision surfaces, the
logistic-regression boundary off the shading's colours, separable data first, ``--figure-format`` svg and pdf."""

import base64
import html
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from iwlab.plots import synthetic as P
from iwlab.runner import run_experiment, write_report

TINY = ["epochs=3", "n_per_class=32", "n_test_per_class=32", "grid_size=20", "weights=1,0.25", "seeds=2"]
STEMS = {
    "data",
    "fig1_separable_plain",
    "fig2_separable_l2",
    "fig3_separable_dropout",
    "figA1_moons",
    "figA2_gaussians",
    "fraction_vs_epoch",
    "angle_vs_epoch",
}


def _catch(mp, figs):
    real = Figure.savefig

    def savefig(self, fname, *args, **kwargs):
        figs.append((self, str(fname)))
        return real(self, fname, *args, **kwargs)

    mp.setattr(Figure, "savefig", savefig)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic-figures") / "run"
    figs = []
    with pytest.MonkeyPatch.context() as mp:
        _catch(mp, figs)
        run_experiment("synthetic", "quick", TINY, out=out, workers=1, progress=False)
    by_stem = {re.sub(r"\.\w+$", "", f.rsplit("/", 1)[-1]): fig for fig, f in figs}
    return SimpleNamespace(dir=out, figs=by_stem)


def _legends(fig):
    return list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]


def _texts(fig):
    out = [t.get_text() for lg in _legends(fig) for t in lg.get_texts()]
    out += [lg.get_title().get_text() for lg in _legends(fig)]
    return out + [ax.get_ylabel() for ax in fig.axes]


def test_every_figure_has_exactly_one_legend(run):
    assert set(run.figs) == STEMS
    for stem, fig in run.figs.items():
        assert len(_legends(fig)) == 1, stem
        assert all(t.get_fontsize() >= 8 for t in _legends(fig)[0].get_texts()), stem


def test_every_figure_has_a_caption_that_says_what_to_look_for(run):
    page = (run.dir / "report.html").read_text()
    caps = re.findall(r"<figure>.*?<figcaption>(.*?)</figcaption></figure>", page, flags=re.S)
    assert len(caps) == len(STEMS)
    assert all("Look for:" in html.unescape(c) for c in caps)
    md = (run.dir / "report.md").read_text()
    for stem in STEMS:
        # the caption sits right under its image
        assert re.search(rf"!\[{stem}\]\(figures/{stem}\.png\)\n\n\*\*Figure \d+\*\* \({stem}\.png\)\. .*Look for:", md)


def test_every_band_is_explained_in_the_legend(run):
    def has_band(fig):
        return any(isinstance(c, PolyCollection) for a in fig.axes for c in a.collections)

    banded = [s for s, f in run.figs.items() if has_band(f)]
    assert {"fraction_vs_epoch", "angle_vs_epoch"} <= set(banded)
    for stem in banded:
        bands = [t for t in _texts(run.figs[stem]) if t.startswith("band:")]
        assert bands and "2 seeds" in bands[0], stem


def test_surface_figures_name_the_down_weighted_class_on_colorbar_and_legend(run):
    for stem in ("fig1_separable_plain", "fig2_separable_l2", "fig3_separable_dropout", "figA1_moons"):
        fig = run.figs[stem]
        texts = _texts(fig)
        colorbar = [t for t in texts if ": P(class" in t]  # the colorbar's label
        assert colorbar and "P(class 1 = positives)" in colorbar[0]
        assert "class 1 (positives, down-weighted)" in colorbar[0]
        assert "class 1 (positives, down-weighted)" in texts and "class 0 (negatives)" in texts
        assert "max-margin separator (homogeneous)" in texts or stem != "fig1_separable_plain"


def test_logistic_regression_boundary_is_not_on_the_shading(run):
    fig = run.figs["fig1_separable_plain"]
    (legend,) = _legends(fig)
    lines = {t.get_text(): h for t, h in zip(legend.get_texts(), legend.legend_handles, strict=True)}
    lr = to_rgb(lines["logistic regression boundary"].get_color())
    shading = fig.axes[0].collections[0].get_cmap()  # the contourf of the first panel
    assert min(np.linalg.norm(np.subtract(lr, to_rgb(shading(t)))) for t in np.linspace(0, 1, 21)) > 0.2


@pytest.mark.parametrize("fmt", ["svg", "pdf"])
def test_figure_format_writes_that_format_and_the_report_embeds_or_links_it(run, fmt):
    write_report(run.dir, progress=False, figure_format=fmt)
    files = {p.stem for p in (run.dir / "figures").glob(f"*.{fmt}")}
    assert files == STEMS
    page = (run.dir / "report.html").read_text()
    md = (run.dir / "report.md").read_text()
    if fmt == "svg":
        uris = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', page)
        assert len(uris) == len(STEMS) and all(base64.b64decode(u).startswith(b"<?xml") for u in uris)
        assert "![data](figures/data.svg)" in md
    else:
        assert len(re.findall(r'<a href="figures/[\w]+\.pdf">', page)) == len(STEMS)
        assert "[data.pdf (PDF)](figures/data.pdf)" in md
        assert (run.dir / "figures" / "data.pdf").read_bytes()[:4] == b"%PDF"
    assert page.count("Look for:") >= len(STEMS)


def test_fraction_figure_puts_separable_data_first_whatever_the_config_order(tmp_path, monkeypatch):
    rows = [
        (ds, "mlp", 0.0, w, 0, e, name, 0.5 * w)
        for ds in ("gaussians", "separable")
        for w in (1.0, 0.25)
        for e in (1, 2)
        for name in ("frac_down_test", "frac_down_grid")
    ]
    df = pd.DataFrame(rows, columns=["dataset", "model", "weight_decay", "weight", "seed", "epoch", "name", "value"])
    figs = []
    _catch(monkeypatch, figs)
    cfg = SimpleNamespace(datasets=("gaussians", "separable"), down_class=1)
    P.fraction_curves(df, cfg, tmp_path / "fraction_vs_epoch.png")
    titles = [ax.get_title() for ax in figs[-1][0].axes]
    assert titles[0].startswith("separable") and titles[-1].startswith("gaussians")
