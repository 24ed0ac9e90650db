"""Per-epoch reporting from a job to its Optuna trial, and pruning: the Optuna implementation
of ``sweep.epoch_reporter.EpochReporter`` (only a job of an Optuna trial imports this module).

The Optuna sweeper (``hydra/sweeper=optuna``) gives every job its trial's identity as
overrides of the config node ``optuna: {storage, study_name, trial}``. ``TrialReporter`` opens
that storage, loads the study with the pruner configured as ``hydra.sweeper.pruner`` (the full
Hydra config travels with every job, also under submitit) and reports intermediate values::

    reporter = TrialReporter.from_config(cfg)   # None outside an Optuna sweep
    for epoch in range(epochs):
        ...
        if reporter is not None:
            reporter.report(val_loss, step=epoch)   # raises TrialPruned

Let ``TrialPruned`` (an ``optuna.TrialPruned``) propagate out of the task function: the sweeper
then records the trial as PRUNED with its last reported value.
"""

from __future__ import annotations

import os

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from sweep.epoch_reporter import Pruned
from tracking.optuna_storage import open_storage, resolve_storage_url


class TrialPruned(optuna.TrialPruned, Pruned):
    """The pruner stopped this trial: the sweeper sees an ``optuna.TrialPruned``, the task a
    ``sweep.epoch_reporter.Pruned`` (which it can catch without importing optuna)."""


class TrialReporter:
    """Reports a job's intermediate values to its Optuna trial and asks the pruner."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    @property
    def number(self) -> int:
        """The trial's number in its study."""
        return self.trial.number

    @classmethod
    def from_config(cls, cfg: DictConfig) -> TrialReporter | None:
        """The reporter of this job's trial; None when ``cfg.optuna.trial`` is null (not an
        Optuna job) or the study is multi-objective (Optuna cannot prune those)."""
        node = cfg.get("optuna")
        if node is None or node.get("trial") is None:
            return None
        hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
        # the sweeper passes an absolute storage string; a null one means the sweep's default
        sweep_dir = (os.path.join(hydra_cfg.runtime.cwd, hydra_cfg.sweep.dir)
                     if hydra_cfg is not None else os.getcwd())
        storage = open_storage(resolve_storage_url(node.get("storage"), sweep_dir))
        if isinstance(storage, str):  # a database URL: what load_study would open from it
            storage = optuna.storages.RDBStorage(storage)
        study = optuna.load_study(
            study_name=node.study_name,
            storage=storage,
            # the sampler is never used here; RandomSampler makes building the Trial cheap
            sampler=optuna.samplers.RandomSampler(),
            pruner=_configured_pruner(hydra_cfg),
        )
        if len(study.directions) > 1:
            return None
        study_id = storage.get_study_id_from_name(node.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(node.trial))
        # Optuna has no public way to reattach to a trial that another process started (the
        # sweeper's ask()); its Trial constructor, documented but "not recommended", is that
        # way. tests/test_private_api_pins.py fails if it stops working.
        return cls(optuna.Trial(study, trial_id))

    def report(self, value: float, step: int) -> None:
        """Record ``value`` at ``step``; raise ``TrialPruned`` if the pruner says so."""
        self.trial.report(float(value), step)
        if self.trial.should_prune():
            raise TrialPruned(f"pruned at step {step} (value {float(value):.6g})")


def _configured_pruner(hydra_cfg: DictConfig | None) -> optuna.pruners.BasePruner:
    """``hydra.sweeper.pruner`` instantiated; no pruning when absent or null."""
    pruner_cfg = hydra_cfg.sweeper.get("pruner") if hydra_cfg is not None else None
    if not pruner_cfg:
        return optuna.pruners.NopPruner()
    return instantiate(pruner_cfg, _convert_="all")
