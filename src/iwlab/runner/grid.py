"""Sweep grids: ``--grid key=v1,v2`` specs -> packed member-level values and a list of grid points.

Each grid point is a config (the profile plus ``--set`` overrides plus the point's values); its cells
are the experiment's cells with the point as an id prefix (``lr_scale=2/mlp``). Grid keys that an
experiment lists in ``Experiment.pack_keys`` are member-level (e.g. the synthetic experiment's class
``weights``): their values are merged into one tuple instead of separate grid points, so the ensemble
trainer trains them together as one pack. ``--seeds N`` likewise packs N seeds into every ensemble.

Example:
    >>> point_label({"lr_scale": 2.0, "seed": 10})
    'lr_scale=2.0,seed=10'
"""

from __future__ import annotations

import dataclasses
import itertools
import typing
from collections.abc import Sequence
from typing import Any

from iwlab.config import ConfigError, apply_overrides, parse_value


def parse_grid(cfg: Any, grid: Sequence[str], pack_keys: Sequence[str] = ()) -> tuple[dict, list[dict]]:
    """Split ``key=v1,v2`` specs into packed overrides and a list of grid points.

    Returns ``(packed, points)``: ``packed`` maps each member-level key to the tuple of all its
    values; ``points`` is the product of the other keys' values (``[{}]`` when there are none).
    A key given twice is one axis with the values of both, in order and without repeats. A
    tuple-valued key that is not packed takes values separated by ``;`` (``datasets=separable;moons``).

    Raises:
        ConfigError: an unknown key, an unparsable value, or a key with no values.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class C:
        ...     epochs: int = 3
        ...     weights: tuple[float, ...] = (1.0,)
        >>> parse_grid(C(), ["epochs=5,10", "weights=1,0.5"], ["weights"])
        ({'weights': (1.0, 0.5)}, [{'epochs': 5}, {'epochs': 10}])
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
            packed[key] = merge_values(packed.get(key, ()), parse_value(values, typ, key))
            continue
        items = [v for v in values.split(",") if v.strip()]
        if typing.get_origin(typ) is tuple:  # a tuple-valued key: values separated by ';'
            items = [v for v in values.split(";") if v.strip()]
        if not items:
            raise ConfigError(f"--grid {key}: no values given")
        # a repeated --grid key extends that key's axis (--grid a=1,2 --grid a=3 sweeps 1, 2, 3)
        axes[key] = list(merge_values(axes.get(key, ()), [parse_value(v, typ, key) for v in items]))
    points = [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
    return packed, points


def merge_values(old: Sequence[Any], new: Sequence[Any]) -> tuple:
    """``old`` then the values of ``new`` not in it yet (a value given twice, even in one spec, is swept once).

    Example:
        >>> merge_values((1.0,), (2.0, 1.0, 2.0))
        (1.0, 2.0)
    """
    out: list[Any] = []
    for v in (*old, *new):
        if v not in out:
            out.append(v)
    return tuple(out)


def point_label(point: dict) -> str:
    """A grid point as ``key=value,...`` in grid order: the cell id prefix and the ``grid_point`` label."""
    return ",".join(f"{k}={v}" for k, v in point.items())


def check_set_and_grid(overrides: Sequence[str], grid: Sequence[str]) -> None:
    """Refuse a key given both with ``--set`` and with ``--grid``.

    The grid would silently win while config.json kept the ``--set`` value.

    Raises:
        ConfigError: naming the keys given twice.

    Example:
        >>> check_set_and_grid(["epochs=5"], ["lr_scale=1,2"])
    """
    set_keys = {o.split("=", 1)[0].strip() for o in overrides if "=" in o}
    grid_keys = {g.split("=", 1)[0].strip() for g in grid if "=" in g}
    if set_keys & grid_keys:
        both = ", ".join(sorted(set_keys & grid_keys))
        raise ConfigError(f"{both}: given both with --set and with --grid; give each key once")
