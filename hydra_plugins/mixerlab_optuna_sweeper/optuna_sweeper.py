"""The Hydra Sweeper plugin class: checks its settings, then hands the sweep to ``_sweep_loop``.

The study optimises what the user means: with ``direction: null`` (the default) each
objective (the task config's ``objective`` key, a metric name or a list of them) is optimised
in its known sense (``OBJECTIVE_SENSE``: accuracy up, loss down); an objective without one
(the ``symmetry/*`` measures, or a task config without an ``objective`` key) needs an
explicit direction; an explicit direction contradicting a known sense is an error unless
``allow_direction_mismatch: true`` confirms it. These checks, the budget's and the search
space's all fail before the study is opened or a trial asked.

Hydra creates the sweep's MLflow parent run (``on_multirun_start``) before it creates the
sweeper, and closes it (FINISHED) only when ``sweep`` returns; so every error raised from
``setup`` or ``sweep`` (a bad setting, too many failed trials, Ctrl-C, SIGTERM, any exception)
closes that run as FAILED with the reason as its ``error`` tag before it propagates.

This module is imported by Hydra's plugin scan in every process, so Optuna and MLflow are
imported only when a sweep actually starts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from hydra.core.plugins import Plugins
from hydra.errors import CompactHydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf

from sweep.mlflow_parent import parent_run_failed_on_error

_DIRECTIONS = ("minimize", "maximize")
# the sense of each final metric a job reports (sweep/validate.py FINAL_METRICS); the
# symmetry/* measures have none: whether more weight symmetry is better depends on the question
OBJECTIVE_SENSE = {
    "test_acc": "maximize",
    "val_acc": "maximize",
    "best_test_acc": "maximize",
    "final_test_acc": "maximize",
    "test_loss": "minimize",
    "val_loss": "minimize",
    "train_loss": "minimize",
    "reg_loss": "minimize",
    "num_params": "minimize",
}
MISMATCH_KEY = "hydra.sweeper.allow_direction_mismatch"

log = logging.getLogger(__name__)


class SweeperSettingError(CompactHydraException, ValueError):
    """An invalid ``hydra.sweeper`` setting, found before any trial is asked or launched."""


class OptunaSweeper(Sweeper):
    """``hydra/sweeper=optuna``: a persistent, resumable Optuna study (see ``config.py``)."""

    def __init__(
        self,
        sampler: DictConfig | None,
        direction: Any,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        params: DictConfig | None,
        custom_search_space: str | None,
        pruner: DictConfig | None = None,
        allow_direction_mismatch: bool = False,
        async_trials: bool = True,
    ) -> None:
        # only stored: Hydra creates the sweeper after the MLflow parent run, and an error here
        # could not close that run (the checks run in `sweep`)
        self.sampler = sampler
        self.pruner = pruner
        self.direction = direction
        self.allow_direction_mismatch = allow_direction_mismatch
        self.directions: list[str] = []  # resolved by `sweep`
        self.storage = storage
        self.study_name = study_name
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.async_trials = async_trials
        self.max_failure_rate = max_failure_rate
        self.params = params
        self.custom_search_space = custom_search_space
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Any = None

    def setup(
        self,
        *,
        hydra_context: HydraContext,
        task_function: TaskFunction,
        config: DictConfig,
    ) -> None:
        """Keep the config and instantiate the launcher (Hydra calls this before ``sweep``)."""
        self.config = config
        self.hydra_context = hydra_context
        with parent_run_failed_on_error(config):
            self.launcher = Plugins.instance().instantiate_launcher(
                config=config, hydra_context=hydra_context, task_function=task_function
            )

    def sweep(self, arguments: list[str]) -> None:
        """Run or resume the study; ``arguments`` are the task's command-line overrides."""
        assert self.config is not None, "Hydra calls setup() before sweep()"
        with parent_run_failed_on_error(self.config):
            self._check_budget()
            self.directions = resolve_directions(
                self.direction, objective_names(self.config), self.allow_direction_mismatch)
            from ._sweep_loop import run_sweep  # lazy: imports optuna

            run_sweep(self, arguments)

    def _check_budget(self) -> None:
        if self.n_trials < 1:
            raise SweeperSettingError(
                f"hydra.sweeper.n_trials={self.n_trials} is invalid; the study's total number "
                "of trials must be >= 1")
        if self.n_jobs < 1:
            raise SweeperSettingError(
                f"hydra.sweeper.n_jobs={self.n_jobs} is invalid; trials in flight must be >= 1")
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise SweeperSettingError(
                f"hydra.sweeper.max_failure_rate={self.max_failure_rate} is invalid; it must be "
                "in [0, 1]")


def objective_names(config: DictConfig) -> list[str] | None:
    """The task config's ``objective`` (a name or a list of names) as a list; None without
    the key."""
    if "objective" not in config:
        return None
    value = config.objective
    names = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_list(value) else [value]
    return [str(name) for name in names]


def resolve_directions(
    direction: Any, objectives: list[str] | None, allow_mismatch: bool = False
) -> list[str]:
    """One direction per objective: ``direction`` checked against the objectives' known
    senses, or (``direction`` None) those senses; raises ``SweeperSettingError``."""
    if direction is None:
        return _senses(objectives)
    directions = parse_directions(direction)
    if objectives is None:
        return directions
    if len(directions) != len(objectives):
        raise SweeperSettingError(
            f"hydra.sweeper.direction={directions} has {len(directions)} entries but "
            f"objective={objectives} has {len(objectives)}; give one direction per objective")
    for name, chosen in zip(objectives, directions, strict=True):
        sense = OBJECTIVE_SENSE.get(name, chosen)
        if sense == chosen:
            continue
        if not allow_mismatch:
            raise SweeperSettingError(
                f"hydra.sweeper.direction={direction_text(direction)} would {chosen} "
                f"objective={name!r}, whose known sense is {sense}; drop hydra.sweeper.direction "
                f"to follow the objective, or confirm it with {MISMATCH_KEY}=true")
        log.warning("Optuna: objective %r is %sd against its known sense (%s), as confirmed "
                    "by %s=true", name, chosen, sense, MISMATCH_KEY)
    return directions


def _senses(objectives: list[str] | None) -> list[str]:
    """The known sense of each objective (``direction: null``)."""
    if objectives is None:
        raise SweeperSettingError(
            "hydra.sweeper.direction=null follows the task config's 'objective' key, which this "
            "task config does not have; set hydra.sweeper.direction=minimize or maximize (a "
            "list of them for several objectives)")
    if not objectives:
        raise SweeperSettingError("objective=[] names no metric; give one or more metrics")
    unknown = [name for name in objectives if name not in OBJECTIVE_SENSE]
    if unknown:
        raise SweeperSettingError(
            f"hydra.sweeper.direction=null but objective={unknown[0]!r} has no known sense; "
            "set hydra.sweeper.direction=minimize or maximize (one per objective for several "
            f"objectives). Known: {', '.join(f'{k}: {v}' for k, v in OBJECTIVE_SENSE.items())}")
    return [OBJECTIVE_SENSE[name] for name in objectives]


def parse_directions(direction: Any) -> list[str]:
    """``"minimize"``, ``"maximize"`` or a list of them -> a validated list."""
    if isinstance(direction, (ListConfig, DictConfig)):
        direction = OmegaConf.to_container(direction)
    items: Sequence[Any] = direction if isinstance(direction, (list, tuple)) else [direction]
    names = [getattr(d, "name", d) for d in items]  # accept enum members too
    names = [str(d).lower() for d in names]
    bad = [d for d in names if d not in _DIRECTIONS]
    if not names or bad:
        raise SweeperSettingError(
            f"hydra.sweeper.direction={direction!r} is invalid; each direction must be "
            "'minimize' or 'maximize' (a list of them for several objectives), or null to "
            "follow the objective")
    return names


def direction_text(direction: Any) -> str:
    """``direction`` as the user would write it on the command line."""
    if isinstance(direction, (ListConfig, DictConfig)):
        direction = OmegaConf.to_container(direction)
    if isinstance(direction, (list, tuple)):
        return "[" + ",".join(str(getattr(d, "name", d)).lower() for d in direction) + "]"
    return str(getattr(direction, "name", direction)).lower()
