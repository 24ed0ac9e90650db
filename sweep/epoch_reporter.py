"""What a job tells its sweeper after each epoch, behind an interface that imports no sweeper.

A grid job has no reporter. A job of an Optuna trial reports each epoch's objective to its
trial, whose pruner may stop it early (sweep/trial_reporter.py). That implementation, and so
``optuna``, is imported only for such a job: a grid job neither pays for the import nor needs
Optuna installed::

    reporter = epoch_reporter(cfg)           # None outside an Optuna sweep
    for epoch in ...:
        reporter.report(value, step=epoch)   # may raise a Pruned error
"""

from __future__ import annotations

from typing import Protocol

from omegaconf import DictConfig


class Pruned(Exception):
    """The sweeper stopped the job early (a trial its pruner cut short): not a failure, so the
    job's tracking run ends KILLED. A reporter raises a subclass its sweeper also recognises
    (``sweep.trial_reporter.TrialPruned`` is an ``optuna.TrialPruned`` too)."""


class EpochReporter(Protocol):
    def report(self, value: float, step: int) -> None:
        """Record the objective ``value`` after epoch ``step``; raise ``Pruned`` to stop."""


def epoch_reporter(cfg: DictConfig) -> EpochReporter | None:
    """This job's reporter: its Optuna trial's when the sweeper set ``cfg.optuna.trial``, else
    None (also for a multi-objective study, which Optuna cannot prune)."""
    node = cfg.get("optuna")
    if node is None or node.get("trial") is None:
        return None
    from sweep.trial_reporter import TrialReporter  # imports optuna: only an Optuna job gets here

    return TrialReporter.from_config(cfg)
