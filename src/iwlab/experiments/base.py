"""What an experiment provides, and the context a cell runs in.

An experiment module (e.g. :mod:`iwlab.experiments.synthetic`) defines:

* ``NAME``, ``DESCRIPTION``;
* ``Config``: a dataclass whose defaults are the ``quick`` profile, and ``PROFILES``: name -> overrides;
* ``cells(cfg) -> list[tuple[str, dict]]``: independent units of work (one ensemble each);
* ``run_cell(cfg, cell_id, params, ctx) -> CellResult``: trains one cell (runs in a worker);
* ``figures(run_dir, df, cfg) -> list[Path]``: figures from stored results (plots never train);
* ``summary(df, cfg) -> str``: Markdown with the numbers for the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class CellContext:
    """Where a cell keeps its files and what it may use.

    Example:
        >>> CellContext(run_dir=Path("."), cell_id="a/b").slug
        'a__b'
    """

    run_dir: Path
    cell_id: str
    device: str = "cpu"
    progress: Any = True  # True/False for an epoch bar, or a callable(epoch, total) from the driver

    @property
    def slug(self) -> str:
        """File-system-safe cell id."""
        return self.cell_id.replace("/", "__").replace("=", "-").replace(",", "_")

    @property
    def checkpoint_path(self) -> Path:
        """The cell's checkpoint file."""
        return self.run_dir / "checkpoints" / f"{self.slug}.pt"

    def artifact_path(self, suffix: str) -> Path:
        """A file for the cell's stored arrays, under ``artifacts/``."""
        p = self.run_dir / "artifacts" / f"{self.slug}{suffix}"
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


@dataclass
class CellResult:
    """What a worker hands back to the driver, which alone writes to the store.

    Example:
        >>> CellResult(members=[{"weight": 1.0}], rows=[(1, 0, "train_loss", 0.7)]).diverged
        [-1]
    """

    members: list[dict[str, Any]]
    rows: list[tuple[int, int, str, float]]
    diverged: list[int] = field(default_factory=list)
    artifacts: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.diverged:
            self.diverged = [-1] * len(self.members)
