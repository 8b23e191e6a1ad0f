"""Training: the many-model ensemble trainer, its single-model reference and evaluation schedules."""

from iwlab.train.ensemble import DivergedError, EnsembleTrainer, History, Member
from iwlab.train.schedule import log_epochs

__all__ = ["DivergedError", "EnsembleTrainer", "History", "Member", "log_epochs"]
