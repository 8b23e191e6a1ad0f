"""Experiment registry: ``iwlab run NAME`` looks names up here.

:data:`EXPERIMENTS` maps each name to its module, which defines ``EXPERIMENT``, an
:class:`~iwlab.experiments.base.Experiment`; modules are imported only when an experiment is asked for,
so ``iwlab list`` and ``--help`` stay fast. :data:`ALIASES` maps older names to current ones (kept here,
not only in each ``Experiment.aliases``, so that resolving an alias imports nothing).

Example:
    >>> "synthetic" in EXPERIMENTS, canonical_name("is_mnist")
    (True, 'importance_sampling_mnist')
    >>> make_config("synthetic", "quick", ["epochs=5"]).epochs
    5
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from iwlab.config import ConfigError, apply_overrides
from iwlab.experiments.base import Experiment

# name -> module defining EXPERIMENT
EXPERIMENTS: dict[str, str] = {
    "synthetic": "iwlab.experiments.synthetic",
    "cifar_binary": "iwlab.experiments.cifar_binary",
    "cifar_resnet": "iwlab.experiments.cifar_resnet",
    "cifar_imbalanced": "iwlab.experiments.cifar_imbalanced",
    "cifar_label_noise": "iwlab.experiments.cifar_label_noise",
    "cifar_cars_trucks": "iwlab.experiments.cifar_cars_trucks",
    "cifar_multiclass": "iwlab.experiments.cifar_multiclass",
    "mrpc": "iwlab.experiments.mrpc",
    "importance_sampling_mnist": "iwlab.experiments.importance_sampling_mnist",
    "importance_sampling_cifar10": "iwlab.experiments.importance_sampling_cifar10",
    "importance_sampling_ptb": "iwlab.experiments.importance_sampling_ptb",
    "label_shift": "iwlab.experiments.label_shift",
    "implicit_bias": "iwlab.experiments.implicit_bias",
    "remedies": "iwlab.experiments.remedies",
}

# old name -> current name (the "is_" prefix read as a predicate: "is it MNIST?")
ALIASES: dict[str, str] = {
    "is_mnist": "importance_sampling_mnist",
    "is_cifar10": "importance_sampling_cifar10",
    "is_ptb": "importance_sampling_ptb",
}


def canonical_name(name: str) -> str:
    """The registered name of ``name``, an experiment's name or one of its :data:`ALIASES`.

    Raises:
        ValueError: an unknown name; the message suggests the closest and lists the valid ones.

    Example:
        >>> canonical_name("is_ptb"), canonical_name("mrpc")
        ('importance_sampling_ptb', 'mrpc')
    """
    if name in EXPERIMENTS:
        return name
    if name in ALIASES:
        return ALIASES[name]
    close = difflib.get_close_matches(name, [*EXPERIMENTS, *ALIASES], n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ValueError(f"unknown experiment '{name}'.{hint} Available: {', '.join(sorted(EXPERIMENTS))}.")


def get_experiment(name: str) -> Experiment:
    """The :class:`~iwlab.experiments.base.Experiment` registered as ``name`` (or under an alias).

    Raises:
        ValueError: an unknown name (the message lists the valid ones).
        TypeError: the module defines no ``EXPERIMENT``, or one that is not an Experiment of that name.

    Example:
        >>> get_experiment("is_mnist").name
        'importance_sampling_mnist'
    """
    canon = canonical_name(name)
    # read on every lookup (not cached), so a test can swap a module's EXPERIMENT
    exp = getattr(importlib.import_module(EXPERIMENTS[canon]), "EXPERIMENT", None)
    if not isinstance(exp, Experiment) or exp.name != canon:
        raise TypeError(f"{EXPERIMENTS[canon]}.EXPERIMENT must be an Experiment named '{canon}', got {exp!r:.80}")
    return exp


def make_config(name: str, profile: str = "quick", overrides: Sequence[str] | Mapping[str, Any] | None = None) -> Any:
    """The experiment's config for a profile, with ``key=value`` overrides applied and validated.

    Raises:
        ValueError: an unknown experiment.
        ConfigError: an unknown profile, an unknown key (one this experiment does not use), or a bad value.

    Example:
        >>> make_config("synthetic", "quick", ["epochs=5"]).epochs
        5
    """
    exp = get_experiment(name)
    if profile not in exp.profiles:
        raise ConfigError(f"unknown profile '{profile}' for {exp.name}. Available: {', '.join(exp.profiles)}.")
    cfg = apply_overrides(exp.config(), exp.profiles[profile])
    return apply_overrides(cfg, overrides or [])
