"""Sweep progress in the driver's log: done / failed / pruned / running / queued, elapsed, ETA.

The grid and Optuna sweepers count their jobs in one ``SweepProgress`` and launch through
``launch`` below. One INFO line (logger ``sweep.sweep_progress``) is written whenever a job
changes state, and otherwise at most every ``INTERVAL_S`` seconds (30; the environment
variable ``MIXERLAB_PROGRESS_INTERVAL_S`` changes it), e.g.::

    sweep progress: 4/12 ended (done 3, failed 1, pruned 0), running 2, queued 6;
    elapsed 0:01:40, ETA 0:03:20

* ``total``: the grid's job count, or Optuna's ``n_trials`` (the study's total: trials of
  earlier runs of the same command count as ended);
* running / queued: jobs started and not ended / the rest, jobs not yet submitted included.
  On SLURM (the submitit launchers) a submitted job counts as running once the scheduler
  says RUNNING, read from what the launcher's poll already fetches (the submitit watcher's
  one ``sacct`` per poll for all jobs: no extra scheduler call); with Hydra's basic launcher
  jobs run in the driver one after the other, so in a grid the line comes before each job
  starts (``job k/N starting``); an Optuna batch (``n_jobs`` trials) is one launcher call,
  as in the stock plugin, and its line follows the batch;
* ETA = mean duration of the jobs that ended in this run x (running + queued) / parallelism
  (the jobs in flight together: 1 for the basic launcher, the launch's size capped by
  ``hydra.launcher.array_parallelism`` otherwise); unknown until a job has ended.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

log = logging.getLogger(__name__)

INTERVAL_S = 30.0
INTERVAL_ENV = "MIXERLAB_PROGRESS_INTERVAL_S"
OUTCOMES = ("done", "failed", "pruned")
# scheduler states (SLURM's, submitit's local executor's) of a job running, or waiting again
# after it ran (preempted, requeued); UNKNOWN (not in sacct yet, or a failed sacct call) changes
# nothing, and an end counts once the job's result is read
_QUEUED_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "PREEMPTED"}
_RUNNING_STATES = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}


def interval_from_env() -> float:
    """Seconds between progress lines while no job changes state (``INTERVAL_ENV``)."""
    raw = os.environ.get(INTERVAL_ENV)
    if raw is None or raw == "":
        return INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{INTERVAL_ENV}={raw!r} is invalid; valid: a number of seconds >= 0 "
                         f"(default {INTERVAL_S:g})")
    return value


def job_return_outcome(ret: Any) -> str:
    """A grid job's outcome: ``failed`` for a FAILED ``JobReturn`` (or no JobReturn at all),
    else ``done``."""
    from hydra.core.utils import JobStatus

    return "done" if getattr(ret, "status", None) == JobStatus.COMPLETED else "failed"


def _clock_text(seconds: float | None) -> str:
    return "?" if seconds is None else str(timedelta(seconds=round(seconds)))


class SweepProgress:
    """Counts a sweep's jobs by state and logs the progress line (see the module docstring).

    ``classify`` maps a job's result (a Hydra ``JobReturn``) to one of ``OUTCOMES``;
    ``done``/``failed``/``pruned`` count jobs that ended before this run (a resumed study).
    """

    def __init__(self, total: int, classify: Callable[[Any], str] = job_return_outcome,
                 done: int = 0, failed: int = 0, pruned: int = 0,
                 interval_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.classify = classify
        self.interval_s = interval_from_env() if interval_s is None else interval_s
        self.clock = clock
        self.ended = {"done": done, "failed": failed, "pruned": pruned}
        self.parallelism = 1
        self.durations: list[float] = []   # of the jobs that ended in this run
        self._submitted: dict[int, float] = {}  # job -> time it was launched
        self._running: dict[int, float] = {}    # job -> time it started
        self._finished: set[int] = set()
        self._start = clock()
        self._last_line = -math.inf
        self._last_counts = ""

    # -- counts ------------------------------------------------------------------------------
    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def queued(self) -> int:
        return max(0, self.total - sum(self.ended.values()) - self.running)

    def elapsed_s(self) -> float:
        return self.clock() - self._start

    def eta_s(self) -> float | None:
        """Mean duration of the ended jobs x jobs left / parallelism; None before any ended."""
        left = self.running + self.queued
        if left == 0:
            return 0.0
        if not self.durations:
            return None
        return sum(self.durations) / len(self.durations) * left / max(1, self.parallelism)

    def counts_text(self) -> str:
        e = self.ended
        return (f"{sum(e.values())}/{self.total} ended (done {e['done']}, failed {e['failed']}, "
                f"pruned {e['pruned']}), running {self.running}, queued {self.queued}; "
                f"elapsed {_clock_text(self.elapsed_s())}, ETA {_clock_text(self.eta_s())}")

    # -- state changes -----------------------------------------------------------------------
    def submitted(self, job: int) -> None:
        self._submitted.setdefault(job, self.clock())

    def started(self, job: int) -> bool:
        """The job runs now; returns whether that is news."""
        if job in self._finished or job in self._running:
            return False
        self._running[job] = self.clock()
        return True

    def finished(self, job: int, result: Any) -> bool:
        """The job ended with ``result`` (classified by ``classify``); returns whether news."""
        if job in self._finished:
            return False
        # an exception: the launch itself failed, or the job died without a result
        outcome = "failed" if isinstance(result, BaseException) else self.classify(result)
        if outcome not in OUTCOMES:
            raise ValueError(f"job outcome {outcome!r} is invalid; valid: {list(OUTCOMES)}")
        now = self.clock()
        start = self._running.pop(job, None)
        start = self._submitted.get(job, now) if start is None else start
        self.durations.append(now - start)
        self._finished.add(job)
        self.ended[outcome] += 1
        return True

    def requeued(self, job: int) -> bool:
        """A running job waits again (preempted and requeued); returns whether news."""
        return self._running.pop(job, None) is not None

    # -- lines -------------------------------------------------------------------------------
    def report(self) -> None:
        """Log the progress line now."""
        self._last_line = self.clock()
        text = self.counts_text()
        self._last_counts = text.split("; elapsed")[0]
        log.info("sweep progress: %s", text)

    def tick(self) -> None:
        """Log the progress line if none was logged for ``interval_s``."""
        if self.clock() - self._last_line >= self.interval_s:
            self.report()

    def starting(self, job: int) -> None:
        """A job of an in-process launcher starts now (the line comes before it)."""
        self.submitted(job)
        self.started(job)
        self._last_line = self.clock()
        log.info("sweep progress: job %d/%d starting (#%d); %s", sum(self.ended.values()) + 1,
                 self.total, job, self.counts_text())

    def close(self) -> None:
        """The sweep's last line (unless the line just logged already says the same)."""
        if self._last_counts != self.counts_text().split("; elapsed")[0]:
            self.report()


# the launch in progress, for the launcher's poll (launches run one at a time in the driver)
_ACTIVE: tuple[SweepProgress, list[int]] | None = None


@contextmanager
def _active(progress: SweepProgress, keys: list[int]) -> Iterator[None]:
    global _ACTIVE
    _ACTIVE = (progress, keys)
    try:
        yield
    finally:
        _ACTIVE = None


def launch(launcher: Any, overrides: Sequence[Sequence[str]], initial_job_idx: int,
           progress: SweepProgress | None, line_per_job: bool = True) -> Sequence[Any]:
    """``launcher.launch(overrides, initial_job_idx)``, counting its jobs in ``progress``.

    Hydra's basic launcher runs the jobs in this process one after the other, so with
    ``line_per_job`` it is given one job per call, with the progress line in between (the same
    jobs, numbers and order); without, it gets the whole batch in one call, as Hydra's own
    sweepers give it (each call re-configures logging, milliseconds a call, which the Optuna
    sweeper's small batches do not spend per job). Other launchers get the whole batch; they report
    scheduler states through ``launch_poller``. A launch that raises counts its unfinished jobs
    as failed.
    """
    if progress is None:
        return launcher.launch(overrides, initial_job_idx=initial_job_idx)
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher

    keys = list(range(initial_job_idx, initial_job_idx + len(overrides)))
    returns: list[Any] = []
    in_process = isinstance(launcher, BasicLauncher)
    try:
        if in_process and line_per_job:
            progress.parallelism = 1
            for key, job in zip(keys, overrides, strict=True):
                progress.starting(key)
                ret = launcher.launch([job], initial_job_idx=key)
                returns += ret
                if ret:
                    progress.finished(key, ret[0])
            return returns
        cap = 1 if in_process else \
            getattr(launcher, "params", {}).get("array_parallelism") or len(keys)
        progress.parallelism = max(1, min(len(keys), int(cap)))
        for key in keys:
            progress.submitted(key)
        with _active(progress, keys):
            returns = list(launcher.launch(overrides, initial_job_idx=initial_job_idx))
        changed = [progress.finished(key, ret) for key, ret in zip(keys, returns, strict=False)]
        if any(changed):
            progress.report()
        return returns
    except Exception as err:
        if any([progress.finished(key, err) for key in keys[len(returns):]]):
            progress.report()
        raise


class LaunchPoller:
    """Reads the states of one launch's submitted jobs (submitit ``Job`` objects) at each of
    the launcher's polls and reports them to the sweep's progress.

    Reads only what the poll fetches anyway: ``job.state`` (SLURM: the submitit watcher's
    cached ``sacct`` answer, refreshed at most once per poll for all jobs; local: the
    process) and whether a result file exists; a job's result is read early (and counted
    done / failed / pruned) once its file is there, so the counts move while the launcher
    still waits on an earlier job.
    """

    def __init__(self, jobs: Sequence[Any], progress: SweepProgress | None = None,
                 keys: Sequence[int] | None = None) -> None:
        """``progress``/``keys``: report ``jobs`` (numbered ``keys``) there; by default to
        the launch in progress (``launch``), if any."""
        self.jobs = list(jobs)
        active = (progress, list(keys or [])) if progress is not None else _ACTIVE
        self.progress, self.keys = active if active is not None else (None, [])
        if self.progress is not None and len(self.keys) != len(self.jobs):
            self.progress = None  # not the launch we were told about: report nothing

    def poll(self) -> None:
        if self.progress is None:
            return
        changed = False
        for key, job in zip(self.keys, self.jobs, strict=True):
            try:
                # done(): a local job's results() would wait for its process to exit
                if job.num_tasks == 1 and job.paths.result_pickle.exists() and job.done():
                    changed |= self.progress.finished(key, job.results()[0])
                    continue
                state = str(job.state).split(" ")[0].upper()
            except Exception:  # noqa: BLE001 - a partly written result, a dead job: next poll
                continue
            if state in _RUNNING_STATES:
                changed |= self.progress.started(key)
            elif state in _QUEUED_STATES:
                changed |= self.progress.requeued(key)
        if changed:
            self.progress.report()
        else:
            self.progress.tick()

    def returned(self, job: Any, result: Any) -> None:
        """The launcher read ``job``'s result (a ``JobReturn``, or the error of a dead job)."""
        if self.progress is None:
            return
        key = next((k for k, j in zip(self.keys, self.jobs, strict=True) if j is job), None)
        if key is not None and self.progress.finished(key, result):
            self.progress.report()


def launch_poller(jobs: Sequence[Any]) -> LaunchPoller:
    """The poller for the jobs a launcher just submitted (inert outside ``launch``)."""
    return LaunchPoller(jobs)
