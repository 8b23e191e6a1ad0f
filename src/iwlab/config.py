"""Typed experiment configs: one dataclass per experiment, profiles as overrides, strict ``--set``.

A config is a frozen-by-convention ``dataclass``. Each experiment defines ``Config`` with defaults equal
to its ``quick`` profile and a ``PROFILES`` dict mapping profile names to overrides (the flax
``get_config`` pattern). ``--set key=value`` goes through :func:`apply_overrides`, which rejects unknown
keys (suggesting the closest valid one) and values that do not parse as the field's type.

Values are checked before anything runs (:func:`check_config`): every float must be finite, every
tuple non-empty (unless the Config lists the key in ``ALLOW_EMPTY``) and at most :data:`MAX_ITEMS`
long, and every number must lie in the :class:`Bound` that the Config declares for its key in
``BOUNDS`` (merged along the class hierarchy). Sizes that allocate memory get an upper bound there, so a
typo such as ``grid_size=100000`` is a one-line error instead of an out-of-memory crash minutes later.

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
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

C = TypeVar("C")

MAX_ITEMS = 10_000  # longest tuple a config value may hold (each entry usually becomes a model or a cell)


class ConfigError(ValueError):
    """A bad config key or value; the message is one line and names the valid choices."""


@dataclass(frozen=True)
class Bound:
    """The allowed range of a numeric config value (of every entry, for a tuple of numbers).

    ``lo``/``hi`` are inclusive unless ``lo_open``/``hi_open``; ``None`` means unbounded on that side.
    Non-numeric values (e.g. ``lr="auto"``) are not range-checked; their type is.

    Example:
        >>> Bound(0, 1, hi_open=True).describe()
        'in [0, 1)'
        >>> Bound(0, lo_open=True).contains(0.0)
        False
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def contains(self, v: float) -> bool:
        """Whether ``v`` lies in the range."""
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return not (self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi))

    def describe(self) -> str:
        """The range in words, e.g. ``'in [1, 1,000]'``, ``'> 0'`` or ``'in (0, 1)'``."""
        lo, hi = _num(self.lo), _num(self.hi)
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {lo}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {hi}"
        return "any finite number"


def exact_text(x: float) -> str:
    """A number as names and commands write it: ``:g``, or every digit when ``:g`` would round it, so two
    different numbers never print alike (sampler spellings' k, lr-search cell ids).

    Example:
        >>> exact_text(0.5), exact_text(1e-05), exact_text(0.0012345678)
        ('0.5', '1e-05', '0.0012345678')
    """
    short = f"{x:g}"
    return short if float(short) == x else repr(x)


def _num(v: float | None) -> str:
    """``1000000`` -> ``'1,000,000'``; other numbers as ``:g``."""
    if v is None:
        return ""
    if float(v).is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    return f"{v:g}"


def count(hi: float, lo: float = 1) -> Bound:
    """A size or count: an integer in ``[lo, hi]`` (``lo=0`` where 0 means "all" or "off")."""
    return Bound(lo, hi)


# shared ranges, named in the field's terms
RATE = Bound(0, lo_open=True)  # learning rates: > 0 and finite
NONNEG = Bound(0)  # weight decay, smoothing: >= 0 and finite
MOMENTUM = Bound(0, 1, hi_open=True)
PROBABILITY = Bound(0, 1, hi_open=True)  # dropout: a rate of 1 would drop everything
SEED = Bound(0, 2**63 - 1)
# class weights: positive and representable as a normal float32 (the trainer's dtype), so a weight
# never silently becomes 0 or inf there
WEIGHT = Bound(1e-30, 1e30)


def _bounds(cfg: Any) -> dict[str, Bound]:
    out: dict[str, Bound] = {}
    for klass in reversed(type(cfg).__mro__):  # subclasses override their bases' entries
        out.update(vars(klass).get("BOUNDS", {}))
    return out


def _allow_empty(cfg: Any) -> set[str]:
    return {k for klass in type(cfg).__mro__ for k in vars(klass).get("ALLOW_EMPTY", ())}


def _allow_repeats(cfg: Any) -> set[str]:
    return {k for klass in type(cfg).__mro__ for k in vars(klass).get("ALLOW_REPEATS", ())}


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _literal_words(typ: Any) -> str:
    """`` (or 'auto')`` for a number that may also be a word, e.g. ``float | Literal["auto"]``."""
    if typing.get_origin(typ) not in (typing.Union, types.UnionType):
        return ""
    words = [
        repr(a) for t in typing.get_args(typ) if typing.get_origin(t) is typing.Literal for a in typing.get_args(t)
    ]
    return f" (or {' / '.join(words)})" if words else ""


def check_config(cfg: Any) -> None:
    """Raise :class:`ConfigError` (one line, naming the key) for a value no run could use.

    Every float must be finite; every tuple non-empty (unless its key is in the Config's
    ``ALLOW_EMPTY``), at most :data:`MAX_ITEMS` long and without repeated values (``factors=2,2.0``
    would train one setting twice and count it twice; keys such as layer widths, where repeats mean
    something, are listed in the Config's ``ALLOW_REPEATS``); every number inside its key's
    :class:`Bound` in the Config's ``BOUNDS``.

    Raises:
        ConfigError: the first offending key, with the allowed range and the value given.

    Example:
        >>> import typing
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class C:
        ...     epochs: int = 0
        ...     BOUNDS: typing.ClassVar = {"epochs": count(1000)}
        >>> check_config(C())
        Traceback (most recent call last):
        ...
        iwlab.config.ConfigError: epochs: must be in [1, 1,000], got 0.
    """
    bounds, allow_empty, allow_repeats = _bounds(cfg), _allow_empty(cfg), _allow_repeats(cfg)
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        key, value = f.name, getattr(cfg, f.name)
        items = value if isinstance(value, tuple) else (value,)
        if isinstance(value, tuple):
            if not value and key not in allow_empty:
                raise ConfigError(f"{key}: needs at least one value, got an empty list.")
            if len(value) > MAX_ITEMS:
                raise ConfigError(f"{key}: at most {MAX_ITEMS} values, got {len(value)}.")
        for v in items:
            if not _is_number(v):
                continue
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{key}: must be a finite number, got {v}.")
            bound = bounds.get(key)
            if bound is not None and not bound.contains(v):
                words = _literal_words(hints.get(key))
                raise ConfigError(
                    f"{key}: must be {bound.describe()}{words}, got {_num(v) if isinstance(v, int) else f'{v:g}'}."
                )
        repeated = [v for i, v in enumerate(items) if v in items[:i]] if isinstance(value, tuple) else []
        if repeated and key not in allow_repeats:  # by value: 2 == 2.0
            raise ConfigError(f"{key} repeat: {repeated[0]!r} is given more than once ({', '.join(map(str, value))}).")


# keys renamed in iwlab 0.2 (same meaning and values), named in the unknown-key message
RENAMED_KEYS = {"l2": "weight_decay"}


def _closest(key: str, valid: Iterable[str]) -> str:
    valid = sorted(valid)
    if RENAMED_KEYS.get(key) in valid:
        new = RENAMED_KEYS[key]
        return f" It was renamed '{new}' (the same coupled decay, same values). Valid keys: {', '.join(valid)}."
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
                value = float(num) / float(den)
            else:
                value = float(text)
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"{key}: expected a float, got '{text}'.") from None
        if value == 0 and any(c in "123456789" for c in text.lower().split("e")[0]):
            raise ConfigError(f"{key}: {text} is too small for a float (it underflows to 0).")
        return value
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
    check_config(new)
    validate = getattr(new, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError:
            raise
        except ValueError as e:  # an experiment's own check: same one-line error type as the rest
            raise ConfigError(str(e)) from None
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
