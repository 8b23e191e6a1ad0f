"""Run reports: Markdown and a self-contained HTML page with figures, numbers and provenance."""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from iwlab.store import failure_reason
from iwlab.store.captions import read_captions


def _bold(text: str) -> str:
    """``**x**`` -> ``<b>x</b>`` in already escaped text (the findings and notes are bold in Markdown)."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)


def _md_table_to_html(md: str) -> str:
    """Tiny Markdown subset (headings, pipe tables, paragraphs) to HTML; enough for summaries."""
    out, table = [], []

    def flush() -> None:
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= set("-: ")]
            cells = [[html.escape(c.strip()) for c in r.strip().strip("|").split("|")] for r in rows]
            out.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in cells[0]) + "</tr>")
            out.extend("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in cells[1:])
            out.append("</table>")
            table.clear()

    for line in md.splitlines():
        if line.strip().startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + 1, 6)
            out.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            out.append(f"<p>{_bold(html.escape(line))}</p>")
    flush()
    return "\n".join(out)


_EMBED = {".png": "image/png", ".svg": "image/svg+xml"}  # browsers do not embed pdf reliably: it is linked


def _figure_captions(figures: Sequence[Path]) -> dict[str, str]:
    """Captions recorded by :func:`iwlab.plots.style.save` next to the figures, by file name."""
    caps: dict[str, str] = {}
    for folder in dict.fromkeys(Path(f).parent for f in figures):
        caps.update(read_captions(folder))
    return caps


def render_report(
    run_dir: Path,
    meta: dict[str, Any],
    runs: Sequence[dict[str, Any]],
    figures: Sequence[Path],
    summary: str,
    captions: Mapping[str, str] | None = None,
) -> Path:
    """Write ``report.md`` and ``report.html`` into ``run_dir``; returns the HTML path.

    Each figure is shown with its caption (what it shows and what to look for): in report.md as an image
    (png, svg) or a link (pdf) with the caption under it; in report.html as a ``<figure>`` whose
    ``<figcaption>`` is the caption, png and svg embedded as base64 data URIs (the page stands alone), pdf
    linked relative to the run folder (browsers do not embed pdf reliably).

    Args:
        run_dir: the run folder; the figures lie under it.
        meta: the store's meta (experiment, profile, config, provenance).
        runs: the store's run rows (status, error).
        figures: figure files (.png, .svg or .pdf) under ``run_dir``, in report order.
        summary: Markdown of the experiment's results.
        captions: file name -> caption; None: the ``captions.json`` files that
            :func:`iwlab.plots.style.save` wrote next to the figures.

    Raises:
        ValueError: a figure is not a .png, .svg or .pdf file, or is not under ``run_dir``.

    Example:
        >>> import tempfile
        >>> run_dir = Path(tempfile.mkdtemp())
        >>> meta = {"experiment": "synthetic", "profile": "quick", "config": {"epochs": 3}}
        >>> render_report(run_dir, meta, [{"status": "done"}], [], "## numbers").name
        'report.html'
        >>> (run_dir / "report.md").read_text().splitlines()[0]
        '# synthetic (quick profile)'

    """
    run_dir = Path(run_dir)
    for f in figures:
        if Path(f).suffix.lower() not in (*_EMBED, ".pdf"):
            raise ValueError(f"figures: {f} is not a .png, .svg or .pdf file")
    caps = dict(_figure_captions(figures) if captions is None else captions)
    counts: dict[str, int] = {}
    for r in runs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    prov = meta.get("provenance", {})
    kind = ", sweep: one section per grid point" if meta.get("sweep") else ""
    head = (
        f"# {meta['experiment']} ({meta['profile']} profile{kind})\n\n"
        f"Cells: {', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}. "
        f"Commit {prov.get('git', {}).get('commit')}"
        f"{' (dirty)' if prov.get('git', {}).get('dirty') else ''}, torch {prov.get('versions', {}).get('torch')}, "
        f"device {prov.get('device')}.\n"
    )
    failed = [r for r in runs if r["status"] == "failed"]
    fail_md = ""
    if failed:
        fail_md = (
            f"\n## Failed cells ({len(failed)} of {len(runs)})\n\n"
            "Their metrics are missing from the figures and tables. Full tracebacks: results.db, table runs, "
            "column error.\n\n| cell | reason |\n|---|---|\n"
            + "".join(f"| {r['run_id']} | {failure_reason(r['error']).replace('|', '/')} |\n" for r in failed)
        )
    figs_md = []
    for i, f in enumerate(figures, 1):
        rel = Path(f).relative_to(run_dir).as_posix()
        shown = f"[{Path(f).name} (PDF)]({rel})" if Path(f).suffix.lower() == ".pdf" else f"![{Path(f).stem}]({rel})"
        cap = caps.get(Path(f).name, "")
        figs_md.append(f"{shown}\n\n**Figure {i}** ({Path(f).name}). {cap}".rstrip() + "\n")
    md = (
        f"{head}\n## Results\n\n{summary}\n{fail_md}\n## Figures\n\n{chr(10).join(figs_md)}\n## Config\n\n```json\n"
        + json.dumps(meta.get("config"), indent=1)
        + "\n```\n\n## Provenance\n\n```json\n"
        + json.dumps(prov, indent=1)
        + "\n```\n"
    )
    (run_dir / "report.md").write_text(md)
    imgs = []
    for i, f in enumerate(figures, 1):
        f = Path(f)
        name = html.escape(f.name)
        if f.suffix.lower() == ".pdf":
            rel = html.escape(f.relative_to(run_dir).as_posix(), quote=True)
            shown = f'<p><a href="{rel}">{name} (PDF)</a></p>'
        else:
            b64 = base64.b64encode(f.read_bytes()).decode()
            shown = f'<img src="data:{_EMBED[f.suffix.lower()]};base64,{b64}" alt="{name}" style="max-width:100%">'
        cap = html.escape(caps.get(f.name, ""))
        imgs.append(f"<figure>{shown}<figcaption><b>Figure {i}</b> ({name}). {cap}</figcaption></figure>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>iwlab report</title><style>"
        "body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "pre{background:#f4f4f4;padding:1em;overflow:auto}"
        "figure{margin:1.5em 0}figcaption{font-size:0.9em;max-width:60em}</style></head><body>"
        + _md_table_to_html(head + "\n## Results\n" + summary + fail_md)
        + "<h2>Figures</h2>"
        + "\n".join(imgs)
        + "<h2>Config</h2><pre>"
        + html.escape(json.dumps(meta.get("config"), indent=1))
        + "</pre>"
        + "<h2>Provenance</h2><pre>"
        + html.escape(json.dumps(prov, indent=1))
        + "</pre></body></html>"
    )
    path = run_dir / "report.html"
    path.write_text(page)
    return path
