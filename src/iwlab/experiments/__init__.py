"""Experiment registry: ``iwlab run NAME`` looks names up here.

Example:
    >>> "synthetic" in EXPERIMENTS
    True
"""

from __future__ import annotations

import difflib
import importlib
from types import ModuleType, SimpleNamespace

# name -> module; modules are imported lazily so `iwlab list` stays fast
EXPERIMENTS: dict[str, str] = {
    "synthetic": "iwlab.experiments.synthetic",
    "cifar_binary": "iwlab.experiments.cifar:cifar_binary",
    "cifar_resnet": "iwlab.experiments.cifar:cifar_resnet",
    "cifar_imbalanced": "iwlab.experiments.cifar:cifar_imbalanced",
    "cifar_label_noise": "iwlab.experiments.cifar:cifar_label_noise",
    "cifar_cars_trucks": "iwlab.experiments.cifar:cifar_cars_trucks",
    "cifar_multiclass": "iwlab.experiments.cifar:cifar_multiclass",
    "mrpc": "iwlab.experiments.mrpc",
    "is_mnist": "iwlab.experiments.importance:is_mnist",
    "is_cifar10": "iwlab.experiments.importance:is_cifar10",
    "is_ptb": "iwlab.experiments.importance:is_ptb",
}


def get_experiment(name: str) -> ModuleType | SimpleNamespace:
    """The experiment's module (or namespace) by name; unknown names get an error listing the valid ones.

    Example:
        >>> get_experiment("synthetic").NAME
        'synthetic'
    """
    if name not in EXPERIMENTS:
        close = difflib.get_close_matches(name, EXPERIMENTS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown experiment '{name}'.{hint} Available: {', '.join(sorted(EXPERIMENTS))}.")
    module, _, attr = EXPERIMENTS[name].partition(":")  # "pkg.module" or "pkg.module:namespace"
    mod = importlib.import_module(module)
    return getattr(mod, attr) if attr else mod


def make_config(name: str, profile: str = "quick", overrides: list[str] | dict | None = None):  # noqa: ANN201
    """The experiment's config for a profile, with ``key=value`` overrides applied and validated.

    Example:
        >>> make_config("synthetic", "quick", ["epochs=5"]).epochs
        5
    """
    from iwlab.config import ConfigError, apply_overrides

    exp = get_experiment(name)
    if profile not in exp.PROFILES:
        raise ConfigError(f"unknown profile '{profile}' for {name}. Available: {', '.join(exp.PROFILES)}.")
    cfg = apply_overrides(exp.Config(), exp.PROFILES[profile])
    return apply_overrides(cfg, overrides or [])
