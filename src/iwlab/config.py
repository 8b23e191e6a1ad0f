"""Typed experiment configs: one dataclass per experiment, profiles as overrides, strict ``--set``.

A config is a frozen-by-convention ``dataclass``. Each experiment defines ``Config`` with defaults equal
to its ``quick`` profile and a ``PROFILES`` dict mapping profile names to overrides (the flax
``get_config`` pattern). ``--set key=value`` goes through :func:`apply_overrides`, which rejects unknown
keys (suggesting the closest valid one) and values that do not parse as the field's type.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class C:
    ...     lr: float = 0.1
    ...     weights: tuple[float, ...] = (1.0, 0.5)
    >>> apply_overrides(C(), ["lr=0.5", "weights=1,0.25"])
    C(lr=0.5, weights=(1.0, 0.25))
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

C = TypeVar("C")


class ConfigError(ValueError):
    """A bad config key or value; the message is one line and names the valid choices."""


def _closest(key: str, valid: Iterable[str]) -> str:
    valid = sorted(valid)
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f" Did you mean '{match[0]}'?" if match else ""
    return f"{hint} Valid keys: {', '.join(valid)}."


def _parse_scalar(text: str, typ: Any, key: str) -> Any:
    text = text.strip()
    if typ is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected a bool (true/false), got '{text}'.")
    if typ is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key}: expected an int, got '{text}'.") from None
    if typ is float:
        try:
            if "/" in text:  # weights like 1/256 read naturally on a command line
                num, den = text.split("/", 1)
                return float(num) / float(den)
            return float(text)
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"{key}: expected a float, got '{text}'.") from None
    if typ is str:
        return text
    raise ConfigError(f"{key}: values of type {typ} cannot be set from the command line.")


def parse_value(text: str, typ: Any, key: str = "value") -> Any:
    """Parse ``text`` as the annotated type ``typ`` (int, float, bool, str, Literal, tuples, Optional).

    Example:
        >>> parse_value("1,1/2,0.25", tuple[float, ...])
        (1.0, 0.5, 0.25)
    """
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin is typing.Literal:
        if text not in [str(a) for a in args]:
            raise ConfigError(f"{key}: expected one of {', '.join(map(str, args))}; got '{text}'.")
        return next(a for a in args if str(a) == text)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if type(None) in args and text.lower() in ("none", "null", ""):
            return None
        errors = []
        for a in non_none:
            try:
                return parse_value(text, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: cannot parse '{text}'.")
    if origin is tuple:
        items = [t for t in text.split(",") if t.strip() != ""]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(parse_value(t, args[0], key) for t in items)
        if len(items) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} comma-separated values, got '{text}'.")
        return tuple(parse_value(t, a, key) for t, a in zip(items, args, strict=True))
    return _parse_scalar(text, typ, key)


def _field_types(cfg: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(type(cfg))
    return {f.name: hints[f.name] for f in dataclasses.fields(cfg)}


def _check_type(value: Any, typ: Any, key: str) -> Any:
    """Coerce/validate a Python value (from a profile dict or JSON) against ``typ``."""
    if isinstance(value, str) and typ is not str:
        return parse_value(value, typ, key)
    origin = typing.get_origin(typ)
    if origin is tuple and isinstance(value, list | tuple):
        args = typing.get_args(typ)
        elem = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        if elem is None:
            return tuple(_check_type(v, a, key) for v, a in zip(value, args, strict=True))
        return tuple(_check_type(v, elem, key) for v in value)
    if origin is tuple:
        raise ConfigError(f"{key}: expected a list of values, got {value!r}.")
    if origin is typing.Literal:
        if value not in typing.get_args(typ):
            raise ConfigError(f"{key}: expected one of {', '.join(map(str, typing.get_args(typ)))}; got {value!r}.")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(typ):
            return None
        errors = []
        for a in (t for t in typing.get_args(typ) if t is not type(None)):
            try:
                return _check_type(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}.")
    if isinstance(value, bool) and typ is not bool:  # bool is an int subclass; never a number here
        raise ConfigError(f"{key}: expected {getattr(typ, '__name__', typ)}, got {value!r}.")
    if typ is float and isinstance(value, int | float):
        return float(value)
    if typ in (int, bool, str, float) and not isinstance(value, typ):
        raise ConfigError(f"{key}: expected {typ.__name__}, got {value!r}.")
    return value


def apply_overrides(cfg: C, overrides: Iterable[str] | Mapping[str, Any]) -> C:
    """Return a copy of ``cfg`` with ``key=value`` overrides applied, validated against field types.

    Unknown keys raise :class:`ConfigError` naming the closest valid key; unparsable values raise
    :class:`ConfigError` naming the expected type.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class C:
        ...     epochs: int = 10
        >>> apply_overrides(C(), {"epochs": 3}).epochs
        3
    """
    types_ = _field_types(cfg)
    changes: dict[str, Any] = {}
    items: Iterable[tuple[str, Any]]
    if isinstance(overrides, Mapping):
        items = overrides.items()
    else:
        parsed = []
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"--set expects key=value, got '{item}'.")
            k, v = item.split("=", 1)
            parsed.append((k.strip(), v))
        items = parsed
    for key, value in items:
        if key not in types_:
            raise ConfigError(f"unknown config key '{key}'.{_closest(key, types_)}")
        changes[key] = _check_type(value, types_[key], key)
    new = dataclasses.replace(cfg, **changes)
    validate = getattr(new, "validate", None)
    if callable(validate):
        validate()
    return new


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-ready dict of a config dataclass (tuples become lists).

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class C:
        ...     a: int = 1
        >>> config_to_dict(C())
        {'a': 1}
    """
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def config_from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
    """Rebuild a config from :func:`config_to_dict` output, with the same validation as ``--set``.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class C:
        ...     a: tuple[int, ...] = (1,)
        >>> config_from_dict(C, {"a": [1, 2]})
        C(a=(1, 2))
    """
    return apply_overrides(cls(), dict(data))
