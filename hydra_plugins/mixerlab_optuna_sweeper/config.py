"""Structured configs: ``hydra/sweeper=optuna`` and its sampler and pruner groups.

The keys match the stock hydra-optuna-sweeper 1.3 (sampler, direction, storage, study_name,
n_trials, n_jobs, max_failure_rate, params, custom_search_space) plus ``pruner``. Differences:

* ``storage: null`` is a persistent journal file ``<sweep dir>/optuna_journal.log`` (not an
  in-memory study) and ``journal://<path>`` names any journal file; other strings are Optuna
  storage URLs (``sqlite:///x.db``, ``postgresql://...``).
* ``direction: null`` (the default; stock: ``minimize``) follows the task config's
  ``objective``: ``test_acc`` is maximized, ``test_loss`` minimized (``optuna_sweeper.py``
  lists the known senses). An explicit direction that contradicts a known sense is an error
  unless ``allow_direction_mismatch: true`` confirms it.
* ``study_name`` defaults to ``${hydra.job.name}``, so rerunning a command resumes its study.
* ``n_trials`` is the study's total (at least 1): a rerun launches only the missing trials.
* sampler and pruner are instantiated by the sweeper (``_recursive_: false``), so any Optuna
  sampler/pruner works: ``hydra/sweeper/sampler=random`` or a ``{_target_: ..., ...}`` node.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

PROVIDER = "mixerlab_optuna_sweeper"


@dataclass
class SamplerConfig:
    """Any ``optuna.samplers`` class; extra keys are passed to its constructor."""

    _target_: str = MISSING
    seed: int | None = None


@dataclass
class TPESamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.TPESampler"
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool | None = None
    group: bool = False
    # Optuna 5's default: pending trials of a batch count as bad, so a batch spreads out
    constant_liar: bool = True


@dataclass
class RandomSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.RandomSampler"


@dataclass
class GridSamplerConfig(SamplerConfig):
    """The grid is the search space (choice/range params); n_trials is capped at its size."""

    _target_: str = "optuna.samplers.GridSampler"


@dataclass
class CmaEsSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.CmaEsSampler"
    n_startup_trials: int = 1
    sigma0: float | None = None
    use_separable_cma: bool = False
    with_margin: bool = False
    lr_adapt: bool = False
    consider_pruned_trials: bool = False


@dataclass
class NSGAIISamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.NSGAIISampler"
    population_size: int = 50
    mutation_prob: float | None = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5


@dataclass
class QMCSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.QMCSampler"
    qmc_type: str = "sobol"
    scramble: bool = False


@dataclass
class GPSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.GPSampler"
    n_startup_trials: int = 10
    deterministic_objective: bool = False


@dataclass
class MedianPrunerConfig:
    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class PercentilePrunerConfig:
    _target_: str = "optuna.pruners.PercentilePruner"
    percentile: float = 25.0
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class SuccessiveHalvingPrunerConfig:
    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = "auto"  # "auto" or an int
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0
    bootstrap_count: int = 0


@dataclass
class HyperbandPrunerConfig:
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"  # "auto" or an int (e.g. the number of epochs)
    reduction_factor: int = 3
    bootstrap_count: int = 0


@dataclass
class OptunaSweeperConf:
    """``hydra.sweeper`` when ``hydra/sweeper=optuna``."""

    _target_: str = "hydra_plugins.mixerlab_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    # the sweeper instantiates sampler (GridSampler needs the search space) and pruner itself
    _recursive_: bool = False
    # _self_ first: a selected sampler/pruner group replaces the fields' defaults below
    defaults: list[Any] = field(
        default_factory=lambda: ["_self_", {"sampler": "tpe"}, {"pruner": None}]
    )

    # an optuna.samplers class and its arguments (group hydra/sweeper/sampler)
    sampler: Any = MISSING
    # an optuna.pruners class and its arguments, or null for no pruning (group .../pruner);
    # jobs see it through TrialReporter (sweep/trial_reporter.py)
    pruner: Any = None
    # "minimize" or "maximize", or a list of them (one per objective) for a multi-objective
    # study; null: each objective's known sense (test_acc: maximize, test_loss: minimize, ...)
    direction: Any = None
    # true: run even though direction contradicts the objective's known sense (e.g. to find
    # the worst configurations); otherwise that is an error before any trial is launched
    allow_direction_mismatch: bool = False
    # storage string (see tracking/optuna_storage.py); null -> <sweep dir>/optuna_journal.log
    storage: str | None = None
    study_name: str | None = "${hydra.job.name}"
    # total number of counted trials in the study (COMPLETE + PRUNED + FAIL by the job), >= 1
    n_trials: int = 20
    # trials launched per batch (one launcher.launch call)
    n_jobs: int = 2
    # stop once more than this fraction of the study's counted trials FAILed
    max_failure_rate: float = 0.0
    # key -> Hydra sweep override (interval/int/tag(log)/range/choice) or a fixed value
    params: dict[str, Any] | None = None
    # dotted path to fn(cfg, trial) -> dict of extra fixed overrides, or None
    custom_search_space: str | None = None


_STORE = ConfigStore.instance()
_STORE.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider=PROVIDER)
for _name, _node in {
    "tpe": TPESamplerConfig,
    "random": RandomSamplerConfig,
    "grid": GridSamplerConfig,
    "cmaes": CmaEsSamplerConfig,
    "nsgaii": NSGAIISamplerConfig,
    "qmc": QMCSamplerConfig,
    "gp": GPSamplerConfig,
}.items():
    _STORE.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider=PROVIDER)
for _name, _node in {
    "median": MedianPrunerConfig,
    "percentile": PercentilePrunerConfig,
    "successive_halving": SuccessiveHalvingPrunerConfig,
    "hyperband": HyperbandPrunerConfig,
}.items():
    _STORE.store(group="hydra/sweeper/pruner", name=_name, node=_node, provider=PROVIDER)
