"""``iwlab run cifar_resnet``: Byrd & Lipton (2019) Fig. A.5; code in :mod:`iwlab.experiments.cifar`.

Example:
    >>> NAME
    'cifar_resnet'
"""

from iwlab.experiments.cifar import PACK_KEYS_BINARY as PACK_KEYS
from iwlab.experiments.cifar import PROFILES_RESNET as PROFILES
from iwlab.experiments.cifar import ResNetConfig as Config
from iwlab.experiments.cifar import cells, figures, run_cell, summary

NAME = "cifar_resnet"
DESCRIPTION = "CIFAR-10 cats vs dogs, ResNet with and without batch norm: class weights vs epochs (Fig A.5)"

__all__ = ["DESCRIPTION", "NAME", "PACK_KEYS", "PROFILES", "Config", "cells", "figures", "run_cell", "summary"]
