"""Structured configs: ``hydra/sweeper=optuna`` and its sampler and pruner groups.

The keys match the stock hydra-optuna-sweeper (sampler, direction, storage, study_name,
n_trials, n_jobs, max_failure_rate, params, custom_search_space) plus ``pruner`` and
``allow_direction_mismatch``; each sampler config has the installed Optuna sampler's keywords
and defaults (a superset of the stock configs' keys). Differences (README.md, "Migrating
from hydra-optuna-sweeper"):

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


# Each sampler config holds every keyword of the installed Optuna sampler's constructor, with
# its default (tests/test_optuna_stock_compat.py compares them with inspect.signature): the
# stock plugin's keys, plus the newer ones. Callables and objects (constraints_func, gamma,
# independent_sampler, ...) are null or a node instantiated with the sampler
# ({_target_: ..., _partial_: true} for a function).


@dataclass
class TPESamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.TPESampler"
    # null: Optuna's own default (these four are deprecated since Optuna 4.9)
    consider_prior: bool | None = None
    prior_weight: float | None = None
    consider_magic_clip: bool | None = None
    consider_endpoints: bool | None = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    gamma: Any = None
    weights: Any = None
    # null: multivariate TPE (Optuna 5's default; stock, on Optuna 4: false)
    multivariate: bool | None = None
    group: bool = False
    warn_independent_sampling: bool | None = None
    # Optuna 5's default (stock, on Optuna 4: false): pending trials of a batch count as bad,
    # so the n_jobs trials of a batch spread out
    constant_liar: bool = True
    constraints_func: Any = None


@dataclass
class RandomSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.RandomSampler"


@dataclass
class GridSamplerConfig(SamplerConfig):
    """The grid is the search space (choice/range params); n_trials is capped at its size."""

    _target_: str = "optuna.samplers.GridSampler"
    # null: the search space's values (the sweeper fills it in)
    search_space: Any = None


@dataclass
class CmaEsSamplerConfig(SamplerConfig):
    """Needs the ``cmaes`` package (``pip install cmaes``; checked before any trial)."""

    _target_: str = "optuna.samplers.CmaEsSampler"
    x0: Any = None
    sigma0: float | None = None
    n_startup_trials: int = 1
    independent_sampler: Any = None
    warn_independent_sampling: bool = True
    consider_pruned_trials: bool = False
    # deprecated since Optuna 4.4 and ignored (moved to OptunaHub)
    restart_strategy: str | None = None
    popsize: int | None = None
    inc_popsize: int = -1
    use_separable_cma: bool = False
    with_margin: bool = False
    lr_adapt: bool = False
    source_trials: Any = None


@dataclass
class NSGAIISamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.NSGAIISampler"
    population_size: int = 50
    mutation: Any = None
    mutation_prob: float | None = None
    crossover: Any = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5
    constraints_func: Any = None
    elite_population_selection_strategy: Any = None
    child_generation_strategy: Any = None
    after_trial_strategy: Any = None


@dataclass
class QMCSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.QMCSampler"
    qmc_type: str = "sobol"
    scramble: bool = False
    independent_sampler: Any = None
    warn_asynchronous_seeding: bool = True
    warn_independent_sampling: bool = True


@dataclass
class GPSamplerConfig(SamplerConfig):
    _target_: str = "optuna.samplers.GPSampler"
    independent_sampler: Any = None
    n_startup_trials: int = 10
    deterministic_objective: bool = False
    constraints_func: Any = None
    warn_independent_sampling: bool = True


@dataclass
class MOTPESamplerConfig(SamplerConfig):
    """Removed in Optuna 4: kept so that ``sampler=motpe`` fails with what to use instead."""

    _target_: str = "optuna.samplers.MOTPESampler"


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
    # trials in flight at once (batch mode: trials per batch, one launcher.launch call)
    n_jobs: int = 2
    # true: as soon as any trial ends, tell it and launch the next, so n_jobs trials are
    # always in flight (submitit launchers; the basic launcher runs jobs one after another in
    # the driver and stays in batches); false: batches of n_jobs trials, each awaited whole
    async_trials: bool = True
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
    "motpe": MOTPESamplerConfig,
}.items():
    _STORE.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider=PROVIDER)
for _name, _node in {
    "median": MedianPrunerConfig,
    "percentile": PercentilePrunerConfig,
    "successive_halving": SuccessiveHalvingPrunerConfig,
    "hyperband": HyperbandPrunerConfig,
}.items():
    _STORE.store(group="hydra/sweeper/pruner", name=_name, node=_node, provider=PROVIDER)
