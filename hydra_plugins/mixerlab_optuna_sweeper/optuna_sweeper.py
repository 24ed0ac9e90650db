"""The Hydra Sweeper plugin class: checks its settings, then hands the sweep to ``_sweep_loop``.

This module is imported by Hydra's plugin scan in every process, so Optuna is imported only
when a sweep actually starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf

_DIRECTIONS = ("minimize", "maximize")


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
    ) -> None:
        self.sampler = sampler
        self.pruner = pruner
        self.directions = parse_directions(direction)
        self.storage = storage
        self.study_name = study_name
        if n_trials < 0 or n_jobs < 1:
            raise ValueError(
                f"hydra.sweeper: n_trials={n_trials}, n_jobs={n_jobs}; "
                "need n_trials >= 0 and n_jobs >= 1"
            )
        if not 0.0 <= max_failure_rate <= 1.0:
            raise ValueError(
                f"hydra.sweeper.max_failure_rate={max_failure_rate}; must be in [0, 1]"
            )
        self.n_trials = n_trials
        self.n_jobs = n_jobs
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
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> None:
        """Run or resume the study; ``arguments`` are the task's command-line overrides."""
        from ._sweep_loop import run_sweep  # lazy: imports optuna

        run_sweep(self, arguments)


def parse_directions(direction: Any) -> list[str]:
    """``"minimize"``, ``"maximize"`` or a list of them -> a validated list."""
    if isinstance(direction, (ListConfig, DictConfig)):
        direction = OmegaConf.to_container(direction)
    items: Sequence[Any] = direction if isinstance(direction, (list, tuple)) else [direction]
    names = [getattr(d, "name", d) for d in items]  # accept enum members too
    names = [str(d).lower() for d in names]
    bad = [d for d in names if d not in _DIRECTIONS]
    if not names or bad:
        raise ValueError(
            f"hydra.sweeper.direction={direction!r}: each direction must be 'minimize' or "
            "'maximize' (a list of them for several objectives)"
        )
    return names
