"""report.md / report.html: captions under every figure, png and svg embedded, pdf linked (issue 10, item 19);
and the verdict rule the summaries' one-line findings use (item 16)."""

import base64
import json
import math
import re

import pytest

from iwlab.experiments.findings import claim_match, finding_line, trend, trend_text
from iwlab.report import render_report

META = {"experiment": "synthetic", "profile": "quick", "config": {"epochs": 3}, "provenance": {}}
RUNS = [{"run_id": "mlp", "status": "done", "error": None}]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>'


def _figures(tmp_path):
    d = tmp_path / "figures"
    d.mkdir()
    (d / "a.png").write_bytes(PNG)
    (d / "b.svg").write_bytes(SVG)
    (d / "c.pdf").write_bytes(b"%PDF-1.4")
    return [d / "a.png", d / "b.svg", d / "c.pdf"]


def test_report_embeds_png_and_svg_links_pdf_and_shows_every_caption(tmp_path):
    figs = _figures(tmp_path)
    caps = {"a.png": "Look for: A & <b>.", "b.svg": "Look for: B.", "c.pdf": "Look for: C."}
    (tmp_path / "figures" / "captions.json").write_text(json.dumps(caps))
    page = render_report(tmp_path, META, RUNS, figs, "numbers").read_text()
    assert f'src="data:image/png;base64,{base64.b64encode(PNG).decode()}"' in page
    assert f'src="data:image/svg+xml;base64,{base64.b64encode(SVG).decode()}"' in page
    assert '<a href="figures/c.pdf">c.pdf (PDF)</a>' in page and "data:application/pdf" not in page
    got = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert got == [
        "<b>Figure 1</b> (a.png). Look for: A &amp; &lt;b&gt;.",
        "<b>Figure 2</b> (b.svg). Look for: B.",
        "<b>Figure 3</b> (c.pdf). Look for: C.",
    ]
    md = (tmp_path / "report.md").read_text()
    assert "![a](figures/a.png)\n\n**Figure 1** (a.png). Look for: A & <b>." in md
    assert "![b](figures/b.svg)\n\n**Figure 2** (b.svg). Look for: B." in md
    assert "[c.pdf (PDF)](figures/c.pdf)\n\n**Figure 3** (c.pdf). Look for: C." in md


def test_report_takes_explicit_captions_over_the_recorded_ones(tmp_path):
    figs = _figures(tmp_path)[:1]
    (tmp_path / "figures" / "captions.json").write_text(json.dumps({"a.png": "recorded"}))
    page = render_report(tmp_path, META, RUNS, figs, "x", captions={"a.png": "given"}).read_text()
    assert "(a.png). given</figcaption>" in page and "recorded" not in page


def test_report_refuses_a_figure_it_cannot_show(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "a.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(ValueError, match=r"figures: .*a\.jpg is not a \.png, \.svg or \.pdf file"):
        render_report(tmp_path, META, RUNS, [tmp_path / "figures" / "a.jpg"], "x")


@pytest.mark.parametrize(
    "first,last,word",
    [
        (0.41, 0.03, "shrinks"),  # 0.03 * 1.5 < 0.41
        (0.40, 0.38, "stays"),  # changed by less than the floor
        (0.10, 0.35, "grows"),  # 0.35 > 1.5 * 0.10
        (0.30, 0.21, "stays"),  # 0.21 * 1.5 = 0.315 >= 0.30: within the ratio
        (0.30, 0.19, "shrinks"),  # 0.19 * 1.5 = 0.285 < 0.30
        (0.01, 0.015, "none"),  # both under the floor
        (0.0, 0.05, "grows"),
    ],
)
def test_trend_follows_the_stated_rule(first, last, word):
    assert trend(first, last) == word


def test_trend_refuses_negative_or_infinite_sizes_and_reports_missing_ones():
    with pytest.raises(ValueError, match="first: an effect size must be finite and >= 0"):
        trend(-0.1, 0.2)
    with pytest.raises(ValueError, match="last: an effect size must be finite and >= 0"):
        trend(0.1, math.inf)
    assert trend_text(math.nan, 0.2) == "n/a (missing)" and claim_match(0.3, math.nan, ("shrinks",)) == "n/a (missing)"
    assert trend_text(0.41, 0.03) == "shrinks (0.410 -> 0.030)"


def test_claim_match_and_finding_line_follow_the_rows():
    assert claim_match(0.4, 0.05, ("shrinks",)) == "yes"
    assert claim_match(0.1, 0.35, ("shrinks",)) == "no"
    assert claim_match(0.01, 0.0, ("shrinks",)) == "n/a (no effect at the first epoch)"
    assert claim_match(0.4, 0.4, ("stays", "grows")) == "yes" and claim_match(0.4, 0.4, None) == "n/a"
    rows = [("a", "shrinks (0.400 -> 0.050)", "shrinks", "yes"), ("b", "grows (0.100 -> 0.350)", "shrinks", "no")]
    rows.append(("c", "stays (0.400 -> 0.400)", "no claim", "n/a"))
    assert finding_line(rows, "test points") == (
        "**Finding** (test points, computed from the table below): matches Byrd & Lipton in 1 of 2 rows; contradicts "
        "them in b: grows (0.100 -> 0.350), expected shrinks; no verdict for 1 row (see the last column)."
    )


def test_report_html_shows_the_finding_in_bold(tmp_path):
    page = render_report(tmp_path, META, RUNS, [], "**Finding** (x): 1 < 2.").read_text()
    assert "<p><b>Finding</b> (x): 1 &lt; 2.</p>" in page
