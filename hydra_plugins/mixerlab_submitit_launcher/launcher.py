"""hydra-submitit-launcher's launchers, with one result per job even when a job dies.

The stock ``launch`` ends with ``[j.results()[0] for j in jobs]``: a job that dies without
writing its result (``scancel``, SIGKILL, out of memory, node failure, too many timeouts)
raises ``UncompletedJobError`` there, which aborts the whole sweep and hides the results of
every other job. These subclasses run the stock ``launch`` unchanged, except that the jobs it
waits on answer ``results()`` for a dead job with its error instead of raising; such a job
becomes a FAILED ``JobReturn`` (its ``_return_value`` is the error), so the grid sweeper
finishes the other jobs and reports the dead one in ``failed_jobs.yaml``, and the Optuna
sweeper fails only that trial.

Everything else (parameters, submission, requeue through ``checkpoint()``) is the plugin's own.
``hydra/launcher=submitit_slurm`` / ``submitit_local`` and every profile built on them
(conf/hydra/launcher/*.yaml) select these classes: see config.py beside this file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher

log = logging.getLogger(__name__)


class _EveryJobLauncher(BaseSubmititLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        with _dead_jobs_return_their_error():
            returns = super().launch(job_overrides, initial_job_idx)
        for idx, (overrides, ret) in enumerate(zip(job_overrides, returns, strict=True)):
            if isinstance(ret, _JobDied):
                log.error("job #%d: %s", initial_job_idx + idx, ret)
                returns[idx] = JobReturn(overrides=list(overrides), status=JobStatus.FAILED,
                                         _return_value=ret)
        return returns


@contextmanager
def _dead_jobs_return_their_error() -> Iterator[None]:
    """While the stock ``launch`` runs, the executor it builds hands back jobs whose
    ``results()`` gives ``[_JobDied]`` for a job that ended without a result.

    The plugin offers no hook between submitting the jobs and collecting their results, and
    copying its ``launch`` to change its last line copies everything else with it. Its
    ``launch`` looks ``submitit.AutoExecutor`` up when it runs, so for that call the name
    refers to a subclass whose ``map_array`` (submitit's public API) wraps each job; the
    original is restored afterwards. Launches run one at a time in the sweep driver's main
    thread. tests/test_private_api_pins.py fails if the plugin stops building its executor or
    collecting its results this way.
    """
    import submitit  # lazily, as the plugin: plugin discovery imports this module

    stock = submitit.AutoExecutor

    class EveryJobExecutor(stock):
        def map_array(self, fn: Any, *iterable: Any) -> list[_ResultOrDeath]:
            return [_ResultOrDeath(job) for job in super().map_array(fn, *iterable)]

    submitit.AutoExecutor = EveryJobExecutor
    try:
        yield
    finally:
        submitit.AutoExecutor = stock


class _ResultOrDeath:
    """A submitted job whose ``results()`` returns ``[_JobDied]`` instead of raising."""

    def __init__(self, job: Any) -> None:
        self.job = job

    def results(self) -> list[Any]:
        try:
            return self.job.results()
        except Exception as err:  # noqa: BLE001 - the job died; the others still count
            return [_JobDied(self.job.job_id, err)]


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
