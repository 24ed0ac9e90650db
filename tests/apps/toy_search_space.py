"""A ``custom_search_space`` function for the toy app (``hydra.sweeper.custom_search_space``)."""

from __future__ import annotations

import optuna
from omegaconf import DictConfig


def extra_params(cfg: DictConfig, trial: optuna.Trial) -> dict[str, object]:
    """Search ``y`` only below the configured ``epochs``; fix ``c`` to ``b``."""
    trial.suggest_int("y", 0, int(cfg.epochs) - 1)
    return {"c": "b"}
