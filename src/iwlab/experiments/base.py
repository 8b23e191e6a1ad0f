"""What an experiment provides, and the context a cell runs in.

An experiment module (e.g. :mod:`iwlab.experiments.synthetic`) defines ``EXPERIMENT``, an
:class:`Experiment`: its name, description, ``Config`` dataclass (defaults = the ``quick`` profile),
profiles (name -> overrides), ``cells``, ``run_cell`` and ``summary``. Figures live a layer up, in
:mod:`iwlab.plots` (they read only the store and saved artifacts), and are looked up by name there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


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


@dataclass(frozen=True)
class Experiment:
    """One registered experiment: what ``iwlab run NAME`` builds, trains and summarizes.

    Attributes:
        name: the registry name (``iwlab run NAME``).
        description: one line for ``iwlab list``: the setting and the paper's figures or tables.
        config: the Config dataclass; it holds only the keys this experiment uses, its defaults are the
            ``quick`` profile, and its ``validate()`` rejects values the experiment cannot use.
        profiles: profile name -> overrides of the defaults (``quick`` is ``{}``; ``paper``; ``ci``).
        cells: ``cells(cfg) -> [(cell_id, params)]``, the independent units of work.
        run_cell: ``run_cell(cfg, cell_id, params, ctx) -> CellResult``; runs in a worker process.
        summary: ``summary(df, cfg) -> str``, Markdown with the numbers for the report.
        pack_keys: config keys whose values one cell trains together (a sweep over them stays in one cell).
        aliases: older names that still resolve to this experiment.
        gpu_profiles: profiles sized for a GPU (hours per epoch on a CPU): a run of one on the CPU warns.

    Example:
        >>> from iwlab.experiments import get_experiment
        >>> get_experiment("synthetic").name
        'synthetic'
    """

    name: str
    description: str
    config: type
    profiles: Mapping[str, Mapping[str, Any]]
    cells: Callable[[Any], list[tuple[str, dict[str, Any]]]]
    run_cell: Callable[[Any, str, dict[str, Any], CellContext], CellResult]
    summary: Callable[[pd.DataFrame, Any], str]
    pack_keys: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    gpu_profiles: tuple[str, ...] = ()
