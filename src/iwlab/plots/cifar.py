"""Figures of the six CIFAR-10 experiments (Byrd & Lipton 2019, Figs. 4, 5, A.3-A.9), from the store and the
saved prediction artifacts.

:func:`figures` is the entry of every CIFAR-10 experiment in :data:`iwlab.plots.FIGURES`; it picks the
figures by the run's Config class and captions them with what to look for (Byrd & Lipton's claim for
each variant). :func:`agreement_from_artifacts` recomputes the agreement table, with the permutation null
of the gap, from the stored ``*_predictions.npz`` files. The drawings live in :mod:`iwlab.plots.cifar_curves`.

Example:
    >>> _fmt_cfg("Fig. A.3: weight decay {weight_decay:g}", BinaryConfig())
    'Fig. A.3: weight decay 0.001'
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from iwlab.experiments.cifar_binary import BinaryConfig
from iwlab.experiments.cifar_cars_trucks import CarsTrucksConfig
from iwlab.experiments.cifar_common import SETS, VARIANT_ORDER, TwoClassConfig
from iwlab.experiments.cifar_imbalanced import ImbalancedConfig
from iwlab.experiments.cifar_label_noise import LabelNoiseConfig
from iwlab.experiments.cifar_multiclass import MulticlassConfig
from iwlab.experiments.cifar_resnet import ResNetConfig
from iwlab.experiments.cifar_summary import NULL_COLUMNS
from iwlab.experiments.cifar_train import agreement_metrics
from iwlab.functional.metrics import agreement, member_grid
from iwlab.plots import style as S
from iwlab.plots.cifar_curves import (
    accuracy_curves,
    fraction_curves,
    fraction_vs_weight,
    imbalanced_curves,
    weighted_accuracy_curves,
)

__all__ = ["FIGURES_BINARY", "LOOK_FOR", "agreement_from_artifacts", "figures"]

# the experiment of each two-class Config (for the figure names and titles below)
_EXPERIMENT_OF = {
    BinaryConfig: "cifar_binary",
    ResNetConfig: "cifar_resnet",
    LabelNoiseConfig: "cifar_label_noise",
    CarsTrucksConfig: "cifar_cars_trucks",
}

FIGURES_BINARY = {
    # experiment -> variant -> (file, title); Fig. 4 (a-c) is the plain variant
    "cifar_binary": {
        "plain": ("fig4abc_fraction_vs_epoch.png", "Fig. 4 (a-c): fraction predicted as {pos}, plain CNN"),
        "l2": ("figA3_l2_fraction_vs_epoch.png", "Fig. A.3: with L2 (weight decay {weight_decay:g})"),
        "dropout": ("figA4_dropout_fraction_vs_epoch.png", "Fig. A.4: with dropout {dropout:g}"),
        "adam": ("figA9_adam_fraction_vs_epoch.png", "Fig. A.9: Adam, lr {lr_adam:g}"),
    },
    "cifar_resnet": {
        "plain": ("figA5_resnet_fraction_vs_epoch.png", "Fig. A.5: ResNet without batch norm"),
        "batchnorm": ("figA5_resnet_bn_fraction_vs_epoch.png", "Fig. A.5: ResNet with batch norm"),
    },
    "cifar_label_noise": {
        "plain": ("figA7_label_noise_fraction_vs_epoch.png", "Fig. A.7: {label_noise:.0%} label noise per class"),
    },
    "cifar_cars_trucks": {
        "plain": ("figA8_cars_trucks_fraction_vs_epoch.png", "Fig. A.8: automobile (0) vs truck (1)"),
    },
}

# what to look for in each variant's fraction curves: Byrd & Lipton's claim for it (sections 4-5)
LOOK_FOR = {
    "plain": "Look for: the lines of different weights start apart and converge as training goes on (the effect "
    "of the weights fades; Byrd & Lipton Fig. 4 a-c).",
    "l2": "Look for: with L2 the lines stay apart longer than without (L2 keeps some of the weights' effect, "
    "Fig. A.3).",
    "dropout": "Look for: with dropout the lines still converge, as without regularization (Fig. A.4).",
    "adam": "Look for: with Adam the lines still converge (Fig. A.9).",
    "batchnorm": "Look for: with batch norm the lines stay apart (Fig. A.5: an effect remains with batch norm).",
}


def _fmt_cfg(template: str, cfg: Any) -> str:
    return template.format(pos=cfg.classes[1] if hasattr(cfg, "classes") else "", **asdict(cfg))


def _permutations(run_dir: Path) -> int:
    """The run's ``agreement_permutations`` (from ``config.json``; the default for runs made before it)."""
    path = run_dir / "config.json"
    cfg = json.loads(path.read_text()).get("config", {}) if path.exists() else {}
    return int(cfg.get("agreement_permutations", TwoClassConfig.agreement_permutations))


def agreement_from_artifacts(run_dir: str | Path, n_permutations: int | None = None) -> pd.DataFrame:
    """Recompute the agreement table from the stored ``artifacts/*_predictions.npz`` (one row per cell and set).

    Cells with a diverged model are left out, as in the summary. The calibrated columns come from the same
    code and permutation seed as the recorded metrics
    (:func:`iwlab.experiments.cifar_train.agreement_metrics`), so they equal the summary's.

    Args:
        run_dir: the run folder.
        n_permutations: permuted grids of the null; None: the run's ``agreement_permutations``.

    Returns:
        Columns ``cell, set, across_weightings, across_seeds`` (:func:`iwlab.functional.metrics.agreement`)
        and ``gap, null_gap, null_lo, null_hi, p_above, p_below`` (the last five absent with 0
        permutations or one weighting); empty when no predictions were stored.

    Raises:
        ValueError: a file whose models do not form a weight x seed grid.

    Example:
        >>> import tempfile
        >>> agreement_from_artifacts(tempfile.mkdtemp()).empty
        True
    """
    run_dir = Path(run_dir)
    n = _permutations(run_dir) if n_permutations is None else n_permutations
    rows = []
    for path in sorted((run_dir / "artifacts").glob("*_predictions.npz")):
        with np.load(path) as z:
            if "diverged" in z and z["diverged"].any():
                continue  # as in the summary: agreement only where every model trained
            weights, seeds = z["weight"].tolist(), z["seed"].astype(int).tolist()
            for name in SETS:
                if f"pred_{name}" not in z or z[f"pred_{name}"].shape[1] == 0:
                    continue
                grid = member_grid(z[f"pred_{name}"], weights, seeds)  # (W, S, N)
                a = agreement(grid)
                calibrated = agreement_metrics(grid, n)
                rows.append(
                    {
                        "cell": path.name.removesuffix("_predictions.npz"),
                        "set": name,
                        **a,
                        **{NULL_COLUMNS[k]: v for k, v in calibrated.items()},
                    }
                )
    return pd.DataFrame(rows)


def _variant_figures(df: pd.DataFrame, cfg: Any, fig_dir: Path, fmt: str) -> list[Path]:
    """Fraction-vs-epoch per variant (Fig. 4 a-c style) and fraction-vs-weight at the last epoch (4 d-f)."""
    experiment = _EXPERIMENT_OF[type(cfg)]
    variants = cfg.variants if isinstance(cfg, BinaryConfig | ResNetConfig) else ("plain",)
    prefix = f"frac_{cfg.classes[1]}"
    classes = (cfg.classes[0], cfg.classes[1])
    specs = FIGURES_BINARY[experiment]
    weights = sorted(df.weight.unique())
    out: list[Path] = []
    for variant in variants:
        d = df[df.variant == variant]
        if d.empty:
            continue
        name, title = specs.get(variant, (f"{variant}_fraction_vs_epoch.png", f"{variant}"))
        look = LOOK_FOR.get(variant, "")
        if experiment == "cifar_resnet" and variant == "plain":
            look = "Look for: without batch norm the lines converge, as with the plain CNN (Fig. A.5)."
        out.append(
            fraction_curves(
                d, prefix, fig_dir / name, _fmt_cfg(title, cfg), fmt, classes=classes, weights=weights, look_for=look
            )
        )
    shown = [v for v in VARIANT_ORDER if v in set(df.variant)]
    if shown:
        paper = experiment == "cifar_binary"
        name = "fig4def_fraction_vs_weight" if paper else "fraction_vs_weight"
        title = "Fig. 4 (d-f): last epoch" if paper else f"Fraction predicted as {cfg.classes[1]} at the last epoch"
        look = (
            "Look for: flat lines (the fraction no longer depends on the weight late in training) without "
            "regularization and with dropout; a slope with L2."
        )
        out.append(fraction_vs_weight(df, prefix, shown, fig_dir / name, title, fmt, look_for=look))
    return out


def figures(run_dir: Path, df: pd.DataFrame, cfg: Any, fmt: str = "png") -> list[Path]:
    """All figures of a CIFAR-10 run, from the store, saved as ``fmt`` under ``run_dir/figures`` with their
    captions (``captions.json``, shown in the report).

    Args:
        run_dir: the run folder.
        df: its metrics (:func:`iwlab.store.load`).
        cfg: its config: one of the six CIFAR-10 experiments' Config classes.
        fmt: ``"png"``, ``"pdf"`` or ``"svg"`` (``iwlab run --figure-format``).

    Returns:
        The files written, in report order (none when ``df`` is empty).

    Raises:
        ValueError: ``fmt`` is not a known format.
        KeyError: ``cfg`` is not a CIFAR-10 experiment's Config.

    Example::

        figures(Path("runs/cifar_binary-quick"), iwlab.store.load("runs/cifar_binary-quick"), cfg, fmt="svg")
    """
    fig_dir = S.figure_dir(run_dir, fmt)
    if df.empty:
        return []
    if isinstance(cfg, MulticlassConfig):
        look = (
            "Look for: weighting helps the weighted accuracy early (gain above 0) and the benefit dissipates with "
            "training (Byrd & Lipton Fig. 5)."
        )
        return [weighted_accuracy_curves(df, cfg, fig_dir / "fig5_weighted_acc_vs_epoch", fmt, look_for=look)]
    if isinstance(cfg, ImbalancedConfig):
        look = (
            "Look for: sub-sampling shifts the fractions towards the majority class, and late in training the dashed "
            "(weighted) lines lie on the solid ones: the weights do not undo the shift (Byrd & Lipton Fig. A.6)."
        )
        prefix = f"frac_{cfg.classes[1]}"
        out = [imbalanced_curves(df, prefix, fig_dir / "figA6_imbalanced_fraction_vs_epoch", fmt, look_for=look)]
    else:
        out = _variant_figures(df, cfg, fig_dir, fmt)
    look = "Look for: training accuracy reaching 1 (the claim that the weights' effect fades needs it)."
    out.append(accuracy_curves(df, fig_dir / "accuracy_vs_epoch", fmt, look_for=look))
    return out
