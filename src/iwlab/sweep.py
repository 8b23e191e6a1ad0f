"""Sweeps: the product of ``--grid key=v1,v2`` values x ``--seeds N``, resumable, local or on Ray.

Each grid point is a config (the profile plus ``--set`` overrides plus the point's values); its cells
are the experiment's cells with the point as an id prefix (``lr_scale=2/mlp``). Grid keys that an
experiment lists in ``PACK_KEYS`` are member-level (e.g. the synthetic experiment's ``weights`` and
``l2``): their values are merged into one tuple instead of separate grid points, so the ensemble
trainer trains them together as one pack. ``--seeds N`` likewise packs N seeds into every ensemble.

Example:
    >>> # run_sweep("synthetic", "quick", [], ["lr_scale=1,2", "l2=0,0.01"], seeds=2, out="runs/sw")
"""

from __future__ import annotations

import dataclasses
import itertools
import typing
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from iwlab.config import ConfigError, apply_overrides, config_to_dict, parse_value
from iwlab.experiments import get_experiment, make_config


def parse_grid(cfg: Any, grid: Sequence[str], pack_keys: Sequence[str] = ()) -> tuple[dict, list[dict]]:
    """Split ``key=v1,v2`` specs into packed overrides and a list of grid points.

    Returns ``(packed, points)``: ``packed`` maps each member-level key to the tuple of all its
    values; ``points`` is the product of the other keys' values (``[{}]`` when there are none).
    A key given twice is one axis with the values of both, in order and without repeats.

    Raises:
        ConfigError: an unknown key, an unparsable value, or a key with no values.

    Example:
        >>> from iwlab.experiments.synthetic import Config
        >>> parse_grid(Config(), ["epochs=5,10", "l2=0,0.1"], ["l2"])
        ({'l2': (0.0, 0.1)}, [{'epochs': 5}, {'epochs': 10}])
    """
    hints = typing.get_type_hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}
    packed: dict[str, tuple] = {}
    axes: dict[str, list[Any]] = {}  # insertion order: the order keys first appear
    for spec in grid:
        if "=" not in spec:
            raise ConfigError(f"--grid expects key=v1,v2,..., got '{spec}'")
        key, values = (t.strip() for t in spec.split("=", 1))
        if key not in names:
            apply_overrides(cfg, {key: None})  # raises the standard unknown-key error
        typ = hints[key]
        if key in pack_keys and typing.get_origin(typ) is tuple:
            # a repeated --grid of a packed key adds its values to the same ensemble
            packed[key] = _merge(packed.get(key, ()), parse_value(values, typ, key))
            continue
        items = [v for v in values.split(",") if v.strip()]
        if typing.get_origin(typ) is tuple:  # a tuple-valued key: values separated by ';'
            items = [v for v in values.split(";") if v.strip()]
        if not items:
            raise ConfigError(f"--grid {key}: no values given")
        # a repeated --grid key extends that key's axis (--grid a=1,2 --grid a=3 sweeps 1, 2, 3)
        axes[key] = list(_merge(axes.get(key, ()), [parse_value(v, typ, key) for v in items]))
    points = [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
    return packed, points


def _merge(old: Sequence[Any], new: Sequence[Any]) -> tuple:
    """``old`` then the values of ``new`` not in it yet (a value given twice, even in one spec, is swept once).

    Example:
        >>> _merge((1.0,), (2.0, 1.0, 2.0))
        (1.0, 2.0)
    """
    out: list[Any] = []
    for v in (*old, *new):
        if v not in out:
            out.append(v)
    return tuple(out)


def _label(point: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in point.items())


def run_sweep(
    name: str,
    profile: str = "quick",
    overrides: Sequence[str] = (),
    grid: Sequence[str] = (),
    *,
    seeds: int | None = None,
    out: str | Path | None = None,
    device: str = "cpu",
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    progress: bool = True,
    debug: bool = False,
    figure_format: str = "png",
) -> Path:
    """Run or resume a sweep; returns the run directory (same layout and store as ``iwlab run``).

    Example:
        >>> # run_sweep("synthetic", "quick", grid=["lr_scale=1,2"], seeds=2, out="runs/sw")
    """
    from iwlab.provenance import provenance
    from iwlab.runner import check_device, check_same_config, default_out, preflight, run_tasks, write_report
    from iwlab.store import Store

    exp = get_experiment(name)
    check_device(device)
    set_keys = {o.split("=", 1)[0].strip() for o in overrides if "=" in o}
    grid_keys = {g.split("=", 1)[0].strip() for g in grid if "=" in g}
    if set_keys & grid_keys:  # the grid would silently win while config.json kept the --set value
        both = ", ".join(sorted(set_keys & grid_keys))
        raise ConfigError(f"{both}: given both with --set and with --grid; give each key once")
    base = make_config(name, profile, list(overrides))
    if seeds is not None:
        if not hasattr(base, "seeds"):
            raise ConfigError(f"experiment {name} has no 'seeds' setting")
        base = apply_overrides(base, {"seeds": seeds})
    packed, points = parse_grid(base, grid, getattr(exp, "PACK_KEYS", ()))
    base = apply_overrides(base, packed)
    run_dir = Path(out) if out is not None else default_out(name, profile).with_name(f"{name}-{profile}-sweep")
    preflight(run_dir)
    spec = {"grid": list(grid), "seeds": seeds, "points": [_label(p) for p in points]}
    base_dict = config_to_dict(base)
    # every point's config is built (and validated) before anything runs
    configs = [(point, apply_overrides(base, point)) for point in points]
    store = Store(run_dir / "results.db")
    try:
        check_same_config(run_dir, store, name, profile, base_dict, {"sweep": spec})
        prov = provenance(device, run_dir)
        store.set_meta(experiment=name, profile=profile, config=base_dict, provenance=prov, sweep=spec)
        tasks = []
        for point, cfg in configs:
            for cid, params in exp.cells(cfg):
                full = f"{_label(point)}/{cid}" if point else cid
                tasks.append((full, config_to_dict(cfg), {**params, "_cell": cid, "_grid": point}))
        run_tasks(store, name, tasks, prov, run_dir, device, executor, workers, address, progress)
    finally:
        store.close()
    write_report(run_dir, progress=progress, debug=debug, figure_format=figure_format)
    return run_dir


def sweep_summary(exp: ModuleType, df: pd.DataFrame, meta: dict) -> str:
    """The experiment's own summary for each grid point, one section each.

    Example:
        >>> # sweep_summary(get_experiment("synthetic"), iwlab.results.load(d), store.meta())
    """
    from iwlab.config import config_from_dict

    base = config_from_dict(exp.Config, meta["config"])
    spec = meta["sweep"]
    packed, points = parse_grid(base, spec["grid"], getattr(exp, "PACK_KEYS", ()))
    parts = [
        f"Sweep over {', '.join(spec['grid']) or 'no grid'}; seeds: {spec.get('seeds') or base.seeds}.",
        "",
    ]
    for point in points:
        # each member carries its point's label (iwlab.runner.grid_labels); its own labels may differ
        # from the point's values (seed, lr), so they cannot select the point
        if not point:  # no grid (only packed keys or --seeds): one point, every row
            sub = df
        else:
            sub = df[df.grid_point == _label(point)] if "grid_point" in df else df.iloc[:0]
        cfg = apply_overrides(base, point)
        parts += [
            f"## {_label(point) or 'all'}",
            "",
            exp.summary(sub, cfg) if not sub.empty else "(no results yet)",
            "",
        ]
    return "\n".join(parts)
