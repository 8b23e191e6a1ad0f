"""Run reports: Markdown and a self-contained HTML page with figures, numbers and provenance."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


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
            out.append(f"<p>{html.escape(line)}</p>")
    flush()
    return "\n".join(out)


def render_report(
    run_dir: Path,
    meta: dict[str, Any],
    runs: Sequence[dict[str, Any]],
    figures: Sequence[Path],
    summary: str,
) -> Path:
    """Write ``report.md`` and ``report.html`` (figures embedded) into ``run_dir``; returns the HTML path.

    Example:
        >>> # render_report(run_dir, store.meta(), store.runs(), figure_paths, "## numbers")
    """
    run_dir = Path(run_dir)
    counts: dict[str, int] = {}
    for r in runs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    prov = meta.get("provenance", {})
    head = (
        f"# {meta['experiment']} ({meta['profile']} profile)\n\n"
        f"Cells: {', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}. "
        f"Commit {prov.get('git', {}).get('commit')}"
        f"{' (dirty)' if prov.get('git', {}).get('dirty') else ''}, torch {prov.get('versions', {}).get('torch')}, "
        f"device {prov.get('device')}.\n"
    )
    failed = [r for r in runs if r["status"] == "failed"]
    fail_md = "".join(f"\n**Failed cell {r['run_id']}**: see runs.error in results.db\n" for r in failed)
    figs_md = "\n".join(f"![{Path(f).stem}]({Path(f).relative_to(run_dir).as_posix()})" for f in figures)
    md = (
        f"{head}\n## Results\n\n{summary}\n{fail_md}\n## Figures\n\n{figs_md}\n\n## Config\n\n```json\n"
        + json.dumps(meta.get("config"), indent=1)
        + "\n```\n\n## Provenance\n\n```json\n"
        + json.dumps(prov, indent=1)
        + "\n```\n"
    )
    (run_dir / "report.md").write_text(md)
    imgs = []
    for f in figures:
        b64 = base64.b64encode(Path(f).read_bytes()).decode()
        cap = html.escape(Path(f).name)
        imgs.append(
            f'<figure><img src="data:image/png;base64,{b64}" style="max-width:100%">'
            f"<figcaption>{cap}</figcaption></figure>"
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>iwlab report</title><style>"
        "body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "pre{background:#f4f4f4;padding:1em;overflow:auto}</style></head><body>"
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


def markdown_table(df: pd.DataFrame, *, index: bool = True, floatfmt: str = ".3g") -> str:
    """A DataFrame as a GitHub Markdown table (no ``tabulate`` dependency).

    Example:
        >>> import pandas as pd
        >>> print(markdown_table(pd.DataFrame({"a": [1.23456]}), index=False))
        | a |
        |---|
        | 1.23 |
    """

    def cell(v: object) -> str:
        return format(v, floatfmt) if isinstance(v, float) else str(v)

    cols = ([df.index.name or ""] if index else []) + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for key, row in df.iterrows():
        vals = ([cell(key)] if index else []) + [cell(v) for v in row.tolist()]
        lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines)
