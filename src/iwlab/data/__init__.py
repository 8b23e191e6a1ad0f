"""Datasets: :mod:`~iwlab.data.download` (files, md5s, IDX), :mod:`~iwlab.data.mnist`, :mod:`~iwlab.data.cifar10`,
:mod:`~iwlab.data.ptb`, :mod:`~iwlab.data.mrpc`, :mod:`~iwlab.data.transforms` (augmentation),
:mod:`~iwlab.data.synthetic` and :mod:`~iwlab.data.resample`. Import the submodule you need; this package imports
nothing eagerly.

Every file reader (MNIST IDX, CIFAR-10 npz / pickled batches / tarball, PTB text, MRPC tsv) checks dtype, shape,
label range and lengths and raises a one-line error naming the file (and the array or key) instead of casting,
rescaling or skipping anything silently.
"""
