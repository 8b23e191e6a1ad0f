"""``iwlab run cifar_label_noise``: Byrd & Lipton (2019) Fig. A.7; code in :mod:`iwlab.experiments.cifar`.

Example:
    >>> NAME
    'cifar_label_noise'
"""

from iwlab.experiments.cifar import PACK_KEYS_BINARY as PACK_KEYS
from iwlab.experiments.cifar import PROFILES_LABEL_NOISE as PROFILES
from iwlab.experiments.cifar import LabelNoiseConfig as Config
from iwlab.experiments.cifar import cells, figures, run_cell, summary

NAME = "cifar_label_noise"
DESCRIPTION = "CIFAR-10 cats vs dogs with 5% label noise per class: class weights vs epochs (Fig A.7)"

__all__ = ["DESCRIPTION", "NAME", "PACK_KEYS", "PROFILES", "Config", "cells", "figures", "run_cell", "summary"]
