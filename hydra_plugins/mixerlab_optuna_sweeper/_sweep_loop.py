"""The sweep: validate, open the study, recover stale trials, then ask/launch/tell.

Asynchronous (``async_trials: true``, the default, on a launcher with a ``job_queue``: the
submitit ones): ``n_jobs`` trials are kept in flight; whenever one ends (complete, pruned,
failed, died) it is told at once and the next trial is asked and submitted, so no worker waits
for the slowest trial of a batch. Batches (``async_trials: false``, and launchers whose
``launch`` blocks: Hydra's basic launcher runs its jobs one after another in this process,
and its ``run_job`` changes the working directory, logging and Hydra's global singletons, so
calls cannot overlap in threads): ``n_jobs`` trials asked together and launched with one
``launcher.launch`` call. Either way a trial's job number and directory are its trial number
(``initial_job_idx``), so a resumed study never overwrites earlier jobs, and trials are launched
until the study holds ``n_trials`` counted trials, so rerunning a command resumes it.

The budget: ``n_trials`` is the study's total target, not a per-run increment (the driver
logs ``study has N trials, n_trials M, launching K`` when it starts). A trial counts once it
has a verdict about its parameters: COMPLETE, PRUNED, or FAIL caused by the job (exception,
NaN, bad return value). A FAIL with ``fail_reason: driver interrupted`` does not count (its
parameters were enqueued again and the rerun counts instead), nor does one with
``fail_reason: driver error: ...`` (the driver broke before its job could run).

Failures: the sweep stops with ``TooManyFailedTrials`` (a non-zero exit, naming the study's
first failure) once the fraction of counted trials that FAILed exceeds ``max_failure_rate``,
checked after each failed trial (batches: after each batch) over the whole study (the stock
plugin checks each batch alone,
which makes the same setting mean different things for different ``n_jobs`` and forgets the
failures of earlier batches and runs). A sweep whose every counted trial FAILed ends the
same way even with ``max_failure_rate=1.0``: there is no result to report.

Once the rate is exceeded no trial is launched; in asynchronous mode the trials in flight are
awaited and told first.

SIGTERM (a scheduler's time limit, ``kill``) is handled like Ctrl-C while the study runs:
Python's default would end the process at once, and the driver must first fail and
re-enqueue its running trials.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

import optuna
from hydra.errors import CompactHydraException
from hydra.utils import get_class, get_method, instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from sweep.mlflow_parent import log_to_parent_run
from sweep.prelaunch import check_jobs
from sweep.sweep_progress import SweepProgress, launch
from sweep.termination import sigterm_raises
from tracking.optuna_storage import journal_path, open_storage, resolve_storage_url

from ._driver_journal import driver_journal
from ._job_overrides import identity_overrides, trial_overrides
from ._results_report import log_summary, study_summary, write_results
from ._sampler_check import check_sampler
from ._search_space import SearchSpace, SearchSpaceError, build_search_space
from ._stale_trials import (
    claim_trial,
    fail_unfinished,
    is_driver_failure,
    recover_stale_trials,
    requeue_unfinished,
)
from ._trial_outcome import FAIL_REASON, TrialOutcome, TrialStore, outcome_of, tell_outcome
from .optuna_sweeper import OptunaSweeper, SweeperSettingError

log = logging.getLogger(__name__)

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# sections of the project's job configs: a task config with none of them (a foreign app, e.g.
# a stock-plugin user's) has nothing for sweep/validate.py to check, so its configs are only
# composed (a bad override still fails before any launch) and torch is never imported
_PROJECT_SECTIONS = ("model", "data", "trainer", "tracking")


class TooManyFailedTrials(CompactHydraException, RuntimeError):
    """The study's fraction of failed trials exceeds ``max_failure_rate``."""


class DriverTerminated(KeyboardInterrupt):
    """Raised in the driver by SIGTERM (a KeyboardInterrupt, so generic handlers pass it on)."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise DriverTerminated(f"the sweep driver got {signal.Signals(signum).name}; rerun the same "
                           "command to resume the study")


def counted_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that use up the ``n_trials`` budget."""
    return [t for t in trials if t.state in _FINISHED and not is_driver_failure(t)]


def failure_rate(trials: Sequence[FrozenTrial]) -> tuple[int, int]:
    """(failed, counted) over the counted trials."""
    counted = counted_trials(trials)
    return sum(t.state == TrialState.FAIL for t in counted), len(counted)


class _Clock:
    """Splits the sweep's wall time into time inside ``launcher.launch`` and the rest."""

    def __init__(self) -> None:
        self.sweeper_s = 0.0
        self.jobs_s = 0.0

    @contextmanager
    def sweeper(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sweeper_s += time.perf_counter() - start

    @contextmanager
    def jobs(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.jobs_s += time.perf_counter() - start


def run_sweep(sweeper: OptunaSweeper, arguments: Sequence[str]) -> None:
    """Run (or resume) the study configured on ``sweeper`` with the CLI ``arguments``."""
    OptunaSweep(sweeper).run(list(arguments))


class OptunaSweep:
    """One invocation of the sweeper against its (possibly pre-existing) study."""

    def __init__(self, sweeper: OptunaSweeper) -> None:
        assert sweeper.config is not None and sweeper.launcher is not None
        self.settings = sweeper
        self.config: DictConfig = sweeper.config
        self.launcher = sweeper.launcher
        self.hydra_context = sweeper.hydra_context
        self.sweep_dir = str(self.config.hydra.sweep.dir)
        self.clock = _Clock()
        self.n_launched = 0
        self.progress: SweepProgress | None = None
        # only a task config with the `optuna` node asks for its trial's identity; an app
        # written for the stock plugin gets the stock plugin's overrides and nothing more
        self.pass_identity = isinstance(self.config.get("optuna"), DictConfig)
        # the user's exclude_keys, kept when the identity keys are added to them
        self.exclude_keys = [str(k) for k in OmegaConf.select(
            self.config, "hydra.job.config.override_dirname.exclude_keys", default=None) or []]

    def run(self, arguments: list[str]) -> None:
        setup_start = time.perf_counter()
        # everything that can be wrong with the configuration fails here, before any I/O
        space = build_search_space(_params_lines(self.settings.params) + arguments)
        extender = (get_method(self.settings.custom_search_space)
                    if self.settings.custom_search_space else None)
        check_sampler(self.settings.sampler)
        sampler = _make_sampler(self.settings.sampler, space)
        n_trials = self.settings.n_trials
        if isinstance(sampler, optuna.samplers.GridSampler):
            n_trials = min(n_trials, math.prod(len(v) for v in space.grid().values()))
        pruner = instantiate(self.settings.pruner, _convert_="all") \
            if self.settings.pruner else None

        self.storage_url = resolve_storage_url(self.settings.storage, self.sweep_dir)
        study_name = self.settings.study_name or str(self.config.hydra.job.name)
        storage = _storage_object(self.storage_url)
        study = optuna.create_study(
            study_name=study_name, storage=storage, sampler=sampler,
            pruner=pruner, directions=self.settings.directions, load_if_exists=True,
        )
        stored = [d.name.lower() for d in study.directions]
        if stored != self.settings.directions:
            raise SweeperSettingError(
                f"study '{study_name}' in {self.storage_url} has directions {stored}, but "
                f"hydra.sweeper.direction asks for {self.settings.directions}; use another "
                "study_name or storage"
            )
        n_existing = len(study.get_trials(deepcopy=False))
        if n_existing and self.settings.sampler is not None and \
                self.settings.sampler.get("seed") is not None:
            # a resumed study with a fixed seed would replay the first run's random draws:
            # offset the seed by the number of trials already there (still reproducible)
            study.sampler = _make_sampler(self.settings.sampler, space, seed_offset=n_existing)
        self.study, self.space, self.extender = study, space, extender
        self.store = TrialStore(storage, study_name)
        with sigterm_raises(_raise_terminated):
            recover_stale_trials(study, self.store)
            setup_ms = (time.perf_counter() - setup_start) * 1e3
            n_done = len(counted_trials(study.get_trials(deepcopy=False)))
            log.info("Optuna: study has %d trials, n_trials %d, launching %d (n_trials is the "
                     "study's total; study '%s' in %s, sampler %s, pruner %s, directions %s)",
                     n_done, n_trials, max(0, n_trials - n_done), study_name, self.storage_url,
                     type(sampler).__name__, type(pruner).__name__ if pruner else None,
                     self.settings.directions)
            succeeded = False
            try:
                self.progress = self._progress(n_trials)
                self._run_trials(n_trials)
                self.progress.close()
                self._check_some_trial_succeeded()
                succeeded = True
                self._fail_orphaned_runs()
            except TooManyFailedTrials:
                self._fail_orphaned_runs()  # its last batch has ended as well
                raise
            finally:
                self._report(setup_ms, raise_errors=succeeded)

    def _progress(self, n_trials: int) -> SweepProgress:
        """The sweep's progress line: n_trials in all, the counted trials already ended."""
        ended = counted_trials(self.study.get_trials(deepcopy=False))
        n_objectives = len(self.settings.directions)
        words = {TrialState.COMPLETE: "done", TrialState.FAIL: "failed",
                 TrialState.PRUNED: "pruned"}
        return SweepProgress(
            total=n_trials, classify=lambda ret: words[outcome_of(ret, n_objectives).state],
            **{word: sum(t.state == state for t in ended) for state, word in words.items()})

    def _fail_orphaned_runs(self) -> None:
        """Every job has ended: a run still RUNNING belongs to a job killed outright."""
        from sweep.mlflow_parent import fail_orphaned_runs

        fail_orphaned_runs(self.config)

    def _run_trials(self, n_trials: int) -> None:
        """Asynchronous where the setting and the launcher allow it, else in batches."""
        job_queue = getattr(self.launcher, "job_queue", None)
        if self.settings.async_trials and job_queue is not None:
            assert self.progress is not None
            self.progress.parallelism = self.settings.n_jobs
            with job_queue(self.progress) as queue:
                self._run_async(n_trials, queue)
            return
        if self.settings.async_trials:
            log.info("Optuna: %s launches whole batches (Hydra's basic launcher runs jobs one "
                     "after another in this process): trials run in batches of n_jobs=%d",
                     type(self.launcher).__name__, self.settings.n_jobs)
        self._run_batches(n_trials)

    def _run_async(self, n_trials: int, queue: Any) -> None:
        """Keep ``n_jobs`` trials in flight; tell each as it ends and launch the next."""
        in_flight: dict[int, optuna.Trial] = {}
        stop: TooManyFailedTrials | None = None
        validate = True
        try:
            while True:
                if stop is None:
                    with self.clock.sweeper():
                        counted = len(counted_trials(self.study.get_trials(deepcopy=False)))
                    free = min(self.settings.n_jobs, n_trials - counted) - len(in_flight)
                    if free > 0:
                        for trial, outcome in self._ask_and_submit(free, in_flight, queue,
                                                                   validate):
                            stop = self._tell_async(trial, outcome, stop, len(in_flight))
                        validate = False
                if not in_flight:
                    break
                with self.clock.jobs():
                    ended = queue.wait_any()
                with self.clock.sweeper():
                    for number, ret in ended:
                        outcome = outcome_of(ret, len(self.settings.directions))
                        stop = self._tell_async(in_flight.pop(number), outcome, stop,
                                                len(in_flight))
        except KeyboardInterrupt:
            requeued = requeue_unfinished(self.study, self.store, sorted(in_flight))
            if requeued:
                log.warning("Optuna: running trials %s marked FAIL (driver interrupted) and "
                            "re-enqueued", requeued)
            raise
        except Exception as err:
            failed = fail_unfinished(self.study, self.store, sorted(in_flight), err)
            if failed:
                log.warning("Optuna: running trials %s marked FAIL (driver error)", failed)
            raise
        if stop is not None:
            raise stop

    def _ask_and_submit(self, size: int, in_flight: dict[int, optuna.Trial], queue: Any,
                        validate: bool) -> list[tuple[optuna.Trial, TrialOutcome]]:
        """Ask ``size`` trials and submit their jobs (the first ones checked first); returns
        the trials whose submission failed, with their FAIL outcome (not told yet)."""
        asked: list[tuple[optuna.Trial, list[str]]] = []
        not_submitted: list[tuple[optuna.Trial, TrialOutcome]] = []
        with self.clock.sweeper():
            for _ in range(size):
                trial = self.study.ask()
                in_flight[trial.number] = trial  # from here on, an error fails it
                claim_trial(self.store, trial)
                asked.append((trial, self._configure(trial)))
        if validate:
            self._check_jobs([overrides for _, overrides in asked])
        for trial, overrides in asked:
            try:
                with self.clock.jobs():
                    queue.submit(overrides, trial.number)
            except Exception as err:  # noqa: BLE001 - e.g. sbatch refused it: this trial fails
                outcome = TrialOutcome(TrialState.FAIL,
                                       reason=f"launch failed: {type(err).__name__}: {err}")
                if self.progress is not None and self.progress.finished(trial.number, err):
                    self.progress.report()
                not_submitted.append((in_flight.pop(trial.number), outcome))
            self.n_launched += 1
        return not_submitted

    def _tell_async(self, trial: optuna.Trial, outcome: TrialOutcome,
                    stop: TooManyFailedTrials | None, running: int) \
            -> TooManyFailedTrials | None:
        """Tell an ended trial; returns the failure-rate error once it applies (the trials
        still running are awaited before it is raised)."""
        self._tell(trial, outcome)
        if outcome.state != TrialState.FAIL or stop is not None:
            return stop
        try:
            self._check_failure_rate([outcome])
        except TooManyFailedTrials as err:
            if running:
                log.warning("Optuna: too many failed trials; launching no more, waiting for "
                            "the %d running", running)
            return err
        return None

    def _check_jobs(self, overrides: list[list[str]]) -> None:
        """Compose and check the first jobs' configs: a typo or a bad value fails now with
        one clear message, not as a failed trial per job."""
        if any(section in self.config for section in _PROJECT_SECTIONS):
            check_jobs(self.settings.hydra_context.config_loader, self.settings.config,
                       overrides)
            return
        for job in overrides:  # a foreign app: composition errors only
            self.settings.hydra_context.config_loader.load_sweep_config(
                self.settings.config, list(job))

    def _run_batches(self, n_trials: int) -> None:
        first = True
        while True:
            with self.clock.sweeper():
                remaining = n_trials - len(counted_trials(self.study.get_trials(deepcopy=False)))
            if remaining <= 0:
                return
            self._run_batch(min(self.settings.n_jobs, remaining), validate=first)
            first = False

    def _run_batch(self, size: int, validate: bool) -> None:
        trials: list[optuna.Trial] = []
        try:
            with self.clock.sweeper():
                for _ in range(size):
                    trials.append(self.study.ask())
                    claim_trial(self.store, trials[-1])
                overrides = [self._configure(trial) for trial in trials]
            if validate:
                self._check_jobs(overrides)
            outcomes = self._launch(trials, overrides)
            with self.clock.sweeper():
                for trial, outcome in zip(trials, outcomes, strict=True):
                    self._tell(trial, outcome)
        except KeyboardInterrupt:
            # interrupted (SIGINT/SIGTERM): the batch reruns when the command is run again
            requeued = requeue_unfinished(self.study, self.store, [t.number for t in trials])
            if requeued:
                log.warning("Optuna: trials %s of the running batch marked FAIL (driver "
                            "interrupted) and re-enqueued", requeued)
            raise
        except Exception as err:
            # broken (a bad config, a sampler error): rerunning would break again, so the
            # batch is failed, not re-enqueued; no trial is left RUNNING or WAITING
            failed = fail_unfinished(self.study, self.store, [t.number for t in trials], err)
            if failed:
                log.warning("Optuna: trials %s of the running batch marked FAIL (driver "
                            "error)", failed)
            raise
        if any(o.state == TrialState.FAIL for o in outcomes):
            self._check_failure_rate(outcomes)

    def _configure(self, trial: optuna.Trial) -> list[str]:
        """Sample the trial's params, record its fixed values; returns its job's overrides."""
        for key, dist in self.space.distributions.items():
            _suggest(trial, key, dist)
        for key, value in self.space.fixed.items():
            trial.set_user_attr(key, value)
        extra: dict[str, Any] = {}
        if self.extender is not None:
            extra = dict(self.extender(self.config, trial) or {})
        overlap = (set(trial.params) & set(self.space.fixed)) | (set(extra) & set(trial.params))
        if overlap:
            raise SearchSpaceError(f"parameters {sorted(overlap)} are both searched and fixed")
        for key, value in extra.items():
            trial.set_user_attr(key, _json_safe(value))
        identity = identity_overrides(self.storage_url, self.study.study_name, trial.number,
                                      self.exclude_keys) if self.pass_identity else []
        return trial_overrides(self.space, trial.params, extra, identity)

    def _launch(self, trials: list[optuna.Trial], overrides: list[list[str]]) \
            -> list[TrialOutcome]:
        """Launch the batch; one launch per run of consecutive trial numbers.

        Numbers are consecutive unless another driver asked trials of the same study in
        between; splitting then keeps job directory == trial number (no overwrites).
        """
        n_objectives = len(self.settings.directions)
        outcomes: list[TrialOutcome] = []
        for start, stop in _consecutive_runs([t.number for t in trials]):
            try:
                with self.clock.jobs():
                    # one launcher call per batch, as the stock plugin makes (Hydra's basic
                    # launcher logs "#k : overrides" before each job; progress follows the batch)
                    returns = launch(self.launcher, overrides[start:stop],
                                     trials[start].number, self.progress, line_per_job=False)
                if len(returns) != stop - start:
                    raise RuntimeError(f"{len(returns)} results for {stop - start} jobs")
                outcomes += [outcome_of(ret, n_objectives) for ret in returns]
            except Exception as err:
                # e.g. submitit: a job process died before Hydra could catch anything
                reason = f"launch failed: {type(err).__name__}: {err}"
                outcomes += [TrialOutcome(TrialState.FAIL, reason=reason)] * (stop - start)
            self.n_launched += stop - start
        return outcomes

    def _tell(self, trial: optuna.Trial, outcome: TrialOutcome) -> None:
        tell_outcome(self.study, self.store, trial, outcome)
        if outcome.state == TrialState.COMPLETE:
            log.info("Optuna trial %d: values %s, params %s", trial.number, outcome.values,
                     trial.params)
        elif outcome.state == TrialState.FAIL:
            log.warning("Optuna trial %d failed: %s", trial.number, outcome.reason)
        elif outcome.state == TrialState.PRUNED:
            log.info("Optuna trial %d pruned (%s)", trial.number, outcome.reason or "pruner")

    def _check_failure_rate(self, outcomes: list[TrialOutcome]) -> None:
        failed, counted = failure_rate(self.study.get_trials(deepcopy=False))
        rate = self.settings.max_failure_rate
        if counted and failed / counted > rate:
            raise TooManyFailedTrials(
                f"Optuna sweep stopped: {failed} of {counted} trials failed "
                f"({failed / counted:.0%}), more than hydra.sweeper.max_failure_rate={rate}. "
                f"First failure: {self._first_failure(outcomes)}. See fail_reason in "
                f"{self.sweep_dir}/trials.csv; raise max_failure_rate to tolerate failures."
            )

    def _check_some_trial_succeeded(self) -> None:
        """Every counted trial FAILed (possible with max_failure_rate=1.0): an error."""
        counted = counted_trials(self.study.get_trials(deepcopy=False))
        if counted and all(t.state == TrialState.FAIL for t in counted):
            raise TooManyFailedTrials(
                f"Optuna sweep failed: all {len(counted)} trials failed, no result. First "
                f"failure: {self._first_failure([])}. See fail_reason in "
                f"{self.sweep_dir}/trials.csv.")

    def _first_failure(self, outcomes: list[TrialOutcome]) -> str:
        """The fail reason of the study's first counted FAIL trial (else of ``outcomes``)."""
        for trial in counted_trials(self.study.get_trials(deepcopy=False)):
            if trial.state == TrialState.FAIL:
                return str(trial.user_attrs.get(FAIL_REASON, "unknown"))
        return next((o.reason or "unknown" for o in outcomes if o.state == TrialState.FAIL),
                    "unknown")

    def _report(self, setup_ms: float, raise_errors: bool) -> None:
        """Results files, console summary, MLflow parent run, overhead; after any exit."""
        try:
            start = time.perf_counter()
            overhead = (self.clock.sweeper_s * 1e3 / self.n_launched) if self.n_launched else None
            summary = study_summary(self.study, self.storage_url, overhead)
            files = write_results(self.study, summary, self.sweep_dir)
            log_summary(summary)
            log_to_parent_run(self.sweep_dir, files, summary)
            report_ms = (time.perf_counter() - start) * 1e3
            if overhead is not None:
                log.info(
                    "sweeper overhead: %.1f ms per trial (ask/tell and storage I/O over %d "
                    "trials; excludes launcher and jobs, %.1f s); setup %.0f ms, results %.0f "
                    "ms", overhead, self.n_launched, self.clock.jobs_s, setup_ms, report_ms)
        except Exception as err:
            if raise_errors:
                raise
            log.warning("Could not write the Optuna results: %s", err)


def _params_lines(params: DictConfig | dict | None) -> list[str]:
    """``hydra.sweeper.params`` as override lines (``key=value``)."""
    if not params:
        return []
    from hydra.core.override_parser.types import Transformer  # formats values as overrides

    lines = []
    for key, value in params.items():
        if isinstance(value, DictConfig) or OmegaConf.is_list(value):
            value = Transformer.str(OmegaConf.to_container(value))
        elif not isinstance(value, str):
            value = Transformer.str(value)
        lines.append(f"{key}={value}")
    return lines


def _make_sampler(
    cfg: DictConfig | None, space: SearchSpace, seed_offset: int = 0
) -> optuna.samplers.BaseSampler:
    """Instantiate the sampler; GridSampler gets its grid from the search space."""
    if cfg is None:
        return optuna.samplers.TPESampler()
    kwargs: dict[str, Any] = {}
    if seed_offset and cfg.get("seed") is not None:
        kwargs["seed"] = int(cfg.seed) + seed_offset
    if _targets_grid_sampler(cfg) and cfg.get("search_space") is None:
        kwargs["search_space"] = space.grid()
    return instantiate(cfg, **kwargs, _convert_="all")


def _targets_grid_sampler(cfg: DictConfig) -> bool:
    try:
        return issubclass(get_class(str(cfg.get("_target_"))), optuna.samplers.GridSampler)
    except (ImportError, ValueError):
        return False  # not a class: instantiate() names the bad _target_


def _storage_object(url: str) -> BaseStorage:
    """The storage the study is created with, kept by the sweeper so that it can write trial
    attrs through ``BaseStorage``'s public methods (``TrialStore``)."""
    storage = open_storage(url)
    path = journal_path(url)
    if path is not None:
        # the file open_storage created, written by the driver without fsync (_driver_journal)
        return driver_journal(path)
    # a database URL: the RDBStorage that optuna.create_study would build from the string
    return RDBStorage(storage) if isinstance(storage, str) else storage


def _suggest(trial: optuna.Trial, key: str, dist: BaseDistribution) -> Any:
    """Sample ``key`` from ``dist`` through Optuna's public suggest API."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(key, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)
    raise TypeError(f"unsupported distribution for '{key}': {dist}")


def _consecutive_runs(numbers: list[int]) -> list[tuple[int, int]]:
    """[start, stop) index ranges of ``numbers`` whose values increase by one."""
    runs, start = [], 0
    for i in range(1, len(numbers) + 1):
        if i == len(numbers) or numbers[i] != numbers[i - 1] + 1:
            runs.append((start, i))
            start = i
    return runs


def _json_safe(value: Any) -> Any:
    """User attrs must be JSON-serializable: other values are stored as text."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return str(value)
