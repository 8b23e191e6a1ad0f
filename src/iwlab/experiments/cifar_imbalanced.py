"""``iwlab run cifar_imbalanced``: Byrd & Lipton (2019) Fig. A.6; code in :mod:`iwlab.experiments.cifar`.

Example:
    >>> NAME
    'cifar_imbalanced'
"""

from iwlab.experiments.cifar import PACK_KEYS_IMBALANCED as PACK_KEYS
from iwlab.experiments.cifar import PROFILES_IMBALANCED as PROFILES
from iwlab.experiments.cifar import ImbalancedConfig as Config
from iwlab.experiments.cifar import cells, figures, run_cell, summary

NAME = "cifar_imbalanced"
DESCRIPTION = "CIFAR-10 cats vs dogs, one class sub-sampled: weighting vs sub-sampling alone (Fig A.6)"

__all__ = ["DESCRIPTION", "NAME", "PACK_KEYS", "PROFILES", "Config", "cells", "figures", "run_cell", "summary"]
