"""Check a composed job config without running it: every bad value, named, with what is valid.

Cheap (no model is built, no data decoded), so a sweeper checks all its jobs before it
launches any, and a single run fails before a tracking run exists. Sections a config does
not have (e.g. a small test app's) are not checked.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from data import DATASETS, DatasetError
from models import model_config_errors
from training import TrainerConfig

FINAL_METRICS = ("test_acc", "test_loss", "train_loss", "reg_loss", "best_test_acc",
                 "final_test_acc", "num_params", "val_acc", "val_loss")


class ConfigError(ValueError):
    """One or more invalid configuration values (one line each)."""


def config_errors(cfg: DictConfig) -> list[str]:
    """Every invalid value in a job config, each as '<key>=<value> is invalid; <valid>'."""
    errors: list[str] = []
    if "model" in cfg:
        # the model table knows which _target_s build a zoo model and what a name must build
        errors += model_config_errors(OmegaConf.to_container(cfg.model, resolve=True))
    if "data" in cfg:
        reader = DATASETS.get(cfg.data.name)
        if reader is None:
            errors.append(f"data.name={cfg.data.name!r} is unknown; valid: {sorted(DATASETS)}")
        else:
            try:
                reader.sources(None if cfg.data.root is None else Path(cfg.data.root))
            except DatasetError as err:
                errors.append(str(err))
    if "trainer" in cfg:
        try:
            TrainerConfig(**OmegaConf.to_container(cfg.trainer, resolve=True))
        except (ValueError, TypeError) as err:
            errors.append(str(err))
    if "objective" in cfg and "trainer" in cfg:
        names = list(cfg.objective) if OmegaConf.is_list(cfg.objective) else [cfg.objective]
        for name in names:
            if name not in FINAL_METRICS and not str(name).startswith("symmetry/"):
                errors.append(f"objective={name!r} is not a metric the job reports; valid: "
                              f"{list(FINAL_METRICS)} or a symmetry/* metric")
    return errors


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError listing every invalid value."""
    errors = config_errors(cfg)
    if errors:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))
