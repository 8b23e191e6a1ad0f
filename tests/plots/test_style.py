"""The shared figure style (issue 10, item 19): colour-blind-safe colours, exact weight labels, log-space bands,
png/pdf/svg output with captions."""

import json
import math

import numpy as np
import pytest
from colour_maths import MAX_LUMINANCE, chroma, delta_e_deuteranope, luminance
from matplotlib.colors import to_rgb

from iwlab.plots import style as S


def test_every_palette_and_weight_colour_is_dark_enough_and_not_grey():
    colours = [*S.PALETTE, *S.CLASS_COLORS, S.BOUNDARY_COLOR]
    for n in (1, 2, 3, 5, 9, 17):
        colours += S.ordered_colors(n)
    for c in colours:
        assert luminance(c) <= MAX_LUMINANCE, c
        assert chroma(c) >= 0.1 or luminance(c) < 0.05, c  # no grey, black allowed


@pytest.mark.parametrize("n,min_delta", [(2, 15), (3, 15), (5, 15), (9, 7)])
def test_adjacent_weight_colours_stay_apart_for_deuteranopes(n, min_delta):
    cs = S.ordered_colors(n)
    assert min(delta_e_deuteranope(a, b) for a, b in zip(cs, cs[1:], strict=False)) >= min_delta


def test_class_colours_and_boundary_colour_differ_for_deuteranopes():
    c0, c1 = S.CLASS_COLORS
    assert delta_e_deuteranope(c0, c1) >= 30
    # the boundary is on neither class colour nor on the white-centred shading between them
    shading = [S.class_cmap()(t) for t in np.linspace(0, 1, 21)]
    assert min(np.linalg.norm(np.subtract(to_rgb(S.BOUNDARY_COLOR), to_rgb(s))) for s in shading) > 0.2


def test_weight_labels_are_exact():
    # the old synthetic label printed any weight >= 1 as "1" and 0.3 as "1/3"
    assert [S.weight_label(w) for w in (2.0, 1.0, 0.5, 0.3, 1 / 256)] == ["2", "1", "1/2", "0.3", "1/256"]
    assert S.weight_label(0.25, base=2) == "$2^{-2}$" and S.weight_label(3.0, base=2) == "3"
    with pytest.raises(ValueError, match="w: a weight must be positive"):
        S.weight_label(0.0)


def test_lognormal_band_is_geometric_mean_times_or_divided_by_geometric_std():
    # a log-normal with log-mean mu and log-std s has mean exp(mu + s^2/2), var (exp(s^2) - 1) exp(2 mu + s^2)
    mu, s = 0.3, 0.8
    mean = math.exp(mu + s * s / 2)
    std = math.sqrt((math.exp(s * s) - 1) * math.exp(2 * mu + s * s))
    lo, hi = S.lognormal_band([mean], [std])
    assert lo[0] == pytest.approx(math.exp(mu - s), rel=1e-12)
    assert hi[0] == pytest.approx(math.exp(mu + s), rel=1e-12)
    # std far above the mean: mean - std < 0, the log-space band stays positive
    lo, hi = S.lognormal_band([0.1, 1.0], [5.0, 0.0])
    assert (lo > 0).all() and lo[1] == hi[1] == 1.0


@pytest.mark.parametrize("fmt,magic", [("png", b"\x89PNG"), ("pdf", b"%PDF"), ("svg", b"<?xml")])
def test_save_writes_the_format_and_records_the_caption(tmp_path, fmt, magic):
    fig = S.new_figure((2, 2))
    fig.subplots().plot([0, 1], [0, 1])
    out = S.save(fig, tmp_path / "figs" / "curve.png", fmt, caption="Look for: a line.")
    assert out == tmp_path / "figs" / f"curve.{fmt}" and out.read_bytes()[: len(magic)] == magic
    assert json.loads((tmp_path / "figs" / "captions.json").read_text()) == {f"curve.{fmt}": "Look for: a line."}
    assert S.read_captions(tmp_path / "figs") == {f"curve.{fmt}": "Look for: a line."}


def test_save_refuses_an_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="fmt: figure format must be one of png, pdf, svg; got 'jpg'"):
        S.save(S.new_figure((2, 2)), tmp_path / "x", "jpg")
    assert not list(tmp_path.iterdir())
