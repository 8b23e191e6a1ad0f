"""Datasets: :mod:`~iwlab.data.download` (files, md5s, IDX), :mod:`~iwlab.data.mnist`, :mod:`~iwlab.data.cifar10`,
:mod:`~iwlab.data.ptb`, :mod:`~iwlab.data.transforms` (augmentation), :mod:`~iwlab.data.synthetic` and
:mod:`~iwlab.data.resample`. Import the submodule you need; this package imports nothing eagerly.
"""
