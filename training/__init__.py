"""The training loop and its parts (schedule, checkpoints, evaluation, progress)."""

from training.checkpoint import CheckpointError
from training.trainer import DivergenceError, EpochCallback, Trainer, TrainerConfig

__all__ = ["CheckpointError", "DivergenceError", "EpochCallback", "Trainer", "TrainerConfig"]
