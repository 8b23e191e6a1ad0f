"""``iwlab run cifar_cars_trucks``: Byrd & Lipton (2019) Fig. A.8; code in :mod:`iwlab.experiments.cifar`.

Example:
    >>> NAME
    'cifar_cars_trucks'
"""

from iwlab.experiments.cifar import PACK_KEYS_BINARY as PACK_KEYS
from iwlab.experiments.cifar import PROFILES_CARS_TRUCKS as PROFILES
from iwlab.experiments.cifar import CarsTrucksConfig as Config
from iwlab.experiments.cifar import cells, figures, run_cell, summary

NAME = "cifar_cars_trucks"
DESCRIPTION = "CIFAR-10 automobile vs truck, CNN: class weights vs epochs (Fig A.8)"

__all__ = ["DESCRIPTION", "NAME", "PACK_KEYS", "PROFILES", "Config", "cells", "figures", "run_cell", "summary"]
