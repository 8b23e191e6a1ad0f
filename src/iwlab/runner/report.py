"""A run's report: figures (from the store and saved artifacts) plus the experiment's summary.

:func:`write_report` is the last step of every run and sweep; it can be called again on a finished
run directory (e.g. to redraw the figures in another format).

Example::

    write_report("runs/synthetic-quick", figure_format="svg")
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

from iwlab.config import apply_overrides, config_from_dict
from iwlab.experiments import get_experiment
from iwlab.experiments.base import Experiment
from iwlab.plots import figures_for
from iwlab.report import render_report
from iwlab.runner.grid import parse_grid, point_label
from iwlab.store import Store, failure_reason, load

FIGURE_FORMATS = ("png", "pdf", "svg")

FIXTURE_NOTE = (
    "**Data: a generated stand-in (fixture=true), not the real dataset.** These numbers test the "
    "pipeline; they say nothing about the paper's claims.\n\n"
)


def check_figure_format(fmt: str) -> None:
    """Raise ``ValueError`` unless ``fmt`` is one of :data:`FIGURE_FORMATS`.

    Example:
        >>> check_figure_format("svg")
    """
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"figure format must be one of {', '.join(FIGURE_FORMATS)}; got '{fmt}'")


def failed_cells(run_dir: str | Path) -> list[tuple[str, str]]:
    """``(cell id, one-line reason)`` of every cell whose status is ``failed`` (tracebacks in ``runs.error``).

    Example::

        failed_cells("runs/synthetic-quick")  # -> [("logreg", "ValueError: ...")]
    """
    store = Store(Path(run_dir) / "results.db")
    try:
        return [(r["run_id"], failure_reason(r["error"])) for r in store.runs() if r["status"] == "failed"]
    finally:
        store.close()


def write_report(
    run_dir: str | Path, *, progress: bool = True, debug: bool = False, figure_format: str = "png"
) -> Path:
    """Figures (from the store) plus the experiment's summary, as report.md and report.html; returns the html.

    With no metrics at all (every cell failed) there are no figures: the report lists the failed
    cells and their reasons. If drawing the figures fails, the report says so (one line, also
    printed) instead of the run ending in a traceback; ``debug=True`` re-raises instead. A sweep
    gets the experiment's summary once per grid point and no figures.

    Raises:
        ValueError: an unknown figure format.
        StoreError: the run directory holds no readable results store.
    """
    check_figure_format(figure_format)
    run_dir = Path(run_dir)
    store = Store(run_dir / "results.db")
    try:
        meta = store.meta()
        runs = store.runs()
        exp = get_experiment(meta["experiment"])
        cfg = config_from_dict(exp.config, meta["config"])
        df = load(run_dir)
        notes: list[str] = []
        figures: list[Path] = []
        if df.empty:
            summary = "No metrics were recorded: every cell failed (reasons below)."
        elif meta.get("sweep"):
            summary = sweep_summary(exp, df, meta)
        else:
            (run_dir / "figures").mkdir(exist_ok=True)
            t0 = time.monotonic()
            if progress:
                print("iwlab: drawing figures ...", file=sys.stderr)
            try:
                figures = list(figures_for(exp.name)(run_dir, df, cfg, fmt=figure_format))
            except Exception as e:
                if debug:
                    raise
                note = f"figures could not be drawn: {type(e).__name__}: {e}"
                print(f"iwlab: {note} (rerun with --debug for the traceback)", file=sys.stderr)
                notes.append(note)
            for f in figures:
                store.add_artifact("", "figure", str(Path(f).relative_to(run_dir)))
            if progress:
                print(f"iwlab: {len(figures)} figures in {time.monotonic() - t0:.0f} s", file=sys.stderr)
            summary = exp.summary(df, cfg)
        if getattr(cfg, "fixture", False):  # say it before any number: these are not the paper's data
            summary = FIXTURE_NOTE + summary
        if notes:
            summary += "\n\n" + "\n".join(f"**Note:** {n}" for n in notes)
        return render_report(run_dir, meta, runs, figures, summary)
    finally:
        store.close()


def sweep_summary(exp: Experiment, df: pd.DataFrame, meta: dict) -> str:
    """The experiment's own summary for each grid point, one section each.

    Each member carries its point's label (``grid_point``, see :func:`iwlab.runner.execute.grid_labels`);
    its own labels may differ from the point's values (seed, lr), so they cannot select the point.

    Example::

        sweep_summary(get_experiment("synthetic"), iwlab.results.load(d), store.meta())
    """
    base = config_from_dict(exp.config, meta["config"])
    spec = meta["sweep"]
    _, points = parse_grid(base, spec["grid"], exp.pack_keys)
    parts = [
        f"Sweep over {', '.join(spec['grid']) or 'no grid'}; seeds: {spec.get('seeds') or base.seeds}.",
        "",
    ]
    for point in points:
        if not point:  # no grid (only packed keys or --seeds): one point, every row
            sub = df
        else:
            sub = df[df.grid_point == point_label(point)] if "grid_point" in df else df.iloc[:0]
        cfg = apply_overrides(base, point)
        parts += [
            f"## {point_label(point) or 'all'}",
            "",
            exp.summary(sub, cfg) if not sub.empty else "(no results yet)",
            "",
        ]
    return "\n".join(parts)
