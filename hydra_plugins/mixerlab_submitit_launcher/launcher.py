"""hydra-submitit-launcher's launchers, with one result per job even when a job dies.

The stock ``launch`` ends with ``[j.results()[0] for j in jobs]``: a job that dies without
writing its result (``scancel``, SIGKILL, out of memory, node failure, too many timeouts)
raises ``UncompletedJobError`` there, which aborts the whole sweep and hides the results of
every other job. These subclasses run the stock ``launch`` unchanged, except that the jobs it
waits on answer ``results()`` for a dead job with its error instead of raising; such a job
becomes a FAILED ``JobReturn`` (its ``_return_value`` is the error), so the grid sweeper
finishes the other jobs and reports the dead one in ``failed_jobs.yaml``, and the Optuna
sweeper fails only that trial.

How soon a job's end is noticed, two settings (``hydra.launcher.<key>``):

* ``poll_interval_s`` (default 1 s; ``submitit_local`` 0.1 s, where a look is a process poll
  and a file check): the driver looks for the jobs' result files that often (a
  file check, no SLURM call) and asks SLURM at most that often (one ``sacct`` for all the
  launch's jobs) whether a job ended without writing one. Stock submitit also checks the files
  every second, but spaces its ``sacct`` calls out to every 10 minutes in a long sweep, so a
  job killed outright went unnoticed for up to 10 minutes. ``null``: submitit's own waiting.
* ``result_grace_s`` (default 15 s, submitit's): how long a job that SLURM reports ended may
  take for its result file to appear before it counts as dead: a shared filesystem can show
  the file late. ``local_debug`` (one machine, local disk) sets 1 s.

Asynchronous trials (the Optuna sweeper's default): ``job_queue()`` submits one job at a time
(``JobQueue.submit``, through the plugin's own ``launch``, which returns at once) and hands
back whichever jobs have ended (``JobQueue.wait_any``), polling as above, so the sweeper keeps
``n_jobs`` trials in flight instead of waiting for a whole batch. A job has ended there as soon
as its result file is there, not when its process has finished exiting.

Everything else (parameters, submission, requeue through ``checkpoint()``) is the plugin's own.
``hydra/launcher=submitit_slurm`` / ``submitit_local`` and every profile built on them
(conf/hydra/launcher/*.yaml) select these classes: see config.py beside this file.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher

from hydra_plugins.mixerlab_submitit_launcher.config import POLL_INTERVAL_S, RESULT_GRACE_S
from sweep.sweep_progress import LaunchPoller, SweepProgress, launch_poller

log = logging.getLogger(__name__)


def _seconds(key: str, value: Any, default: float, valid: str, allow_zero: bool,
             allow_null: bool) -> float | None:
    """A launcher setting in seconds, or one error naming it and what is valid."""
    if value is None and allow_null:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and (value > 0 or (allow_zero and value == 0)):
        return float(value)
    raise ValueError(f"hydra.launcher.{key}={value!r} is invalid; valid: {valid} "
                     f"(default {default})")


class _EveryJobLauncher(BaseSubmititLauncher):
    def __init__(self, poll_interval_s: float | None = POLL_INTERVAL_S,
                 result_grace_s: float = RESULT_GRACE_S, **params: Any) -> None:
        # ours, not submitit's: kept out of the parameters the plugin hands to the executor
        self.poll_interval_s = _seconds(
            "poll_interval_s", poll_interval_s, POLL_INTERVAL_S, allow_zero=False,
            allow_null=True, valid="a number of seconds > 0, or null for submitit's own waiting")
        self.result_grace_s = _seconds("result_grace_s", result_grace_s, RESULT_GRACE_S,
                                       allow_zero=True, allow_null=False,
                                       valid="a number of seconds >= 0")
        super().__init__(**params)

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        with _dead_jobs_return_their_error(self.poll_interval_s, self.result_grace_s):
            returns = super().launch(job_overrides, initial_job_idx)
        for idx, (overrides, ret) in enumerate(zip(job_overrides, returns, strict=True)):
            if isinstance(ret, _JobDied):
                log.error("job #%d: %s", initial_job_idx + idx, ret)
                returns[idx] = JobReturn(overrides=list(overrides), status=JobStatus.FAILED,
                                         _return_value=ret)
        return returns

    @contextmanager
    def job_queue(self, progress: SweepProgress | None = None) -> Iterator[JobQueue]:
        """A queue that submits jobs one at a time and returns whichever ended (see
        ``JobQueue``); SLURM is asked every ``poll_interval_s`` while it is open."""
        with _polling(self.poll_interval_s, self.result_grace_s):
            queue = JobQueue(self, progress)
            try:
                yield queue
            except BaseException:
                queue.let_exit(timeout_s=5.0)  # a few seconds for exiting jobs, no more
                raise
            queue.let_exit()

    def submit_one(self, overrides: Sequence[str], job_idx: int) -> Any:
        """Submit one job (job number and directory ``job_idx``) without waiting for it;
        returns its submitit ``Job``. The plugin's own ``launch`` does the submission."""
        with _jobs_returned_unwaited():
            (job,) = super().launch([overrides], job_idx)
        return job


class JobQueue:
    """The jobs in flight of an asynchronous sweep, keyed by job number.

    ``submit`` returns once the job is submitted; ``wait_any`` blocks until at least one job
    has ended and returns ``(job number, JobReturn)`` for each ended job (a job that died
    without a result: a FAILED ``JobReturn`` holding the error, as ``launch`` gives).

    A job has ended for the sweep once its result file is there: submitit writes the file
    elsewhere and moves it into place, so it is whole, and the job's process has nothing left
    to do but exit, which took 0.2-0.9 s for a trivial Hydra app and seconds for a process
    that loaded torch and MLflow; its worker is not left idle for that long. The ``Job`` is
    kept until its process is gone, and ``let_exit`` waits for the last ones when the queue
    closes, so a sweep never returns with job processes still running. A job with an error
    in its file, or with several tasks, is collected as before, once its process ended.
    """

    def __init__(self, launcher: _EveryJobLauncher, progress: SweepProgress | None) -> None:
        self.launcher = launcher
        self.progress = progress
        self.poll_interval_s = launcher.poll_interval_s or POLL_INTERVAL_S
        self.jobs: dict[int, tuple[list[str], Any]] = {}
        self.exiting: list[Any] = []  # collected jobs whose process may still be running

    def submit(self, overrides: Sequence[str], job_idx: int) -> None:
        if self.progress is not None:
            self.progress.submitted(job_idx)
        job = self.launcher.submit_one(overrides, job_idx)
        self.jobs[job_idx] = (list(overrides), job)

    def wait_any(self) -> list[tuple[int, JobReturn]]:
        if not self.jobs:
            raise RuntimeError("wait_any() with no job in flight")
        while True:
            self.exiting = [job for job in self.exiting if not job.done()]
            keys = list(self.jobs)
            LaunchPoller([self.jobs[k][1] for k in keys], self.progress, keys).poll()
            written = {key: _written_result(self.jobs[key][1]) for key in keys}
            ended = [key for key in keys if written[key] or self.jobs[key][1].done()]
            if ended:
                return [(key, self._collect(key, written[key])) for key in ended]
            time.sleep(self.poll_interval_s)

    def let_exit(self, timeout_s: float | None = None) -> None:
        """Wait (at most ``timeout_s``; None: as long as it takes) for the processes of the
        collected jobs to exit."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            self.exiting = [job for job in self.exiting if not job.done()]
            if not self.exiting or (deadline is not None and time.monotonic() >= deadline):
                return
            time.sleep(min(self.poll_interval_s, 0.1))

    def _collect(self, key: int, written: tuple[Any] | None) -> JobReturn:
        overrides, job = self.jobs.pop(key)
        log.debug("job %s done", job.job_id)
        if written is not None:
            (ret,) = written
            self.exiting.append(job)
        else:
            try:
                ret = job.results()[0]
            except Exception as err:  # noqa: BLE001 - the job died; the others still count
                ret = _JobDied(job.job_id, err)
        if self.progress is not None and self.progress.finished(key, ret):
            self.progress.report()
        if isinstance(ret, _JobDied):
            log.error("job #%d: %s", key, ret)
            ret = JobReturn(overrides=overrides, status=JobStatus.FAILED, _return_value=ret)
        return ret


def _written_result(job: Any) -> tuple[Any] | None:
    """``(value,)``: what a single-task job returned, from its result file, which may be there
    before the job's process has exited; None when there is no such file yet, or it holds the
    job's error (``job.results()`` then raises it with the job's log, as submitit does)."""
    if getattr(job, "num_tasks", 1) != 1:
        return None
    path = job.paths.result_pickle
    if not path.exists():
        return None
    from submitit.core.utils import pickle_load

    try:
        outcome, value = pickle_load(path)
    except Exception:  # noqa: BLE001 - unreadable: leave it to job.results()
        return None
    return (value,) if outcome == "success" else None


@contextmanager
def _jobs_returned_unwaited() -> Iterator[None]:
    """While the stock ``launch`` runs, its executor's ``map_array`` hands back jobs whose
    ``results()`` is ``[the job]`` at once: ``launch`` submits and returns the submitit jobs
    without waiting (same mechanism as ``_dead_jobs_return_their_error``)."""
    import submitit

    stock = submitit.AutoExecutor

    class Unwaited:
        def __init__(self, job: Any) -> None:
            self.job = job

        def results(self) -> list[Any]:
            return [self.job]

    class SubmitOnlyExecutor(stock):
        def map_array(self, fn: Any, *iterable: Any) -> list[Unwaited]:
            return [Unwaited(job) for job in super().map_array(fn, *iterable)]

    submitit.AutoExecutor = SubmitOnlyExecutor
    try:
        yield
    finally:
        submitit.AutoExecutor = stock


@contextmanager
def _polling(poll_interval_s: float | None, result_grace_s: float) -> Iterator[None]:
    """SLURM's state asked every ``poll_interval_s`` (None: submitit's watcher), a job's
    result file awaited ``result_grace_s``; restored afterwards."""
    import submitit
    from submitit.slurm.slurm import SlurmInfoWatcher

    stock_watcher, stock_grace = submitit.SlurmJob.watcher, submitit.Job._results_timeout_s
    if poll_interval_s is not None:
        submitit.SlurmJob.watcher = SlurmInfoWatcher(delay_s=poll_interval_s)
    submitit.Job._results_timeout_s = result_grace_s
    try:
        yield
    finally:
        submitit.SlurmJob.watcher = stock_watcher
        submitit.Job._results_timeout_s = stock_grace


@contextmanager
def _dead_jobs_return_their_error(poll_interval_s: float | None = POLL_INTERVAL_S,
                                  result_grace_s: float = RESULT_GRACE_S) -> Iterator[None]:
    """While the stock ``launch`` runs, the executor it builds hands back jobs whose
    ``results()`` waits for them, looking every ``poll_interval_s``, and gives ``[_JobDied]``
    for a job that ended without a result.

    The plugin offers no hook between submitting the jobs and collecting their results, and
    copying its ``launch`` to change its last line copies everything else with it. Its
    ``launch`` looks ``submitit.AutoExecutor`` up when it runs, so for that call the name
    refers to a subclass whose ``map_array`` (submitit's public API) wraps each job; the
    original is restored afterwards. Launches run one at a time in the sweep driver's main
    thread. tests/test_private_api_pins.py fails if the plugin stops building its executor or
    collecting its results this way.

    SLURM jobs ask one watcher, shared by the class (``SlurmJob.watcher``), whether they ended:
    it runs one ``sacct`` for every registered job, at most every ``delay_s`` (600 s stock).
    For the launch the class gets a watcher of its own with ``delay_s=poll_interval_s`` (None:
    submitit's own waiting and watcher), and every job the grace ``result_grace_s`` (submitit's
    class attribute ``Job._results_timeout_s``); both are given back afterwards.
    tests/test_launcher_poll.py pins what this relies on in submitit.
    """
    import submitit  # lazily, as the plugin: plugin discovery imports this module

    stock = submitit.AutoExecutor

    class EveryJobExecutor(stock):
        def map_array(self, fn: Any, *iterable: Any) -> list[_ResultOrDeath]:
            jobs = super().map_array(fn, *iterable)
            # the sweep's progress line reads the states of all the launch's jobs at each poll
            poller = launch_poller(jobs)
            return [_ResultOrDeath(job, poll_interval_s, poller) for job in jobs]

    submitit.AutoExecutor = EveryJobExecutor
    try:
        with _polling(poll_interval_s, result_grace_s):
            yield
    finally:
        submitit.AutoExecutor = stock


class _ResultOrDeath:
    """A submitted job whose ``results()`` waits for it, checking every ``poll_interval_s``
    (None: submitit's own wait), and returns ``[_JobDied]`` instead of raising."""

    def __init__(self, job: Any, poll_interval_s: float | None = POLL_INTERVAL_S,
                 poller: LaunchPoller | None = None) -> None:
        self.job = job
        self.poll_interval_s = poll_interval_s
        self.poller = poller or launch_poller([])

    def results(self) -> list[Any]:
        try:
            if self.poll_interval_s is None:
                results = self.job.results()
            else:
                while not self.job.done():
                    self.poller.poll()
                    time.sleep(self.poll_interval_s)
                log.debug("job %s done", self.job.job_id)  # benchmarks/sweep_tail.py reads this
                results = self.job.results()
        except Exception as err:  # noqa: BLE001 - the job died; the others still count
            results = [_JobDied(self.job.job_id, err)]
        self.poller.returned(self.job, results[0])
        return results


class _JobDied(RuntimeError):
    """A job that ended without a result: cancelled, killed, out of memory, node failure."""

    def __init__(self, job_id: str, err: BaseException) -> None:
        first = str(err).strip().splitlines()
        super().__init__(
            f"job {job_id} ended without a result (cancelled, killed, out of memory or too "
            f"many timeouts): {type(err).__name__}{': ' + first[0] if first else ''}")


class SlurmLauncher(_EveryJobLauncher):
    _EXECUTOR = "slurm"


class LocalLauncher(_EveryJobLauncher):
    _EXECUTOR = "local"
