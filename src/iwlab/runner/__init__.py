"""Running experiments: the one execution path behind ``iwlab run`` and ``iwlab sweep``.

* :mod:`~iwlab.runner.run`: :func:`run` (a run is a sweep with no grid), and its two spellings
  :func:`run_experiment` and :func:`run_sweep`;
* :mod:`~iwlab.runner.grid`: ``--grid`` specs -> packed values and grid points;
* :mod:`~iwlab.runner.execute`: cells -> in-process, a process pool or Ray -> the store;
* :mod:`~iwlab.runner.rundir`: the run directory (default location, preflight, same-config check);
* :mod:`~iwlab.runner.report`: figures and summary -> report.md and report.html;
* :mod:`~iwlab.runner.progress`: the cells bar and its ETA.

Example::

    from iwlab.runner import run
    run_dir = run("synthetic", "quick", ["epochs=50"], out="runs/demo")
"""

from iwlab.runner.execute import grid_labels, run_tasks
from iwlab.runner.grid import parse_grid
from iwlab.runner.progress import eta_text
from iwlab.runner.report import FIGURE_FORMATS, failed_cells, sweep_summary, write_report
from iwlab.runner.run import run, run_experiment, run_sweep
from iwlab.runner.rundir import RunError, check_device, check_same_config, default_out, preflight

__all__ = [
    "FIGURE_FORMATS",
    "RunError",
    "check_device",
    "check_same_config",
    "default_out",
    "eta_text",
    "failed_cells",
    "grid_labels",
    "parse_grid",
    "preflight",
    "run",
    "run_experiment",
    "run_sweep",
    "run_tasks",
    "sweep_summary",
    "write_report",
]
