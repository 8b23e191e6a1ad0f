"""Figures of the experiments: they read only the results store and the artifacts saved in a run folder.

:data:`FIGURES` maps an experiment name to its figure function, ``"module:function"``, imported only
when a report is drawn (matplotlib and the figure modules stay out of ``iwlab list``). Each function is
``figures(run_dir: Path, df: pd.DataFrame, cfg, fmt: str = "png") -> list[Path]``: ``df`` is
:func:`iwlab.store.load` of the run, ``cfg`` the experiment's Config, ``fmt`` ``png``/``pdf``/``svg``.

Example:
    >>> FIGURES["cifar_resnet"]
    'iwlab.plots.cifar:figures'
    >>> figure_target("is_mnist")  # an old name resolves to its experiment's entry
    'iwlab.plots.importance:figures'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iwlab.experiments import canonical_name

FIGURES: dict[str, str] = {
    "synthetic": "iwlab.plots.synthetic:figures",
    "cifar_binary": "iwlab.plots.cifar:figures",
    "cifar_resnet": "iwlab.plots.cifar:figures",
    "cifar_imbalanced": "iwlab.plots.cifar:figures",
    "cifar_label_noise": "iwlab.plots.cifar:figures",
    "cifar_cars_trucks": "iwlab.plots.cifar:figures",
    "cifar_multiclass": "iwlab.plots.cifar:figures",
    "mrpc": "iwlab.plots.mrpc:figures",
    "importance_sampling_mnist": "iwlab.plots.importance:figures",
    "importance_sampling_cifar10": "iwlab.plots.importance:figures",
    "importance_sampling_ptb": "iwlab.plots.importance:figures",
    "label_shift": "iwlab.plots.label_shift:figures",
    "implicit_bias": "iwlab.plots.implicit_bias:figures",
    "remedies": "iwlab.plots.remedies:figures",
}

FigureFn = Callable[..., list[Path]]


def figure_target(name: str) -> str:
    """The ``"module:function"`` drawing experiment ``name``'s figures (aliases resolve too).

    Raises:
        ValueError: ``name`` is no registered experiment.
        KeyError: the experiment has no entry in :data:`FIGURES`.
    """
    canon = canonical_name(name)
    if canon not in FIGURES:
        raise KeyError(f"no figures registered for experiment '{canon}' (iwlab.plots.FIGURES)")
    return FIGURES[canon]


def figures_for(name: str) -> FigureFn:
    """The figure function of experiment ``name`` (aliases resolve too), imported on first use.

    Raises:
        ValueError: ``name`` is no registered experiment.
        KeyError: the experiment has no entry in :data:`FIGURES`.
        ImportError: the figure module cannot be imported.
        AttributeError: the module lacks the function.
    """
    module, _, attr = figure_target(name).partition(":")
    fn: Any = getattr(importlib.import_module(module), attr)
    return fn
