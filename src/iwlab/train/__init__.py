"""Training: the many-model ensemble trainer, its single-model reference and evaluation schedules."""

from iwlab.train.ensemble import (
    EnsembleTrainer,
    History,
    Member,
    class_indices,
    ensemble_rng_seed,
    fit_in_packs,
    merge_histories,
    pack_checkpoint_path,
)
from iwlab.train.schedule import log_epochs

__all__ = [
    "EnsembleTrainer",
    "History",
    "Member",
    "class_indices",
    "ensemble_rng_seed",
    "fit_in_packs",
    "log_epochs",
    "merge_histories",
    "pack_checkpoint_path",
]
