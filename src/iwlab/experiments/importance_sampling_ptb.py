"""Katharopoulos & Fleuret (2017) on Penn Treebank: loss-based importance sampling, LSTM language model
(Table 1, Fig. 3).

The paper's §4.3: 100,000 iterations of batch 128 words with Adam, an epoch of 2000 minibatches,
constant smoothing 0.5; validation perplexity is reported. What a cell trains and records is in
:mod:`iwlab.experiments.importance_sampling_common`; the summary in
:mod:`iwlab.experiments.importance_sampling_summary`; the figures in :mod:`iwlab.plots.importance`.

Example::

    iwlab run importance_sampling_ptb --profile quick       (IWLAB_DATA holds ptb/)
    iwlab run importance_sampling_ptb --profile paper --device cuda --workers 6
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from iwlab.config import Bound, count
from iwlab.data import ptb
from iwlab.experiments import importance_sampling_common as common
from iwlab.experiments.base import CellContext, CellResult, Experiment
from iwlab.experiments.importance_sampling_common import METHODS_ALL, PAPER_LR_GRID, ImportanceSamplingConfig, ISData
from iwlab.experiments.importance_sampling_lr import train_split
from iwlab.experiments.importance_sampling_summary import summary
from iwlab.models.lm import LSTMLanguageModel

__all__ = ["EXPERIMENT", "PROFILES", "Config", "load_data", "make_model", "run_cell"]


@dataclass
class Config(ImportanceSamplingConfig):
    """Settings of ``importance_sampling_ptb``; the defaults are its ``quick`` profile.

    The keys every importance-sampling experiment uses are documented on
    :class:`~iwlab.experiments.importance_sampling_common.ImportanceSamplingConfig`.

    Example:
        >>> Config().smoothing, Config().context, Config.METRIC
        (0.5, 20, 'perplexity')
    """

    DATASET: ClassVar[Literal["ptb"]] = "ptb"
    METRIC: ClassVar[Literal["perplexity"]] = "perplexity"

    methods: tuple[str, ...] = METHODS_ALL
    iterations: int = 150
    steps_per_epoch: int = 50
    n_train: int = 20000
    n_loss_sample: int = 2000
    n_grad_sample: int = 32
    smoothing: float = 0.5  # paper §4.3
    table_epochs: tuple[int, ...] = (1, 2, 3)
    context: int = 20  # words of context the model reads
    verify_checksums: bool = True  # md5-check the dataset files (off for hand-made copies)

    BOUNDS: ClassVar[dict[str, Bound]] = {"context": count(1000)}


PROFILES: dict[str, dict[str, Any]] = {
    "quick": {},
    # paper §4: the uniform baseline's lr from a grid search over 0.001..0.01 (importance_sampling_lr)
    "lr_search": {"methods": ("uniform",), "lrs": PAPER_LR_GRID},
    # paper §4.3: 100,000 iterations of batch 128 words, epoch = 2000 minibatches, constant smoothing 0.5
    "paper": {
        "seeds": 3,  # Table 1's caption: 3 runs for CIFAR-10 and Penn Treebank
        "iterations": 100000,
        "steps_per_epoch": 2000,
        "batch_size": 128,
        "n_train": 0,
        "n_test": 0,
        "n_loss_sample": 20000,
        "n_grad_sample": 512,
        "table_epochs": (10, 30, 50),
    },
    "ci": {**common.CI, "methods": ("uniform", "oracle_k1", "approx_k1", "pcg_k1"), "smoothing": 0.0},
}


def load_data(cfg: Config) -> ISData:
    """PTB as int64 word contexts (N, ``context``) and next-word labels; validation set as the test set.

    Raises:
        FileNotFoundError: no PTB files under ``IWLAB_DATA`` (and ``fixture`` is off).
        ValueError: a file whose checksum does not match (with ``verify_checksums``).

    Example:
        >>> load_data(Config(fixture=True, n_train=0, context=5)).x_train.shape[1]
        5
    """
    if cfg.fixture:
        with tempfile.TemporaryDirectory() as d:
            ptb.make_fixture(Path(d) / "ptb")
            data = ptb.read_ptb_dir(Path(d) / "ptb", context=cfg.context)
    else:
        data = ptb.load_ptb(context=cfg.context, verify=cfg.verify_checksums)
    # the held-out split is the tail of the training text: a random word would sit in training contexts
    xtr, ytr, xva, yva = train_split(cfg, data.x_train, data.y_train, contiguous=True)
    xte, yte = common.subset(data.x_valid, data.y_valid, cfg.n_test, cfg.data_seed + 1)
    return ISData(xtr, ytr, xte, yte, data.vocab_size, {"pad_index": data.pad_index}, xva, yva)


def make_model(data: ISData, generator: torch.Generator) -> nn.Module:
    """The paper's LSTM language model (§4.3) over the data's vocabulary.

    Example:
        >>> data = load_data(Config(fixture=True, context=5))
        >>> make_model(data, torch.Generator().manual_seed(0))(data.x_test[:2]).shape[0]
        2
    """
    return LSTMLanguageModel(vocab_size=data.num_classes, pad_index=data.extra["pad_index"], generator=generator)


def run_cell(cfg: Config, cell_id: str, params: dict, ctx: CellContext) -> CellResult:
    """Train one cell on PTB (:func:`~iwlab.experiments.importance_sampling_common.run_cell`)."""
    return common.run_cell(cfg, params, ctx, load_data(cfg), make_model)


EXPERIMENT = Experiment(
    name="importance_sampling_ptb",
    description="Katharopoulos & Fleuret: importance sampling on PTB, LSTM language model (Table 1, Fig. 3)",
    config=Config,
    profiles=PROFILES,
    cells=common.cells,
    run_cell=run_cell,
    summary=summary,
    aliases=("is_ptb",),
)
