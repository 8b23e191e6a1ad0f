"""``iwlab run cifar_multiclass``: Byrd & Lipton (2019) Fig. 5; code in :mod:`iwlab.experiments.cifar`.

Example:
    >>> NAME
    'cifar_multiclass'
"""

from iwlab.experiments.cifar import PACK_KEYS_MULTICLASS as PACK_KEYS
from iwlab.experiments.cifar import PROFILES_MULTICLASS as PROFILES
from iwlab.experiments.cifar import MulticlassConfig as Config
from iwlab.experiments.cifar import cells, figures, run_cell, summary

NAME = "cifar_multiclass"
DESCRIPTION = "CIFAR-10 10 classes, MLP: one class weighted by rho, weighted test accuracy vs epochs (Fig 5)"

__all__ = ["DESCRIPTION", "NAME", "PACK_KEYS", "PROFILES", "Config", "cells", "figures", "run_cell", "summary"]
