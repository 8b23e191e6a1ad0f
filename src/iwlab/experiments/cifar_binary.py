"""``iwlab run cifar_binary``: Byrd & Lipton (2019) Figs. 4, A.3, A.4, A.9; code in :mod:`iwlab.experiments.cifar`.

Example:
    >>> NAME
    'cifar_binary'
"""

from iwlab.experiments.cifar import PACK_KEYS_BINARY as PACK_KEYS
from iwlab.experiments.cifar import PROFILES_BINARY as PROFILES
from iwlab.experiments.cifar import BinaryConfig as Config
from iwlab.experiments.cifar import cells, figures, run_cell, summary

NAME = "cifar_binary"
DESCRIPTION = "CIFAR-10 cats vs dogs, CNN: class weights vs epochs; plain, L2, dropout, Adam (Figs 4, A.3, A.4, A.9)"

__all__ = ["DESCRIPTION", "NAME", "PACK_KEYS", "PROFILES", "Config", "cells", "figures", "run_cell", "summary"]
