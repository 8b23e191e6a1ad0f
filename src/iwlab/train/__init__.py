"""Training: the one loop (:func:`iwlab.train.fit.fit`), the many-model ensemble trainer, importance-sampled
single-model training, and evaluation schedules."""

from iwlab.train.ensemble import EnsembleTrainer
from iwlab.train.fit import Clock, FitState, fit
from iwlab.train.inputs import class_indices
from iwlab.train.members import History, Member, ensemble_rng_seed
from iwlab.train.packs import fit_in_packs, merge_histories, pack_checkpoint_path
from iwlab.train.schedule import log_epochs

__all__ = [
    "Clock",
    "EnsembleTrainer",
    "FitState",
    "History",
    "Member",
    "class_indices",
    "ensemble_rng_seed",
    "fit",
    "fit_in_packs",
    "log_epochs",
    "merge_histories",
    "pack_checkpoint_path",
]
