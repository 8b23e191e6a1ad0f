"""How the importance-sampling figures draw a method: one colour, line style and label per method in every
figure (uniform always black, Okabe-Ito colours for the rest), and the paper's figure number per dataset.

Shared by :mod:`iwlab.plots.importance` and :mod:`iwlab.plots.importance_extra`.

Example:
    >>> df = pd.DataFrame({"method": ["uniform"], "strategy": ["uniform"], "k": [1.0]})
    >>> method_styles(df, ("uniform",))["uniform"]["label"]
    'Uniform'
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from iwlab.plots import style as S
from iwlab.sampling import SamplerSpec

__all__ = ["dropped_note", "method_handles", "method_specs", "method_styles", "panel"]

_LINESTYLE = {"uniform": "-", "oracle": "-", "approx": "--", "pcg": ":"}
# uniform is black in every figure; the other methods take the rest of the palette in the config's order
_METHOD_COLORS = (*S.PALETTE[1:], S.OKABE_ITO["sky_blue"])
# the paper's figure number per dataset: Fig. 1 is MNIST, 2 CIFAR-10, 3 Penn Treebank
_FIGURE = {"mnist": 1, "cifar10": 2, "ptb": 3}


def panel(cfg: Any, panel: str) -> str:
    """``"Fig. 1a"`` for MNIST's panel a; ``"Figs. 1a-3a"`` when the config names no known dataset."""
    n = _FIGURE.get(getattr(cfg, "DATASET", ""))
    return f"Fig. {n}{panel}" if n else f"Figs. 1{panel}-3{panel}"


def method_specs(df: pd.DataFrame, methods: Any) -> dict[str, SamplerSpec]:
    """Method -> its sampler spec, from the store's ``strategy`` and ``k`` member columns, in ``methods``' order.

    Methods without rows in ``df`` (not run, or failed) are left out.
    """
    if df.empty or not {"method", "strategy", "k"} <= set(df.columns):
        return {}
    runs = df.dropna(subset=["method"]).drop_duplicates("method").set_index("method")
    return {m: SamplerSpec(runs.strategy[m], float(runs.k[m])) for m in methods if m in runs.index}


def method_styles(df: pd.DataFrame, methods: Any) -> dict[str, dict[str, Any]]:
    """Per method: colour (distinct while there are at most 7 methods besides uniform), line style, label."""
    out, i = {}, 0
    for m, spec in method_specs(df, methods).items():
        if spec.strategy == "uniform":
            color = S.OKABE_ITO["black"]
        else:
            color = _METHOD_COLORS[i % len(_METHOD_COLORS)]
            i += 1
        out[m] = {"color": color, "ls": _LINESTYLE[spec.strategy], "label": spec.label, "lw": 1.5}
    return out


def method_handles(styles: dict[str, dict[str, Any]], band: str | None = None, marker: str | None = None) -> list:
    hs = [
        S.line_handle(st["color"], st["label"], ls=st["ls"], lw=st["lw"], marker=marker, ms=3) for st in styles.values()
    ]
    return [*hs, S.band_handle(band)] if band else hs


def dropped_note(n: int, what: str) -> str:
    return f" {n} {what} <= 0 cannot be drawn on the log axis and are left out." if n else ""


def mean_and_range(
    ax: Any, g: pd.DataFrame, style: dict[str, Any], ok: Any = True, band_ok: Any = True, scale: float = 1.0
) -> None:
    """One method's curve: the mean over seeds as a line, and the seeds' min-max as a band where >= 2 seeds ran.

    Args:
        g: one row per epoch with columns ``epoch``, ``mean``, ``min``, ``max``, ``count`` (seeds).
        style: the method's line style (:func:`method_styles`).
        ok: rows to draw (e.g. positive means on a log axis); band_ok: further rows allowed a band.
        scale: multiplies every value (100 for percent).
    """
    ok = pd.Series(ok, index=g.index) if not isinstance(ok, pd.Series) else ok
    ax.plot(g.epoch[ok], g["mean"][ok] * scale, marker="o", ms=3, **style)
    many = ok & (g["count"] >= 2) & band_ok
    if many.any():
        ax.fill_between(
            g.epoch[many], g["min"][many] * scale, g["max"][many] * scale, color=style["color"], alpha=0.1, lw=0
        )
